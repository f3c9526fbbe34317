"""Erasing people from one image: the MILD pipeline as named stages.

    check_inputs -> encode_conditions -> prepare_mask_latents -> prepare_latents
    -> denoise (one UNet call per step over N fg branches + 1 bg branch) -> decode -> compose

Everything runs through a `Backend`, so the reference, ONNX Runtime and TensorRT share this code.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reference import conditions
from reference.backend import Backend
from reference.compose import ComposeMode, check_mode, compose, layers_needed
from reference.conditions import LATENT_FACTOR
from reference.ddim import DDIM
from reference.hmg import PARSING_CLASSES, POSE_CHANNELS
from reference.sampler import BranchInputs, denoise


@dataclass
class Erasure:
    composite: Tensor  # [3, H, W] in [0, 1]
    background: Tensor  # [3, H, W]
    layers: dict[int, Tensor]  # decoded fg layers by 0-based instance index
    remove: list[int]


def check_types(
    image: object, masks: object, remove: object, steps: object, prompt: object, **optional: object
) -> None:
    """The arguments' Python types, before their shapes and values are read: a numpy array, a PIL
    image, a list of masks, `remove=1`, `steps=2.5` or `prompt=None` failed with an AttributeError,
    TypeError or IndexError from deep inside the pipeline, naming neither the argument nor the fix."""
    for name, value in {"image": image, "masks": masks, **optional}.items():
        if not (value is None and name in optional) and not isinstance(value, Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor, got {type(value).__name__}: convert it (torch.from_numpy "
                "for an array; reference.inputs.load_image and load_mask read files)"
            )
    if remove is not None and (isinstance(remove, (str, bytes)) or not isinstance(remove, Iterable)):
        raise ValueError(
            f"remove must be a list of 0-based instance indices or None (everyone), got {remove!r}: "
            f"pass [{remove!r}] to remove one"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"steps must be an integer, got {steps!r}: give a whole number of DDIM steps")
    if not isinstance(prompt, str):
        raise ValueError(f'prompt must be a str, got {prompt!r}: give one prompt, or "" for none')


def check_inputs(
    image: Tensor,
    masks: Tensor,
    remove: Sequence[int],
    steps: int,
    guidance: float,
    keypoints: Tensor | None = None,
    parsing: Tensor | None = None,
) -> None:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {list(image.shape)}")
    # a uint8 photo or one in 0..255 would run and give a wrong composite without a word
    if not image.is_floating_point() or (image.numel() and (image.min() < 0 or image.max() > 1)):
        raise ValueError(
            f"image must be floating point in [0, 1], got {image.dtype}: divide 8-bit pixels by 255"
        )
    if image.isnan().any():  # NaN compares false with both bounds, so the range check passed it
        raise ValueError("image holds NaN pixels: give values in [0, 1] (check the decoding or scaling)")
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise ValueError(f"masks must be [N, H, W] with N >= 1, got {list(masks.shape)}")
    if masks.shape[1:] != image.shape[1:]:
        raise ValueError(f"masks are {list(masks.shape[1:])} but the image is {list(image.shape[1:])}")
    if ((masks != 0) & (masks != 1)).any():
        raise ValueError("masks must hold only 0 and 1: binarise them (e.g. masks > 0.5)")
    empty = [k for k in range(masks.shape[0]) if not masks[k].any()]
    if empty:
        raise ValueError(f"masks{empty} are empty (all zero): every mask must cover its person")
    if image.shape[1] % LATENT_FACTOR or image.shape[2] % LATENT_FACTOR:
        raise ValueError(f"image size {list(image.shape[1:])} must be divisible by {LATENT_FACTOR}: pad it")
    bad = [k for k in remove if not 0 <= k < masks.shape[0]]
    if bad or len(set(remove)) != len(remove):
        raise ValueError(
            f"remove={list(remove)} must be distinct instance indices in 0..{masks.shape[0] - 1}"
        )
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be >= 0 and finite (1 disables it), got {guidance}")
    check_conditions(keypoints, parsing, masks.shape[0], tuple(image.shape[1:]))


def check_conditions(keypoints: Tensor | None, parsing: Tensor | None, n: int, size: tuple[int, int]) -> None:
    """The optional HMG inputs, as the C API reads them: keypoints [N, 18, 3] (x, y in pixels,
    confidence) in mask order, parsing [H, W] of LIP ids 0..19 (a wrong size or id rendered
    misaligned maps or failed inside one_hot)."""
    if keypoints is not None and tuple(keypoints.shape) != (n, POSE_CHANNELS, 3):
        raise ValueError(
            f"keypoints must be [N, {POSE_CHANNELS}, 3] with N = {n} (one row per mask, "
            f"x, y in pixels and confidence), got {list(keypoints.shape)}"
        )
    if parsing is None:
        return
    if tuple(parsing.shape) != size:
        raise ValueError(
            f"parsing must be [H, W] = {list(size)} (the image's size), got {list(parsing.shape)}"
        )
    out_of_range = parsing.numel() and (parsing.min() < 0 or parsing.max() >= PARSING_CLASSES)
    if parsing.is_floating_point() or out_of_range:
        raise ValueError(
            f"parsing must hold integer LIP label ids 0..{PARSING_CLASSES - 1}, got "
            f"{parsing.dtype} in {parsing.min().item()}..{parsing.max().item()}"
        )


class ErasePipeline:
    def __init__(self, backend: Backend, progress: bool = False):
        self.backend = backend
        self.config = backend.config
        self.device = backend.device
        self.progress = progress

    def erase(
        self,
        image: Tensor,
        masks: Tensor,
        *,
        remove: Sequence[int] | None = None,
        keypoints: Tensor | None = None,
        parsing: Tensor | None = None,
        prompt: str = "",
        steps: int = 25,
        guidance: float = 1.0,
        seed: int = 0,
        compose_mode: ComposeMode = ComposeMode.COPY_OUTSIDE,
        all_layers: bool = False,
    ) -> Erasure:
        """image [3, H, W] in [0, 1], masks [N, H, W] in {0, 1}; `remove` 0-based (default all)."""
        check_types(image, masks, remove, steps, prompt, keypoints=keypoints, parsing=parsing)
        check_mode(compose_mode)
        n = masks.shape[0]
        remove = list(range(n)) if remove is None else list(remove)
        check_inputs(image, masks, remove, steps, guidance, keypoints, parsing)
        ddim = DDIM.create(self.config.scheduler, steps)  # checks steps against the schedule's length
        image, masks = image.to(self.device).float(), masks.to(self.device).float()
        copies = 1 if guidance == 1.0 else 2

        context_fg, context_bg, added = self.encode_conditions(
            image, masks, keypoints, parsing, prompt, copies
        )
        cond_fg, cond_bg, mask_fg, mask_bg = self.prepare_mask_latents(image, masks)
        rows = BranchInputs(
            cond_fg.repeat(copies, 1, 1, 1),
            cond_bg.repeat(copies, 1, 1, 1),
            mask_fg.repeat(copies, 1, 1, 1),
            mask_bg.repeat(copies, 1, 1, 1),
            context_fg,
            context_bg,
            added,
        )
        noise = self.prepare_latents(image.shape[1:], seed)
        latents = denoise(self.backend, ddim, noise, rows, n, guidance, self.progress)

        needed = list(range(n)) if all_layers else layers_needed(masks, remove, compose_mode)
        background, layers = self.decode(latents, needed)
        composite = compose(background, layers, masks, remove, compose_mode, image)
        return Erasure(composite, background, layers, remove)

    def encode_conditions(
        self,
        image: Tensor,
        masks: Tensor,
        keypoints: Tensor | None,
        parsing: Tensor | None,
        prompt: str,
        copies: int,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Branch k's tokens are [text; pose; parsing; mask_k] (Sec. 3.2); rows cond then uncond."""
        n, size = masks.shape[0], tuple(image.shape[1:])
        maps = conditions.condition_maps(masks, keypoints, parsing, self.config.hmg)
        tokens = self.backend.run("conditioner", {k: v.to(self.device) for k, v in maps.items()})
        text = self.backend.run("text_encoder", self.backend.tokenize([prompt, ""][:copies]))
        contexts = [
            conditions.branch_contexts(
                text["prompt_embeds"][row : row + 1], tokens["hmg_tokens"], tokens["mask_tokens"]
            )
            for row in range(copies)
        ]
        context_fg = torch.cat([c[:n] for c in contexts])
        context_bg = torch.cat([c[n:] for c in contexts])
        added = {}
        if self.config.has_added_conditions:  # SDXL: pooled text and (size, crop, target) ids
            pooled = text["pooled_prompt_embeds"]
            h, w = size
            ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=pooled.dtype, device=pooled.device)
            added = {
                "text_embeds": torch.cat([pooled.repeat_interleave(n, dim=0), pooled]),
                "time_ids": ids.expand(copies * (n + 1), -1),
            }
        return context_fg, context_bg, added

    def prepare_mask_latents(self, image: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """fg k: [M_k, E(x (1 - M_k))]; bg: [M_all, E(x (1 - M_all))] (DESIGN.md section 1)."""
        branch_masks = conditions.branch_masks(masks)  # [N + 1, 1, H, W]
        images = conditions.masked_images(image, branch_masks)
        latents = self.backend.run("vae_encoder", {"images": images})["latents"]
        latent_masks = conditions.latent_masks(branch_masks)
        cond = torch.cat([latent_masks, latents.to(latent_masks.dtype)], dim=1)
        n = masks.shape[0]
        return cond[:n], cond[n:], latent_masks[:n], latent_masks[n:]

    def prepare_latents(self, size: tuple[int, int], seed: int) -> Tensor:
        """One noise draw shared by every branch, from a CPU generator so backends agree."""
        h, w = size[0] // LATENT_FACTOR, size[1] // LATENT_FACTOR
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(1, 4, h, w, generator=generator).to(self.device)

    def decode(self, latents: Tensor, needed: list[int]) -> tuple[Tensor, dict[int, Tensor]]:
        """Decode the background and only the fg layers in `needed`; images in [0, 1]."""
        rows = latents[[*needed, latents.shape[0] - 1]]
        images = self.backend.run("vae_decoder", {"latents": rows})["images"].float()
        images = ((images + 1) / 2).clamp(0, 1)
        return images[-1], {k: images[i] for i, k in enumerate(needed)}
