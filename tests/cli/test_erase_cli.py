"""mild-erase as a user runs it: files written, sizes kept, bad input reported in one line."""

import logging
import re
import shlex
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from mild_export.cli.erase import main
from mild_export.export.contracts import ExportShapes
from mild_export.export.manifest import Manifest
from reference.config import PRESETS


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


@pytest.mark.parametrize(("extra", "bar"), [((), True), (("--no-progress",), False)])
def test_the_progress_bar_can_be_turned_off(photo, capsys, extra, bar):
    """A bar's redraws fill logs and CI output; --no-progress leaves the log lines alone."""
    assert run(photo, *extra)[0] == 0
    err = capsys.readouterr().err
    assert ("denoising:" in err) == bar, err


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
        ["input.png", "pose.json", "parsing.png", "composite.png", "background.png"]
        + [f"{kind}_{k}.png" for kind in ("mask", "layer") for k in (1, 2, 3)]
    )
    composite = np.asarray(Image.open(out / "composite.png"))
    assert composite.shape == np.asarray(Image.open(out / "input.png")).shape == (64, 64, 3)
    union = np.stack([np.asarray(Image.open(out / f"mask_{k}.png"))[..., 0] > 0 for k in (1, 2, 3)]).any(
        axis=0
    )
    assert union.any() and not union.all()


def test_the_demo_reruns_on_its_files_to_the_same_images(tmp_path, caplog):
    """The demo's input and masks alone gave other images: its pose, parsing and prompt were not
    written. They are, and the demo logs the command that reruns it."""
    caplog.set_level(logging.INFO, logger="mild")
    demo = tmp_path / "demo"
    assert main(["--demo", "--steps", "2", "--out", str(demo)]) == 0
    masks = [f"--mask {demo}/mask_{k}.png" for k in (1, 2, 3)]
    command = (
        f"mild-erase {demo}/input.png {' '.join(masks)} --pose {demo}/pose.json --parsing {demo}/parsing.png "
        "--prompt 'a brown sky over red ground with a blue disc, a beige disc' --out DIR"
    )
    assert f"rerun on the demo's files (edit them, add options): {command}" in caplog.text
    again = tmp_path / "again"
    argv = [*shlex.split(command)[1:-1], str(again), "--steps", "2"]
    assert main(argv) == 0
    for name in ("composite.png", "background.png", "layer_1.png", "layer_2.png", "layer_3.png"):
        assert (again / name).read_bytes() == (demo / name).read_bytes(), name


def test_the_demo_writes_nothing_when_an_option_is_bad(tmp_path, caplog):
    out = tmp_path / "demo"
    assert main(["--demo", "--remove", "5", "--out", str(out)]) == 2
    assert "--remove '5': instance 5 does not exist; there are 3 masks (1..3)" in caplog.text
    assert main(["--demo", "--backend", "onnxruntime", "--engines", str(tmp_path), "--out", str(out)]) == 2
    assert f"{tmp_path}/manifest.json not found" in caplog.text
    assert not out.exists()  # the demo's input.png and masks were written before these checks


