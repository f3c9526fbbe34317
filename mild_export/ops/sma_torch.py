"""SMA as a torch custom op, so that export sees one opaque call per self-attention.

Its eager implementation is the reference math; its fake implementation gives export the output
shape. Importing this module registers the `custom-op` SMA backend of `reference.sma`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mild_export.ops.schema import SMA
from reference import sma

QUALIFIED_NAME = f"{SMA.domain}::sma"


@torch.library.custom_op(QUALIFIED_NAME, mutates_args=())
def sma_op(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    return sma.attention_reference(q, k, v, m_q, m_k, alpha)


@sma_op.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    return torch.empty_like(q)


def _dispatch(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    # masks and alpha travel in the attention's precision: one type constraint for the node
    return sma_op(q, k, v, m_q.to(q.dtype), m_k.to(q.dtype), alpha.to(q.dtype))


sma.BACKENDS["custom-op"] = _dispatch
OVERLOAD = getattr(torch.ops, SMA.domain).sma.default
