"""`mild-synth`: write a synthetic paired dataset folder (DESIGN.md section 2).

    mild-synth --count N --out DIR [--size 64] [--seed S] [--figures MIN-MAX] [--force]

DIR gets images/, backgrounds/, masks/, pose/, parsing/, prompts.jsonl and synth.json (how it was
made). Sample i is `reference.data.synth.make_sample` of a seed derived from (S, i), so the same
command writes the same bytes, and `--count 2000` starts with the files of `--count 1000`.
DIR must be empty or new; --force writes into a non-empty DIR, first deleting the dataset files
there (the subfolders above, prompts.jsonl, synth.json) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mild_export.cli import checks
from mild_export.cli.logs import command_parser, run_command

log = logging.getLogger("mild")

MANIFEST = "synth.json"


def parse_figures(text: str) -> tuple[int, int]:
    """'1-3' -> (1, 3); '2' -> (2, 2)."""
    try:
        low, _, high = text.partition("-")
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give MIN-MAX, e.g. 1-3, or one number") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= MIN <= MAX")
    return bounds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("mild-synth", __doc__)
    p.add_argument("--count", type=int, required=True, help="number of samples")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--figures", type=parse_figures, default=(1, 3), help="people per image, MIN-MAX (default 1-3)"
    )
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing its dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count must be positive, got {args.count}")
    if args.size < 16 or args.size % 8:
        p.error(f"--size must be a multiple of 8 (the latent factor) and at least 16, got {args.size}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    return args


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample `index`: independent streams per (dataset seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def prepare_out(out: Path, force: bool) -> None:
    """An empty or new folder; with `force`, a non-empty one loses its dataset files only."""
    from reference.data.folder import PROMPTS, SUBFOLDERS

    checks.output_folder(out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(
                f"--out {out} is not empty: choose a new folder, or pass --force to replace its dataset"
            )
        for name in SUBFOLDERS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in (PROMPTS, MANIFEST):
            (out / name).unlink(missing_ok=True)
        log.info("--force: replaced the dataset files in %s", out)
    out.mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace) -> dict:
    from reference.data.folder import PROMPTS, make_folders, write_prompts, write_sample, write_text
    from reference.data.synth import make_sample

    prepare_out(args.out, args.force)
    make_folders(args.out)
    digits = max(6, len(str(args.count - 1)))
    prompts, instances, start = [], 0, time.perf_counter()
    try:
        for i in tqdm(range(args.count), desc="synth", unit="sample", disable=args.no_progress):
            stem = f"{i:0{digits}d}"
            sample = make_sample(sample_seed(args.seed, i), size=args.size, n_figures=args.figures)
            write_sample(args.out, stem, sample)
            prompts.append((stem, sample.prompt))
            instances += sample.masks.shape[0]
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"{len(prompts)} of {args.count} samples written to {args.out}, without its {PROMPTS}: not a "
            "dataset yet; run the same command with --force to write it whole (the samples are the same)"
        ) from None
    write_prompts(args.out, prompts)
    manifest = {
        "generator": "reference.data.synth.make_sample",
        "count": args.count,
        "size": args.size,
        "seed": args.seed,
        "figures": list(args.figures),
        "instances": instances,
    }
    write_text(args.out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    seconds = time.perf_counter() - start
    log.info("wrote %d samples (%d people) to %s in %.1f s", args.count, instances, args.out, seconds)
    return manifest


def main(argv: list[str] | None = None) -> int:
    return run_command("mild-synth", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
