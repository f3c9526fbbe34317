"""`mild-export`: turn a MILD model into ONNX graphs (and TensorRT engines where available).

    mild-export --model tiny --out engines/tiny
    mild-export --model PATH --fp16 --resolution 512 --resolution 1024 --max-instances 4 --out DIR

Writes DIR/unet.onnx, text_encoder.onnx, conditioner.onnx, vae_encoder.onnx, vae_decoder.onnx
and DIR/manifest.json. Running it again with the same inputs reuses what is there.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mild_export.export.contracts import ExportShapes
from mild_export.export.precision import Precision, SMAForm

log = logging.getLogger("mild")


def parse_resolutions(values: list[str] | None, default: int) -> tuple[int, ...]:
    """'512' or '512-1024' (a range: its ends become the profile's min and max)."""
    if not values:
        return (default,)
    sides: list[int] = []
    for value in values:
        try:
            sides += [int(part) for part in value.split("-")]
        except ValueError:
            raise ValueError(
                f"--resolution {value!r}: give a side in pixels (512) or a range (512-1024)"
            ) from None
    return tuple(dict.fromkeys(sides))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mild-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny, sd15-inpaint, sdxl-inpaint, or a model folder")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="fp16 weights and activations")
    precision.add_argument("--bf16", action="store_true", help="bf16 weights and activations")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--resolution", action="append", help="image side to serve (repeatable, or a range 512-1024)"
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
    p.add_argument("--force", action="store_true", help="export again even if the files are up to date")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from mild_export.export.exporter import ExportSettings, export_model
    from reference.model import load_model

    if args.max_instances < 1:
        raise ValueError(f"--max-instances must be at least 1, got {args.max_instances}")
    precision = Precision.FP16 if args.fp16 else Precision.BF16 if args.bf16 else Precision.FP32
    log.info("loading model %s", args.model)
    model = load_model(args.model)
    shapes = ExportShapes(
        resolutions=parse_resolutions(args.resolution, model.config.resolution),
        max_instances=args.max_instances,
        guidance=args.guidance,
    )
    settings = ExportSettings(precision=precision, sma=SMAForm(args.sma), shapes=shapes, force=args.force)
    manifest = export_model(model, str(args.model), args.out, settings)
    log.info("wrote %d graphs and manifest.json to %s (%s)", len(manifest.graphs), args.out, precision.value)
    log.info(
        "engines: skipped, TensorRT engine building arrives with the SMA plugin; "
        "the graphs run on ONNX Runtime (mild-erase --backend onnxruntime --engines %s)",
        args.out,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="mild-export: %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except ValueError as err:
        log.error("error: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
