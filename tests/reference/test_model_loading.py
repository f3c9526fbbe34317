"""Loading models: presets, local diffusers folders, MILD weights that do not match."""

import logging

import pytest
import torch

from reference.config import LoraConfig, ModelConfig
from reference.model import build_model, load_model


def test_tiny_is_the_same_model_every_time():
    a, b = load_model("tiny"), load_model("tiny")
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    other_seed = build_model(ModelConfig.from_name("tiny"), seed=1)
    assert not torch.equal(a.unet.unet.conv_in.weight, other_seed.unet.unet.conv_in.weight)


def test_unknown_model(tmp_path):
    with pytest.raises(
        ValueError, match=r"'nope' is neither a configuration \(tiny, tiny-xl, sd15-inpaint, sdxl-inpaint\)"
    ):
        load_model("nope")


def test_folder_without_unet_config_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "vae").mkdir()
    with pytest.raises(
        ValueError, match=r"unet/config.json is missing: .* must be a diffusers inpainting model"
    ):
        load_model(tmp_path)


def test_mild_weights_of_another_configuration_are_refused(tmp_path):
    tiny = ModelConfig.from_name("tiny")
    path = build_model(tiny.replace(lora=LoraConfig(rank=8, alpha=8.0))).save_mild_weights(tmp_path)
    with pytest.raises(ValueError, match=r"does not match this model .* trained for another base model"):
        build_model(tiny).load_mild_weights(path)


def test_mild_weights_round_trip(tmp_path, trained_tiny):
    path = trained_tiny.save_mild_weights(tmp_path)
    fresh = load_model("tiny")
    fresh.load_mild_weights(path)
    for name, tensor in trained_tiny.mild_state_dict().items():
        assert torch.equal(fresh.mild_state_dict()[name], tensor), name


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_cast_gives_the_vae_its_own_type_and_says_nothing():
    """An SDXL VAE, which overflows fp16, stays float32 (torch.float32 upcast) beside a fp16 model;
    diffusers' warning about modules to keep in float32, with none to keep, is not raised."""
    records = Records()
    diffusers_models = logging.getLogger("diffusers.models.modeling_utils")  # does not propagate
    diffusers_models.addHandler(records)
    try:
        model = load_model("tiny-xl").cast(torch.float16)
    finally:
        diffusers_models.removeHandler(records)
    assert model.unet.unet.conv_in.weight.dtype == torch.float16
    assert {p.dtype for p in model.vae.parameters()} == {torch.float32}
    assert not [m for m in records.messages if "should be kept in float32" in m]
