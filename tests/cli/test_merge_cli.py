"""mild-merge's checks of its paths, made before a training model is loaded (a real merge runs in
tests/train/test_cli.py)."""

from __future__ import annotations

import pytest

from mild_export.cli.merge import main


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    return tmp_path / "run"


def test_a_checkpoint_path_that_does_not_exist(tmp_path, caplog):
    assert main(["--checkpoint", str(tmp_path / "nosuch"), "--out", str(tmp_path / "merged")]) == 2
    assert (
        f"error: --checkpoint {tmp_path / 'nosuch'} does not exist: give a mild-train run folder or one of "
        "its checkpoints/step-*/ folders" in caplog.text
    )


def test_out_that_is_a_file(run_dir, tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--checkpoint", str(run_dir), "--out", str(tmp_path / "notes.txt")]) == 2
    assert f"error: --out {tmp_path / 'notes.txt'} is a file: choose a folder" in caplog.text


def test_out_holding_other_files_is_not_overwritten(run_dir, tmp_path, caplog):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "weights.safetensors").write_bytes(b"not ours")
    assert main(["--checkpoint", str(run_dir), "--out", str(tmp_path / "mine")]) == 2
    assert (
        f"error: {tmp_path / 'mine'} is not empty and holds no merged model: choose a new --out (a merged "
        "model folder is replaced)" in caplog.text
    )
    assert (tmp_path / "mine" / "weights.safetensors").read_bytes() == b"not ours"


def test_a_run_without_checkpoints_is_one_line(run_dir, tmp_path, caplog):
    """Found before the training model loads: no 'merging' line ahead of the error."""
    assert main(["--checkpoint", str(run_dir), "--out", str(tmp_path / "merged")]) == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"error: {run_dir} holds no checkpoint (no checkpoints/step-*/): train with mild-train first"
    ]
