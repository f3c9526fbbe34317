"""`mild-export`: turn a MILD model into ONNX graphs and TensorRT engines (where TensorRT is installed).

    mild-export --model tiny --out engines/tiny
    mild-export --model PATH --fp16 --resolution 512 --resolution 1024 --max-instances 4 --out DIR
    mild-export --model PATH --fp16 --targets sm86,sm89 --plugin PATH/libmild_plugins.so --out DIR
    mild-export --model PATH --fp16 --prompt "a city street" --out DIR

Writes DIR/unet.onnx, text_encoder.onnx, conditioner.onnx, vae_encoder.onnx, vae_decoder.onnx,
their engines DIR/<graph>.plan, the text encodings of the empty prompt and each --prompt
(DIR/prompts.f32, for the C runtime) and DIR/manifest.json. Running it again with the same inputs
reuses the graphs and engines that are there.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command
from mild_export.engine.trt_shim import TensorRTError
from mild_export.export.branch_weights import BranchWeights
from mild_export.export.contracts import ExportShapes
from mild_export.export.precision import Precision, SMAForm

if TYPE_CHECKING:
    from mild_export.engine.build import Toolchain
    from mild_export.export.manifest import Manifest

log = logging.getLogger("mild")


def parse_resolutions(values: list[str] | None) -> tuple[int, ...] | None:
    """'512', '512,1024' or '512-1024' (a range: its ends become the profiles' min and max); None
    when not given (the model's own resolution)."""
    if not values:
        return None
    sides: list[int] = []
    for value in values:
        try:
            sides += [int(part) for part in value.replace(",", "-").split("-")]
        except ValueError:
            raise ValueError(
                f"--resolution {value!r}: give a side in pixels (512), sides (512,1024) or a range (512-1024)"
            ) from None
    return tuple(dict.fromkeys(sides))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-export", __doc__)
    p.add_argument("--model", default="tiny", help="tiny, sd15-inpaint, sdxl-inpaint, or a model folder")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="fp16 weights and activations")
    precision.add_argument("--bf16", action="store_true", help="bf16 weights and activations")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--resolution",
        action="append",
        help="image sides to serve: 512, 512,1024 or a range 512-1024 (repeatable; default: the model's)",
    )
    p.add_argument("--max-instances", type=int, default=8, help="most people per image (default 8)")
    p.add_argument("--guidance", action="store_true", help="serve classifier-free guidance (doubles batches)")
    p.add_argument(
        "--sma",
        choices=[f.value for f in SMAForm],
        default=SMAForm.PLUGIN.value,
        help="plugin (default) / function: a mild.SpatiallyModulatedAttention node with its function body; "
        "fold: plain attention over Q and K extended by one channel",
    )
    p.add_argument(
        "--bg-weights",
        choices=[f.value for f in BranchWeights],
        default=BranchWeights.LOW_RANK.value,
        help="low-rank (default): the UNet holds the fg Q/K/V set and the bg set's rank-2r difference "
        "(SDXL: 1.014x one UNet's weights); full: both sets whole (SDXL: 1.29x)",
    )
    p.add_argument(
        "--prompt",
        action="append",
        help="also encode this prompt into DIR/prompts.f32 (repeatable; the empty prompt is always there): "
        "the C runtime reads prompts from it, and with SD1.5/SDXL's CLIP tokenizers only from it",
    )
    p.add_argument(
        "--force", action="store_true", help="export and build again even if the files are up to date"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the log lines stay)")
    engines = p.add_argument_group("TensorRT engines")
    engines.add_argument(
        "--engines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="build DIR/<graph>.plan after the export (default; skipped with a notice when TensorRT or the "
        "plugin library is missing); --no-engines exports the ONNX graphs only",
    )
    engines.add_argument(
        "--targets",
        help="TensorRT for RTX compute capabilities, e.g. sm86,sm89 (default: the GPU present, else "
        "sm80,sm86,sm89,sm120); sm90 is not an RTX target",
    )
    engines.add_argument(
        "--plugin",
        type=Path,
        help="libmild_plugins.so for --sma plugin engines (default: $MILD_PLUGIN_LIBRARY, then "
        "build/plugins/plugins/sma/ of this checkout)",
    )
    return p.parse_args(argv)


def engine_toolchain(args: argparse.Namespace) -> Toolchain | None:
    """The engine toolchain, or None (with the reason logged) when engines are skipped."""
    from mild_export.engine.build import EngineSettings, EnginesUnavailable, check_engines, parse_targets

    check_engine_options(args)
    targets = parse_targets(args.targets) if args.targets is not None else None
    if not args.engines:
        log.info("engines: skipped (--no-engines)")
        return None
    try:
        return check_engines(EngineSettings(targets=targets, plugin=args.plugin), args.sma)
    except EnginesUnavailable as why:
        log.warning("engines: skipped, %s", why)
        return None


def check_engine_options(args: argparse.Namespace) -> None:
    """--targets and --plugin only shape engines, and --plugin only --sma plugin engines: given
    where they change nothing, they were meant for another run, so they are refused, not ignored."""
    given = [
        name for name, value in (("--targets", args.targets), ("--plugin", args.plugin)) if value is not None
    ]
    if given and not args.engines:
        named = " and ".join(given)
        raise ValueError(
            f"{named} only shape{'s' if len(given) == 1 else ''} engines: drop {named} or --no-engines"
        )
    if args.plugin is not None and args.sma != SMAForm.PLUGIN.value:
        raise ValueError(
            f"--plugin is for --sma plugin engines; --sma {args.sma} engines need no plugin: drop --plugin"
        )


def check_out(out: Path, force: bool) -> None:
    """--out is new, empty or an earlier export, finished or interrupted (whose files are reused or
    replaced): a folder of other files (a model folder, a home folder) is not written over unless
    --force says so."""
    from mild_export.export.manifest import is_export_folder

    if force or not out.is_dir() or not any(out.iterdir()) or is_export_folder(out):
        return
    raise ValueError(
        f"--out {out} is not empty and holds no mild-export files: choose a new or empty folder, "
        "or pass --force to export into it"
    )


def run(args: argparse.Namespace) -> None:
    """The export and its engines, closed by the wall time: the figure a user plans the next
    (SDXL-sized) export by."""
    start = time.perf_counter()
    export_folder(args)
    log.info("done in %.1f s: %s (listed in its manifest.json)", time.perf_counter() - start, args.out)


def export_folder(args: argparse.Namespace) -> None:
    from mild_export.engine.build import build_engines, prune_stale_engines
    from mild_export.export.contracts import contracts
    from mild_export.export.exporter import ExportSettings, export_model
    from mild_export.export.prompt_file import PROMPT_FILE, cached_prompts, encode_prompts, write_prompt_cache
    from reference.model import load_model

    if args.max_instances < 1:
        raise ValueError(f"--max-instances must be at least 1, got {args.max_instances}")
    checks.output_folder(args.out)
    check_out(args.out, args.force)
    sides = parse_resolutions(args.resolution)
    checks.model_resolutions(args.model, sides)
    tools = engine_toolchain(args)  # bad --targets or --plugin fail here, before the export
    precision = Precision.FP16 if args.fp16 else Precision.BF16 if args.bf16 else Precision.FP32
    log.info("loading model %s", args.model)
    model = load_model(args.model)
    prompts = encode_prompts(model, cached_prompts(args.prompt))  # before the export casts the model
    shapes = ExportShapes(
        resolutions=sides or (model.config.resolution,),
        max_instances=args.max_instances,
        guidance=args.guidance,
    )
    settings = ExportSettings(
        precision=precision,
        sma=SMAForm(args.sma),
        shapes=shapes,
        force=args.force,
        branch_weights=BranchWeights(args.bg_weights),
    )
    previous = previous_manifest(args.out)
    manifest = export_model(model, str(args.model), args.out, settings, progress=not args.no_progress)
    reused = sum(
        previous is not None and previous.graphs.get(name) == entry for name, entry in manifest.graphs.items()
    )
    log.info(
        "graphs: %d written, %d up to date in %s (%s); manifest.json written",
        len(manifest.graphs) - reused,
        reused,
        args.out,
        precision.value,
    )
    prune_stale_engines(args.out, manifest, dict(previous.engines) if previous else {})
    write_prompt_cache(args.out, prompts, manifest)
    manifest.write(args.out)
    log.info("prompts: %d encoded into %s", len(prompts), args.out / PROMPT_FILE)
    if tools is None:
        log.info(
            "the graphs run on ONNX Runtime: mild-erase --backend onnxruntime --engines %s ...", args.out
        )
        return
    built = build_engines(
        args.out,
        manifest,
        contracts(model.config, shapes),
        tools,
        force=args.force,
        progress=not args.no_progress,
    )
    log.info(
        "engines: %d built, %d up to date in %s (%s, %s)",
        sum(built.values()),
        len(built) - sum(built.values()),
        args.out,
        tools.tensorrt,
        ",".join(tools.targets) or "the GPU present",
    )


def previous_manifest(out: Path) -> Manifest | None:
    """The manifest of an earlier run in `out`, if any."""
    from mild_export.export.manifest import Manifest

    try:
        return Manifest.read(out)
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-export", parse_args, run, argv, failures=((TensorRTError, 1),))


if __name__ == "__main__":
    sys.exit(main())
