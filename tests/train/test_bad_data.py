"""Bad dataset folders reach the user as one clear line through mild-train (exit 2), never a traceback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mild_export.cli import train as train_cli


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder(root, stems=("a", "b", "c", "d"), size=32, instances=2):
    """The dataset layout of DESIGN.md section 2, written by hand (not by the generator)."""
    rng = np.random.default_rng(0)
    for stem in stems:
        write_png(root / "images" / f"{stem}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        write_png(root / "backgrounds" / f"{stem}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for k in range(1, instances + 1):
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[4 * k : 4 * k + 10, 6:20] = 255
            write_png(root / "masks" / f"{stem}_{k}.png", mask)
    return root


def train(root, run, caplog):
    caplog.clear()
    argv = ["--config", "tiny", "--data", str(root), "--out", str(run), "--steps", "2", "--no-progress"]
    return train_cli.main(argv), caplog.text


def test_good_folder_trains(tmp_path, caplog):
    code, text = train(make_folder(tmp_path / "data"), tmp_path / "run", caplog)
    assert code == 0, text
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()


def test_missing_mask_is_named(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    for mask in (root / "masks").glob("b_*.png"):
        mask.unlink()
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert "b" in text and "mask" in text, text


def test_mask_of_another_size_is_named(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    write_png(root / "masks" / "c_2.png", np.zeros((20, 24), dtype=np.uint8))
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert "c_2.png" in text, text


def test_missing_background_is_named(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    (root / "backgrounds" / "d.png").unlink()
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert "d.png" in text and "background" in text, text


@pytest.mark.parametrize("layout", ["no folder", "empty folder", "empty images"])
def test_empty_dataset(tmp_path, caplog, layout):
    root = tmp_path / "data"
    if layout != "no folder":
        root.mkdir()
    if layout == "empty images":
        (root / "images").mkdir()
        (root / "masks").mkdir()
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert str(root) in text, text
