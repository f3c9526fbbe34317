"""`mild-erase`: remove people from a photo with a MILD model.

    mild-erase IMAGE --mask M1.png --mask M2.png [--remove 1,3] --out DIR
    mild-erase --demo --out DIR

Writes DIR/composite.png, DIR/background.png and DIR/layer_<k>.png (RGBA, cut out by mask k);
the demo writes its inputs there too (input.png, mask_<k>.png, pose.json, parsing.png).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command
from mild_export.engine import sma_torch_ext
from mild_export.export.contracts import image_multiple
from mild_export.export.manifest import Manifest
from reference.backend import Backend
from reference.compose import ComposeMode, cutout_rgba
from reference.config import ModelConfig
from reference.files import atomic_write
from reference.inputs import ErasureInputs, crop_to, load_inputs, pad_to_multiple, save_png

if TYPE_CHECKING:
    from reference.pipeline import Erasure

log = logging.getLogger("mild")

DEMO_SEED = 7


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-erase", __doc__)
    p.add_argument("image", nargs="?", type=Path, help="photo to erase people from")
    p.add_argument("--mask", action="append", type=Path, default=[], help="one mask PNG per person")
    p.add_argument("--pose", type=Path, help="OpenPose JSON, people in mask order")
    p.add_argument("--parsing", type=Path, help="human-parsing label map (LIP ids 0..19)")
    p.add_argument("--prompt", default="", help="text prompt (default empty)")
    p.add_argument("--remove", help="1-based instances to remove, e.g. 1,3 (default: all)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    p.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance scale; 1 = off (default)"
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument(
        "--model",
        help="reference and torch backends: tiny (default), sd15-inpaint, sdxl-inpaint or a model folder",
    )
    p.add_argument(
        "--compose",
        choices=[m.value for m in ComposeMode],
        default=ComposeMode.COPY_OUTSIDE.value,
        help="copy-outside: keep input pixels outside the removed masks (default); eq6: the paper's Eq. 6",
    )
    p.add_argument(
        "--backend",
        choices=["reference", "torch", "onnxruntime", "tensorrt"],
        help="reference: the PyTorch model (default; onnxruntime with --engines); torch: the merged "
        "model, fp16 on a GPU with the "
        "UNet replayed as CUDA graphs (where TensorRT does not run); onnxruntime: the graphs in "
        "--engines; tensorrt: the engines (.plan) in --engines, on an NVIDIA GPU",
    )
    p.add_argument(
        "--engines", type=Path, help="a mild-export output folder (for --backend onnxruntime or tensorrt)"
    )
    p.add_argument("--cuda-graph", action="store_true", help="tensorrt: replay the UNet call as a CUDA graph")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the log lines stay)")
    p.add_argument(
        "--sma",
        choices=sma_torch_ext.FORMS,
        help="reference and torch backends: SMA with the bias materialised (the reference's default), "
        "as flash attention over the fold form (torch's default on a CPU), or by the plugin's CUDA "
        "kernel (torch's default on a GPU; kernel: --device cuda, builds it)",
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda where PyTorch sees a GPU, else cpu)")
    p.add_argument("--demo", action="store_true", help="run on a built-in synthetic photo")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    args = p.parse_args(argv)
    if args.demo and (args.image or args.mask):
        p.error("--demo replaces IMAGE and --mask: give one or the other")
    if not args.demo and (args.image is None or not args.mask):
        p.error("give IMAGE and at least one --mask (or --demo)")
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    if not math.isfinite(args.guidance) or args.guidance < 0:
        p.error(f"--guidance must be finite and >= 0 (1 turns guidance off), got {args.guidance:g}")
    check_backend(p, args)
    return args


def check_backend(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--backend from --engines where it is not given, as mild-bench does. Options of other
    backends are refused, not ignored: --engines beside a backend that runs a model gave the
    reference's images, not the exported graphs' the user meant to check."""
    if args.backend is None:
        args.backend = "reference" if args.engines is None else "onnxruntime"
    runs_a_model = args.backend in ("reference", "torch")
    if runs_a_model and args.engines is not None:
        p.error(
            f"--engines runs exported graphs on --backend onnxruntime or tensorrt; --backend "
            f"{args.backend} runs the model of --model: drop --engines or --backend {args.backend}"
        )
    if args.cuda_graph and args.backend != "tensorrt":
        p.error(
            f"--cuda-graph replays the engines' UNet call on --backend tensorrt; --backend {args.backend} "
            "has no such option (torch replays CUDA graphs on its own): drop --cuda-graph"
        )
    if not runs_a_model and args.engines is None:
        p.error(f"--backend {args.backend} runs exported graphs: give --engines DIR (made by mild-export)")
    if not runs_a_model and args.model is not None:
        p.error(
            f"--model chooses the model of --backend reference or torch; --backend {args.backend} runs "
            f"the graphs in --engines, exported from their own model"
        )
    if not runs_a_model and args.sma is not None:
        p.error(
            f"--sma chooses the SMA form of --backend reference or torch; --backend {args.backend} "
            "runs the exported form"
        )


