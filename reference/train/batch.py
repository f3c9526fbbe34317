"""Training samples -> the layered UNet's inputs, built as the pipeline builds them at inference.

Per sample: one draw of t and eps shared by all its branches; the fg branches noise z0 = E(x), the
bg branch noises z0_bg = E(x_clean) (DESIGN.md section 1). The 9-channel rows, latent masks and
condition maps come from `reference.conditions`, the same functions the pipeline uses. What has no
trainable parameter (VAE, text encoder) runs here without gradients; the HMG encoders, E_trans and
the UNet run in `TrainModule.forward` with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from reference import conditions
from reference.ddim import add_noise
from reference.model import MildModel


@dataclass
class Example:
    """One training sample (CPU tensors); what the dataset yields, whatever its file layout."""

    image: Tensor  # [3, H, W] in [0, 1]
    background: Tensor  # [3, H, W] in [0, 1]: the clean ground truth
    masks: Tensor  # [N, H, W] in {0, 1}
    keypoints: Tensor | None = None  # [N, 18, 3] (x, y, confidence) in image pixels
    parsing: Tensor | None = None  # [H, W] LIP label ids
    prompt: str = ""


@dataclass
class StepInputs:
    """Everything one training step feeds the trainable modules, on the training device."""

    sample_fg: Tensor  # [R, 9, h, w]: R = sum of N over the batch
    sample_bg: Tensor  # [B, 9, h, w]
    mask_fg: Tensor  # [R, 1, h, w] latent masks M_k (Eq. 2 and SMA/E_trans)
    mask_bg: Tensor  # [B, 1, h, w] latent M_all
    timestep: Tensor  # [R + B]: fg rows, then bg rows
    eps: Tensor  # [B, 4, h, w]: the noise every branch of sample b must predict
    fg_sample: Tensor  # [R]: the sample of each fg row
    prompt_embeds: Tensor  # [B, T, C]
    pose_maps: Tensor  # [B, 18, S, S]
    parsing_maps: Tensor  # [B, 20, S, S]
    mask_maps: Tensor  # [R + B, 1, S, S]: per sample its N fg context masks, then M_all
    counts: list[int]  # N per sample
    added: dict[str, Tensor] = field(default_factory=dict)  # SDXL text_embeds / time_ids, all rows


def check_examples(examples: Sequence[Example]) -> None:
    size = tuple(examples[0].image.shape[1:])
    for i, ex in enumerate(examples):
        if tuple(ex.image.shape[1:]) != size or tuple(ex.background.shape[1:]) != size:
            raise ValueError(f"batch sample {i} is {list(ex.image.shape[1:])}, sample 0 is {list(size)}")
        if ex.masks.ndim != 3 or ex.masks.shape[0] == 0 or tuple(ex.masks.shape[1:]) != size:
            raise ValueError(
                f"batch sample {i} has masks {list(ex.masks.shape)}: need [N >= 1, *{list(size)}]"
            )
    if size[0] % conditions.LATENT_FACTOR or size[1] % conditions.LATENT_FACTOR:
        raise ValueError(f"training images {list(size)} must be divisible by {conditions.LATENT_FACTOR}")


@torch.no_grad()
def prepare_step(
    model: MildModel, examples: Sequence[Example], generator: torch.Generator, device: torch.device
) -> StepInputs:
    check_examples(examples)
    counts = [ex.masks.shape[0] for ex in examples]
    branch = [conditions.branch_masks(ex.masks.float().to(device)) for ex in examples]  # [N+1, 1, H, W]
    masked, z0, z0_bg = _encode(model, examples, branch, device)
    b, scheduler = len(examples), model.config.scheduler
    # One draw of t and eps per sample, from a CPU generator so every device trains on the same noise.
    t = torch.randint(0, scheduler.num_train_timesteps, (b,), generator=generator).to(device)
    eps = torch.randn(z0.shape, generator=generator).to(device)
    z_t, z_t_bg = add_noise(z0, eps, t, scheduler), add_noise(z0_bg, eps, t, scheduler)

    fg_sample = torch.repeat_interleave(torch.arange(b), torch.tensor(counts)).to(device)
    starts = _starts(counts)
    fg_rows = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, counts, strict=True)]).to(device)
    bg_rows = torch.tensor([s + n for s, n in zip(starts, counts, strict=True)], device=device)
    latent_masks = conditions.latent_masks(torch.cat(branch))
    cond = torch.cat([latent_masks, masked], dim=1)  # [M, E(x (1 - M))] per branch row
    maps = [
        conditions.condition_maps(m[:-1, 0], ex.keypoints, ex.parsing, model.config.hmg)
        for ex, m in zip(examples, branch, strict=True)
    ]
    ids = model.text.tokenize([ex.prompt for ex in examples])
    text = model.text(**{k: v.to(device) for k, v in ids.items()})
    return StepInputs(
        sample_fg=torch.cat([z_t[fg_sample], cond[fg_rows]], dim=1),
        sample_bg=torch.cat([z_t_bg, cond[bg_rows]], dim=1),
        mask_fg=latent_masks[fg_rows],
        mask_bg=latent_masks[bg_rows],
        timestep=torch.cat([t[fg_sample], t]).float(),
        eps=eps,
        fg_sample=fg_sample,
        prompt_embeds=text["prompt_embeds"],
        pose_maps=torch.cat([m["pose_maps"] for m in maps]),
        parsing_maps=torch.cat([m["parsing_maps"] for m in maps]),
        mask_maps=torch.cat([m["mask_maps"] for m in maps]),
        counts=counts,
        added=_added_conditions(model, text, fg_sample, tuple(examples[0].image.shape[1:])),
    )


def _encode(
    model: MildModel, examples: Sequence[Example], branch: list[Tensor], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """One VAE call -> (E(x (1 - M)) per branch row, z0 = E(x), z0_bg = E(x_clean)) per sample."""
    images = [
        conditions.masked_images(ex.image.to(device), m) for ex, m in zip(examples, branch, strict=True)
    ]
    images += [(ex.image.to(device) * 2 - 1)[None] for ex in examples]
    images += [(ex.background.to(device) * 2 - 1)[None] for ex in examples]
    latents = model.encode_images(torch.cat(images).float()).float()
    rows, b = sum(m.shape[0] for m in branch), len(examples)
    return latents[:rows], latents[rows : rows + b], latents[rows + b :]


def _starts(counts: list[int]) -> list[int]:
    """Row of each sample's first branch when every sample has N + 1 rows."""
    starts, row = [], 0
    for n in counts:
        starts.append(row)
        row += n + 1
    return starts


def _added_conditions(
    model: MildModel, text: dict[str, Tensor], fg_sample: Tensor, size: tuple[int, int]
) -> dict[str, Tensor]:
    """SDXL: pooled text per row and (size, crop, target) ids, as the pipeline gives them."""
    if not model.config.has_added_conditions:
        return {}
    pooled = text["pooled_prompt_embeds"]
    h, w = size
    ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=pooled.dtype, device=pooled.device)
    rows = fg_sample.shape[0] + pooled.shape[0]
    return {"text_embeds": torch.cat([pooled[fg_sample], pooled]), "time_ids": ids.expand(rows, -1)}
