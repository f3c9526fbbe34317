"""Shared test helpers: a tiny model whose MILD modules look trained, so parity tests can fail."""

import pytest
import torch

from reference.model import MildModel, load_model

TRAINED_MARKERS = ("lora_B", "lora_scale", "sma_alpha", "offsets.net.4")


def make_trained_tiny(seed: int = 0) -> MildModel:
    """Tiny model with random LoRA B, scales, SMA alphas and E_trans output (all zero/one at init)."""
    model = load_model("tiny")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(marker in name for marker in TRAINED_MARKERS):
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "lora_B" in name else 1.0))
    return model.eval()


@pytest.fixture
def trained_tiny() -> MildModel:
    return make_trained_tiny()
