"""Loading a local diffusers inpainting folder (SD1.5 layout, shrunk) without any download."""

import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mild_export.export.contracts import image_multiple
from reference.backend import TorchBackend
from reference.config import ModelConfig
from reference.model import declared_config, load_model
from reference.pipeline import ErasePipeline

TINY = ModelConfig.from_name("tiny")
WORDS = ["a", "street", "park", "person"]


def write_tokenizer(folder):
    """A minimal CLIP BPE vocabulary: whole words only, enough to tokenize test prompts."""
    folder.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{w}</w>": i + 2 for i, w in enumerate(WORDS)}}
    letters = sorted({c for w in WORDS for c in w})
    for c in letters:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(f"{c}</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(str(folder))
    return len(vocab)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15-small")
    torch.manual_seed(11)  # not the tiny model's seed: its weights cannot pass for the folder's
    UNet2DConditionModel(**TINY.unet).save_pretrained(root / "unet")
    AutoencoderKL(**TINY.vae, scaling_factor=0.18215).save_pretrained(root / "vae")
    vocab = write_tokenizer(root / "tokenizer")
    clip = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(clip).save_pretrained(root / "text_encoder")
    return root


def folder_weights(folder, part):
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_loads_the_folder_and_runs_the_pipeline(folder):
    model = load_model(folder)
    assert model.config.name == "sd15-inpaint" and model.config.latent_scale == pytest.approx(0.18215)
    assert model.config.cross_attention_dim == 32
    # the folder's own weights, every tensor (the UNet's projections now under peft's base_layer)
    unet = {n.replace(".base_layer", ""): w for n, w in model.unet.unet.state_dict().items()}
    for part, loaded in [("unet", unet), ("vae", model.vae.state_dict())]:
        for name, saved in folder_weights(folder, part).items():
            torch.testing.assert_close(loaded[name], saved, rtol=0, atol=0, msg=f"{part} {name}")
    encoder = model.text.encoders[0].state_dict()
    for name, saved in folder_weights(folder, "text_encoder").items():
        torch.testing.assert_close(encoder[name], saved, rtol=0, atol=0, msg=f"text_encoder {name}")
    image, masks = torch.rand(3, 64, 64), torch.zeros(1, 64, 64)
    masks[0, 10:40, 20:44] = 1
    out = ErasePipeline(TorchBackend(model)).erase(image, masks, steps=1, prompt="a person")
    assert out.composite.shape == (3, 64, 64) and torch.isfinite(out.composite).all()


def test_mild_weights_in_the_folder_are_loaded(folder, caplog):
    model = load_model(folder)
    assert "mild/weights.safetensors not found: MILD modules are untrained" in caplog.text
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "sma_alpha" in n).fill_(0.5)
    model.save_mild_weights(folder)
    again = load_model(folder)
    assert next(p for n, p in again.named_parameters() if "sma_alpha" in n).eq(0.5).all()
    (folder / "mild" / "weights.safetensors").unlink()


def test_missing_parts_are_named(folder, tmp_path):
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "config.json").write_text((folder / "unet" / "config.json").read_text())
    with pytest.raises(
        ValueError, match="lacks vae, text_encoder, tokenizer: copy the complete diffusers folder"
    ):
        load_model(partial)


def test_the_declared_configuration_is_the_loaded_ones_where_image_sides_are_decided(folder):
    """What mild-export and mild-bench check --resolution against before the weights load."""
    declared, loaded = declared_config(folder), load_model(folder).config
    assert declared.name == loaded.name == "sd15-inpaint"
    levels = TINY.unet["down_block_types"]
    assert declared.unet["down_block_types"] == loaded.unet["down_block_types"] == levels
    assert image_multiple(declared) == image_multiple(loaded) == 16


def test_an_unreadable_unet_configuration_is_named(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json could not be read \(.*\): copy the unet folder again"):
        declared_config(tmp_path)
