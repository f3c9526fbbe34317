"""mild-export end to end on the tiny model: files, manifest, reuse, and bad input."""

import json
import logging
import re

import numpy as np
import onnx
import pytest

from mild_export.cli.export import main, parse_resolutions
from mild_export.export import onnx_export
from mild_export.export.prompt_file import encode_prompts
from reference.model import load_model
from tests.conftest import write_unet_config

GRAPHS = {"text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet"}
ONNX_ONLY = ["--model", "tiny", "--no-engines"]  # engine builds are tested in tests/engine


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    args = ["--out", str(out), "--max-instances", "3", "--guidance", "--prompt", "a park"]
    assert main([*ONNX_ONLY, *args]) == 0
    return out


def test_writes_every_graph_and_the_manifest(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert set(manifest["graphs"]) == GRAPHS
    assert manifest["precision"] == "fp32" and manifest["sma"] == "plugin" and manifest["opset"] == 18
    assert manifest["shapes"] == {"resolutions": [64], "max_instances": 3, "guidance": True}
    unet = manifest["graphs"]["unet"]
    assert unet["file"] == "unet.onnx"
    assert unet["profile"]["sample_fg"] == [[1, 9, 8, 8], [4, 9, 8, 8], [6, 9, 8, 8]]  # guidance doubles rows
    assert {"torch", "onnx", "diffusers"} <= set(manifest["tools"])
    for name in GRAPHS:
        onnx.checker.check_model(str(exported / f"{name}.onnx"), full_check=True)
    assert [p.name for p in exported.glob(".*")] == [".mild-export"]  # its mark; no temporary leftovers


def test_the_prompt_file_holds_the_empty_prompt_and_each_prompt(exported):
    cache = json.loads((exported / "manifest.json").read_text())["engines"]["prompt_cache"]
    assert [e["prompt"] for e in cache["entries"]] == ["", "a park"]
    values = np.fromfile(exported / cache["file"], dtype=np.float32)
    want = encode_prompts(load_model("tiny"), ["", "a park"])  # the model as loaded: float32, not cast
    for entry in cache["entries"]:
        where = entry["tensors"]["prompt_embeds"]
        tensor = want[entry["prompt"]]["prompt_embeds"]
        stored = values[where["offset"] : where["offset"] + tensor.numel()].reshape(where["shape"])
        np.testing.assert_array_equal(stored, tensor.numpy())


def test_second_run_reuses_and_force_rebuilds(exported, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    before = {p.name: p.stat().st_mtime_ns for p in exported.glob("*.onnx")}
    assert main([*ONNX_ONLY, "--out", str(exported), "--max-instances", "3", "--guidance"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in exported.glob("*.onnx")} == before
    assert f"graphs: 0 written, 5 up to date in {exported} (fp32); manifest.json written" in caplog.text
    assert re.search(
        rf"done in \d+\.\d s: {re.escape(str(exported))} \(listed in its manifest.json\)", caplog.text
    )
    assert main([*ONNX_ONLY, "--out", str(exported), "--max-instances", "4", "--guidance"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in exported.glob("*.onnx")}
    assert after["unet.onnx"] != before["unet.onnx"]  # wider profile: new contract, new file
    assert after["text_encoder.onnx"] == before["text_encoder.onnx"]  # its contract did not change


def test_a_tampered_graph_is_exported_again(exported):
    unet = exported / "unet.onnx"
    unet.write_bytes(unet.read_bytes()[:1000])
    assert main([*ONNX_ONLY, "--out", str(exported), "--max-instances", "4", "--guidance"]) == 0
    onnx.checker.check_model(str(unet), full_check=True)


def test_unsupported_resolution(tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path), "--resolution", "100"]) == 2
    assert (
        "resolution 100 is not supported by tiny: image sides must be positive multiples of 16" in caplog.text
    )


def test_output_folder_that_cannot_be_written(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--model", "tiny", "--out", str(blocker / "out")]) == 2
    assert (
        f"error: --out {blocker / 'out'}: {blocker} is a file, so no folder can be made there: choose another"
        in caplog.text
    )


def test_opset_the_installed_onnx_cannot_write(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(onnx_export.onnx.defs, "onnx_opset_version", lambda: 17)
    assert main(["--model", "tiny", "--out", str(tmp_path)]) == 2
    assert "writes opset 17 at most, mild-export needs opset 18 for fp32" in caplog.text


def test_model_that_does_not_exist(tmp_path, caplog):
    assert main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a configuration (tiny, tiny-xl, sd15-inpaint, sdxl-inpaint) nor a folder" in caplog.text


def test_resolution_lists_and_ranges():
    assert parse_resolutions(["512", "768-1024"]) == (512, 768, 1024)
    assert parse_resolutions(["512,1024", "512"]) == (512, 1024)
    assert parse_resolutions(None) is None


def test_a_resolution_typo_fails_before_the_model_loads(tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path / "o"), "--resolution", "abc"]) == 2
    assert (
        "--resolution 'abc': give a side in pixels (512), sides (512,1024) or a range (512-1024)"
        in caplog.text
    )
    assert "loading model" not in caplog.text and not (tmp_path / "o").exists()


def test_the_nearest_supported_resolution_is_suggested(tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path / "o"), "--resolution", "60"]) == 2
    assert "resolution 60 is not supported by tiny" in caplog.text and "e.g. 64" in caplog.text
    assert not (tmp_path / "o").exists()
    assert (
        "loading model" not in caplog.text
    )  # a preset's sides are checked before it is built (SDXL: a minute)


