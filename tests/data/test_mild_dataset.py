"""The dataset folder: mild-synth writes it, MildDataset reads back the same arrays, bad folders
are named, resize/crop keeps masks, parsing and keypoints aligned, instance subsets keep the union."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from mild_export.cli import synth as synth_cli
from reference.data.dataset import MildDataset
from reference.data.folder import write_prompts, write_sample
from reference.data.synth import make_sample


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    assert synth_cli.main(["--count", "6", "--out", str(root), "--seed", "3", "--no-progress"]) == 0
    return root


def copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "data")


def test_round_trip_gives_the_generated_arrays(synth_folder):
    dataset = MildDataset(synth_folder, train=True, max_instances=10)
    assert len(dataset) == 6
    for i in range(6):
        expected = make_sample(synth_cli.sample_seed(3, i), size=64, n_figures=(1, 3))
        got = dataset[i]
        assert got.stem == f"{i:06d}"
        for name in ("image", "background", "masks", "keypoints", "parsing"):
            a, b = getattr(got, name), getattr(expected, name)
            assert a.shape == b.shape and np.array_equal(a, b), name
        assert got.masks.dtype == bool and got.keypoints.dtype == np.float32 and got.parsing.dtype == np.uint8
        assert got.prompt == expected.prompt


def test_same_command_same_bytes(synth_folder, tmp_path):
    again = tmp_path / "again"
    assert synth_cli.main(["--count", "6", "--out", str(again), "--seed", "3", "--no-progress"]) == 0
    for path in sorted(p for p in synth_folder.rglob("*") if p.is_file()):
        assert path.read_bytes() == (again / path.relative_to(synth_folder)).read_bytes(), path


def test_missing_mask_is_named(synth_folder, tmp_path):
    root = copy(synth_folder, tmp_path)
    for mask in (root / "masks").glob("000002_*.png"):
        mask.unlink()
    with pytest.raises(ValueError, match=r"000002\.png has no mask: add .*masks/000002_1\.png"):
        MildDataset(root)


def test_gap_in_mask_numbers_is_named(tmp_path):
    root = tmp_path / "data"
    write_sample(root_with_folders(root), "a", make_sample(1, n_figures=3))
    (root / "masks" / "a_2.png").unlink()
    with pytest.raises(
        ValueError, match=r"no mask .*masks/a_2\.png: number the masks 1, 2, \.\.\. without gaps"
    ):
        MildDataset(root)


def test_missing_background_is_named_for_training_only(synth_folder, tmp_path):
    root = copy(synth_folder, tmp_path)
    (root / "backgrounds" / "000004.png").unlink()
    with pytest.raises(
        ValueError, match=r"000004\.png has no clean background: training needs .*backgrounds/000004\.png"
    ):
        MildDataset(root, train=True)
    dataset = MildDataset(root, train=False)
    assert dataset[4].background is None and dataset[3].background is not None


def test_mask_of_another_size_is_named(synth_folder, tmp_path):
    root = copy(synth_folder, tmp_path)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "masks" / "000001_1.png")
    with pytest.raises(ValueError, match=r"mask .*000001_1\.png is 24x20 but the image 000001\.png is 64x64"):
        MildDataset(root)


@pytest.mark.parametrize("layout", ["no folder", "no images", "empty images"])
def test_empty_folder_is_named(tmp_path, layout):
    root = tmp_path / "data"
    if layout != "no folder":
        root.mkdir()
    if layout == "empty images":
        (root / "images").mkdir()
    with pytest.raises(ValueError, match=str(root)):
        MildDataset(root)


def test_bad_prompt_line_is_named(synth_folder, tmp_path):
    root = copy(synth_folder, tmp_path)
    with (root / "prompts.jsonl").open("a") as f:
        f.write("not json\n")
    with pytest.raises(ValueError, match=r"prompts\.jsonl line 7 is not"):
        MildDataset(root)


def root_with_folders(root):
    for name in ("images", "backgrounds", "masks", "pose", "parsing"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def wide_sample(seed):
    """A 64x128 sample: the synthetic scene beside its own background (no one on the right)."""
    s = make_sample(seed, n_figures=3)
    s.image = np.concatenate([s.image, s.background], axis=1)
    s.background = np.concatenate([s.background, s.background], axis=1)
    s.masks = np.concatenate([s.masks, np.zeros_like(s.masks)], axis=2)
    s.parsing = np.concatenate([s.parsing, np.zeros_like(s.parsing)], axis=1)
    return s


def test_resize_and_crop_keep_alignment(tmp_path):
    root = root_with_folders(tmp_path / "data")
    original = wide_sample(2)
    write_sample(root, "w", original)
    write_prompts(root, [("w", "wide")])
    full = MildDataset(root, max_instances=10)[0]
    resized_image = np.asarray(Image.fromarray(full.image).resize((64, 32), Image.Resampling.BICUBIC))
    for epoch in range(4):
        dataset = MildDataset(root, size=32, max_instances=10, seed=epoch)
        got = dataset[0]
        assert got.image.shape == got.background.shape == (32, 32, 3) and got.parsing.shape == (32, 32)
        lefts = [x for x in range(33) if np.array_equal(resized_image[:, x : x + 32], got.image)]
        assert lefts, "the crop is not a window of the resized image"
        left = lefts[0]
        masks = [
            np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((64, 32), Image.Resampling.NEAREST))[
                :, left : left + 32
            ]
            > 127
            for m in original.masks
        ]
        alive = [k for k, m in enumerate(masks) if m.any()]
        assert np.array_equal(got.masks, np.stack([masks[k] for k in alive]))
        union = got.masks.any(axis=0)
        assert (got.parsing[~union] == 0).all() and (got.parsing[union] > 0).all()
        expected = original.keypoints[alive].copy()
        expected[..., 0] = expected[..., 0] * 0.5 - left
        expected[..., 1] *= 0.5
        inside = (expected[..., 2] > 0) & (expected[..., 0] >= 0) & (expected[..., 0] < 32)
        expected[~inside] = 0
        np.testing.assert_allclose(got.keypoints, expected, rtol=0, atol=1e-5)
        assert got.prompt == "wide"


def test_centre_crop_for_evaluation_is_fixed(tmp_path):
    root = root_with_folders(tmp_path / "data")
    write_sample(root, "w", wide_sample(4))
    first = MildDataset(root, train=False, size=32, seed=0)[0]
    second = MildDataset(root, train=False, size=32, seed=9)[0]
    assert np.array_equal(first.image, second.image) and np.array_equal(first.masks, second.masks)


def test_instance_subsets(tmp_path):
    root = root_with_folders(tmp_path / "data")
    samples = [make_sample(seed, n_figures=4) for seed in range(3)]
    for i, s in enumerate(samples):
        write_sample(root, f"s{i}", s)
    for max_instances in (1, 2, 3, 4, 6):
        dataset = MildDataset(root, max_instances=max_instances, seed=1)
        for i, s in enumerate(samples):
            got = dataset[i]
            assert len(got.masks) == len(got.keypoints) == min(4, max_instances)
            assert np.array_equal(got.masks.any(axis=0), s.masks.any(axis=0))  # no person unmasked
            assert got.masks.sum(axis=(1, 2)).min() > 0
    dataset = MildDataset(root, max_instances=2, seed=1)
    draws = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        a, b = dataset[0], dataset[0]
        assert np.array_equal(a.masks, b.masks)  # the same (seed, epoch, index): the same subset
        draws.add(a.masks.tobytes())
    assert len(draws) > 1  # new epochs, new subsets


def test_cli_refuses_a_non_empty_folder_without_force(synth_folder, tmp_path, caplog):
    root = copy(synth_folder, tmp_path)
    (root / "notes.txt").write_text("mine")
    argv = ["--count", "2", "--out", str(root), "--no-progress"]
    assert synth_cli.main(argv) == 2
    assert f"--out {root} is not empty: choose a new folder, or pass --force" in caplog.text
    assert synth_cli.main([*argv, "--force"]) == 0
    assert len(MildDataset(root)) == 2 and (root / "notes.txt").read_text() == "mine"


def test_cli_ctrl_c_says_what_was_written_and_how_to_finish(tmp_path, caplog, monkeypatch):
    """Interrupted at the third sample: the two written are counted, and --force writes it whole."""
    out = tmp_path / "data"
    real = synth_cli.sample_seed

    def third_is_interrupted(seed, index):
        if index == 2:
            raise KeyboardInterrupt
        return real(seed, index)

    argv = ["--count", "4", "--out", str(out), "--no-progress"]
    with monkeypatch.context() as patch:
        patch.setattr(synth_cli, "sample_seed", third_is_interrupted)
        assert synth_cli.main(argv) == 130
    expected = (
        f"interrupted: 2 of 4 samples written to {out}, without its prompts.jsonl: not a dataset yet; "
        "run the same command with --force to write it whole (the samples are the same)"
    )
    assert expected in caplog.text, caplog.text
    assert synth_cli.main([*argv, "--force"]) == 0
    assert len(MildDataset(out)) == 4


def test_cli_out_below_a_file(tmp_path, caplog):
    """No folder can be made below a file: one line before any sample is drawn, not a traceback."""
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "data"
    assert synth_cli.main(["--count", "2", "--out", str(out), "--no-progress"]) == 2
    expected = f"error: --out {out}: {tmp_path / 'notes.txt'} is a file, so no folder can be made there"
    assert expected in caplog.text, caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "bad", [["--figures", "3-1"], ["--figures", "x"], ["--size", "60"], ["--count", "0"]]
)
def test_cli_bad_arguments(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main(["--count", "2", "--out", str(tmp_path / "o"), *bad])
    assert exit_info.value.code == 2
    assert "mild-synth: error:" in capsys.readouterr().err


@pytest.mark.parametrize("ghosts", [("ghost",), ("ghost", "spook")])
def test_masks_without_an_image_are_counted(synth_folder, tmp_path, caplog, ghosts):
    root = copy(synth_folder, tmp_path)
    for ghost in ghosts:
        shutil.copy(root / "masks" / "000001_1.png", root / "masks" / f"{ghost}_1.png")
    caplog.set_level(logging.INFO, logger="mild")
    MildDataset(root)
    count = "1 stem" if len(ghosts) == 1 else f"{len(ghosts)} stems"
    assert f"{root / 'masks'}: masks of {count} without an image are ignored (ghost)" in caplog.text
