"""Spatially-Modulated Attention (Sec. 3.3, Eq. 8-9) and its equivalent forms.

    q, k, v   [B, H, S, D]   attention inputs
    m_q, m_k  [B, S]         token masks in [0, 1] (1 = inside the branch mask)
    alpha     [H, 2, 2]      learnable bias, alpha[h, s, t] for a query in region s and key in t

Eq. 9 adds alpha[m_i, m_j] to the logits. For soft masks the bias is the bilinear extension
sum_st alpha[s, t] w_s(m_i) w_t(m_j) with w_1(m) = m, w_0(m) = 1 - m. Terms that depend only on
the query row cancel in the softmax, so the bias reduces to beta(m_i) * m_j (DESIGN.md section 5):
that is what the fused kernel computes, and what the `fold` form expresses as plain attention
over Q and K extended by one channel.

The model calls `attention`, which dispatches to the backend chosen with `use_backend`: the
reference math here, the fold form, or a backend registered by the export code (the custom op).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

SMAFunction = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def bias(alpha: Tensor, m_q: Tensor, m_k: Tensor) -> Tensor:
    """Eq. 9's bias, bilinear in the masks: [B, H, Sq, Sk]."""
    w_q = torch.stack([1 - m_q, m_q], dim=-1)  # [B, Sq, 2]
    w_k = torch.stack([1 - m_k, m_k], dim=-1)  # [B, Sk, 2]
    return torch.einsum("bis,hst,bjt->bhij", w_q, alpha, w_k)


def beta(alpha: Tensor, m: Tensor) -> Tensor:
    """beta(m) = (a01 - a00) + m * (a11 - a10 - a01 + a00): [B, H, S] for m [B, S]."""
    a00, a01, a10, a11 = alpha[:, 0, 0], alpha[:, 0, 1], alpha[:, 1, 0], alpha[:, 1, 1]
    return (a01 - a00)[None, :, None] + m[:, None, :] * (a11 - a10 - a01 + a00)[None, :, None]


def reduced_bias(alpha: Tensor, m_q: Tensor, m_k: Tensor) -> Tensor:
    """beta(m_i) * m_j: equal to `bias` up to per-row constants, which softmax ignores."""
    return beta(alpha, m_q)[..., None] * m_k[:, None, None, :]


def attention_reference(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    """Eq. 8-9 as written: softmax(q.k / sqrt(d) + bias) v, the bias computed in fp32 at least."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    b = bias(alpha.to(dtype), m_q.to(dtype), m_k.to(dtype)).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=b)


def attention_fold(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    """Plain attention over q' = [q, beta(m_i) sqrt(D)], k' = [k, m_j], zero-padded to 8 channels.

    Any fused attention kernel runs this form; the scale stays 1/sqrt(D) of the original head.
    V is zero-padded to the same width and the extra output channels (zeros) dropped: flash
    attention takes only Q, K and V of one head size. On an H200 this form runs at about half
    SDPA's speed either way (0.61 ms unpadded, 0.68 padded at B=3 H=10 S=4096, on two machines:
    bench/RESULTS.md); the plugin's kernel is the fast SMA there.
    """
    d = q.shape[-1]
    pad = (-(d + 1)) % 8
    q_extra = (beta(alpha, m_q) * math.sqrt(d)).to(q.dtype)[..., None]
    k_extra = m_k[:, None, :, None].expand(-1, k.shape[1], -1, -1).to(k.dtype)
    q2 = F.pad(torch.cat([q, q_extra], dim=-1), (0, pad))
    k2 = F.pad(torch.cat([k, k_extra], dim=-1), (0, pad))
    v2 = F.pad(v, (0, q2.shape[-1] - v.shape[-1]))
    return F.scaled_dot_product_attention(q2, k2, v2, scale=1.0 / math.sqrt(d))[..., : v.shape[-1]]


BACKENDS: dict[str, SMAFunction] = {"reference": attention_reference, "fold": attention_fold}
_active = "reference"


def attention(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    return BACKENDS[_active](q, k, v, m_q, m_k, alpha)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Route every SMA call to another implementation, e.g. for export or comparison."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"unknown SMA backend {name!r}: choose one of {', '.join(BACKENDS)}")
    previous, _active = _active, name
    try:
        yield
    finally:
        _active = previous
