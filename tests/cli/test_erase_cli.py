"""mild-erase as a user runs it: files written, sizes kept, bad input reported in one line."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from mild_export.cli.erase import main


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (60, 76, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    for k, (top, left) in enumerate([(5, 5), (20, 40)], start=1):
        mask = np.zeros((60, 76), np.uint8)
        mask[top : top + 25, left : left + 20] = 255
        Image.fromarray(mask).save(tmp_path / f"m{k}.png")
    return tmp_path


def run(photo, *extra):
    out = photo / "out"
    args = [str(photo / "photo.png"), "--mask", str(photo / "m1.png"), "--mask", str(photo / "m2.png")]
    return main([*args, "--steps", "2", "--out", str(out), *extra]), out


def test_writes_composite_background_and_layers_at_the_input_size(photo):
    code, out = run(photo, "--remove", "2")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "background.png",
        "composite.png",
        "layer_1.png",
        "layer_2.png",
    ]
    composite = np.asarray(Image.open(out / "composite.png"))
    assert composite.shape == (60, 76, 3)  # 60x76 is padded to 64x80 and cropped back
    layer = Image.open(out / "layer_2.png")
    assert layer.mode == "RGBA" and np.asarray(layer)[..., 3].sum() == 25 * 20 * 255
    original = np.asarray(Image.open(photo / "photo.png"))
    outside = np.asarray(Image.open(photo / "m2.png")) == 0
    assert np.array_equal(composite[outside], original[outside])  # copy-outside keeps the rest


def test_unknown_instance_in_remove(photo, caplog):
    code, _ = run(photo, "--remove", "1,3")
    assert code == 2
    assert "--remove '1,3': instance 3 does not exist; there are 2 masks (1..2)" in caplog.text


def test_mask_of_another_size(photo, caplog):
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(photo / "m2.png")
    code, _ = run(photo)
    assert code == 2 and "m2.png is 10x10 but the image is 76x60: resize the mask" in caplog.text


def test_onnxruntime_backend_needs_engines(photo, capsys):
    with pytest.raises(SystemExit):
        run(photo, "--backend", "onnxruntime")
    assert "--backend onnxruntime runs exported graphs: give --engines DIR" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["--demo", "--steps", "2", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["input.png", "composite.png", "background.png"]
        + [f"{kind}_{k}.png" for kind in ("mask", "layer") for k in (1, 2, 3)]
    )
    composite = np.asarray(Image.open(out / "composite.png"))
    assert composite.shape == np.asarray(Image.open(out / "input.png")).shape == (64, 64, 3)
    union = np.stack([np.asarray(Image.open(out / f"mask_{k}.png"))[..., 0] > 0 for k in (1, 2, 3)]).any(
        axis=0
    )
    assert union.any() and not union.all()


def test_sma_fold_gives_the_reference_images(photo, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    code, out = run(photo, "--device", "cpu")
    assert code == 0
    reference = np.asarray(Image.open(out / "composite.png")).astype(int)
    code, out = run(photo, "--device", "cpu", "--sma", "fold")
    assert code == 0
    fold = np.asarray(Image.open(out / "composite.png")).astype(int)
    assert "loading model tiny on cpu (SMA: reference)" in caplog.text
    assert "loading model tiny on cpu (SMA: fold)" in caplog.text
    assert np.abs(fold - reference).max() <= 1  # the same math up to float rounding, in 8 bits


def test_sma_kernel_needs_a_gpu(photo, caplog):
    code, _ = run(photo, "--device", "cpu", "--sma", "kernel")
    assert code == 2
    assert "error: --sma kernel runs the plugin's CUDA kernel: give --device cuda, not cpu" in caplog.text


def test_sma_is_the_reference_backends_choice(photo, capsys):
    with pytest.raises(SystemExit):
        run(photo, "--backend", "onnxruntime", "--engines", str(photo), "--sma", "fold")
    err = capsys.readouterr().err
    assert (
        "--sma chooses the SMA form of --backend reference or torch; --backend onnxruntime runs the "
        "exported form" in err
    )


def test_out_that_is_a_file_fails_before_the_model_loads(photo, caplog):
    (photo / "notes.txt").write_text("mine")
    code = main(
        [str(photo / "photo.png"), "--mask", str(photo / "m1.png"), "--out", str(photo / "notes.txt")]
    )
    assert code == 2
    assert f"--out {photo / 'notes.txt'} is a file: choose a folder" in caplog.text
    assert "loading model" not in caplog.text and (photo / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "device, message",
    [
        ("foo", "--device 'foo': give cpu or cuda"),
        ("meta", "--device 'meta': give cpu or cuda"),
        ("cuda", "--device cuda: no CUDA device is visible to PyTorch here; use --device cpu"),
    ],
)
def test_device_is_checked_before_anything_is_written(photo, caplog, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: --device cuda is valid here")
    code, out = run(photo, "--device", device)
    assert code == 2 and f"error: {message}" in caplog.text
    assert not out.exists()  # bad input leaves no empty output folder behind


def test_instance_named_twice_in_remove(photo, caplog):
    code, out = run(photo, "--remove", "1,1")
    assert code == 2
    assert "--remove '1,1': an instance is named twice; name each once" in caplog.text
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--steps", "0", "--steps must be at least 1, got 0"),
        ("--guidance", "-1", "--guidance must be >= 0 (1 turns guidance off), got -1"),
    ],
)
def test_steps_and_guidance_are_checked_with_the_arguments(photo, capsys, option, value, message):
    with pytest.raises(SystemExit) as stop:
        run(photo, option, value)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_model_with_exported_graphs_is_refused(photo, capsys):
    with pytest.raises(SystemExit):
        run(photo, "--backend", "onnxruntime", "--engines", str(photo), "--model", "sd15-inpaint")
    assert (
        "--model chooses the model of --backend reference or torch; --backend onnxruntime runs the graphs "
        "in --engines, exported from their own model" in capsys.readouterr().err
    )


def test_layers_of_an_earlier_run_with_more_people_are_removed(photo, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    out = photo / "out"
    out.mkdir()
    for k in (1, 2, 3):
        (out / f"layer_{k}.png").write_bytes(b"old")
    (out / "layer_notes.png").write_bytes(b"mine")
    code, _ = run(photo)
    assert code == 0
    assert sorted(p.name for p in out.glob("layer_*.png")) == [
        "layer_1.png",
        "layer_2.png",
        "layer_notes.png",
    ]
    assert f"removed layer_3.png, left in {out} by an earlier run" in caplog.text


def test_cpu_with_an_index_is_the_cpu(photo):
    code, out = run(photo, "--device", "cpu:0")
    assert code == 0 and (out / "composite.png").is_file()
