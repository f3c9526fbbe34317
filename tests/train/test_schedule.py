"""Stage schedule: exactly the intended parameter groups get gradients and change; lambda_t per Eq. 4."""

from __future__ import annotations

import pytest
import torch

from reference.train.config import PAPER, Stage, default_stages
from reference.train.schedule import GROUPS, check_stages, lambda_at, stage_at
from tests.train.conftest import fast_config, make_trainer


def test_lambda_follows_the_ramp_formula():
    stages = default_stages(t0=8000, ramp=2000, lam=0.7)
    t0, t1 = 8000, 10000
    for t in (0, 1, 4000, 7999):
        assert lambda_at(stages, t) == 0.0
    for t in (t0, 8500, 9000, 9999, t1):
        assert lambda_at(stages, t) == pytest.approx(0.7 * (t - t0) / (t1 - t0), abs=1e-12)
    for t in (t1 + 1, 15000, 19999):
        assert lambda_at(stages, t) == 0.7


def test_paper_defaults():
    stages = PAPER.stage_list()
    assert (PAPER.learning_rate, PAPER.batch_size, PAPER.max_steps) == (1e-6, 4, 20_000)
    assert (PAPER.lora.rank, PAPER.lora.alpha) == (16, 16.0)
    assert [s.start for s in stages] == [0, 8000, 10000]
    assert [(s.train_fg, s.train_bg, s.shared) for s in stages] == [
        (False, True, True),
        (True, False, False),
        (True, True, True),
    ]
    assert stage_at(stages, 9000)[0] == 1


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ((Stage(5, True, True),), "step 0"),
        ((Stage(0, True, True), Stage(0, True, False)), "increase strictly"),
        ((Stage(0, True, True, lam=(0.0, 1.0)),), "constant"),
    ],
)
def test_bad_stage_lists_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        check_stages(stages)


def snapshot(trainer) -> dict[str, dict[str, torch.Tensor]]:
    return {g: {id(p): p.detach().clone() for p in trainer.groups[g]} for g in GROUPS}


def test_each_stage_trains_exactly_its_groups(tmp_path):
    """Steps 0-1 bg+shared, 2-3 fg only (bg protected: bit-for-bit), 4-5 everything."""
    trainer = make_trainer(tmp_path, fast_config(max_steps=6, t0=2, ramp=2))
    expected = [{"bg", "shared"}] * 2 + [{"fg"}] * 2 + [{"fg", "bg", "shared"}] * 2
    for step, trained in enumerate(expected):
        before = snapshot(trainer)
        record = trainer.step()
        assert set(record["trained"]) == trained, step
        for group in GROUPS:
            params = trainer.groups[group]
            changed = [not torch.equal(p, before[group][id(p)]) for p in params]
            if group in trained:
                # every trained parameter got a gradient; LoRA A of a zero-B adapter may get a zero one
                assert all(p.grad is not None for p in params), (step, group)
                assert sum(changed) > len(params) // 2, (step, group)
            else:
                assert all(p.grad is None for p in params), (step, group)
                assert not any(changed), (step, group)  # bit-for-bit


def test_protected_bg_branch_output_is_unchanged(tmp_path, examples):
    """During the ramp the bg branch's whole function (LoRA, scales, SMA, HMG, E_trans) is frozen."""
    trainer = make_trainer(tmp_path, fast_config(t0=0, ramp=3, stages=(Stage(0, True, False, (0.5, 0.5)),)))
    bg_state = {n: p.detach().clone() for n, p in trainer.named.items() if ".fg" not in n}
    for _ in range(3):
        trainer.step()
    for name, value in bg_state.items():
        assert torch.equal(trainer.named[name], value), name
