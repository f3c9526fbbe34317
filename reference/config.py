"""Named model configurations.

A configuration says how to build every part of a MILD model: the diffusers UNet/VAE layouts,
the text encoder, and the MILD additions (LoRA, SMA, HMG, E_trans). `tiny` is built from a seed
and is small enough to run a 64x64 pipeline on a CPU in seconds; the `sd15-inpaint` and
`sdxl-inpaint` presets carry the real architectures, which load weights from a local diffusers
folder or start from random weights for benchmarking.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LORA_TARGETS = ("to_q", "to_k", "to_v")


@dataclass(frozen=True)
class LoraConfig:
    """Eq. 1: one LoRA set per branch on Q/K/V of every attention (self and cross)."""

    rank: int = 16
    alpha: float = 16.0


@dataclass(frozen=True)
class HMGConfig:
    """Human Morphology Guidance (Sec. 3.2) and the context-mask tokens (Eq. 7).

    Pose, parsing and mask maps are rendered at a fixed `map_size` so that the token count
    (`token_grid`**2 per map) does not depend on the image size: every branch then carries the
    same number of context tokens and all N+1 branches batch into one UNet call.
    """

    map_size: int = 128
    token_grid: int = 8
    hidden: int = 128
    pose_sigma: float = 2.0  # Gaussian radius of a rendered keypoint, in map pixels


@dataclass(frozen=True)
class OffsetConfig:
    """E_trans (App. C, Alg. 3): a small conv net on the branch mask, last conv zero-initialised."""

    hidden: int = 32


@dataclass(frozen=True)
class EncoderSpec:
    """One CLIP text transformer: used to build random weights when no folder is given."""

    hidden: int
    layers: int
    heads: int
    projection: int = 0  # >0: the encoder has a text projection whose output is the pooled embedding


@dataclass(frozen=True)
class TextConfig:
    """Text encoder(s): SD1.5 has one, SDXL two whose token states are concatenated.

    `byte` tokenizes UTF-8 bytes, needs no vocabulary files and serves the tiny model;
    `clip` loads CLIP tokenizers from a local diffusers folder.
    """

    tokenizer: str
    max_length: int
    encoders: tuple[EncoderSpec, ...]
    penultimate: bool = False  # SDXL reads the second-to-last hidden states

    @property
    def width(self) -> int:
        return sum(e.hidden for e in self.encoders)

    @property
    def pooled_dim(self) -> int:
        return self.encoders[-1].projection


@dataclass(frozen=True)
class SchedulerConfig:
    """The training noise schedule of Stable Diffusion (DDPM betas, scaled_linear)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    steps_offset: int = 1


@dataclass(frozen=True)
class ModelConfig:
    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text: TextConfig
    latent_scale: float
    resolution: int
    lora: LoraConfig = field(default_factory=LoraConfig)
    hmg: HMGConfig = field(default_factory=HMGConfig)
    offsets: OffsetConfig = field(default_factory=OffsetConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    seed: int = 0

    @property
    def cross_attention_dim(self) -> int:
        return int(self.unet["cross_attention_dim"])

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def has_added_conditions(self) -> bool:
        """SDXL's UNet takes pooled text embeddings and size/crop ids besides the tokens."""
        return self.unet.get("addition_embed_type") == "text_time"

    @property
    def context_length(self) -> int:
        """Tokens per branch: text, pose, parsing, then the branch's context-mask tokens."""
        return self.text.max_length + 3 * self.hmg.token_grid**2

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`, for configurations stored in manifests."""
        text = dict(raw["text"])
        text["encoders"] = tuple(EncoderSpec(**e) for e in text["encoders"])
        return cls(
            **{k: v for k, v in raw.items() if k not in {"text", "lora", "hmg", "offsets", "scheduler"}},
            text=TextConfig(**text),
            lora=LoraConfig(**raw["lora"]),
            hmg=HMGConfig(**raw["hmg"]),
            offsets=OffsetConfig(**raw["offsets"]),
            scheduler=SchedulerConfig(**raw["scheduler"]),
        )

    @classmethod
    def from_name(cls, name: str) -> ModelConfig:
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown model configuration {name!r}: choose one of {', '.join(PRESETS)} "
                "or pass the path of a local model folder"
            ) from None


_SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
}

TINY = ModelConfig(
    name="tiny",
    unet={
        "sample_size": 8,
        "in_channels": 9,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "attention_head_dim": [2, 4],  # diffusers' name for the head count
        "norm_num_groups": 8,
        "cross_attention_dim": 32,
    },
    vae={
        **_SD_VAE,
        "block_out_channels": [8, 16, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
    },
    text=TextConfig(tokenizer="byte", max_length=16, encoders=(EncoderSpec(32, 2, 2),)),
    latent_scale=1.0,
    resolution=64,
    lora=LoraConfig(rank=4, alpha=4.0),
    hmg=HMGConfig(map_size=32, token_grid=4, hidden=16, pose_sigma=1.0),
    offsets=OffsetConfig(hidden=8),
)

SD15_INPAINT = ModelConfig(
    name="sd15-inpaint",
    unet={
        "sample_size": 64,
        "in_channels": 9,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "cross_attention_dim": 768,
    },
    vae=_SD_VAE,
    text=TextConfig(tokenizer="clip", max_length=77, encoders=(EncoderSpec(768, 12, 12),)),
    latent_scale=0.18215,
    resolution=512,
)

SDXL_INPAINT = ModelConfig(
    name="sdxl-inpaint",
    unet={
        "sample_size": 128,
        "in_channels": 9,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
    vae=_SD_VAE,
    text=TextConfig(
        tokenizer="clip",
        max_length=77,
        encoders=(EncoderSpec(768, 12, 12), EncoderSpec(1280, 32, 20, projection=1280)),
        penultimate=True,
    ),
    latent_scale=0.13025,
    resolution=1024,
)

TINY_XL = TINY.replace(
    name="tiny-xl",
    unet={
        **TINY.unet,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 16 + 6 * 8,  # pooled text + 6 embedded size ids
    },
    text=TextConfig(
        tokenizer="byte",
        max_length=16,
        encoders=(EncoderSpec(16, 2, 2), EncoderSpec(16, 2, 2, projection=16)),
        penultimate=True,
    ),
)

PRESETS: dict[str, ModelConfig] = {c.name: c for c in (TINY, TINY_XL, SD15_INPAINT, SDXL_INPAINT)}

# The `kind` that a mild-merge folder's manifest.json records (reference.merge writes it), here in
# a light module: mild-export's manifest reader tells such folders apart without importing the merge.
MERGED_KIND = "mild-merged"
