"""`mild-merge`: fold a training run's LoRA sets into two Q/K/V weight sets, in one model folder.

    mild-merge --checkpoint RUN_DIR|CHECKPOINT_DIR --out DIR

DIR then loads like any model (`mild-erase --model DIR`, `mild-export --model DIR`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mild_export.cli.logs import setup_logging

log = logging.getLogger("mild")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mild-merge", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="run folder (latest checkpoint) or checkpoint"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for the merged model")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging("mild-merge")
    args = parse_args(argv)
    try:
        from reference.merge import merge_checkpoint

        out = merge_checkpoint(args.checkpoint, args.out)
    except ValueError as err:
        log.error("error: %s", err)
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
