"""Golden tensors: one erase by the reference, written to a versioned file that the Python and the
C++ tests read (STYLE.md "Tests that cannot lie"; the idea of llm.c's write_state/test_gpt2.cu).

    write_golden(model, inputs, path)   the reference runs the pipeline; everything below is written
    read_golden(path) -> Golden          checks magic and version, returns meta and numpy arrays
    replay(golden, backend) -> tensors   the same inputs through another backend, captured alike
    compare(golden, tensors) -> Parity   per-step noise relative error and PSNR of the images

File layout, little-endian (engines/src/golden.cpp reads the same):

    offset   bytes  what
    0        8      magic b"MILDGOLD"
    8        4      uint32 format version (FORMAT_VERSION)
    12       4      uint32 n: bytes of the table of contents
    16       n      UTF-8 JSON {"meta": {...}, "tensors": [{"name", "dtype", "shape", "offset", "nbytes"}]},
                    space-padded so that the data starts at a multiple of 64
    16 + n          the arrays, C order; each offset counts from the data start and is a multiple of 64

Tensors (S steps; B rows per branch kind = copies x count, copies 2 with guidance, conditional first):

    image [3, H, W] f32 in [0, 1]   masks [N, H, W] u8   keypoints [N, 18, 3] f32   parsing [H, W] u8
    remove [R] i64                   the pipeline inputs (keypoints/parsing only when given)
    timesteps [S] i64, alpha_t [S] f32, alpha_prev [S] f32        the DDIM schedule
    pose_maps [1, 18, M, M], parsing_maps [1, 20, M, M], mask_maps [N + 1, 1, M, M]   conditioner inputs
    noise [1, 4, h, w]               the initial latent noise (shared by all branches)
    eps_fg [S, copies N, 4, h, w], eps_bg [S, copies, 4, h, w]   the UNet's outputs, before guidance
    latents [N + 1, 4, h, w]         final latents: fg layers, then the background
    layers [N, 3, H, W], background [3, H, W], composite [3, H, W]   decoded and composed, in [0, 1]

meta: prompt, seed, steps, guidance, compose_mode, model, model_sha256, config (the model's), tools.

    python -m mild_export.golden write --engines DIR [--instances 1,3]   # DIR/golden/n<N>.mildgold
    python -m mild_export.golden check --engines DIR FILE...             # replay on ONNX Runtime
    python -m mild_export.golden check --backend tensorrt --engines DIR FILE...   # on the engines (GPU)
    python -m mild_export.golden show FILE                               # the table of contents
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from mild_export.cli.logs import command_parser, setup_logging
from reference.backend import Backend, TorchBackend
from reference.compose import ComposeMode
from reference.ddim import DDIM
from reference.files import atomic_write
from reference.model import MildModel
from reference.pipeline import ErasePipeline

log = logging.getLogger("mild")

MAGIC = b"MILDGOLD"
FORMAT_VERSION = 1
ALIGN = 64
SUFFIX = ".mildgold"
DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8")
# DESIGN.md section 8: per-step noise relative error and image PSNR against the fp32 reference
PARITY = {"fp32": (1e-4, 60.0), "fp16": (1e-2, 35.0), "bf16": (1e-2, 35.0)}


class GoldenError(ValueError):
    """A golden file that cannot be read; the message names the file and what to do."""


@dataclass
class GoldenInputs:
    """One erase job, as `ErasePipeline.erase` takes it."""

    image: Tensor  # [3, H, W] in [0, 1]
    masks: Tensor  # [N, H, W] in {0, 1}
    keypoints: Tensor | None = None  # [N, 18, 3]
    parsing: Tensor | None = None  # [H, W] LIP ids
    prompt: str = ""
    seed: int = 0
    steps: int = 4
    guidance: float = 1.0
    remove: list[int] | None = None  # None: every instance
    compose_mode: ComposeMode = ComposeMode.COPY_OUTSIDE

    def erase_kwargs(self) -> dict[str, Any]:
        remove = list(range(self.masks.shape[0])) if self.remove is None else list(self.remove)
        return dict(
            remove=remove,
            keypoints=self.keypoints,
            parsing=self.parsing,
            prompt=self.prompt,
            steps=self.steps,
            guidance=self.guidance,
            seed=self.seed,
            compose_mode=self.compose_mode,
            all_layers=True,
        )


@dataclass
class Golden:
    path: Path
    version: int
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise KeyError(f"{self.path} has no tensor {name!r}; it has {', '.join(self.tensors)}")
        return self.tensors[name]

    def inputs(self) -> GoldenInputs:
        t, m = self.tensors, self.meta
        return GoldenInputs(
            image=torch.from_numpy(t["image"].copy()),
            masks=torch.from_numpy(t["masks"].astype(np.float32)),
            keypoints=torch.from_numpy(t["keypoints"].copy()) if "keypoints" in t else None,
            parsing=torch.from_numpy(t["parsing"].astype(np.int64)) if "parsing" in t else None,
            prompt=m["prompt"],
            seed=int(m["seed"]),
            steps=int(m["steps"]),
            guidance=float(m["guidance"]),
            remove=t["remove"].tolist(),
            compose_mode=ComposeMode(m["compose_mode"]),
        )


# ---- capture: run the pipeline and keep what the golden file holds ----------------------------------


class RecordingBackend:
    """Wraps a backend and keeps each graph call's outputs (and the conditioner's and decoder's
    inputs) as CPU float arrays, in call order. The sampler and pipeline are not touched."""

    KEEP_INPUTS = ("conditioner", "vae_decoder")

    def __init__(self, inner: Backend):
        self.inner = inner
        self.config, self.device = inner.config, inner.device
        self.calls: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        outputs = self.inner.run(graph, inputs)
        kept = {k: _f32(v) for k, v in inputs.items()} if graph in self.KEEP_INPUTS else {}
        self.calls.append((graph, kept, {k: _f32(v) for k, v in outputs.items()}))
        return outputs

    def of(self, graph: str) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        return [(i, o) for name, i, o in self.calls if name == graph]


def _f32(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().copy()


def capture(backend: Backend, inputs: GoldenInputs) -> dict[str, np.ndarray]:
    """Run one erase on `backend` and return the golden tensors (module docstring)."""
    recorder = RecordingBackend(backend)
    pipeline = ErasePipeline(recorder)
    kwargs = inputs.erase_kwargs()
    result = pipeline.erase(inputs.image, inputs.masks, **kwargs)
    n = inputs.masks.shape[0]
    ddim = DDIM.create(backend.config.scheduler, inputs.steps)
    maps = recorder.of("conditioner")[0][0]  # one call each: conditioner, decoder
    unet = [out for _, out in recorder.of("unet")]
    decoder_in = recorder.of("vae_decoder")[0][0]
    tensors: dict[str, np.ndarray] = {
        "image": inputs.image.float().cpu().numpy(),
        "masks": (inputs.masks > 0.5).to(torch.uint8).cpu().numpy(),
    }
    if inputs.keypoints is not None:
        tensors["keypoints"] = inputs.keypoints.float().cpu().numpy()
    if inputs.parsing is not None:
        tensors["parsing"] = inputs.parsing.to(torch.uint8).cpu().numpy()
    size = tuple(inputs.image.shape[1:])
    tensors |= {
        "remove": np.asarray(kwargs["remove"], dtype=np.int64),
        "timesteps": ddim.timesteps.numpy(),
        "alpha_t": ddim.alpha_t.float().numpy(),
        "alpha_prev": ddim.alpha_prev.float().numpy(),
        **{k: maps[k] for k in ("pose_maps", "parsing_maps", "mask_maps")},
        "noise": _f32(pipeline.prepare_latents(size, inputs.seed)),
        "eps_fg": np.stack([out["eps_fg"] for out in unet]),
        "eps_bg": np.stack([out["eps_bg"] for out in unet]),
        "latents": decoder_in["latents"],
        "layers": np.stack([_f32(result.layers[k]) for k in range(n)]),
        "background": _f32(result.background),
        "composite": _f32(result.composite),
    }
    return tensors


# ---- the file --------------------------------------------------------------------------------------


def write_golden(
    model: MildModel | Backend, inputs: GoldenInputs, path: Path, meta: Mapping[str, Any] | None = None
) -> Path:
    """Run the reference (a model, or a backend wrapping one) on `inputs` and write `path`;
    `meta` adds to the meta table (e.g. {"model": ..., "model_sha256": ...})."""
    backend = TorchBackend(model) if isinstance(model, MildModel) else model
    tensors = capture(backend, inputs)
    info = {
        "prompt": inputs.prompt,
        "seed": inputs.seed,
        "steps": inputs.steps,
        "guidance": inputs.guidance,
        "compose_mode": inputs.compose_mode.value,
        "config": backend.config.to_dict(),
        "tools": {"torch": torch.__version__},
        **(meta or {}),
    }
    return write_tensors(path, tensors, info)


def write_tensors(path: Path, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """The file format itself: any named arrays and a JSON-able meta table; written atomically."""
    path = Path(path)
    entries, offset, arrays = [], 0, []
    for name, value in tensors.items():
        array = np.asarray(value, order="C")  # (ascontiguousarray makes a 0-d array 1-d)
        if array.dtype.name not in DTYPES:
            raise ValueError(f"write_golden: {name} is {array.dtype}; use one of {', '.join(DTYPES)}")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        entries.append(
            {
                "name": name,
                "dtype": array.dtype.name,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": array.nbytes,
            }
        )
        arrays.append(array)
        offset += array.nbytes + (-array.nbytes) % ALIGN
    toc = json.dumps({"meta": dict(meta), "tensors": entries}).encode()
    toc += b" " * ((-(16 + len(toc))) % ALIGN)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f: IO[bytes]) -> None:
        f.write(MAGIC + struct.pack("<II", FORMAT_VERSION, len(toc)) + toc)
        for array in arrays:
            f.write(array.tobytes())
            f.write(b"\0" * ((-array.nbytes) % ALIGN))

    return atomic_write(path, write)


def read_golden(path: Path) -> Golden:
    """Read a golden file; a bad magic, another format version or a short file raise GoldenError."""
    path = Path(path)
    regenerate = "regenerate it with `python -m mild_export.golden write --engines DIR`"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise GoldenError(f"{path}: cannot read the golden file ({err.strerror})") from None
    if raw[:8] != MAGIC:
        raise GoldenError(f"{path} is not a golden file (no MILDGOLD magic at its start)")
    if len(raw) < 16:
        raise GoldenError(f"{path} is truncated ({len(raw)} bytes): {regenerate}")
    version, n = struct.unpack_from("<II", raw, 8)
    if version != FORMAT_VERSION:
        raise GoldenError(
            f"{path} is golden format version {version}, but this reader reads version {FORMAT_VERSION}: "
            f"{regenerate}"
        )
    try:
        toc = json.loads(raw[16 : 16 + n])
    except ValueError as err:
        raise GoldenError(f"{path}: its table of contents is not JSON ({err}): {regenerate}") from None
    start, tensors = 16 + n, {}
    for entry in toc["tensors"]:
        name, dtype, shape = entry["name"], np.dtype(entry["dtype"]).newbyteorder("<"), entry["shape"]
        begin, end = start + entry["offset"], start + entry["offset"] + entry["nbytes"]
        if end > len(raw) or entry["nbytes"] != dtype.itemsize * math.prod(shape):
            raise GoldenError(
                f"{path}: tensor {name} lies outside the file or has the wrong size: {regenerate}"
            )
        tensors[name] = np.frombuffer(raw, dtype, math.prod(shape), begin).reshape(shape).astype(dtype.name)
    return Golden(path, version, toc["meta"], tensors)


# ---- comparing another backend with the golden file ------------------------------------------------


@dataclass
class Parity:
    noise_rel_err: list[float]  # per step, over eps_fg and eps_bg together
    psnr: dict[str, float]  # composite, background, layers (the worst layer)

    def ok(self, precision: str = "fp32") -> bool:
        max_err, min_psnr = PARITY[precision]
        return max(self.noise_rel_err) < max_err and min(self.psnr.values()) > min_psnr

    def table(self) -> str:
        steps = ", ".join(f"{e:.1e}" for e in self.noise_rel_err)
        images = ", ".join(f"{k} {v:.1f} dB" for k, v in self.psnr.items())
        return f"noise rel err per step: {steps}\nPSNR: {images}"


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """||ours - ref|| / ||ref|| in float64."""
    ref64 = ref.astype(np.float64)
    return float(np.linalg.norm(ours.astype(np.float64) - ref64) / max(np.linalg.norm(ref64), 1e-30))


def psnr(ours: np.ndarray, ref: np.ndarray) -> float:
    """Images in [0, 1]."""
    mse = float(np.mean((ours.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def replay(golden: Golden, backend: Backend) -> dict[str, np.ndarray]:
    """The golden inputs through `backend`, captured as the golden file was."""
    return capture(backend, golden.inputs())


def compare(golden: Golden, tensors: Mapping[str, np.ndarray]) -> Parity:
    steps = len(golden["eps_fg"])
    errors = [
        relative_error(
            np.concatenate([tensors["eps_fg"][i].ravel(), tensors["eps_bg"][i].ravel()]),
            np.concatenate([golden["eps_fg"][i].ravel(), golden["eps_bg"][i].ravel()]),
        )
        for i in range(steps)
    ]
    images = {k: psnr(tensors[k], golden[k]) for k in ("composite", "background")}
    images["layers"] = min(psnr(a, b) for a, b in zip(tensors["layers"], golden["layers"], strict=True))
    return Parity(errors, images)


# ---- command line ----------------------------------------------------------------------------------


def scene(n: int, side: int, seed: int) -> GoldenInputs:
    """A synthetic photo of `n` people (reference.data.synth) with pose, parsing and a prompt."""
    from reference.data.synth import make_sample

    return GoldenInputs(**make_sample(seed, size=side, n_figures=n).erase_inputs(), seed=seed)


def _write_cli(args: argparse.Namespace) -> None:
    from mild_export.export.manifest import Manifest, weights_sha256
    from reference.model import load_model

    manifest = Manifest.read(args.engines)
    model = load_model(args.model or manifest.model).float().eval()
    digest = weights_sha256(model)
    if digest != manifest.model_sha256 and not args.any_weights:
        raise ValueError(
            f"the weights of {args.model or manifest.model} (sha256 {digest[:12]}) are not the ones "
            f"{args.engines} was exported from ({manifest.model_sha256[:12]}): pass --model with the "
            "exported model, or --any-weights to write a golden file that the export will not match"
        )
    side = args.resolution or int(manifest.shapes["resolutions"][0])
    guidance = args.guidance if args.guidance is not None else (3.0 if manifest.shapes["guidance"] else 1.0)
    for n in args.instances:
        inputs = scene(n, side, args.seed)
        inputs.steps, inputs.guidance = args.steps, guidance
        path = (args.out or args.engines / "golden") / f"n{inputs.masks.shape[0]}{SUFFIX}"
        write_golden(model, inputs, path, {"model": manifest.model, "model_sha256": digest})
        log.info("wrote %s (N=%d, %dpx, %d steps)", path, inputs.masks.shape[0], side, args.steps)


def _check_cli(args: argparse.Namespace) -> bool:
    if args.backend == "tensorrt":
        from mild_export.runtime.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend(args.engines, device="cuda")
    else:
        from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(args.engines)
    precision = backend.manifest.precision
    ok = True
    for path in args.files:
        parity = compare(golden := read_golden(path), replay(golden, backend))
        good = parity.ok(precision)
        ok &= good
        print(f"{path} on {args.backend} ({precision}): {'ok' if good else 'FAILED'}\n{parity.table()}")
    return ok


def _show_cli(args: argparse.Namespace) -> None:
    for path in args.files:
        golden = read_golden(path)
        print(f"{path}: format version {golden.version}")
        for name, array in golden.tensors.items():
            print(f"  {name:14s} {array.dtype.name:8s} {list(array.shape)}")
        shown = {k: v for k, v in golden.meta.items() if k != "config"}
        print(f"  meta {json.dumps(shown)}")


def main(argv: list[str] | None = None) -> int:
    setup_logging("mild-golden")
    p = command_parser("python -m mild_export.golden", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write golden files for an export folder (reference, fp32)")
    w.add_argument("--engines", type=Path, required=True, help="a mild-export output folder")
    w.add_argument("--model", help="the exported model (default: the manifest's model name)")
    w.add_argument("--instances", default="1,3", help="people per file, comma-separated (default 1,3)")
    w.add_argument("--resolution", type=int, help="image side (default: the export's first)")
    w.add_argument("--steps", type=int, default=4, help="DDIM steps (default 4)")
    w.add_argument("--guidance", type=float, help="default 3 when the export serves guidance, else 1")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--out", type=Path, help="folder for n<N>.mildgold (default DIR/golden)")
    w.add_argument("--any-weights", action="store_true", help="allow weights other than the exported ones")
    c = sub.add_parser("check", help="replay golden files on a runtime (DESIGN.md section 8 bounds)")
    c.add_argument("--engines", type=Path, required=True)
    c.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    c.add_argument("files", type=Path, nargs="+")
    s = sub.add_parser("show", help="print a golden file's table of contents")
    s.add_argument("files", type=Path, nargs="+")
    args = p.parse_args(argv)
    try:
        if args.command == "write":
            args.instances = [int(k) for k in args.instances.split(",")]
            _write_cli(args)
        elif args.command == "check":
            return 0 if _check_cli(args) else 1
        else:
            _show_cli(args)
    except ValueError as err:
        log.error("error: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
