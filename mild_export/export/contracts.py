"""What each exported graph looks like: names, symbolic shapes, sample inputs, profiles.

Each graph declares its inputs once as shapes over named symbols ("batch_fg", "height", ...).
Export turns the symbols into dynamic axes, engine building into optimization profiles
(min/opt/max), and the runtime checks its arrays against the same ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reference.config import ModelConfig
from reference.graphs import GraphSpec, graph_specs
from reference.hmg import PARSING_CLASSES, POSE_CHANNELS

LATENT_FACTOR = 8
Dims = tuple[int | str, ...]

# which mild-export option widens each symbol's range
WIDENED_BY = {
    "prompts": "--guidance",
    "batch_fg": "--max-instances (or --guidance)",
    "batch_bg": "--guidance",
    "rows": "--max-instances (or --guidance)",
    "branches": "--max-instances",
    "layers": "--max-instances",
    "height": "--resolution",
    "width": "--resolution",
    "image_height": "--resolution",
    "image_width": "--resolution",
}


@dataclass(frozen=True)
class ExportShapes:
    """The shapes engines must serve: image sizes, instance count, guidance."""

    resolutions: tuple[int, ...] = (512,)  # square image sides; the first is the optimum
    max_instances: int = 8
    guidance: bool = False

    @property
    def copies(self) -> int:
        return 2 if self.guidance else 1


@dataclass(frozen=True)
class Range:
    min: int
    opt: int  # the size engines are tuned for and graphs are traced at: kept within [min, max]
    max: int
    multiple: int = 1  # the value is always a multiple of this (UNet levels need even grids)

    def __post_init__(self) -> None:
        # typical sizes (3 branches, 2 fg rows) exceed small limits such as --max-instances 1; a
        # graph traced above its max would be fixed at the wrong size
        object.__setattr__(self, "opt", max(self.min, min(self.opt, self.max)))


@dataclass(frozen=True)
class GraphContract:
    spec: GraphSpec
    inputs: dict[str, Dims]
    dtypes: dict[str, torch.dtype]  # inputs whose type does not follow the graph's precision
    symbols: dict[str, Range]
    outputs_axes: dict[str, dict[int, str]]

    @property
    def name(self) -> str:
        return self.spec.name

    def sample_inputs(
        self, dtype: torch.dtype, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Random inputs at the profile's optimum, in the graph's precision."""
        out = {}
        for name, dims in self.inputs.items():
            shape = [self.symbols[d].opt if isinstance(d, str) else d for d in dims]
            kind = self.dtypes.get(name, dtype)
            if kind == torch.int64:
                out[name] = torch.randint(0, 250, shape, generator=generator)
            elif name.startswith("mask"):
                out[name] = (torch.rand(shape, generator=generator) > 0.5).to(kind)
            else:
                out[name] = torch.randn(shape, generator=generator).to(kind)
        return out

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Per input (min, opt, max) shapes, as TensorRT optimization profiles want them."""
        out = {}
        for name, dims in self.inputs.items():
            out[name] = tuple(
                tuple(d if isinstance(d, int) else getattr(self.symbols[d], bound) for d in dims)
                for bound in ("min", "opt", "max")
            )
        return out

    def check(self, arrays: dict[str, tuple[int, ...]]) -> None:
        """Raise naming the input when a shape is outside what the graph was exported for."""
        bound: dict[str, int] = {}
        for name, dims in self.inputs.items():
            shape = arrays[name]
            if len(shape) != len(dims):
                raise ValueError(f"{self.name}: input {name} has rank {len(shape)}, expected {len(dims)}")
            for axis, (want, got) in enumerate(zip(dims, shape, strict=True)):
                if isinstance(want, int):
                    if got != want:
                        raise ValueError(f"{self.name}: {name} axis {axis} is {got}, expected {want}")
                    continue
                r = self.symbols[want]
                if not r.min <= got <= r.max or got % r.multiple:
                    raise ValueError(
                        f"{self.name}: {name} axis {axis} ({want}) is {got}, outside the exported range "
                        f"{r.min}..{r.max} (multiple of {r.multiple}): export again with "
                        f"{_widened_to(want, got)}"
                    )
                if bound.setdefault(want, got) != got:
                    raise ValueError(f"{self.name}: {want} is {bound[want]} in one input and {got} in {name}")


def _widened_to(symbol: str, value: int) -> str:
    """The mild-export option that serves `value` for `symbol`, with its value where one follows."""
    if symbol in ("branches", "layers"):  # the N fg branches and the bg one
        return f"--max-instances {value - 1}"
    if symbol in ("height", "width"):
        return f"--resolution {value * LATENT_FACTOR} (beside the sides it serves)"
    if symbol in ("image_height", "image_width"):
        return f"--resolution {value} (beside the sides it serves)"
    return WIDENED_BY.get(symbol, "other shapes")


def _spatial(shapes: ExportShapes, factor: int, multiple: int) -> Range:
    sides = [r // factor for r in shapes.resolutions]
    return Range(min(sides), sides[0], max(sides), multiple)


def unet_levels(config: ModelConfig) -> int:
    return len(config.unet["down_block_types"])


def image_multiple(config: ModelConfig) -> int:
    """What image sides must be a multiple of: the VAE's factor times the UNet's downsampling."""
    return LATENT_FACTOR * 2 ** (unet_levels(config) - 1)


def check_resolutions(config: ModelConfig, shapes: ExportShapes) -> None:
    step = image_multiple(config)
    bad = [r for r in shapes.resolutions if r <= 0 or r % step]
    if bad:
        raise ValueError(
            f"resolution {bad[0]} is not supported by {config.name}: image sides must be positive "
            f"multiples of {step} (the VAE's factor {LATENT_FACTOR} times the UNet's "
            f"{2 ** (unet_levels(config) - 1)}), e.g. {max(step, round(bad[0] / step) * step)}"
        )


def contracts(config: ModelConfig, shapes: ExportShapes) -> dict[str, GraphContract]:
    """The five graphs of `config`, sized for `shapes`."""
    check_resolutions(config, shapes)
    specs = graph_specs(config.has_added_conditions)
    latent = _spatial(shapes, LATENT_FACTOR, 2 ** (unet_levels(config) - 1))
    branches = Range(2, 3, shapes.max_instances + 1)  # the N fg branches and the bg one
    graphs = [
        _text_encoder(specs["text_encoder"], config, shapes),
        _conditioner(specs["conditioner"], config, branches),
        _vae_encoder(specs["vae_encoder"], latent, branches),
        _vae_decoder(specs["vae_decoder"], latent, shapes),
        _unet(specs["unet"], config, latent, shapes),
    ]
    return {g.name: g for g in graphs}


def _text_encoder(spec: GraphSpec, config: ModelConfig, shapes: ExportShapes) -> GraphContract:
    inputs: dict[str, Dims] = {name: ("prompts", config.text.max_length) for name in spec.inputs}
    return GraphContract(
        spec,
        inputs,
        {name: torch.int64 for name in inputs},
        {"prompts": Range(1, shapes.copies, shapes.copies)},
        {name: {0: "prompts"} for name in spec.outputs},
    )


def _conditioner(spec: GraphSpec, config: ModelConfig, branches: Range) -> GraphContract:
    side = config.hmg.map_size
    return GraphContract(
        spec,
        {
            "pose_maps": (1, POSE_CHANNELS, side, side),
            "parsing_maps": (1, PARSING_CLASSES, side, side),
            "mask_maps": ("branches", 1, side, side),
        },
        {},
        {"branches": branches},
        {"mask_tokens": {0: "branches"}},
    )


def _vae_encoder(spec: GraphSpec, latent: Range, branches: Range) -> GraphContract:
    image = Range(latent.min * LATENT_FACTOR, latent.opt * LATENT_FACTOR, latent.max * LATENT_FACTOR, 8)
    return GraphContract(
        spec,
        {"images": ("branches", 3, "image_height", "image_width")},
        {},
        {"branches": branches, "image_height": image, "image_width": image},
        {"latents": {0: "branches", 2: "height", 3: "width"}},
    )


def _vae_decoder(spec: GraphSpec, latent: Range, shapes: ExportShapes) -> GraphContract:
    return GraphContract(
        spec,
        {"latents": ("layers", 4, "height", "width")},
        {},
        {"layers": Range(1, 2, shapes.max_instances + 1), "height": latent, "width": latent},
        {"images": {0: "layers", 2: "image_height", 3: "image_width"}},
    )


def _unet(spec: GraphSpec, config: ModelConfig, latent: Range, shapes: ExportShapes) -> GraphContract:
    """One call denoises every branch: the fg rows (N of them, x2 with guidance) and the bg rows."""
    c, n_max = shapes.copies, shapes.max_instances
    length, width = config.context_length, config.cross_attention_dim
    inputs: dict[str, Dims] = {
        "sample_fg": ("batch_fg", 9, "height", "width"),
        "sample_bg": ("batch_bg", 9, "height", "width"),
        "mask_fg": ("batch_fg", 1, "height", "width"),
        "mask_bg": ("batch_bg", 1, "height", "width"),
        "context_fg": ("batch_fg", length, width),
        "context_bg": ("batch_bg", length, width),
        "timestep": ("rows",),
    }
    if config.has_added_conditions:
        inputs |= {"text_embeds": ("rows", config.text.pooled_dim), "time_ids": ("rows", 6)}
    symbols = {
        "batch_fg": Range(1, 2 * c, n_max * c),  # guidance engines also serve unguided runs
        "batch_bg": Range(1, c, c),
        "rows": Range(2, 3 * c, (n_max + 1) * c),
        "height": latent,
        "width": latent,
    }
    return GraphContract(
        spec,
        inputs,
        {"timestep": torch.float32},
        symbols,
        {
            "eps_fg": {0: "batch_fg", 2: "height", 3: "width"},
            "eps_bg": {0: "batch_bg", 2: "height", 3: "width"},
        },
    )
