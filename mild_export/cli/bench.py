"""`mild-bench`: time each stage of MILD for N = 1..4 people, beside the compute floor and Table 5.

    mild-bench                                            # tiny model on the CPU, in seconds
    mild-bench --model sdxl-inpaint --device cuda --json r.json --plot r.png
    mild-bench --engines DIR --backend onnxruntime --instances 1,3

Prints a table of stage medians; --json keeps every timing and the environment (rewritten after
each case, so a run cut short keeps the cases it finished), --plot draws time per stage.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mild_export.bench.backends import BACKENDS, PRECISIONS, BenchOptions, Target, make_target
from mild_export.bench.cases import Case, CaseResult, run_case
from mild_export.bench.floor import FlopCounter, MatrixRate, matrix_rate
from mild_export.bench.kernel_profile import profile_image, write_profile
from mild_export.bench.report import environment, plot, table, write_json
from mild_export.bench.timing import TimedBackend
from mild_export.bench.weights import UNetWeights, model_unet_weights, unet_weights
from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command
from mild_export.engine import sma_torch_ext
from mild_export.export.contracts import ExportShapes, check_resolutions
from mild_export.runtime.torch_backend import inductor_tuning, tuning_on

log = logging.getLogger("mild")

PAPER_SIDE = 512
TINY_MODELS = ("tiny", "tiny-xl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-bench", __doc__)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--engines", type=Path, help="a mild-export output folder (exported graphs)")
    source.add_argument("--model", help="tiny (default), sd15-inpaint, sdxl-inpaint or a model folder")
    p.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        help="default: onnxruntime with --engines, else reference; torch: the merged model with the "
        "UNet replayed as CUDA graphs (the fastest path where TensorRT does not run)",
    )
    p.add_argument(
        "--instances", default="1,2,3,4", help="people per image, comma-separated (default 1,2,3,4)"
    )
    p.add_argument("--resolution", help="image sides, comma-separated (default 512; the tiny model: 64)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25, as in the paper)")
    p.add_argument(
        "--guidance", help="guidance scales, comma-separated; 1 = none (default 1,7.5: without and with)"
    )
    p.add_argument("--repeats", type=int, help="timed runs per case (default 3 tiny, 5 otherwise)")
    p.add_argument("--warmup", type=int, help="discarded runs per case (default 1 tiny, 2 otherwise)")
    p.add_argument("--device", help="cpu or cuda (default: cuda where PyTorch sees a GPU, else cpu)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), help="default fp16 on cuda, fp32 on cpu")
    p.add_argument(
        "--sma",
        choices=sma_torch_ext.FORMS,
        help="--backend reference or torch: SMA with the bias materialised (reference: the reference's "
        "default), as plain attention over extended Q/K (fold: torch's default on a CPU), or by the "
        "plugin's CUDA kernel (kernel: torch's default on a GPU; builds it)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="--backend torch: torch.compile the UNet and the VAE (fewer, fused kernels; compiles for "
        "minutes at the first call of each shape, inside the warm-up runs; PyTorch's "
        "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 and TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 tune it "
        "further, and --json records them)",
    )
    p.add_argument("--json", type=Path, help="write every timing and the environment here (after each case)")
    p.add_argument("--plot", type=Path, help="write a PNG of time per stage here")
    p.add_argument(
        "--profile",
        type=Path,
        help="profile one more image of the first case (torch.profiler) and write its most expensive "
        "operators and the device's busy time against the wall time here",
    )
    return p.parse_args(argv)


def parse_list(option: str, text: str, kind: type, example: str) -> list:
    try:
        values = [kind(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{option} {text!r}: give comma-separated numbers, e.g. {example}") from None
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class Request:
    """What the command line asks for; None: the target's default."""

    instances: list[int]
    sides: list[int] | None
    scales: list[float] | None
    steps: int
    repeats: int | None
    warmup: int | None
    device: torch.device


def parse_request(args: argparse.Namespace) -> Request:
    """Checks that need no model, so a typo fails before a 14 GB model is built."""
    instances = parse_list("--instances", args.instances, int, "1,2,3,4")
    if min(instances) < 1:
        raise ValueError(f"--instances {args.instances!r}: every N must be at least 1")
    sides = parse_list("--resolution", args.resolution, int, "512,1024") if args.resolution else None
    scales = parse_list("--guidance", args.guidance, float, "1,7.5") if args.guidance else None
    if scales and not all(math.isfinite(g) and g >= 0 for g in scales):
        raise ValueError(
            f"--guidance {args.guidance!r}: scales must be finite and >= 0 (1 disables guidance)"
        )
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    if args.warmup is not None and args.warmup < 0:
        raise ValueError(f"--warmup must be at least 0, got {args.warmup}")
    device = checks.device(args.device)
    checks.output_file(args.json, "--json", "bench.json")
    checks.output_file(args.plot, "--plot", "bench.png")
    checks.output_file(args.profile, "--profile", "profile.txt")
    return Request(instances, sides, scales, args.steps, args.repeats, args.warmup, device)


