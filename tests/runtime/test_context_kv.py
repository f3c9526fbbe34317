"""Cross-attention K/V projected once per context: the same outputs as projecting at every step,
the projections run only when the caller's context changes, and the model is left as found."""

from __future__ import annotations

import copy

import pytest
import torch

from mild_export.runtime.context_kv import ContextKVBackend, can_project_once, cross_attentions
from mild_export.runtime.torch_backend import backend_model, torch_backend
from reference.backend import TorchBackend
from reference.branch_attention import BranchAttnProcessor
from reference.merge import merge_model
from reference.pipeline import ErasePipeline
from tests.conftest import make_trained_tiny, requires_gpu, unet_inputs


def unet(backend, inputs):
    out = backend.run("unet", inputs)
    return torch.cat([out["eps_fg"], out["eps_bg"]])


@pytest.fixture
def counted(monkeypatch):
    """How many times any cross-attention projected its context."""
    calls = []
    original = BranchAttnProcessor.context_projections

    def counting(self, attn, context, n_fg):
        calls.append(attn)
        return original(self, attn, context, n_fg)

    monkeypatch.setattr(BranchAttnProcessor, "context_projections", counting)
    return calls


def test_projects_once_per_context_with_the_same_outputs(counted):
    backend = torch_backend(make_trained_tiny(seed=8), torch.device("cpu"), "fp32", "fold")
    cached = backend.inner
    assert isinstance(cached, ContextKVBackend)
    per_step = cached.inner  # the same model, projecting at every call
    layers = len(cross_attentions(backend_model(backend)))
    assert layers == 7  # tiny: one cross-attention per transformer block

    def check(inputs, projections):
        before = len(counted)
        got = unet(cached, inputs)
        assert len(counted) - before == projections
        assert torch.equal(got, unet(per_step, inputs))  # the same GEMMs on the same numbers

    first = unet_inputs(backend_model(backend), n=2, side=8, seed=1)
    check(first, layers)
    for step in range(3):  # the steps of one image: the same context tensors, new latents
        check({**first, "sample_fg": first["sample_fg"] + step}, 0)
    second = unet_inputs(backend_model(backend), n=2, side=8, seed=2)  # the next image
    check(second, layers)
    second["context_bg"].mul_(0.5)  # changed in place: its version counter moved
    check(second, layers)
    third = unet_inputs(backend_model(backend), n=3, side=8, seed=3)  # another shape set
    check(third, layers)
    check(second, 0)  # its shape set still holds its projections
    assert all(p.context_kv is None for _, p in cross_attentions(backend_model(backend)))
    # packed, not views into the fused projection's [K | V | downs] rows
    assert all(t.is_contiguous() for held in cached.projected.values() for kv in held.kv for t in kv)


def test_the_pipeline_erases_as_the_reference_does():
    model = make_trained_tiny(seed=9)
    image, masks = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 64, 64)
    masks[0, 10:40, 5:30], masks[1, 20:50, 35:60] = 1, 1

    def erase(backend):
        return ErasePipeline(backend).erase(image, masks, steps=3, guidance=2.0, prompt="a street").composite

    want = erase(TorchBackend(copy.deepcopy(model)))
    ours = torch_backend(model, torch.device("cpu"), "fp32", "reference")
    assert isinstance(ours.inner, ContextKVBackend)
    assert (erase(ours) - want).abs().max() <= 1e-5


def test_only_a_context_read_as_given_is_projected_once():
    model = merge_model(make_trained_tiny(seed=8))  # used as it is by the backend
    assert can_project_once(model)
    attn, _ = cross_attentions(model)[0]
    attn.norm_cross = True  # a norm this backend does not replicate
    assert not can_project_once(model)
    assert not isinstance(torch_backend(model, torch.device("cpu"), "fp32", "fold").inner, ContextKVBackend)


@pytest.mark.gpu
@requires_gpu
def test_the_projections_replayed_as_a_graph_are_the_projections():
    """On a GPU each shape set's projections are captured as a CUDA graph. A capture runs nothing:
    the first image's K/V are the graph's first replay (missed once: the first image of a shape
    set read unwritten buffers, 10% off, on an H200), the next image's a replay into the same
    buffers."""
    # the UNet eager: a UNet graph captured by the per-call reference below would be replayed
    # for the cached backend too, and read none of its K/V
    backend = torch_backend(make_trained_tiny(seed=8), torch.device("cuda"), "fp16", "fold", cuda_graph=False)
    cached = backend.inner
    for seed in (1, 2):
        inputs = unet_inputs(backend_model(backend), n=2, side=8, seed=seed)
        want = unet(cached.inner, inputs)  # projecting at every call
        assert (unet(cached, inputs) - want).abs().max() <= 1e-3 * want.abs().max(), seed
    assert [p.graph is not None for p in cached.projected.values()] == [True]


@pytest.mark.gpu
@requires_gpu
def test_a_projection_that_cannot_be_captured_runs_eagerly(monkeypatch, caplog):
    """A projection that reads a value back to the host cannot be captured: the warning says so
    and each new context is still projected into the buffers the UNet reads."""
    original = BranchAttnProcessor.context_projections

    def syncing(self, attn, context, n_fg):
        assert context.sum().item() == context.sum().item()  # a device-to-host read: no capture
        return original(self, attn, context, n_fg)

    backend = torch_backend(make_trained_tiny(seed=8), torch.device("cuda"), "fp16", "fold", cuda_graph=False)
    cached = backend.inner
    monkeypatch.setattr(BranchAttnProcessor, "context_projections", syncing)
    for seed in (1, 2):  # the second image refills the first's buffers
        inputs = unet_inputs(backend_model(backend), n=2, side=8, seed=seed)
        want = unet(cached.inner, inputs)  # projecting at every call
        assert (unet(cached, inputs) - want).abs().max() <= 1e-3 * want.abs().max(), seed
    assert [p.graph for p in cached.projected.values()] == [None]
    assert "projected without a CUDA graph: capture failed" in caplog.text
    assert torch.randn(4, device="cuda").isfinite().all()  # the failed capture left the generator usable
