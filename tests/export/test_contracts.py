"""Graph contracts: every symbol's typical size lies in its range, whatever the limits."""

import pytest

from mild_export.export.contracts import ExportShapes, Range, contracts
from reference.config import ModelConfig


@pytest.mark.parametrize("max_instances", [1, 2, 8])
@pytest.mark.parametrize("guidance", [False, True])
def test_typical_sizes_lie_within_the_limits(max_instances, guidance):
    shapes = ExportShapes(resolutions=(64,), max_instances=max_instances, guidance=guidance)
    for name, contract in contracts(ModelConfig.from_name("tiny"), shapes).items():
        for symbol, r in contract.symbols.items():
            assert r.min <= r.opt <= r.max, (name, symbol, r)


def test_one_instance_traces_the_conditioner_at_two_branches():
    """--max-instances 1: the conditioner serves N = 1 (one fg and the bg mask map), not 3 rows."""
    shapes = ExportShapes(resolutions=(64,), max_instances=1)
    conditioner = contracts(ModelConfig.from_name("tiny"), shapes)["conditioner"]
    assert conditioner.symbols["branches"] == Range(2, 2, 2)
    assert Range(1, 5, 3).opt == 3 and Range(4, 1, 8).opt == 4


@pytest.fixture(scope="module")
def tiny_contracts():
    return contracts(ModelConfig.from_name("tiny"), ExportShapes(resolutions=(64,), max_instances=3))


@pytest.mark.parametrize(
    ("graph", "arrays", "message"),
    [
        (
            "conditioner",
            {"pose_maps": (1, 18, 32, 32), "parsing_maps": (1, 20, 32, 32), "mask_maps": (6, 1, 32, 32)},
            "conditioner: mask_maps axis 0 (branches) is 6, outside the exported range 2..4 (multiple of 1): "
            "export again with --max-instances 5",
        ),
        (
            "vae_decoder",
            {"latents": (2, 4, 16, 16)},
            "vae_decoder: latents axis 2 (height) is 16, outside the exported range 8..8 (multiple of 2): "
            "export again with --resolution 128 (beside the sides it serves)",
        ),
        (
            "vae_encoder",
            {"images": (3, 3, 128, 128)},
            "vae_encoder: images axis 2 (image_height) is 128, outside the exported range 64..64 "
            "(multiple of 8): export again with --resolution 128 (beside the sides it serves)",
        ),
    ],
)
def test_a_shape_outside_the_export_names_the_option_and_its_value(tiny_contracts, graph, arrays, message):
    with pytest.raises(ValueError) as err:
        tiny_contracts[graph].check(arrays)
    assert str(err.value) == message
