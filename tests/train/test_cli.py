"""mild-train / mild-merge: end to end on the tiny model, and bad input as one clear line (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from mild_export.cli import merge as merge_cli
from mild_export.cli import train as train_cli
from reference.merge import merge_model
from reference.model import load_model
from reference.train import checkpoint as ckpt
from reference.train.trainer import Trainer
from tests.reference.test_layered_unet import unet_inputs
from tests.train.conftest import fast_config, make_folder, make_trainer


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


@pytest.mark.parametrize("earlier", [False, True])
def test_an_interrupted_merge_leaves_the_earlier_folder_and_can_run_again(
    trained_run, tmp_path, caplog, monkeypatch, earlier
):
    """Killed after the weights are written: the earlier merged folder (or none) is left whole, and
    the same command then runs, replacing the half-written files."""
    out = tmp_path / "merged"
    argv = ["--checkpoint", str(trained_run.run_dir), "--out", str(out)]
    if earlier:
        assert merge_cli.main(argv) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def killed(model):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("reference.merge.summarise", killed)
        assert merge_cli.main(argv) == 130
    if earlier:
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    else:
        assert not out.exists()
    assert merge_cli.main(argv) == 0
    inputs = unet_inputs(n_fg=2, seed=3)
    with torch.no_grad():  # the re-run wrote the whole merged model, not the half the kill left
        expected = torch.cat(merge_model(trained_run.model).unet(**inputs))
        torch.testing.assert_close(torch.cat(load_model(out).unet(**inputs)), expected, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "run"]  # no temporary folder left


def test_out_holding_an_export_is_not_overwritten(trained_run, tmp_path, caplog):
    """A mild-export folder has a manifest.json too: only a merged model's manifest makes a folder
    replaceable."""
    export = tmp_path / "engines"
    export.mkdir()
    (export / "manifest.json").write_text('{"graphs": {}}')
    argv = ["--checkpoint", str(trained_run.run_dir), "--out", str(export)]
    expect_error(caplog, merge_cli.main, argv, f"error: {export} is not empty and holds no merged model")
    assert [p.name for p in export.iterdir()] == ["manifest.json"]
    assert (export / "manifest.json").read_text() == '{"graphs": {}}'


def test_a_checkpoint_of_another_lora_rank_is_named(trained_run, tmp_path, caplog):
    """Tensors that match by name but not by shape (meta.json says rank 8, the weights are rank 4):
    one line naming the checkpoint and a tensor, not a RuntimeError from the copy."""
    latest = ckpt.list_checkpoints(trained_run.run_dir)[-1]
    meta = json.loads((latest / ckpt.META).read_text())
    meta["train_config"]["lora"] = {"rank": 8, "alpha": 8.0}
    (latest / ckpt.META).write_text(json.dumps(meta))
    fragments = (
        f"error: checkpoint {latest} does not match model 'tiny' (unet.",
        " is [4, ",
        "): it was trained with another model or LoRA configuration",
    )
    run = str(trained_run.run_dir)
    expect_error(caplog, merge_cli.main, ["--checkpoint", run, "--out", str(tmp_path / "m")], *fragments)
    argv = ["--data", str(make_folder(tmp_path / "data")), "--out", run, "--resume", "--steps", "6"]
    expect_error(caplog, train_cli.main, argv, *fragments)


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", [ckpt.WEIGHTS, ckpt.STATE, ckpt.META])
def test_corrupt_checkpoint_is_named_with_the_one_before_it(trained_run, tmp_path, caplog, name):
    earlier, latest = ckpt.list_checkpoints(trained_run.run_dir)[-2:]
    if name == ckpt.META:
        (latest / name).write_text("{not json")
    else:
        corrupt(latest / name)
    fix = (
        f"delete the folder {latest} to resume from the checkpoint before it, {earlier} "
        f"(mild-merge --checkpoint {earlier} merges that one as it is)"
    )
    run = str(trained_run.run_dir)
    argv = ["--config", "tiny", "--data", str(tmp_path), "--out", run, "--resume"]
    expect_error(caplog, train_cli.main, argv, str(latest / name), fix)
    if name != ckpt.STATE:  # merging reads weights and meta only
        argv = ["--checkpoint", run, "--out", str(tmp_path / "m")]
        expect_error(caplog, merge_cli.main, argv, str(latest / name), fix)


def test_corrupt_only_checkpoint_says_start_again(trained_run, tmp_path, caplog):
    *older, latest = ckpt.list_checkpoints(trained_run.run_dir)
    for folder in older:
        shutil.rmtree(folder)
    corrupt(latest / ckpt.WEIGHTS)
    argv = ["--data", str(tmp_path), "--out", str(trained_run.run_dir), "--resume"]
    expect_error(
        caplog,
        train_cli.main,
        argv,
        f"the run has no checkpoint before it: delete {latest} and start the run again without --resume",
    )


@pytest.mark.parametrize(
    ("option", "value", "what"),
    [("--config", "paper", "configuration"), ("--model", "sdxl-inpaint", "model")],
)
def test_resume_refuses_another_configuration_or_model(trained_run, tmp_path, caplog, option, value, what):
    run = trained_run.run_dir
    argv = ["--data", str(tmp_path), "--out", str(run), "--resume", option, value, "--steps", "2"]
    expect_error(
        caplog,
        train_cli.main,
        argv,
        f"error: {option} {value} differs from the {what} of {run}, tiny: a run folder's {what} is fixed "
        f"when it starts; drop {option} to resume, or start a new run with another --out",
    )


def test_resume_at_or_past_the_steps_says_there_is_nothing_to_train(trained_run, tmp_path, caplog):
    run = trained_run.run_dir
    same = ["--config", "tiny", "--model", "tiny"]  # the run's own: accepted
    for steps, limit in ((["--steps", "2"], "--steps 2"), ([], "its 5 steps")):
        caplog.clear()
        assert train_cli.main(["--data", str(tmp_path), "--out", str(run), "--resume", *same, *steps]) == 0
        expected = (
            f"{run} is at step 5 already, at or past {limit}: nothing to train; raise --steps to continue"
        )
        assert expected in caplog.text, caplog.text
    assert ckpt.verify_checkpoint(run)[1]["step"] == 5


def test_checkpoint_every_zero_means_the_final_checkpoint_only(tmp_path, capsys):
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert train_cli.parse_args([*base, "--checkpoint-every", "0"]).checkpoint_every == 0
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse_args([*base, "--checkpoint-every", "-1"])
    assert exit_.value.code == 2
    expected = (
        "mild-train: error: --checkpoint-every must be 0 (the final checkpoint only) or positive, got -1"
    )
    assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse_args(["--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert (
        "checkpoint every K steps, 0 for the final checkpoint only (default: the configuration's)"
        in help_text
    )


@pytest.mark.parametrize("stop_after", [3, 0])
def test_ctrl_c_says_where_the_run_stands(tmp_path, caplog, monkeypatch, stop_after):
    """Ctrl-C while training: one line naming the step, the last checkpoint and how to go on."""
    original = Trainer.step

    def step(self):
        if self.step_count == stop_after:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "step", step)
    data, run = make_folder(tmp_path / "data"), tmp_path / "run"
    options = ["--steps", "6", "--checkpoint-every", "2", "--no-progress"]
    caplog.clear()
    assert train_cli.main(["--data", str(data), "--out", str(run), *options]) == 130
    if stop_after:
        expected = (
            f"interrupted: at step 4; the last checkpoint is {run / ckpt.CHECKPOINTS / 'step-00000002'} "
            f"(step 2): continue with mild-train --data {data} --out {run} --resume"
        )
    else:
        expected = (
            "interrupted: at step 1; no checkpoint was written yet: run the same command again to start over"
        )
    assert expected in caplog.text, caplog.text
    assert "Traceback" not in caplog.text


def test_a_fresh_run_starts_a_new_log(tmp_path):
    """A run folder left by a run that failed before its first checkpoint: its log is not continued."""
    data, run = make_folder(tmp_path / "data"), tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    assert train_cli.main(["--data", str(data), "--out", str(run), "--steps", "2", "--no-progress"]) == 0
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_resume_without_checkpoint_and_fresh_run_over_checkpoints(trained_run, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--data", str(tmp_path), "--out", str(empty), "--resume"]
    expect_error(caplog, train_cli.main, argv, "holds no checkpoint")
    argv = ["--data", str(tmp_path), "--out", str(trained_run.run_dir)]
    expect_error(caplog, train_cli.main, argv, "already holds checkpoints", "--resume")
    argv = ["--checkpoint", str(empty), "--out", str(tmp_path / "m")]
    expect_error(caplog, merge_cli.main, argv, "holds no checkpoint")


@pytest.mark.parametrize("below", [False, True])
def test_out_that_is_a_file_fails_before_the_model_loads(tmp_path, caplog, monkeypatch, below):
    """--out is checked first: before the dataset is read and the model built, not at the first log line."""
    monkeypatch.setattr(Trainer, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "run" if below else tmp_path / "notes.txt"
    argv = ["--data", str(make_folder(tmp_path / "data")), "--out", str(out), "--steps", "1"]
    for resume in ([], ["--resume"]):
        expected = (
            f"error: --out {out}: {tmp_path / 'notes.txt'} is a file, so no folder can be made there"
            if below
            else f"error: --out {out} is a file: choose a folder"
        )
        expect_error(caplog, train_cli.main, [*argv, *resume], expected)


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


def _record_model(run, model: str) -> None:
    for checkpoint in ckpt.list_checkpoints(run):
        meta_file = checkpoint / ckpt.META
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({**meta, "model": model}))


def test_a_base_model_folder_that_is_gone_is_named(trained_run, tmp_path, caplog):
    """An older run recorded its folder as given: from elsewhere it is gone, and both commands say
    so instead of calling it an unknown model."""
    run = trained_run.run_dir
    _record_model(run, "gone/base")
    gone = "was trained from model folder gone/base, which is not there (a relative path, from the folder"
    expect_error(caplog, merge_cli.main, ["--checkpoint", str(run), "--out", str(tmp_path / "m")], gone)
    expect_error(caplog, train_cli.main, ["--data", str(tmp_path), "--out", str(run), "--resume"], gone)


def test_a_model_folder_is_recorded_whole_and_matched_from_anywhere(
    trained_run, tmp_path, caplog, monkeypatch
):
    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.chdir(tmp_path)
    fresh = train_cli.parse_args(["--data", "d", "--out", str(tmp_path / "new"), "--model", "base"])
    assert train_cli._settings(fresh)[1] == str(base)  # absolute: mild-merge runs from anywhere
    run = trained_run.run_dir
    _record_model(run, str(base))
    argv = ["--data", str(tmp_path), "--out", str(run), "--resume", "--model", "./base", "--steps", "2"]
    assert train_cli.main(argv) == 0, caplog.text  # the same folder, given relative: accepted
    assert "nothing to train" in caplog.text
