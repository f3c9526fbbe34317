"""The compute floor: FLOPs counted on the meta device are the work the timed pipeline does."""

import pytest
import torch
from torch import nn

from mild_export.bench.cases import Case, run_case
from mild_export.bench.floor import FlopCounter, count_flops, graph_shapes, matrix_rate
from mild_export.bench.timing import TimedBackend
from reference.backend import TorchBackend
from reference.config import PRESETS
from reference.model import load_model


@pytest.fixture(scope="module")
def tiny_counter():
    return FlopCounter(PRESETS["tiny"])


def test_linear_matches_a_hand_count():
    layer = nn.Linear(64, 32)
    assert count_flops(layer, torch.zeros(8, 64)) == 2 * 8 * 64 * 32  # one multiply-add per weight per row


def test_unet_flops_scale_with_the_branch_count(tiny_counter):
    def unet(n):
        return tiny_counter.graph("unet", graph_shapes(PRESETS["tiny"], Case(n, 64, 1, 1.0))["unet"])

    assert unet(3) / unet(1) == pytest.approx(4 / 2, rel=0.01)  # N + 1 rows: 4 against 2


def test_guidance_doubles_the_unet_and_steps_multiply_it(tiny_counter):
    plain = tiny_counter.case(Case(2, 64, 3, 1.0))
    guided = tiny_counter.case(Case(2, 64, 3, 7.5))
    one_step = tiny_counter.case(Case(2, 64, 1, 1.0))
    assert guided["unet"] == pytest.approx(2 * plain["unet"], rel=0.01)
    assert plain["unet"] == 3 * one_step["unet"]
    assert guided["vae_decoder"] == plain["vae_decoder"]  # guidance doubles rows, not layers


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_counted_shapes_are_the_timed_shapes(guidance):
    """The floor is computed from the contracts; the pipeline must run exactly those calls."""
    timed = TimedBackend(TorchBackend(load_model("tiny")))
    case = Case(2, 64, 2, guidance)
    run_case(timed, case, repeats=1, warmup=0)
    expected = graph_shapes(timed.config, case)
    graph_calls = [c for c in timed.calls if c.graph != "compose"]
    assert [c.graph for c in graph_calls].count("unet") == case.steps
    assert {c.graph for c in graph_calls} == set(expected)
    for call in graph_calls:
        assert call.shapes == expected[call.graph], call.graph


@pytest.mark.slow
def test_sdxl_is_counted_without_materialising_weights():
    counter = FlopCounter(PRESETS["sdxl-inpaint"])
    assert all(p.is_meta for p in counter.backend.model.parameters())
    unet = counter.graph("unet", graph_shapes(PRESETS["sdxl-inpaint"], Case(2, 512, 1, 1.0))["unet"])
    # 3 rows of SDXL's UNet at a 64x64 latent: about 1.75 TFLOP each (plus LoRA and SMA)
    assert 4.5e12 < unet < 6.0e12


def test_matrix_rate_on_cpu():
    rate = matrix_rate(torch.device("cpu"), torch.float32, repeats=2)
    assert rate.size == 1024 and rate.dtype == "float32"
    assert rate.flops_per_s == pytest.approx(2 * 1024**3 / rate.seconds)