def parse_remove(text: str | None, n: int) -> list[int] | None:
    """'1,3' -> [0, 2]: users count instances from 1, in mask order."""
    if text is None:
        return None
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--remove {text!r}: give comma-separated instance numbers, e.g. 1,3") from None
    bad = [k for k in indices if not 1 <= k <= n]
    if bad:
        there = "there is 1 mask (1..1)" if n == 1 else f"there are {n} masks (1..{n})"
        counted = " (instances count from 1)" if bad[0] == 0 else ""
        raise ValueError(f"--remove {text!r}: instance {bad[0]} does not exist{counted}; {there}")
    if len(set(indices)) < len(indices):
        raise ValueError(f"--remove {text!r}: an instance is named twice; name each once")
    return [k - 1 for k in indices]


def demo_inputs() -> ErasureInputs:
    """A synthetic photo with its masks, pose, parsing and prompt (written out with the results)."""
    from reference.data.synth import make_sample

    inputs = make_sample(DEMO_SEED, size=64, n_figures=3).erase_inputs()
    inputs["image"] = inputs["image"].contiguous()  # as load_image gives it: the same images on a rerun
    return ErasureInputs(**inputs, original_size=tuple(inputs["image"].shape[1:]))


def write_demo_inputs(out: Path, inputs: ErasureInputs) -> list[Path]:
    """The demo's inputs as the files `mild-erase IMAGE --mask ... --pose --parsing` reads, so the
    demo can be rerun on them (and the masks edited)."""
    paths = [save_png(out / "input.png", inputs.image)]
    for k, mask in enumerate(inputs.masks, start=1):
        paths.append(save_png(out / f"mask_{k}.png", mask[None].expand(3, -1, -1)))
    people = [{"pose_keypoints_2d": points.flatten().tolist()} for points in inputs.keypoints]
    pose = json.dumps({"people": people}).encode()
    paths.append(atomic_write(out / "pose.json", lambda f: f.write(pose)))
    labels = Image.fromarray(inputs.parsing.numpy().astype(np.uint8), mode="L")
    paths.append(atomic_write(out / "parsing.png", lambda f: labels.save(f, format="PNG")))
    return paths


def rerun_command(out: Path, inputs: ErasureInputs) -> str:
    """The command that reruns the demo on the files `write_demo_inputs` wrote."""
    masks = [("--mask", str(out / f"mask_{k}.png")) for k in range(1, inputs.masks.shape[0] + 1)]
    files = [str(out / "input.png"), *(arg for pair in masks for arg in pair)]
    conditions = ["--pose", str(out / "pose.json"), "--parsing", str(out / "parsing.png")]
    return shlex.join(["mild-erase", *files, *conditions, "--prompt", inputs.prompt, "--out", "DIR"])


def check_engines(folder: Path, size: tuple[int, int], n: int, guidance: float) -> None:
    """The job against the shapes `folder`'s graphs were exported for, from its manifest, before
    the graphs load (an SDXL UNet takes a while): the fix is a mild-export option."""
    manifest = Manifest.read(folder)
    shapes = manifest.shapes
    low, high = min(shapes["resolutions"]), max(shapes["resolutions"])
    multiple = image_multiple(ModelConfig.from_dict(manifest.config))
    padded = [side + (-side) % multiple for side in size]
    outside = sorted({side for side in padded if not low <= side <= high})
    if outside:
        serves = f"{low}" if low == high else f"{low}..{high}"
        pads = "" if tuple(padded) == tuple(size) else f", {padded[1]}x{padded[0]} padded"
        widen = " ".join(f"--resolution {side}" for side in outside)
        raise ValueError(
            f"--engines {folder} serves image sides {serves}; this image is {size[1]}x{size[0]}{pads}: "
            f"export again with {widen} (beside the sides it serves), or resize the image"
        )
    most = shapes["max_instances"]
    if n > most:
        raise ValueError(
            f"--engines {folder} serves at most {most} {'person' if most == 1 else 'people'}; there are "
            f"{n} masks: export again with --max-instances {n}"
        )
    if guidance != 1.0 and not shapes["guidance"]:
        raise ValueError(
            f"--engines {folder} was exported without guidance; --guidance {guidance:g} needs it: "
            "export again with --guidance, or leave --guidance at 1"
        )


