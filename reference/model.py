"""A complete MILD model: text encoder, HMG conditioner, VAE and the layered UNet.

`load_model("tiny")` builds the bundled tiny model from its seed (no files needed);
`load_model("sd15-inpaint" | "sdxl-inpaint")` builds the real layouts with random weights (for
timing); `load_model(PATH)` loads a local diffusers inpainting folder, plus the trained MILD
modules from `PATH/mild/` when present; `load_model(DIR)` of a `mild-merge` output folder
rebuilds the merged model (BranchLinear Q/K/V) from that folder alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from torch import Tensor, nn

from reference.config import PRESETS, ModelConfig
from reference.files import save_tensors
from reference.graphs import VAE_DECODER, graph_dtypes
from reference.hmg import MorphologyGuidance
from reference.layered_unet import LayeredUNet
from reference.text import TextEncoder

log = logging.getLogger("mild")

MILD_WEIGHTS = Path("mild") / "weights.safetensors"
MILD_PARAM_MARKERS = ("lora_", "processor.", "offsets.", "hmg.")


class MildModel(nn.Module):
    def __init__(self, config: ModelConfig, text: TextEncoder, vae: AutoencoderKL, unet: LayeredUNet):
        super().__init__()
        self.config = config
        self.text = text
        self.vae = vae
        self.hmg = MorphologyGuidance(config.hmg, config.cross_attention_dim)
        self.unet = unet

    def encode_images(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [-1, 1] -> scaled latents (the distribution's mode)."""
        return self.vae.encode(images).latent_dist.mode() * self.config.latent_scale

    def decode_latents(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / self.config.latent_scale).sample

    def cast(self, dtype: torch.dtype, vae_upcast: torch.dtype = torch.float32) -> MildModel:
        """In place, like `to`: every part in `dtype`, the VAE in the type `graph_dtypes` gives it
        (cast on its own: a float32 VAE never passes through `dtype`, which would round it). By
        nn.Module.to: diffusers' override warns at every cast of a model that keeps no module in
        float32 (its list of them empty), a false alarm for each user of the torch backend."""
        vae_dtype = graph_dtypes(self.config, dtype, vae_upcast)[VAE_DECODER.name]
        for part in self.children():
            nn.Module.to(part, vae_dtype if part is self.vae else dtype)
        return self

    def mild_state_dict(self) -> dict[str, Tensor]:
        """Only what MILD adds to the base model: LoRA sets and scales, SMA, HMG, E_trans."""
        return {
            name: p.detach()
            for name, p in self.named_parameters()
            if any(marker in name for marker in MILD_PARAM_MARKERS)
        }

    def save_mild_weights(self, folder: Path) -> Path:
        path = Path(folder) / MILD_WEIGHTS
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_tensors({k: v.contiguous() for k, v in self.mild_state_dict().items()}, tmp)
        tmp.replace(path)
        return path

    def load_mild_weights(self, path: Path) -> None:
        state = load_file(str(path))
        expected = self.mild_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        reshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or reshaped:
            raise ValueError(
                f"{path} does not match this model ({len(missing)} missing tensors, {len(unexpected)} "
                f"unexpected, {len(reshaped)} of another shape, e.g. "
                f"{(missing + unexpected + reshaped)[:2]}): "
                "it was trained for another base model or configuration"
            )
        self.load_state_dict(state, strict=False)


