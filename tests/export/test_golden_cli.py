"""`python -m mild_export.golden write|show|check` on a tiny export, as a GPU session runs it."""

import contextlib
import io
import json
import shutil

import pytest

from mild_export.cli.export import main as export
from mild_export.golden import main as golden


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert (
        export(
            [
                "--model",
                "tiny",
                "--no-engines",
                "--resolution",
                "64",
                "--max-instances",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def run(argv):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = golden(argv)
    return code, stdout.getvalue()


def test_write_show_and_check_on_onnxruntime(folder):
    assert run(["write", "--engines", str(folder), "--instances", "1", "--steps", "2"])[0] == 0
    file = folder / "golden" / "n1.mildgold"
    code, text = run(["show", str(file)])
    assert code == 0 and "eps_fg" in text and "composite" in text
    code, text = run(["check", "--engines", str(folder), str(file)])
    assert code == 0, text
    assert f"{file} on onnxruntime (fp32): ok" in text


def test_write_refuses_weights_the_export_was_not_made_from(folder, tmp_path, caplog):
    folder = shutil.copytree(folder, tmp_path / "copy")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, _ = run(["write", "--engines", str(folder), "--instances", "1", "--out", str(folder / "other")])
    assert code == 2
    assert f"are not the ones {folder} was exported from (000000000000): pass --model" in caplog.text
    assert not (folder / "other").exists()