def make_backend(args: argparse.Namespace, device: torch.device) -> Backend:
    if args.backend == "tensorrt":
        from mild_export.runtime.tensorrt_backend import TensorRTBackend

        log.info("running the engines of %s on TensorRT", args.engines)
        return TensorRTBackend(args.engines, device=device, cuda_graph=args.cuda_graph)
    if args.backend == "onnxruntime":
        from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend

        log.info("running the graphs of %s on ONNX Runtime", args.engines)
        return OnnxRuntimeBackend(args.engines, device=str(device))
    from reference.backend import TorchBackend
    from reference.model import load_model

    model = args.model or "tiny"
    if args.backend == "torch":
        from mild_export.runtime.torch_backend import default_precision, default_sma, torch_backend

        sma_form = sma_torch_ext.prepare_form(args.sma or default_sma(device), device)
        precision = default_precision(device)
        log.info("loading model %s on %s, merged, in %s (SMA: %s)", model, device, precision, sma_form)
        return torch_backend(load_model(model), device, precision, sma_form)
    sma_form = sma_torch_ext.prepare_form(args.sma or "reference", device)
    log.info("loading model %s on %s (SMA: %s)", model, device, sma_form)
    return TorchBackend(load_model(model), device, sma_form)


def write_outputs(out: Path, inputs: ErasureInputs, result: Erasure) -> list[Path]:
    """The composite, the background and every layer (RGBA, cut out by its mask), at the input size."""
    size = inputs.original_size
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_layers(out, len(result.layers))
    paths = [
        save_png(out / "composite.png", crop_to(result.composite.cpu(), size)),
        save_png(out / "background.png", crop_to(result.background.cpu(), size)),
    ]
    for k, layer in result.layers.items():
        rgba = cutout_rgba(crop_to(layer.cpu(), size), inputs.masks[k])
        paths.append(save_png(out / f"layer_{k + 1}.png", rgba))
    return paths


def run(args: argparse.Namespace) -> None:
    from reference.pipeline import ErasePipeline

    start = time.perf_counter()
    checks.output_folder(args.out)
    device = checks.device(args.device)
    if args.backend == "tensorrt":
        from mild_export.runtime.tensorrt_backend import require_gpu

        device = require_gpu(device)  # before the inputs load: a CPU-only machine is told first
    if args.demo:
        inputs = demo_inputs()
    else:
        inputs = load_inputs(args.image, args.mask, pose=args.pose, parsing=args.parsing, prompt=args.prompt)
    n = inputs.masks.shape[0]
    remove = parse_remove(args.remove, n)
    if args.engines is not None:
        check_engines(args.engines, inputs.original_size, n, args.guidance)
    backend = make_backend(args, device)
    multiple = image_multiple(backend.config)
    image, _ = pad_to_multiple(inputs.image, multiple)
    masks, _ = pad_to_multiple(inputs.masks, multiple, edge=False)
    parsing = None if inputs.parsing is None else pad_to_multiple(inputs.parsing, multiple, edge=False)[0]
    result = ErasePipeline(backend, progress=not args.no_progress).erase(
        image,
        masks,
        remove=remove,
        keypoints=inputs.keypoints,
        parsing=parsing,
        prompt=args.prompt or inputs.prompt,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        compose_mode=ComposeMode(args.compose),
        all_layers=True,
    )
    written = write_outputs(args.out, inputs, result)
    if args.demo:
        written = [*write_demo_inputs(args.out, inputs), *written]
    log.info(
        "wrote %s to %s in %.1f s (removed instances %s)",
        _file_list(written),
        args.out,
        time.perf_counter() - start,
        ",".join(str(k + 1) for k in result.remove),
    )
    if args.demo:
        log.info("rerun on the demo's files (edit them, add options): %s", rerun_command(args.out, inputs))


def _file_list(paths: list[Path]) -> str:
    """File names, numbered runs shortened: layer_1.png, layer_2.png, layer_3.png -> layer_1..3.png."""
    names, runs = [], {}
    for path in paths:
        numbered = re.fullmatch(r"(\w+?)_(\d+)\.png", path.name)
        if numbered is None:
            names.append(path.name)
            continue
        stem = numbered.group(1)
        if stem not in runs:
            names.append(stem)
        runs.setdefault(stem, []).append(int(numbered.group(2)))
    return ", ".join(_numbered(name, runs[name]) if name in runs else name for name in names)


def _numbered(stem: str, numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"{stem}_{numbers[0]}.png"
    return f"{stem}_{min(numbers)}..{max(numbers)}.png"


def remove_stale_layers(out: Path, layers: int) -> None:
    """An earlier run into `out` with more people left layer files this run does not write: they
    would read as this photo's layers."""
    numbered = ((path, re.fullmatch(r"layer_(\d+)", path.stem)) for path in sorted(out.glob("layer_*.png")))
    stale = [path for path, number in numbered if number and int(number.group(1)) > layers]
    for path in stale:
        path.unlink()
    if stale:
        log.info("removed %s, left in %s by an earlier run", ", ".join(p.name for p in stale), out)


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-erase", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
