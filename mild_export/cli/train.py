"""`mild-train`: train MILD's dual LoRA sets and shared modules on a paired dataset folder.

    mild-train [--config tiny|paper] --data DIR --out RUN_DIR [--steps N] [--checkpoint-every K]
               [--resume] [--model tiny|PATH] [--batch-size B] [--mixed-precision no|fp16|bf16]
               [--gradient-accumulation G]

Runs on a CPU, one GPU or several (`accelerate launch -m mild_export.cli.train ...`). Writes
RUN_DIR/log.jsonl (one line per step), RUN_DIR/run.json and RUN_DIR/checkpoints/step-*/;
`mild-merge --checkpoint RUN_DIR --out DIR` turns the latest checkpoint into a merged model folder.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command
from reference.config import PRESETS

if TYPE_CHECKING:
    from reference.train.config import TrainConfig
    from reference.train.trainer import Trainer

log = logging.getLogger("mild")

DEFAULT_CONFIG = DEFAULT_MODEL = "tiny"
# Options that override the configuration (fresh or resumed): option name -> TrainConfig field.
OVERRIDES = {
    "steps": "max_steps",
    "checkpoint_every": "checkpoint_every",
    "batch_size": "batch_size",
    "mixed_precision": "mixed_precision",
    "gradient_accumulation": "gradient_accumulation",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-train", __doc__)
    p.add_argument(
        "--config",
        help=f"training configuration: tiny (CPU) or paper (default: {DEFAULT_CONFIG}; "
        "--resume keeps the run's)",
    )
    p.add_argument(
        "--data", type=Path, required=True, help="dataset folder (images/, backgrounds/, masks/, ...)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder: logs and checkpoints")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: the configuration's)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="checkpoint every K steps, 0 for the final checkpoint only (default: the configuration's)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument(
        "--model",
        help=f"base model: tiny, sd15-inpaint, sdxl-inpaint or a folder (default: {DEFAULT_MODEL}; "
        "--resume keeps the run's)",
    )
    p.add_argument(
        "--batch-size", type=int, help="samples per process and micro-batch (default: the configuration's)"
    )
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="accelerate mixed precision")
    p.add_argument("--gradient-accumulation", type=int, help="micro-batches per optimizer step")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "gradient_accumulation"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.checkpoint_every is not None and args.checkpoint_every < 0:
        every = args.checkpoint_every
        p.error(f"--checkpoint-every must be 0 (the final checkpoint only) or positive, got {every}")
    return args


def _check_fixed(option: str, given: str | None, fixed: str, out: Path) -> None:
    """--config and --model name what a run trains: a resumed run keeps its own (compared as paths,
    so ./base and base are the same model folder)."""
    if given is not None and Path(given).resolve() != Path(fixed).resolve():
        what = "configuration" if option == "--config" else "model"
        raise ValueError(
            f"{option} {given} differs from the {what} of {out}, {fixed}: a run folder's {what} is fixed "
            f"when it starts; drop {option} to resume, or start a new run with another --out"
        )


def _recorded(model: str) -> str:
    """How a run records its model: a preset by name, a folder by absolute path, so that mild-merge
    and --resume find it from any working directory."""
    return model if model in PRESETS else str(Path(model).resolve())


def _settings(args: argparse.Namespace) -> tuple[TrainConfig, str, int]:
    """(configuration with the options' overrides, model, step training starts from)."""
    from reference.train import checkpoint as ckpt
    from reference.train.config import TrainConfig

    checks.output_folder(args.out)
    if args.resume:
        _, meta = ckpt.verify_checkpoint(args.out)  # a corrupt checkpoint fails here, named
        model = ckpt.base_model(args.out, meta)
        config, step = TrainConfig.from_dict(meta["train_config"]), int(meta["step"])
        _check_fixed("--config", args.config, config.name, args.out)
        _check_fixed("--model", args.model, model, args.out)
    else:
        if ckpt.list_checkpoints(args.out):
            raise ValueError(f"{args.out} already holds checkpoints: pass --resume, or choose another --out")
        config = TrainConfig.from_name(args.config or DEFAULT_CONFIG)
        model, step = _recorded(args.model or DEFAULT_MODEL), 0
    overrides = {field: getattr(args, option) for option, field in OVERRIDES.items()}
    return config.replace(**{k: v for k, v in overrides.items() if v is not None}), model, step


def run(args: argparse.Namespace) -> None:
    from reference.train.data import open_dataset
    from reference.train.trainer import Trainer

    config, model, start = _settings(args)
    if args.resume:
        log.info("resuming %s from step %d (configuration %s, model %s)", args.out, start, config.name, model)
    if start >= config.max_steps:
        limit = f"--steps {args.steps}" if args.steps else f"its {config.max_steps} steps"
        log.info(
            "%s is at step %d already, at or past %s: nothing to train; raise --steps to continue",
            args.out,
            start,
            limit,
        )
        return
    data = open_dataset(args.data, config)
    trainer = Trainer(model, config, data, args.out, progress=not args.no_progress)
    if args.resume:
        trainer.resume()
    try:
        records = trainer.train()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(trainer, args)) from None
    _log_summary(records, args.out)


def _interrupted(trainer: Trainer, args: argparse.Namespace) -> str:
    """Where a Ctrl-C left the run, and the command that goes on from there."""
    from reference.train import checkpoint as ckpt

    step = min(trainer.step_count + 1, trainer.config.max_steps)  # the step it was in, lost
    found = ckpt.list_checkpoints(args.out)
    if not found:
        return f"at step {step}; no checkpoint was written yet: run the same command again to start over"
    last = int(found[-1].name.removeprefix(ckpt.PREFIX))
    command = shlex.join(["mild-train", "--data", str(args.data), "--out", str(args.out), "--resume"])
    return f"at step {step}; the last checkpoint is {found[-1]} (step {last}): continue with {command}"


def _log_summary(records: list[dict[str, Any]], out: Path) -> None:
    from reference.train import checkpoint as ckpt

    if records:
        seconds = sum(r["seconds"] for r in records) / len(records)
        last = records[-1]
        log.info(
            "step %d: loss %.4f (fg %.4f, bg %.4f), %.3f s/step; checkpoints in %s",
            *(last[k] for k in ("step", "loss", "fg", "bg")),
            seconds,
            out / ckpt.CHECKPOINTS,
        )


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-train", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
