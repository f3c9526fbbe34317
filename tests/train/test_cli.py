"""mild-train / mild-merge: end to end on the tiny model, and bad input as one clear line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mild_export.cli import merge as merge_cli
from mild_export.cli import train as train_cli
from reference.merge import merge_model
from reference.model import load_model
from reference.train import checkpoint as ckpt
from tests.reference.test_layered_unet import unet_inputs
from tests.train.conftest import fast_config, make_trainer


@pytest.fixture
def trained_run(tmp_path):
    """A run folder with checkpoints at steps 2, 4 and 5 (both branches trained by the end)."""
    trainer = make_trainer(tmp_path / "run", fast_config(max_steps=5, checkpoint_every=2))
    trainer.train()
    return trainer


def expect_error(caplog, main, argv, *fragments):
    caplog.clear()
    assert main(argv) == 2
    err = caplog.text
    assert "error: " in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_merge_cli_turns_the_latest_checkpoint_into_a_loadable_model(trained_run, tmp_path):
    out = tmp_path / "merged"
    assert merge_cli.main(["--checkpoint", str(trained_run.run_dir), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["step"] == 5 and manifest["base_model"] == "tiny"
    loaded = load_model(out)
    inputs = unet_inputs(n_fg=2, seed=3)
    with torch.no_grad():
        expected = torch.cat(merge_model(trained_run.model).unet(**inputs))
        lora = torch.cat(trained_run.model.unet(**inputs))
        torch.testing.assert_close(torch.cat(loaded.unet(**inputs)), expected, rtol=0, atol=0)
    torch.testing.assert_close(expected, lora, rtol=1e-5, atol=1e-5)


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", [ckpt.WEIGHTS, ckpt.STATE, ckpt.META])
def test_corrupt_checkpoint_is_named(trained_run, tmp_path, caplog, name):
    latest = ckpt.list_checkpoints(trained_run.run_dir)[-1]
    if name == ckpt.META:
        (latest / name).write_text("{not json")
    else:
        corrupt(latest / name)
    run = str(trained_run.run_dir)
    argv = ["--config", "tiny", "--data", str(tmp_path), "--out", run, "--resume"]
    expect_error(caplog, train_cli.main, argv, str(latest / name))
    if name != ckpt.STATE:  # merging reads weights and meta only
        argv = ["--checkpoint", run, "--out", str(tmp_path / "m")]
        expect_error(caplog, merge_cli.main, argv, str(latest / name))


def test_resume_without_checkpoint_and_fresh_run_over_checkpoints(trained_run, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--data", str(tmp_path), "--out", str(empty), "--resume"]
    expect_error(caplog, train_cli.main, argv, "holds no checkpoint")
    argv = ["--data", str(tmp_path), "--out", str(trained_run.run_dir)]
    expect_error(caplog, train_cli.main, argv, "already holds checkpoints", "--resume")
    argv = ["--checkpoint", str(empty), "--out", str(tmp_path / "m")]
    expect_error(caplog, merge_cli.main, argv, "holds no checkpoint")


def test_error_is_one_line_on_stderr(tmp_path):
    """As a user sees it: `mild-train: error: ...`, exit status 2, no traceback."""
    argv = ["--config", "huge", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "mild_export.cli.train", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert (
        "mild-train: error: unknown training configuration 'huge': choose one of paper, tiny" in done.stderr
    )
    assert "Traceback" not in done.stderr
