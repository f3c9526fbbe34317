"""Resume: N steps, stop, resume, M steps == N + M uninterrupted (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import shutil

import torch

from reference.train import checkpoint as ckpt
from tests.train.conftest import fast_config, make_trainer


def test_resume_continues_exactly(tmp_path):
    config = fast_config(max_steps=6, t0=2, ramp=2, checkpoint_every=3, warmup_steps=4)
    straight = make_trainer(tmp_path / "straight", config)
    straight_records = straight.train()

    first = make_trainer(tmp_path / "split", config)
    first.train(max_steps=3)  # crosses the bg-only -> ramp boundary, checkpoint at 3
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    second = make_trainer(tmp_path / "split", config)
    assert second.resume() == 3
    resumed_records = second.train()

    for name, p in straight.named.items():
        assert torch.equal(p, second.named[name]), name
    assert [r["loss"] for r in resumed_records] == [r["loss"] for r in straight_records[3:]]
    logged = [
        json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    ]
    assert logged == [1, 2, 3, 4, 5, 6]
    # optimizer moments and LR schedule came back too
    s1, s2 = straight.optimizer.state_dict(), second.optimizer.state_dict()
    for key, value in s1["state"].items():
        assert torch.equal(value["exp_avg_sq"], s2["state"][key]["exp_avg_sq"])
    assert straight.scheduler.get_last_lr() == second.scheduler.get_last_lr()


def test_resume_drops_the_log_lines_it_trains_again(tmp_path):
    """Killed after step 4 (checkpoint at 2), in the middle of writing step 5's line: the resumed
    run's log holds each step once, in order."""
    make_trainer(tmp_path, fast_config(max_steps=4, checkpoint_every=2)).train()
    shutil.rmtree(ckpt.list_checkpoints(tmp_path)[-1])
    with (tmp_path / "log.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')
    resumed = make_trainer(tmp_path, fast_config(max_steps=3, checkpoint_every=2))
    assert resumed.resume() == 2
    resumed.train()
    logged = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]


def test_checkpoints_are_complete_and_pruned(tmp_path):
    trainer = make_trainer(tmp_path, fast_config(max_steps=6, checkpoint_every=1, keep_checkpoints=2))
    trainer.train()
    found = ckpt.list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["step-00000005", "step-00000006"]
    assert not list((tmp_path / ckpt.CHECKPOINTS).glob(".*"))  # no temporary folder left behind
    loaded = ckpt.load_checkpoint(tmp_path)
    assert loaded.step == 6
    assert set(loaded.weights) == set(trainer.named)
    assert set(loaded.state) == {"optimizer", "scheduler", "rng", "data"}


def test_a_save_killed_midway_leaves_the_last_complete_checkpoint(tmp_path):
    """A kill during a save leaves only a hidden temporary folder: ignored, then cleaned up."""
    trainer = make_trainer(tmp_path, fast_config(max_steps=4, checkpoint_every=2))
    trainer.train()
    stale = tmp_path / ckpt.CHECKPOINTS / ".step-00000006.tmp-99999"
    stale.mkdir()
    (stale / ckpt.WEIGHTS).write_bytes(b"half a file")
    resumed = make_trainer(tmp_path, fast_config(max_steps=6, checkpoint_every=2))
    assert resumed.resume() == 4
    resumed.train()
    assert not stale.exists()
    assert ckpt.load_checkpoint(tmp_path).step == 6


def test_checkpoint_weights_are_readable_as_the_umask_allows(tmp_path):
    """safetensors 0.8 writes its files 0o600; the state beside them (torch.save) follows the umask."""
    old = os.umask(0o022)
    try:
        saved = ckpt.save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {}, {}, keep=1)
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in saved.iterdir()} == {
        ckpt.WEIGHTS: 0o644,
        ckpt.STATE: 0o644,
        ckpt.META: 0o644,
    }
