"""Folding the trained LoRA sets into two Q/K/V weight sets, and the merged model folder.

    W_b = W + scale_b[p] * (lora_alpha / r) * B_b A_b,   b in {fg, bg}, p in {Q, K, V}   (Eq. 1)

Every attention's Q/K/V projection becomes a `BranchLinear` holding W_fg and W_bg; everything
else (the rest of the UNet, E_trans, SMA alphas, HMG, VAE, text encoder) exists once. The folder

    DIR/weights.safetensors          every tensor of the merged model, each exactly once
    DIR/text_encoder*/config.json    CLIP configurations (to rebuild the encoders without downloads)
    DIR/tokenizer*/                  CLIP tokenizers (none for byte-tokenized models)
    DIR/manifest.json                base model, configurations, sha256 of every file, summaries

is self-contained: `load_merged(DIR)` (and `reference.model.load_model(DIR)`) rebuild the full
MildModel from it alone, the two branches sharing memory for all common tensors.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from reference.branch_attention import (
    BRANCHES,
    MERGED_PROJECTIONS,
    PROJECTIONS,
    BranchAttnProcessor,
    BranchLinear,
    processors,
)
from reference.config import MERGED_KIND, ModelConfig
from reference.files import file_sha256, save_tensors
from reference.layered_unet import LayeredUNet
from reference.model import MildModel
from reference.text import TextEncoder, load_tokenizers, save_tokenizers, tokenizer_folder
from reference.train.checkpoint import base_model, check_weights, load_checkpoint

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1
ENCODERS = ("text_encoder", "vae", "hmg.pose_encoder", "hmg.parsing_encoder", "hmg.mask_encoder", "e_trans")


def _attentions(unet: nn.Module) -> list[tuple[Attention, BranchAttnProcessor]]:
    return [(m, m.processor) for m in unet.modules() if isinstance(m, Attention)]


@torch.no_grad()
def folded_weights(layer: LoraLayer, scales: dict[str, Tensor], index: int) -> dict[str, Tensor]:
    """Eq. 1 folded: the branch weights of one Q/K/V projection, from its LoRA adapters and scales."""
    base = layer.base_layer.weight
    out = {}
    for b in BRANCHES:
        delta = layer.lora_B[b].weight.float() @ layer.lora_A[b].weight.float()
        out[b] = (base.float() + scales[b][index].float() * layer.scaling[b] * delta).to(base.dtype)
    return out


def is_merged(model: MildModel) -> bool:
    """Whether the Q/K/V projections already hold folded branch weights (no LoRA adapters left)."""
    return any(isinstance(m, MERGED_PROJECTIONS) for m in model.unet.modules())


def merge_model(model: MildModel) -> MildModel:
    """A new MildModel with BranchLinear Q/K/V (folded LoRA), sharing every other tensor with `model`."""
    merged = skeleton(model.config, model.text)
    for (attn, proc), (new_attn, _) in zip(
        _attentions(model.unet.unet), _attentions(merged.unet.unet), strict=True
    ):
        for index, proj in enumerate(PROJECTIONS):
            layer = getattr(attn, proj)
            if not isinstance(layer, LoraLayer):
                raise ValueError(f"{proj} of an attention has no LoRA adapters: the model is already merged")
            branch_linear = getattr(new_attn, proj)
            for b, weight in folded_weights(layer, proc.lora_scale, index).items():
                setattr(branch_linear, f"weight_{b}", nn.Parameter(weight, requires_grad=False))  # its dtype
    source = model.state_dict()
    state = {}
    for name, tensor in merged.state_dict().items():
        if name.endswith((".weight_fg", ".weight_bg")):
            state[name] = tensor  # folded above
        elif name in source:
            state[name] = source[name]
        elif name.endswith(_QKV_BIASES):  # peft keeps the base projection's bias under base_layer
            state[name] = source[name.removesuffix(".bias") + ".base_layer.bias"]
        else:
            raise ValueError(f"merged tensor {name} has no source in the trained model")
    merged.load_state_dict(state, strict=True, assign=True)
    check_materialised(merged, "merging")
    return merged.eval()


_QKV_BIASES = tuple(f".{p}.bias" for p in PROJECTIONS)


def skeleton(config: ModelConfig, text: TextEncoder) -> MildModel:
    """The merged architecture, BranchLinear Q/K/V and processors without scales, with every tensor
    but `text`'s on the meta device: the caller assigns real ones (`load_state_dict(assign=True)`).
    Real placeholder weights would cost a second model's memory and its random init, a minute
    and 10 GB for SDXL."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config.unet)
        vae = AutoencoderKL.from_config(config.vae)
        model = MildModel(config, text, vae.eval(), LayeredUNet(unet.eval(), config, lora=False))
        for attn, proc in _attentions(unet):
            for proj in PROJECTIONS:
                linear = getattr(attn, proj)
                bias = None if linear.bias is None else linear.bias.detach()
                setattr(attn, proj, BranchLinear(linear.weight.detach(), linear.weight.detach(), bias))
            proc.lora_scale = nn.ParameterDict()  # folded into the Q/K/V weights
    return model.eval()


def check_materialised(model: nn.Module, source: str) -> None:
    """No meta tensor may survive the assignment of a skeleton's weights."""
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{source} left {len(left)} tensors without values, e.g. {left[0]}")


