"""Bad dataset folders reach the user as one clear line through mild-train (exit 2), never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mild_export.cli import train as train_cli
from tests.train.conftest import make_folder, write_png


def train(root, run, caplog, *options):
    caplog.clear()
    argv = ["--config", "tiny", "--data", str(root), "--out", str(run), "--steps", "2", "--no-progress"]
    return train_cli.main([*argv, *options]), caplog.text


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


def test_data_that_is_a_file(tmp_path, caplog):
    (tmp_path / "data.zip").write_bytes(b"PK")
    code, text = train(tmp_path / "data.zip", tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    expected = f"error: dataset folder {tmp_path / 'data.zip'} is a file: give the folder that holds images/"
    assert expected in text, text


def bad_annotation(root, kind):
    """One bad per-sample file of the given kind, and the start of the error that names it."""
    if kind == "pose":
        path = root / "pose" / "b.json"
        path.parent.mkdir()
        path.write_text('{"people": 5}')
        return f"error: pose file {path} is not OpenPose JSON (TypeError: 'int' object is not iterable): "
    if kind == "parsing":
        path = root / "parsing" / "c.png"
        write_png(path, np.full((32, 32), 25, dtype=np.uint8))
        return f"error: parsing map {path} has label 25: LIP label ids are 0..19; "
    path = root / "masks" / "d_2.png"
    write_png(path, np.zeros((32, 32), dtype=np.uint8))
    return f"error: mask {path} is empty (no pixel >= 0.5 after scaling to [0, 1]): draw the person in white"


@pytest.mark.parametrize("kind", ["pose", "parsing", "empty mask"])
def test_bad_annotation_fails_before_the_first_step(tmp_path, caplog, kind):
    """Files read only when a sample is drawn are read once when training starts: the error comes
    before step 1 (the run folder is not even made), not at the step that draws the sample."""
    root = make_folder(tmp_path / "data")
    expected = bad_annotation(root, kind)
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert expected in text, text
    assert not (tmp_path / "run").exists()


def test_batch_size_option_and_too_small_a_dataset(tmp_path, caplog):
    three = make_folder(tmp_path / "three", stems=("a", "b", "c"))
    code, text = train(three, tmp_path / "run3", caplog, "--batch-size", "4")
    assert code == 2
    assert (
        "error: the dataset has 3 samples, fewer than one global batch (4 per process x 1 process): "
        "add samples or lower the batch size (mild-train --batch-size)"
    ) in text, text
    one = make_folder(tmp_path / "one", stems=("a",))
    code, text = train(one, tmp_path / "run1", caplog)
    assert code == 2
    assert "error: the dataset has 1 sample, fewer than one global batch (2 per process x 1 process)" in text
    code, text = train(one, tmp_path / "run1", caplog, "--batch-size", "1")
    assert code == 0, text
    assert json.loads((tmp_path / "run1" / "run.json").read_text())["train_config"]["batch_size"] == 1


def test_batch_size_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "mild-train: error: --batch-size must be positive, got 0" in capsys.readouterr().err


def resize_sample(root, stem, size):
    """Rewrite one sample's image, background and masks at `size` x `size` (a consistent sample)."""
    for path in [root / "images" / f"{stem}.png", root / "backgrounds" / f"{stem}.png"]:
        write_png(path, np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8))
    for path in (root / "masks").glob(f"{stem}_*.png"):
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[2:12, 2:12] = 255
        write_png(path, mask)


def test_a_side_not_divisible_by_8_fails_before_the_first_step(tmp_path, caplog):
    """The batch builder would refuse it only at the step that draws it, without naming the file."""
    root = make_folder(tmp_path / "data")
    resize_sample(root, "c", 36)
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert (
        f"error: image {root / 'images' / 'c.png'} is 36x36: training needs sides divisible by 8 (the "
        "VAE's factor); crop or resize it, with its background, masks and parsing map"
    ) in text, text
    assert not (tmp_path / "run").exists()


def test_images_of_two_sizes_need_batch_size_1(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    resize_sample(root, "b", 40)
    code, text = train(root, tmp_path / "run", caplog)
    assert code == 2 and "Traceback" not in text
    assert (
        f"error: image {root / 'images' / 'b.png'} is 40x40 but {root / 'images' / 'a.png'} is 32x32: a "
        "training batch (2 samples) needs one size; resize the images, with their backgrounds, masks and "
        "parsing maps, to one size, or train with --batch-size 1"
    ) in text, text
    code, text = train(root, tmp_path / "run", caplog, "--batch-size", "1")
    assert code == 0, text