def test_out_that_is_a_file(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--model", "tiny", "--out", str(tmp_path / "notes.txt")]) == 2
    assert f"--out {tmp_path / 'notes.txt'} is a file: choose a folder" in caplog.text


def test_a_folder_of_other_files_is_not_exported_into(tmp_path, caplog):
    """Without mild-export's mark or manifest.json the folder is someone else's (a model folder, a home
    folder): its files are left alone unless --force; an earlier export is reused, as before."""
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*ONNX_ONLY, "--out", str(tmp_path)]) == 2
    assert (
        f"error: --out {tmp_path} is not empty and holds no mild-export files: choose a new or "
        "empty folder, or pass --force to export into it" in caplog.text
    )
    assert "loading model" not in caplog.text and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_interrupted_first_export_is_rerun_without_force(tmp_path, monkeypatch, caplog, capsys):
    """Ctrl-C during the UNet's export leaves four graphs and no manifest.json: the folder's mark
    says they are mild-export's, so the rerun needs no --force (it was refused as a user's folder).
    The first run has no progress bar (--no-progress), the rerun has one."""
    from mild_export.export import exporter

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "o"
    with monkeypatch.context() as patch:
        patch.setattr(exporter, "export_unet", interrupt)
        assert main([*ONNX_ONLY, "--out", str(out), "--no-progress"]) == 130
    assert not (out / "manifest.json").exists() and len(list(out.glob("*.onnx"))) == 4
    assert "export:" not in capsys.readouterr().err
    caplog.clear()
    assert main([*ONNX_ONLY, "--out", str(out)]) == 0
    assert "export:" in capsys.readouterr().err
    assert set(json.loads((out / "manifest.json").read_text())["graphs"]) == GRAPHS
    assert "error" not in caplog.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "resolution 60 is not supported by sd15-inpaint: image sides must be positive multiples of 16"),
        (
            {"addition_embed_type": "text_time"},
            "resolution 60 is not supported by sdxl-inpaint: image sides must be positive multiples of 16",
        ),
    ],
)
def test_a_model_folders_sides_are_checked_before_it_loads(changes, message, tmp_path, caplog):
    folder = write_unet_config(tmp_path / "model", **changes)
    assert main(["--model", str(folder), "--out", str(tmp_path / "o"), "--resolution", "64,60"]) == 2
    assert f"error: {message} (the VAE's factor 8 times the UNet's 2), e.g. 64" in caplog.text
    assert "loading model" not in caplog.text and not (tmp_path / "o").exists()


