"""DIR/prompts.f32: the text encodings mild-export writes for the C runtime (its manifest entry is
what engines/src/manifest.cpp reads; tests/engines/test_c_api.py reads one back in C++)."""

import numpy as np
import pytest
import torch

from mild_export.export.manifest import Manifest
from mild_export.export.prompt_file import PROMPT_FILE, cached_prompts, encode_prompts, write_prompt_cache
from reference.model import load_model


@pytest.fixture(scope="module")
def tiny_xl():
    return load_model("tiny-xl")


def test_the_empty_prompt_comes_first_and_each_prompt_once():
    assert cached_prompts(None) == [""]
    assert cached_prompts(["a park", "", "a park", "a street"]) == ["", "a park", "a street"]


def test_encodings_are_the_text_encoders_in_float32(tiny_xl):
    got = encode_prompts(tiny_xl, ["", "a park"])
    text, width = tiny_xl.config.text, tiny_xl.config.cross_attention_dim
    for prompt, tensors in got.items():
        assert set(tensors) == {"prompt_embeds", "pooled_prompt_embeds"}  # SDXL's layout: pooled too
        assert list(tensors["prompt_embeds"].shape) == [1, text.max_length, width]
        assert list(tensors["pooled_prompt_embeds"].shape) == [1, text.pooled_dim]
        with torch.no_grad():
            want = tiny_xl.text(**tiny_xl.text.tokenize([prompt]))
        for name, tensor in tensors.items():
            assert tensor.dtype == torch.float32
            torch.testing.assert_close(tensor, want[name], rtol=0, atol=0)
    assert not torch.equal(got[""]["prompt_embeds"], got["a park"]["prompt_embeds"])


def test_the_file_holds_each_tensor_at_its_offset(tmp_path, tiny_xl):
    encodings = encode_prompts(tiny_xl, ["", "a park"])
    manifest = Manifest("tiny-xl", "0" * 64, {}, "fp16", "plugin", 18, {}, [])
    write_prompt_cache(tmp_path, encodings, manifest)
    cache = manifest.engines["prompt_cache"]
    assert cache["file"] == PROMPT_FILE and cache["dtype"] == "float32"
    assert [e["prompt"] for e in cache["entries"]] == ["", "a park"]
    values = np.fromfile(tmp_path / PROMPT_FILE, dtype=np.float32)
    assert values.size == sum(t.numel() for tensors in encodings.values() for t in tensors.values())
    for entry in cache["entries"]:
        for name, where in entry["tensors"].items():
            tensor = encodings[entry["prompt"]][name]
            assert where["shape"] == list(tensor.shape)
            stored = values[where["offset"] : where["offset"] + tensor.numel()].reshape(where["shape"])
            np.testing.assert_array_equal(stored, tensor.numpy())
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, then renamed