def build_base(
    config: ModelConfig, seed: int | None = None
) -> tuple[TextEncoder, AutoencoderKL, UNet2DConditionModel]:
    """The plain diffusers parts with seeded random weights, before any MILD addition."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else seed)
        text = TextEncoder.random(config.text)
        vae = AutoencoderKL(**config.vae)
        unet = UNet2DConditionModel(**config.unet)
    return text, vae.eval(), unet.eval()


def build_model(config: ModelConfig, seed: int | None = None) -> MildModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else seed)
        text, vae, unet = build_base(config, seed)
        return MildModel(config, text, vae, LayeredUNet(unet, config)).eval()


REQUIRED_PARTS = ("unet", "vae", "text_encoder", "tokenizer")


def load_pretrained(folder: Path) -> MildModel:
    """A local diffusers inpainting folder (no downloads), plus `mild/weights.safetensors`;
    or a merged folder written by `mild-merge` (recognised by its manifest.json)."""
    folder = _model_folder(Path(folder))
    from reference.merge import is_merged_folder, load_merged

    if is_merged_folder(folder):
        return load_merged(folder)
    declared = _diffusers_config(folder)
    parts = REQUIRED_PARTS + (("text_encoder_2", "tokenizer_2") if declared.has_added_conditions else ())
    missing = [p for p in parts if not (folder / p).is_dir()]
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)}: copy the complete diffusers folder")
    unet = _load_part(UNet2DConditionModel, folder, "unet")
    vae = _load_part(AutoencoderKL, folder, "vae")
    config = declared.replace(
        unet=dict(unet.config),
        vae=dict(vae.config),
        latent_scale=float(vae.config.scaling_factor),
    )
    try:
        text = TextEncoder.from_folder(config.text, folder)
    except (OSError, ValueError) as err:
        raise ValueError(f"the text encoder or tokenizer in {folder} could not be loaded ({err})") from None
    model = MildModel(config, text, vae.eval(), LayeredUNet(unet.eval(), config))
    weights = folder / MILD_WEIGHTS
    if weights.is_file():
        model.load_mild_weights(weights)
    else:
        log.warning("%s not found: MILD modules are untrained (the output is the base model's)", weights)
    return model.eval()


def _model_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise ValueError(
            f"model {str(folder)!r} is neither a configuration ({', '.join(PRESETS)}) nor a folder"
        )
    return folder


def _diffusers_config(folder: Path) -> ModelConfig:
    """The preset of a diffusers folder's kind (SDXL's UNet takes added text-time conditions), with
    the folder's UNet configuration as its JSON file gives it."""
    unet_config = folder / "unet" / "config.json"
    try:
        unet = json.loads(unet_config.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{unet_config} is missing: {folder} must be a diffusers inpainting model folder "
            f"with subfolders {', '.join(REQUIRED_PARTS)} (download it once, e.g. with "
            "`huggingface-cli download`, then pass its local path)"
        ) from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{unet_config} could not be read ({err}): copy the unet folder again") from None
    is_xl = unet.get("addition_embed_type") == "text_time"
    return PRESETS["sdxl-inpaint" if is_xl else "sd15-inpaint"].replace(unet=unet)


def _load_part(cls: type, folder: Path, part: str) -> nn.Module:
    try:
        return cls.from_pretrained(folder, subfolder=part, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder / part} could not be loaded ({err}): copy that part again") from None


def load_model(name_or_path: str | Path) -> MildModel:
    if str(name_or_path) in PRESETS:
        config = PRESETS[str(name_or_path)]
        if not config.name.startswith("tiny"):
            log.warning("%s with random weights: good for timing, not for images", config.name)
        return build_model(config)
    return load_pretrained(Path(name_or_path))


def declared_config(name_or_path: str | Path) -> ModelConfig:
    """The configuration a model declares before any weights load: a preset's, a merged folder's
    manifest's, or a diffusers folder's UNet configuration over its preset (its JSON file as
    written; the loaded UNet's adds diffusers' defaults). The commands check image sides against
    it first, since a folder's weights take seconds to minutes to load; a folder that is not a
    model fails here with load_model's message."""
    if str(name_or_path) in PRESETS:
        return PRESETS[str(name_or_path)]
    folder = _model_folder(Path(name_or_path))
    from reference.merge import is_merged_folder, merged_config

    if is_merged_folder(folder):
        return merged_config(folder)
    return _diffusers_config(folder)