def _text_skeleton(config: ModelConfig, folder: Path) -> TextEncoder:
    encoders = []
    for i, spec in enumerate(config.text.encoders):
        path = folder / _text_folder(i) / "config.json"
        cls = CLIPTextModelWithProjection if spec.projection else CLIPTextModel
        encoders.append(cls(CLIPTextConfig.from_json_file(str(path))).eval())
    return TextEncoder(config.text, encoders, load_tokenizers(config.text, folder))


def _text_folder(index: int) -> str:
    return "text_encoder" if index == 0 else f"text_encoder_{index + 1}"


def summarise(model: MildModel) -> dict[str, Any]:
    """SMA alphas per layer (what the manifest shows without loading the weights)."""
    alphas = {
        name: proc.sma_alpha.detach().float()
        for name, proc in processors(model.unet.unet).items()
        if proc.sma_alpha is not None
    }
    stacked = torch.cat([a.flatten() for a in alphas.values()]) if alphas else torch.zeros(1)
    return {
        "layers": len(alphas),
        "mean": float(stacked.mean()),
        "abs_max": float(stacked.abs().max()),
        "per_layer_mean_2x2": {name: a.mean(dim=0).tolist() for name, a in alphas.items()},
    }


def check_target(out: Path) -> None:
    """Where a merged model may go: a new or empty folder, or an earlier merged model folder, which
    is replaced whole. Anything else (a mild-export folder has a manifest.json too) is left alone."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not is_merged_folder(out):
        raise ValueError(
            f"{out} is not empty and holds no merged model: choose a new --out (a merged model folder "
            "is replaced)"
        )


def save_merged(merged: MildModel, out: Path, base_model: str, extra: dict[str, Any] | None = None) -> Path:
    """The merged model folder, built whole under a temporary name beside `out` and then put in its
    place: an interrupted merge leaves the earlier folder or none, never half of one (which a rerun
    could not tell from someone else's files, and would refuse to replace)."""
    out = Path(out).absolute()
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = glob.escape(out.name)
    for stale in (*out.parent.glob(f".{name}.tmp-*"), *out.parent.glob(f".{name}.old-*")):
        shutil.rmtree(stale)  # left by a killed merge
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    _write_folder(merged, tmp, base_model, extra)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out


def _write_folder(merged: MildModel, out: Path, base_model: str, extra: dict[str, Any] | None) -> None:
    """Every file of the merged model folder into `out`, the manifest (with every file's hash) last."""
    state = {k: v.detach().contiguous().cpu() for k, v in merged.state_dict().items()}
    save_tensors(state, out / WEIGHTS, metadata={"format": MERGED_KIND})
    files = [WEIGHTS]
    for i, encoder in enumerate(merged.text.encoders):
        folder = out / _text_folder(i)
        folder.mkdir()
        encoder.config.to_json_file(str(folder / "config.json"))
        files.append(f"{_text_folder(i)}/config.json")
    save_tokenizers(merged.text, out)
    for i in range(len(merged.text.encoders)):
        files += [
            str(p.relative_to(out)) for p in sorted((out / tokenizer_folder(i)).glob("*")) if p.is_file()
        ]
    branch_keys = [k for k in state if k.endswith((".weight_fg", ".weight_bg"))]
    manifest = {
        "kind": MERGED_KIND,
        "format": FORMAT_VERSION,
        "base_model": base_model,
        "model_config": merged.config.to_dict(),
        "files": {name: file_sha256(out / name) for name in files},
        "tensors": {
            "total": len(state),
            "per_branch": len(branch_keys),
            "shared": len(state) - len(branch_keys),
        },
        "sma_alpha": summarise(merged),
        "encoders": list(ENCODERS),
        **(extra or {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))


def is_merged_folder(folder: Path) -> bool:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == MERGED_KIND
    except (OSError, ValueError):
        return False


def merged_config(folder: Path) -> ModelConfig:
    """The model configuration a merged folder's manifest records."""
    return _read_manifest(Path(folder))[1]


def _read_manifest(folder: Path) -> tuple[dict[str, Any], ModelConfig]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return manifest, ModelConfig.from_dict(manifest["model_config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / MANIFEST} is missing or corrupt ({err}): run mild-merge again") from None


def load_merged(folder: Path) -> MildModel:
    """Rebuild the merged MildModel from DIR alone, checking every file against the manifest."""
    folder = Path(folder)
    manifest, config = _read_manifest(folder)
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            raise ValueError(f"{path} is missing or differs from {folder / MANIFEST}: run mild-merge again")
    model = skeleton(config, _text_skeleton(config, folder))
    try:
        state = load_file(str(folder / WEIGHTS))
        model.load_state_dict(state, strict=True, assign=True)
    except (SafetensorError, RuntimeError) as err:
        raise ValueError(f"{folder / WEIGHTS} does not fit its manifest's model ({err})") from None
    check_materialised(model, str(folder / WEIGHTS))
    return model.eval()


def merge_checkpoint(checkpoint: Path, out: Path) -> Path:
    """`mild-merge`: the latest checkpoint of a run (or a checkpoint folder) -> a merged model folder."""
    from reference.train.config import TrainConfig
    from reference.train.trainer import load_training_model

    loaded = load_checkpoint(checkpoint, with_state=False)
    meta = loaded.meta
    train_config = TrainConfig.from_dict(meta["train_config"])
    base = base_model(loaded.path, meta)
    model = load_training_model(base, train_config.lora)
    check_weights(loaded, model.mild_state_dict())
    model.load_state_dict(loaded.weights, strict=False)
    extra = {
        "checkpoint": {"path": str(loaded.path), "step": loaded.step},
        "lora": meta["model_config"]["lora"],
    }
    return save_merged(merge_model(model), out, base, extra)
