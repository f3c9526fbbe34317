"""A short tiny training run lowers the loss; accumulation and mixed precision run the same loop."""

from __future__ import annotations

import json

import numpy as np

from reference.train.config import Stage
from tests.train.conftest import fast_config, make_trainer, toy_examples

BOTH = (Stage(0, train_fg=True, train_bg=True, lam=(1.0, 1.0)),)


def test_short_run_lowers_the_loss(tmp_path):
    """Benchmark-style, fixed seed: mean of the last 10 step losses below the first 10 (Eq. 4 total)."""
    config = fast_config(max_steps=40, batch_size=4, learning_rate=1e-2, stages=BOTH)
    trainer = make_trainer(tmp_path, config, data=toy_examples(32, seed=11))
    records = trainer.train()
    losses = np.array([r["loss"] for r in records])
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last < 0.95 * first, (first, last)
    for branch in ("fg", "bg"):
        per_branch = np.array([r[branch] for r in records])
        assert per_branch[-10:].mean() < per_branch[:10].mean(), branch
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 41))
    assert {"loss", "fg", "bg", "lambda", "stage", "lr", "seconds"} <= set(logged[0])


def test_gradient_accumulation_consumes_micro_batches(tmp_path):
    config = fast_config(max_steps=3, batch_size=1, gradient_accumulation=2, stages=BOTH)
    trainer = make_trainer(tmp_path, config)
    trainer.train()
    assert trainer.step_count == 3 and trainer.order.consumed == 6
    steps = {float(state["step"]) for state in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {3.0}  # one AdamW update per 2 micro-batches


def test_bf16_mixed_precision_trains(tmp_path):
    trainer = make_trainer(tmp_path, fast_config(max_steps=2, mixed_precision="bf16", stages=BOTH))
    before = {n: p.detach().clone() for n, p in trainer.named.items()}
    records = trainer.train()
    assert all(np.isfinite(r["loss"]) for r in records)
    assert any(not (p == before[n]).all() for n, p in trainer.named.items())
    assert all(p.dtype == before[n].dtype for n, p in trainer.named.items())  # master weights stay fp32
