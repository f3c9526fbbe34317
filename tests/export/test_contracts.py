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
