"""What a benchmark leaves behind: a table on stdout, a JSON file of every timing, a PNG plot.

Each whole-image time stands beside the paper's Table 5 and beside the compute floor, so a
number is never read alone.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mild_export.bench.cases import STAGES, CaseResult
from mild_export.bench.floor import MatrixRate
from reference.files import atomic_write

# Table 5 of the paper (App. D.3): average seconds per image, A800, 512x512, 25 DDIM steps
PAPER = {"mild_s": 1.91, "sdxl_inpaint_s": 1.79, "gpu": "A800", "resolution": 512, "steps": 25}
PAPER_NOTE = (
    f"paper: Table 5, MILD {PAPER['mild_s']} s and plain SDXL-inpaint {PAPER['sdxl_inpaint_s']} s per image "
    f"on an {PAPER['gpu']} at {PAPER['resolution']}x{PAPER['resolution']}, {PAPER['steps']} steps "
    "(an average over its test images, N not stated);\n"
    "       xpaper = image / 1.91 s, given for 512px, 25-step cases only (the paper's setting)"
)
NOISY = 0.2  # an image-time spread above this gets a warning under the table


def paper_ratio(result: CaseResult) -> float | None:
    """The image time over Table 5's, for a case in the paper's setting; None for any other."""
    case = result.case
    if (case.resolution, case.steps) != (PAPER["resolution"], PAPER["steps"]):
        return None
    return result.image_s / PAPER["mild_s"]


HEADERS = {
    "text_encoder": "text",
    "conditioner": "cond",
    "vae_encoder": "vae enc",
    "unet": "unet",
    "vae_decoder": "vae dec",
    "compose": "compose",
    "other": "other",
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return platform.processor() or platform.machine()


def environment(device: torch.device, backend: str, precision: str, sma: str) -> dict[str, Any]:
    versions = {}
    for package in ("torch", "diffusers", "onnxruntime", "onnxruntime-gpu", "mild-export"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "versions": versions,
        "python": platform.python_version(),
        "backend": backend,
        "precision": precision,
        "sma": sma,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def table(results: list[CaseResult], rate: MatrixRate) -> str:
    """Stage medians in ms, the whole image in s, its floor, and the ratios to floor and paper."""
    columns = ["case", *(f"{HEADERS[s]} ms" for s in STAGES), "unet/step ms", "image s", "spread"]
    columns += ["floor s", "xfloor", "paper s", "xpaper"]
    rows = []
    for r in results:
        stages = r.stages_ms
        rows.append(
            [
                r.case.label,
                *(f"{stages[s]:.1f}" for s in STAGES),
                f"{r.unet_step_ms:.2f}",
                f"{r.image_s:.3f}",
                "-" if r.image_spread is None else f"{r.image_spread:.0%}",
                f"{r.floor_s:.4f}",
                f"{r.ratio:.1f}",
                f"{PAPER['mild_s']:.2f}",
                "-" if paper_ratio(r) is None else f"{paper_ratio(r):.2f}",
            ]
        )
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
    ]
    lines += [
        "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.append(
        "image s: end to end, as an application runs it (median of the repeats; spread: slowest less "
        "fastest over the median); the stage columns come from a second run of each image with the device "
        "synchronised around every call ('other' is that run's rest)"
    )
    noisy = [r.case.label for r in results if r.image_spread is not None and r.image_spread > NOISY]
    if noisy:
        lines.append(
            f"warning: {', '.join(noisy)} spread over {NOISY:.0%}: the machine was busy or its clocks "
            "moved; rerun on an idle machine or with more --repeats before reading those medians"
        )
    lines.append(
        f"floor: counted FLOPs / {rate.flops_per_s / 1e12:.3f} TFLOP/s "
        f"({rate.size}^3 {rate.dtype} matmul on {rate.device}, median {rate.seconds * 1e3:.2f} ms)"
    )
    lines.append(PAPER_NOTE)
    return "\n".join(lines)


def case_json(r: CaseResult) -> dict[str, Any]:
    return {
        **asdict(r.case),
        "label": r.case.label,
        "runs": [asdict(run) for run in r.runs],
        "median": {
            "image_s": r.image_s,
            "image_spread": r.image_spread,
            "staged_s": r.staged_s,
            "stages_ms": r.stages_ms,
            "unet_step_ms": r.unet_step_ms,
        },
        "flops": r.flops,
        "floor_s": r.floor_s,
        "ratio_to_floor": r.ratio,
        "ratio_to_paper": paper_ratio(r),
    }


def write_json(
    path: Path, results: list[CaseResult], rate: MatrixRate, env: dict[str, Any], settings: dict[str, Any]
) -> None:
    report = {
        "environment": env,
        "settings": settings,
        "matrix_rate": asdict(rate),
        "paper": PAPER,
        "stages": list(STAGES),
        "cases": [case_json(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))


def plot(path: Path, results: list[CaseResult], title: str) -> None:
    """Stacked bars of stage medians per case, with the floor marked on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(results) + 2), 4.5), layout="constrained")
    x = range(len(results))
    bottom = [0.0] * len(results)
    for stage in STAGES:
        heights = [max(r.stages_ms[stage], 0.0) for r in results]  # "other" can dip below 0 by timer noise
        ax.bar(x, heights, bottom=bottom, label=HEADERS[stage])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.scatter(
        x, [r.floor_s * 1e3 for r in results], marker="_", s=600, color="black", label="floor", zorder=3
    )
    ax.set_xticks(list(x), [r.case.label.replace(" ", "\n", 1) for r in results], fontsize=7)
    ax.set_ylabel("median time per image (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
