"""SMA: Eq. 9's bias, its reduced form beta(m_i) * m_j, and the fold form agree."""

import math

import pytest
import torch
import torch.nn.functional as F

from reference import sma


def random_inputs(b=2, h=3, s=37, d=40, soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, s, d, generator=g, dtype=torch.float64) for _ in range(3))
    m = torch.rand(b, s, generator=g, dtype=torch.float64)
    m = m if soft else (m > 0.5).double()
    alpha = torch.randn(h, 2, 2, generator=g, dtype=torch.float64) * 2
    return q, k, v, m, alpha


def explicit_attention(q, k, v, bias):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    return scores.softmax(-1) @ v


def test_binary_masks_give_the_2x2_lookup():
    _, _, _, m, alpha = random_inputs(s=29)
    b = sma.bias(alpha, m, m)
    lookup = alpha[:, m.long()[:, :, None], m.long()[:, None, :]]  # [H, B, S, S]
    assert torch.equal(b, lookup.permute(1, 0, 2, 3))


def test_soft_masks_give_the_bilinear_extension():
    _, _, _, m, alpha = random_inputs(s=11, soft=True)
    b = sma.bias(alpha, m, m)
    i, j, h = 3, 7, 1
    expected = sum(
        alpha[h, s, t] * (m[0, i] if s else 1 - m[0, i]) * (m[0, j] if t else 1 - m[0, j])
        for s in (0, 1)
        for t in (0, 1)
    )
    assert b[0, h, i, j].item() == pytest.approx(expected.item(), rel=1e-12)


def test_zero_alpha_is_plain_attention():
    q, k, v, m, alpha = random_inputs()
    out = sma.attention_reference(q, k, v, m, m, torch.zeros_like(alpha))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(("s", "d"), [(37, 40), (64, 64), (5, 80), (1, 8)])
def test_reduced_bias_and_fold_equal_eq9(soft, s, d):
    q, k, v, m, alpha = random_inputs(s=s, d=d, soft=soft, seed=s + d)
    expected = explicit_attention(q, k, v, sma.bias(alpha, m, m))
    torch.testing.assert_close(
        sma.attention_reference(q, k, v, m, m, alpha), expected, rtol=1e-10, atol=1e-10
    )
    reduced = explicit_attention(q, k, v, sma.reduced_bias(alpha, m, m))
    torch.testing.assert_close(reduced, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sma.attention_fold(q, k, v, m, m, alpha), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d", [40, 63, 64, 80, 128])
def test_fold_hands_attention_one_head_size(d, monkeypatch):
    """Flash attention takes Q, K and V of one head size, a multiple of 8: the fold form pads all three."""
    seen = []

    def spy(q, k, v, **kwargs):
        seen.append((q.shape[-1], k.shape[-1], v.shape[-1]))
        return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q, k, v, m, alpha = random_inputs(s=9, d=d)
    out = sma.attention_fold(q, k, v, m, m, alpha)
    width = {40: 48, 63: 64, 64: 72, 80: 88, 128: 136}[d]  # D + 1 (the fold channel) up to a multiple of 8
    assert seen == [(width, width, width)]
    assert out.shape == v.shape


def test_bias_changes_the_output():
    q, k, v, m, alpha = random_inputs()
    plain = F.scaled_dot_product_attention(q, k, v)
    assert (sma.attention_reference(q, k, v, m, m, alpha) - plain).abs().max() > 1e-2


def test_use_backend_routes_and_restores(monkeypatch):
    """The forms agree to 1e-10, so which one ran is told by a marker each returns, not by values."""
    q, k, v, m, alpha = random_inputs(s=9)
    for name in ("reference", "fold"):
        monkeypatch.setitem(sma.BACKENDS, name, lambda *args, name=name: name)
    assert sma.attention(q, k, v, m, m, alpha) == "reference"
    with sma.use_backend("fold"):
        assert sma.attention(q, k, v, m, m, alpha) == "fold"
    assert sma.attention(q, k, v, m, m, alpha) == "reference"
    with pytest.raises(RuntimeError, match="raised inside"), sma.use_backend("fold"):
        raise RuntimeError("raised inside")
    assert sma.attention(q, k, v, m, m, alpha) == "reference"
    with pytest.raises(ValueError, match="unknown SMA backend 'flash'"), sma.use_backend("flash"):
        pass