def test_says_what_it_wrote_where_and_how_long_it_took(photo, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    code, out = run(photo, "--remove", "2")
    assert code == 0
    assert re.search(
        rf"wrote composite.png, background.png, layer_1..2.png to {re.escape(str(out))} in \d+\.\d s "
        r"\(removed instances 2\)",
        caplog.text,
    )


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
        ("--guidance", "-1", "--guidance must be finite and >= 0 (1 turns guidance off), got -1"),
        ("--guidance", "nan", "--guidance must be finite and >= 0 (1 turns guidance off), got nan"),
        ("--guidance", "inf", "--guidance must be finite and >= 0 (1 turns guidance off), got inf"),
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


@pytest.mark.parametrize(
    "masks, remove, message",
    [
        (1, "0", "--remove '0': instance 0 does not exist (instances count from 1); there is 1 mask (1..1)"),
        (1, "2", "--remove '2': instance 2 does not exist; there is 1 mask (1..1)"),
        (2, "a", "--remove 'a': give comma-separated instance numbers, e.g. 1,3"),
    ],
)
def test_remove_names_the_instances_there_are(photo, caplog, masks, remove, message):
    argv = [str(photo / "photo.png"), "--mask", str(photo / "m1.png")]
    argv += ["--mask", str(photo / "m2.png")] if masks == 2 else []
    assert main([*argv, "--remove", remove, "--out", str(photo / "out")]) == 2
    assert caplog.messages == [f"error: {message}"]


def test_the_same_mask_twice_is_refused(photo, caplog):
    out = photo / "out"
    argv = [str(photo / "photo.png"), "--mask", str(photo / "m1.png"), "--mask", str(photo / "m1.png")]
    assert main([*argv, "--out", str(out)]) == 2
    assert caplog.messages == [
        f"error: mask {photo / 'm1.png'} (--mask 2) is given twice (--mask 1): give one mask per person"
    ]
    assert not out.exists()


def test_sides_are_padded_to_what_the_unet_takes(photo, monkeypatch):
    """tiny's UNet halves the 1/8 latent once: sides pad to multiples of 16 (56 -> 64, not 56, which
    exported graphs refuse even where their profile serves 64), and are cropped back."""
    from reference.pipeline import ErasePipeline

    seen = []
    erase = ErasePipeline.erase

    def spy(self, image, masks, **kwargs):
        seen.append((tuple(image.shape), tuple(masks.shape)))
        return erase(self, image, masks, **kwargs)

    monkeypatch.setattr(ErasePipeline, "erase", spy)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (56, 40, 3), dtype=np.uint8)).save(photo / "small.png")
    mask = np.zeros((56, 40), np.uint8)
    mask[10:30, 10:20] = 255
    Image.fromarray(mask).save(photo / "small_mask.png")
    out = photo / "out"
    argv = [str(photo / "small.png"), "--mask", str(photo / "small_mask.png"), "--steps", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert seen == [((3, 64, 48), (1, 64, 48))]
    assert np.asarray(Image.open(out / "composite.png")).shape == (56, 40, 3)


def write_manifest(folder, resolutions=(64,), max_instances=8, guidance=False):
    """A manifest with no graphs: enough for the checks made before graphs load."""
    folder.mkdir()
    shapes = ExportShapes(resolutions=resolutions, max_instances=max_instances, guidance=guidance)
    config = PRESETS["tiny"].to_dict()
    Manifest("tiny", "0", config, "fp32", "plugin", 18, asdict(shapes), []).write(folder)
    return folder


@pytest.mark.parametrize(
    "shapes, extra, message",
    [
        (
            {"resolutions": (128, 256)},
            [],
            "serves image sides 128..256; this image is 76x60, 80x64 padded: export again with "
            "--resolution 64 --resolution 80 (beside the sides it serves), or resize the image",
        ),
        (
            {"resolutions": (64,)},
            [],
            "serves image sides 64; this image is 76x60, 80x64 padded: export again with "
            "--resolution 80 (beside the sides it serves), or resize the image",
        ),
        (
            {"resolutions": (64, 128), "max_instances": 1},
            [],
            "serves at most 1 person; there are 2 masks: export again with --max-instances 2",
        ),
        (
            {"resolutions": (64, 128)},
            ["--guidance", "3"],
            "was exported without guidance; --guidance 3 needs it: export again with --guidance, or "
            "leave --guidance at 1",
        ),
    ],
)
def test_engines_are_checked_against_the_job_before_they_load(photo, caplog, shapes, extra, message):
    engines = write_manifest(photo / "engines", **shapes)
    code, out = run(photo, "--backend", "onnxruntime", "--engines", str(engines), *extra)
    assert code == 2
    assert caplog.messages == [f"error: --engines {engines} {message}"]  # not "running the graphs"
    assert not out.exists()


def test_engines_alone_run_the_exported_graphs(photo, caplog, monkeypatch):
    """--engines without --backend ran the reference model and ignored the folder; as in
    mild-bench, it means --backend onnxruntime."""
    caplog.set_level(logging.INFO, logger="mild")
    monkeypatch.setattr("mild_export.cli.erase.check_engines", lambda *args: None)  # to reach the backend
    code, out = run(photo, "--engines", str(photo))
    assert code == 2 and not out.exists()
    assert caplog.messages[0] == f"running the graphs of {photo} on ONNX Runtime"


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_engines_beside_a_backend_that_runs_a_model_are_refused(photo, capsys, backend):
    with pytest.raises(SystemExit) as stop:
        run(photo, "--backend", backend, "--engines", str(photo))
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"mild-erase: error: --engines runs exported graphs on --backend onnxruntime or tensorrt; "
        f"--backend {backend} runs the model of --model: drop --engines or --backend {backend} "
        "(see mild-erase --help)\n"
    )


@pytest.mark.parametrize("backend", ["reference", "torch", "onnxruntime"])
def test_cuda_graph_is_the_tensorrt_backends_option(photo, capsys, backend):
    """It was ignored elsewhere: a run that looked like a CUDA-graph timing was not one."""
    engines = [] if backend in ("reference", "torch") else ["--engines", str(photo)]
    with pytest.raises(SystemExit) as stop:
        run(photo, "--backend", backend, *engines, "--cuda-graph")
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"mild-erase: error: --cuda-graph replays the engines' UNet call on --backend tensorrt; --backend "
        f"{backend} has no such option (torch replays CUDA graphs on its own): drop --cuda-graph "
        "(see mild-erase --help)\n"
    )


def test_tensorrt_without_a_gpu_is_refused_before_the_inputs_load(photo, caplog):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    code, out = run(photo, "--backend", "tensorrt", "--engines", str(photo))
    assert code == 2 and not out.exists()
    assert caplog.messages == [
        "error: --backend tensorrt needs an NVIDIA GPU: none visible (torch.cuda.is_available() is "
        "False); use --backend onnxruntime"
    ]