def test_a_merged_folders_sides_are_checked_before_it_loads(merged_folder, tmp_path, caplog):
    (merged_folder / "weights.safetensors").unlink()  # a load would fail on it first
    assert main(["--model", str(merged_folder), "--out", str(tmp_path / "o"), "--resolution", "72"]) == 2
    assert "error: resolution 72 is not supported by tiny: image sides must be positive multiples of 16" in (
        caplog.text
    )
    assert "loading model" not in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--no-engines", "--targets", "sm86"],
            "--targets only shapes engines: drop --targets or --no-engines",
        ),
        (
            ["--no-engines", "--targets", "sm86", "--plugin", "lib.so"],
            "--targets and --plugin only shape engines: drop --targets and --plugin or --no-engines",
        ),
        (
            ["--sma", "fold", "--plugin", "lib.so"],
            "--plugin is for --sma plugin engines; --sma fold engines need no plugin: drop --plugin",
        ),
        (["--targets", ""], "--targets '': '' is not a compute capability"),
    ],
)
def test_engine_options_that_would_change_nothing(argv, message, tmp_path, caplog):
    """They were ignored: an empty --targets built for the default GPUs, --plugin for no plugin."""
    assert main(["--model", "tiny", "--out", str(tmp_path / "o"), *argv]) == 2
    assert f"error: {message}" in caplog.text
    assert "loading model" not in caplog.text and not (tmp_path / "o").exists()


@pytest.fixture()
def merged_folder(tmp_path):
    from reference.merge import merge_model, save_merged
    from reference.model import load_model

    return save_merged(merge_model(load_model("tiny")), tmp_path / "merged", base_model="tiny")


def test_checkpoint_that_does_not_match_the_model(merged_folder, tmp_path, caplog):
    """A merged folder whose weights were changed after mild-merge, then whose weights belong to
    another architecture (its manifest's hash made to agree): both refused by name, exit 2."""
    from safetensors.torch import load_file, save_file

    from reference.files import file_sha256

    weights = merged_folder / "weights.safetensors"
    tensors = load_file(weights)
    tensors["unet.unet.conv_in.weight"] = tensors["unet.unet.conv_in.weight"][:, :5].contiguous()
    save_file(tensors, weights)
    argv = ["--model", str(merged_folder), "--out", str(tmp_path / "o"), "--no-engines"]
    assert main(argv) == 2
    assert (
        f"{weights} is missing or differs from {merged_folder / 'manifest.json'}: run mild-merge again"
        in (caplog.text)
    )
    manifest = json.loads((merged_folder / "manifest.json").read_text())
    manifest["files"]["weights.safetensors"] = file_sha256(weights)
    (merged_folder / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    assert main(argv) == 2
    assert f"{weights} does not fit its manifest's model" in caplog.text
    assert "size mismatch for unet.unet.conv_in.weight" in caplog.text
    assert not (tmp_path / "o" / "unet.onnx").exists()


def test_a_merged_model_folder_is_not_exported_into(merged_folder, tmp_path, caplog):
    """Its manifest.json is mild-merge's, not an export's: the merged weights are not written over."""
    assert main([*ONNX_ONLY, "--out", str(merged_folder)]) == 2
    assert (
        f"error: --out {merged_folder} is not empty and holds no mild-export files: choose a new or "
        "empty folder, or pass --force to export into it" in caplog.text
    )
    assert not list(merged_folder.glob("*.onnx"))


def test_a_merged_model_folder_given_as_an_export_is_named(tmp_path):
    """OnnxRuntimeBackend(merged) and mild-erase --engines merged read it as a broken export."""
    from mild_export.export.manifest import Manifest

    folder = tmp_path
    (folder / "manifest.json").write_text('{"kind": "mild-merged", "format": 1}')
    with pytest.raises(ValueError) as err:
        Manifest.read(folder)
    assert str(err.value) == (
        f"{folder} is a mild-merge model folder, not a mild-export output: run "
        f"mild-export --model {folder} --out DIR and give DIR"
    )