def plan_cases(request: Request, target: Target) -> list[Case]:
    """The cases to run, with the target's defaults, checked against what it can serve: the
    mild-export option that serves a case is named, as mild-erase names it."""
    config = target.config
    most = target.max_instances
    if most is not None and max(request.instances) > most:
        raise ValueError(
            f"--instances {_listed(request.instances)}: the graphs serve at most {most}: export again "
            f"with --max-instances {max(request.instances)}"
        )
    served = target.resolutions
    sides = request.sides or [served[0] if served else min(PAPER_SIDE, config.resolution)]
    check_resolutions(config, ExportShapes(resolutions=tuple(sides)))
    outside = [s for s in sides if served and not min(served) <= s <= max(served)]
    if outside:
        serves = f"{min(served)}" if min(served) == max(served) else f"{min(served)}..{max(served)}"
        raise ValueError(
            f"--resolution {_listed(sides)}: the graphs serve image sides {serves}: export again with "
            f"{' '.join(f'--resolution {s}' for s in outside)} (beside the sides they serve), or leave "
            "--resolution out"
        )
    scales = request.scales or ([1.0, 7.5] if target.guidance else [1.0])
    if not target.guidance and any(g != 1.0 for g in scales):
        raise ValueError(
            f"--guidance {_listed(scales)}: the graphs were exported without guidance: export again with "
            "--guidance, or leave --guidance at 1"
        )
    return [Case(n, side, request.steps, g) for side in sides for g in scales for n in request.instances]


def _listed(values: list[int] | list[float]) -> str:
    """[1.0, 7.5] -> '1,7.5': the values as the option takes them."""
    return ",".join(f"{v:g}" for v in values)


def engine_weights(args: argparse.Namespace, target: Target) -> UNetWeights | None:
    """The UNet's weights against one plain UNet's: from the engine files, else from the model."""
    if args.engines:
        return unet_weights(args.engines, target.config, target.precision)
    if target.unet is not None:
        return model_unet_weights(target.unet, target.config, target.precision)
    return None


def time_cases(
    target: Target,
    cases: list[Case],
    repeats: int,
    warmup: int,
    rate: MatrixRate,
    save: Callable[[list[CaseResult]], None],
) -> list[CaseResult]:
    """Each case's stage times and compute floor; `save` gets the results after every case, so that
    a run cut short (a time limit, a lost device) keeps what it timed."""
    counter = FlopCounter(target.config)
    timed = TimedBackend(target.backend)
    results: list[CaseResult] = []
    for case in cases:
        log.info("timing %s (%d warm-up, %d timed)", case.label, warmup, repeats)
        result = run_case(timed, case, repeats, warmup)
        result.flops = counter.case(case)
        result.floor_s = sum(result.flops.values()) / rate.flops_per_s
        results.append(result)
        log.info("%s: %.3f s an image, %.2fx the floor", case.label, result.image_s, result.ratio)
        save(results)
    return results


def report(
    args: argparse.Namespace,
    target: Target,
    results: list[CaseResult],
    rate: MatrixRate,
    title: str,
    weights: UNetWeights | None,
) -> None:
    """The table (and the weights line) on stdout; the plot and the kernel profile where asked."""
    print(f"mild-bench: {title}")
    print(table(results, rate))
    if weights is not None:
        print(weights.line())
    if args.plot:
        plot(args.plot, results, title)
        log.info("wrote %s", args.plot)
    if args.profile:
        profile = profile_image(target.backend, results[0].case)
        write_profile(args.profile, profile, title)
        print(profile.summary())
        if profile.by_kind:
            print(profile.kind_table())
        log.info("wrote %s", args.profile)


def run(args: argparse.Namespace) -> None:
    request = parse_request(args)
    if args.engines is None:
        checks.model_resolutions(args.model or "tiny", request.sides)
    device = request.device
    target = make_target(
        args.backend,
        BenchOptions(args.model or "tiny", args.engines, device, args.precision, args.sma, args.compile),
    )
    cases = plan_cases(request, target)
    tiny = target.config.name in TINY_MODELS  # seconds per case on a CPU: fewer runs suffice
    repeats = request.repeats if request.repeats is not None else 3 if tiny else 5
    warmup = request.warmup if request.warmup is not None else 1 if tiny else 2
    rate = matrix_rate(device, PRECISIONS[target.precision])
    env = environment(device, target.name, target.precision, target.sma)
    inductor = inductor_tuning() if args.compile else None
    weights = engine_weights(args, target)
    settings = {
        "model": str(args.engines or args.model or "tiny"),
        "repeats": repeats,
        "warmup": warmup,
        "cases": len(cases),
        "compile": args.compile,
        "inductor": inductor,
        "unet_weights": None if weights is None else asdict(weights),
    }

    def save(results: list[CaseResult]) -> None:
        if args.json:
            write_json(args.json, results, rate, env, settings)
            log.info("wrote %s (%d of %d cases)", args.json, len(results), len(cases))

    results = time_cases(target, cases, repeats, warmup, rate, save)
    title = (
        f"{target.config.name} on {env['device_name']}, {target.name} {target.precision}, SMA {target.sma}"
        + (", UNet and VAE compiled" if args.compile else "")
        + "".join(f", {name}" for name in tuning_on(inductor or {}))
    )
    report(args, target, results, rate, title, weights)


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-bench", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
