"""Text encoders: prompt -> token embeddings (and SDXL's pooled embedding).

The tiny model uses a byte-level tokenizer (no vocabulary files exist offline) in front of a
small CLIP text transformer; real models load CLIP tokenizers and encoders from a local
diffusers folder. SDXL concatenates the penultimate hidden states of its two encoders and takes
the pooled, projected output of the second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from reference.config import EncoderSpec, TextConfig


class ByteTokenizer:
    """UTF-8 bytes as token ids, framed by BOS/EOS and padded: enough for the tiny model."""

    bos, eos, pad = 256, 257, 258
    vocab_size = 259

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, prompts: list[str]) -> Tensor:
        rows = []
        for prompt in prompts:
            body = list(prompt.encode("utf-8"))[: self.max_length - 2]
            ids = [self.bos, *body, self.eos]
            rows.append(ids + [self.pad] * (self.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.int64)


class ClipTokenizer:
    """A CLIP tokenizer from a local folder, padded to the model's fixed length."""

    def __init__(self, folder: Path, max_length: int):
        from transformers import CLIPTokenizer

        self.inner = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.max_length = max_length

    def __call__(self, prompts: list[str]) -> Tensor:
        out = self.inner(
            prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        return out.input_ids


def _clip_config(spec: EncoderSpec, text: TextConfig, vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=4 * spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        max_position_embeddings=text.max_length,
        projection_dim=spec.projection or spec.hidden,
        hidden_act="gelu",
        bos_token_id=ByteTokenizer.bos,
        eos_token_id=ByteTokenizer.eos,
        pad_token_id=ByteTokenizer.pad,
    )


class TextEncoder(nn.Module):
    """Tokenizers plus CLIP text transformers; `forward` takes the ids of every encoder."""

    def __init__(self, config: TextConfig, encoders: list[nn.Module], tokenizers: list):
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleList(encoders)
        self.tokenizers = tokenizers

    @classmethod
    def random(cls, config: TextConfig) -> TextEncoder:
        """Random weights and byte tokenizers: the tiny model, or a real layout for timing."""
        encoders = []
        for spec in config.encoders:
            model_cls = CLIPTextModelWithProjection if spec.projection else CLIPTextModel
            clip = _clip_config(spec, config, ByteTokenizer.vocab_size)
            encoders.append(model_cls(clip).eval())
        tokenizers = [ByteTokenizer(config.max_length) for _ in config.encoders]
        return cls(config, encoders, tokenizers)

    @classmethod
    def from_folder(cls, config: TextConfig, folder: Path) -> TextEncoder:
        suffixes = ["", "_2"][: len(config.encoders)]
        encoders, tokenizers = [], []
        for suffix, spec in zip(suffixes, config.encoders, strict=True):
            model_cls = CLIPTextModelWithProjection if spec.projection else CLIPTextModel
            encoders.append(
                model_cls.from_pretrained(
                    folder, subfolder=f"text_encoder{suffix}", local_files_only=True
                ).eval()
            )
            tokenizers.append(ClipTokenizer(folder / f"tokenizer{suffix}", config.max_length))
        return cls(config, encoders, tokenizers)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return {input_name(i): tok(prompts) for i, tok in enumerate(self.tokenizers)}

    def forward(self, **input_ids: Tensor) -> dict[str, Tensor]:
        states, pooled = [], None
        for i, encoder in enumerate(self.encoders):
            out = encoder(input_ids[input_name(i)], output_hidden_states=self.config.penultimate)
            states.append(out.hidden_states[-2] if self.config.penultimate else out.last_hidden_state)
            pooled = getattr(out, "text_embeds", None)
        result = {"prompt_embeds": torch.cat(states, dim=-1)}
        if self.config.pooled_dim:
            result["pooled_prompt_embeds"] = pooled
        return result


def save_tokenizers(text: TextEncoder, folder: Path) -> None:
    """CLIP tokenizers travel with exported graphs; byte tokenizers need no files."""
    for i, tokenizer in enumerate(text.tokenizers):
        if isinstance(tokenizer, ClipTokenizer):
            tokenizer.inner.save_pretrained(str(folder / tokenizer_folder(i)))


def load_tokenizers(config: TextConfig, folder: Path) -> list:
    return [
        ClipTokenizer(folder / tokenizer_folder(i), config.max_length)
        if (folder / tokenizer_folder(i)).is_dir()
        else ByteTokenizer(config.max_length)
        for i in range(len(config.encoders))
    ]


def tokenizer_folder(index: int) -> str:
    return "tokenizer" if index == 0 else f"tokenizer_{index + 1}"


def input_name(index: int) -> str:
    return "input_ids" if index == 0 else f"input_ids_{index + 1}"
