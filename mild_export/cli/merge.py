"""`mild-merge`: fold a training run's LoRA sets into two Q/K/V weight sets, in one model folder.

    mild-merge --checkpoint RUN_DIR|CHECKPOINT_DIR --out DIR

DIR then loads like any model (`mild-erase --model DIR`, `mild-export --model DIR`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command

log = logging.getLogger("mild")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-merge", __doc__)
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="run folder (latest checkpoint) or checkpoint"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for the merged model")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from reference.merge import check_target, merge_checkpoint
    from reference.train import checkpoint as ckpt

    if not args.checkpoint.exists():
        raise ValueError(
            f"--checkpoint {args.checkpoint} does not exist: give a mild-train run folder or one of its "
            "checkpoints/step-*/ folders"
        )
    checks.output_folder(args.out)
    check_target(args.out)
    found = ckpt.resolve(args.checkpoint)  # a run without checkpoints fails here, before the model loads
    log.info("merging %s: loading the training model and folding both LoRA sets", found)
    log.info("wrote %s", merge_checkpoint(found, args.out))


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-merge", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
