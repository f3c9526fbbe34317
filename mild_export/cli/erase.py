"""`mild-erase`: remove people from a photo with a MILD model.

    mild-erase IMAGE --mask M1.png --mask M2.png [--remove 1,3] --out DIR
    mild-erase --demo --out DIR

Writes DIR/composite.png, DIR/background.png and DIR/layer_<k>.png (RGBA, cut out by mask k).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import torch

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command
from mild_export.engine import sma_torch_ext
from reference.backend import Backend
from reference.compose import ComposeMode, cutout_rgba
from reference.inputs import ErasureInputs, crop_to, load_inputs, pad_to_multiple, save_png

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
        default="reference",
        help="reference: the PyTorch model (default); torch: the merged model, fp16 on a GPU with the "
        "UNet replayed as CUDA graphs (where TensorRT does not run); onnxruntime: the graphs in "
        "--engines; tensorrt: the engines (.plan) in --engines, on an NVIDIA GPU",
    )
    p.add_argument(
        "--engines", type=Path, help="a mild-export output folder (for --backend onnxruntime or tensorrt)"
    )
    p.add_argument("--cuda-graph", action="store_true", help="tensorrt: replay the UNet call as a CUDA graph")
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
    if args.guidance < 0:
        p.error(f"--guidance must be >= 0 (1 turns guidance off), got {args.guidance:g}")
    runs_a_model = args.backend in ("reference", "torch")
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
    return args


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
        raise ValueError(f"--remove {text!r}: instance {bad[0]} does not exist; there are {n} masks (1..{n})")
    if len(set(indices)) < len(indices):
        raise ValueError(f"--remove {text!r}: an instance is named twice; name each once")
    return [k - 1 for k in indices]


def demo_inputs(out: Path) -> ErasureInputs:
    """A synthetic photo with its masks, pose and parsing; its inputs are written to `out`."""
    from reference.data.synth import make_sample

    inputs = make_sample(DEMO_SEED, size=64, n_figures=3).erase_inputs()
    save_png(out / "input.png", inputs["image"])
    for k, mask in enumerate(inputs["masks"], start=1):
        save_png(out / f"mask_{k}.png", mask[None].expand(3, -1, -1))
    return ErasureInputs(**inputs, original_size=tuple(inputs["image"].shape[1:]))


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


def run(args: argparse.Namespace) -> None:
    from reference.pipeline import ErasePipeline

    checks.output_folder(args.out)
    device = checks.device(args.device)
    if args.demo:
        args.out.mkdir(parents=True, exist_ok=True)
        inputs = demo_inputs(args.out)
    else:
        inputs = load_inputs(args.image, args.mask, pose=args.pose, parsing=args.parsing, prompt=args.prompt)
    remove = parse_remove(args.remove, inputs.masks.shape[0])
    image, size = pad_to_multiple(inputs.image)
    masks, _ = pad_to_multiple(inputs.masks, edge=False)
    parsing = None if inputs.parsing is None else pad_to_multiple(inputs.parsing, edge=False)[0]
    pipeline = ErasePipeline(make_backend(args, device), progress=True)
    result = pipeline.erase(
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
    args.out.mkdir(parents=True, exist_ok=True)
    remove_stale_layers(args.out, len(result.layers))
    save_png(args.out / "composite.png", crop_to(result.composite.cpu(), size))
    save_png(args.out / "background.png", crop_to(result.background.cpu(), size))
    for k, layer in result.layers.items():
        rgba = cutout_rgba(crop_to(layer.cpu(), size), inputs.masks[k])
        save_png(args.out / f"layer_{k + 1}.png", rgba)
    log.info("wrote %s (removed instances %s)", args.out, ",".join(str(k + 1) for k in result.remove))


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
