"""`mild-train`: train MILD's dual LoRA sets and shared modules on a paired dataset folder.

    mild-train --config tiny --data DIR --out RUN_DIR [--steps N] [--checkpoint-every K] [--resume]
               [--model tiny|PATH] [--mixed-precision no|fp16|bf16] [--gradient-accumulation G]

Runs on a CPU, one GPU or several (`accelerate launch -m mild_export.cli.train ...`). Writes
RUN_DIR/log.jsonl (one line per step), RUN_DIR/run.json and RUN_DIR/checkpoints/step-*/;
`mild-merge --checkpoint RUN_DIR --out DIR` turns the latest checkpoint into a merged model folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mild_export.cli.logs import run_command

log = logging.getLogger("mild")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mild-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny", help="training configuration: tiny (CPU) or paper")
    p.add_argument(
        "--data", type=Path, required=True, help="dataset folder (images/, backgrounds/, masks/, ...)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder: logs and checkpoints")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: the configuration's)")
    p.add_argument(
        "--checkpoint-every", type=int, help="checkpoint every K steps (default: the configuration's)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--model", default="tiny", help="base model: tiny, sd15-inpaint, sdxl-inpaint or a folder")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="accelerate mixed precision")
    p.add_argument("--gradient-accumulation", type=int, help="micro-batches per optimizer step")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")
    args = p.parse_args(argv)
    for name in ("steps", "checkpoint_every", "gradient_accumulation"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "checkpoint_every" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


def run(args: argparse.Namespace) -> None:
    from reference.train import checkpoint as ckpt
    from reference.train.config import TrainConfig
    from reference.train.data import open_dataset
    from reference.train.trainer import Trainer

    if args.resume:
        _, meta = ckpt.verify_checkpoint(args.out)  # a corrupt checkpoint fails here, named
        config, model = TrainConfig.from_dict(meta["train_config"]), meta["model"]
        log.info(
            "resuming %s from step %d (configuration %s, model %s)",
            args.out,
            meta["step"],
            config.name,
            model,
        )
    else:
        if ckpt.list_checkpoints(args.out):
            raise ValueError(f"{args.out} already holds checkpoints: pass --resume, or choose another --out")
        config, model = TrainConfig.from_name(args.config), args.model
    overrides = {
        "max_steps": args.steps,
        "checkpoint_every": args.checkpoint_every,
        "mixed_precision": args.mixed_precision,
        "gradient_accumulation": args.gradient_accumulation,
    }
    config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    data = open_dataset(args.data, config)
    trainer = Trainer(model, config, data, args.out, progress=not args.no_progress)
    if args.resume:
        trainer.resume()
    records = trainer.train()
    if records:
        seconds = sum(r["seconds"] for r in records) / len(records)
        log.info(
            "step %d: loss %.4f (fg %.4f, bg %.4f), %.3f s/step; checkpoints in %s",
            records[-1]["step"],
            records[-1]["loss"],
            records[-1]["fg"],
            records[-1]["bg"],
            seconds,
            args.out / ckpt.CHECKPOINTS,
        )


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-train", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
