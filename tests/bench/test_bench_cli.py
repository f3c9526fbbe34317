"""mild-bench as a user runs it: the table, the JSON of every timing, the plot; bad input in one line."""

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch._inductor import config as inductor_config

from mild_export.bench import backends
from mild_export.bench.backends import BenchOptions
from mild_export.bench.cases import STAGES, Case, CaseResult, ImageRun, run_case
from mild_export.bench.floor import MatrixRate
from mild_export.bench.kernel_profile import kernel_kind, time_by_kind, top_by_kind
from mild_export.bench.report import paper_ratio, plot, table
from mild_export.cli import bench as bench_cli
from mild_export.cli.bench import main
from mild_export.runtime import torch_backend
from mild_export.runtime.torch_backend import INDUCTOR_TUNING
from reference.config import PRESETS
from tests.conftest import write_unet_config

CASES = {(1, 1.0), (2, 1.0), (1, 7.5), (2, 7.5)}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--model", "tiny", "--backend", "reference", "--instances", "1,2", "--steps", "2"]
    argv += ["--repeats", "1", "--json", str(out / "r.json"), "--plot", str(out / "r.png")]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):  # capsys is per test; this fixture runs once per module
        code = main(argv)
    return code, out, stdout.getvalue()


def test_prints_the_table(report):
    code, _, text = report
    assert code == 0
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("case"))
    for column in (
        "text ms",
        "unet ms",
        "vae dec ms",
        "compose ms",
        "image s",
        "floor s",
        "xfloor",
        "paper s",
    ):
        assert column in header
    for n, cfg in [(1, "no cfg"), (2, "no cfg"), (1, "cfg 7.5"), (2, "cfg 7.5")]:
        row = next(line for line in lines if line.startswith(f"N={n} 64px 2st {cfg}"))
        assert row.split()[-2:] == ["1.91", "-"]  # 64px, 2 steps: no ratio to the paper's 512px, 25 steps
    assert any("Table 5" in line and "1.91 s" in line and "512x512, 25 steps" in line for line in lines)


def test_json_holds_every_case_stage_and_the_environment(report):
    _, out, _ = report
    data = json.loads((out / "r.json").read_text())
    assert set(data) >= {"environment", "settings", "matrix_rate", "paper", "stages", "cases"}
    env = data["environment"]
    assert env["backend"] == "reference" and env["precision"] == "fp32" and env["device"] == "cpu"
    assert env["sma"] == "reference"
    assert env["device_name"] and env["torch"] and env["date"]
    assert data["paper"]["mild_s"] == 1.91 and data["paper"]["sdxl_inpaint_s"] == 1.79
    assert data["stages"] == list(STAGES)
    assert {(c["instances"], c["guidance"]) for c in data["cases"]} == CASES
    assert data["matrix_rate"]["flops_per_s"] > 0
    for case in data["cases"]:
        assert case["resolution"] == 64 and case["steps"] == 2  # the tiny model's own side
        assert len(case["runs"]) == 1
        run = case["runs"][0]
        assert set(run["stages_ms"]) == set(STAGES)
        assert all(run["stages_ms"][s] > 0 for s in STAGES if s != "other")  # "other" is a difference
        assert len(run["unet_steps_ms"]) == 2 and min(run["unet_steps_ms"]) > 0
        assert run["staged_s"] * 1e3 >= sum(run["stages_ms"][s] for s in STAGES if s != "other")
        assert run["image_s"] > 0  # the end-to-end run: its graph calls are not in unet_steps_ms
        assert set(case["flops"]) == {"text_encoder", "conditioner", "vae_encoder", "unet", "vae_decoder"}
        assert min(case["flops"].values()) > 0
        assert case["floor_s"] > 0 and case["ratio_to_floor"] > 1
        assert case["ratio_to_paper"] is None  # not the paper's setting


def test_plot_is_a_png(report):
    _, out, _ = report
    with Image.open(out / "r.png") as image:
        assert image.format == "PNG" and image.size[0] > 100


def one_line_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    return errors[0]


def test_zero_instances(caplog):
    assert main(["--instances", "0"]) == 2
    assert one_line_error(caplog) == "error: --instances '0': every N must be at least 1"


def test_engines_folder_without_manifest(tmp_path, caplog):
    assert main(["--engines", str(tmp_path)]) == 2
    assert "manifest.json not found" in one_line_error(caplog)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--instances", "1,x"], "--instances '1,x': give comma-separated numbers, e.g. 1,2,3,4"),
        (
            ["--resolution", "512-1024"],
            "--resolution '512-1024': give comma-separated numbers, e.g. 512,1024",
        ),
        (["--guidance", "off"], "--guidance 'off': give comma-separated numbers, e.g. 1,7.5"),
        (["--json", "."], "--json . is a folder: give a file name, e.g. bench.json"),
        (["--plot", "."], "--plot . is a folder: give a file name, e.g. bench.png"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--repeats", "0"], "error: --repeats must be at least 1, got 0"),
        (["--warmup", "-1"], "error: --warmup must be at least 0, got -1"),
        (["--resolution", "60"], "resolution 60 is not supported by tiny"),
        (["--backend", "onnxruntime"], "give --engines DIR"),
        (
            ["--sma", "kernel", "--device", "cpu"],
            "--sma kernel runs the plugin's CUDA kernel: give --device cuda, not cpu",
        ),
        (
            ["--engines", ".", "--sma", "fold"],
            "--sma chooses the SMA form of --backend reference or torch; onnxruntime runs the form the "
            "graphs were exported with (mild-export --sma)",
        ),
    ],
)
def test_other_bad_input(argv, message, caplog):
    assert main(argv) == 2
    assert message in one_line_error(caplog)


@pytest.mark.parametrize("scales", ["-1", "1,nan", "inf"])
def test_guidance_scales_are_checked_before_the_model_is_built(scales, caplog):
    """nan and inf passed, and failed in the pipeline after the model was built."""
    assert main(["--guidance", scales]) == 2
    assert one_line_error(caplog) == (
        f"error: --guidance {scales!r}: scales must be finite and >= 0 (1 disables guidance)"
    )
    assert "building model" not in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--instances", "1,3"],
            "--instances 1,3: the graphs serve at most 2: export again with --max-instances 3",
        ),
        (
            ["--resolution", "64,128,256"],
            "--resolution 64,128,256: the graphs serve image sides 64: export again with --resolution 128 "
            "--resolution 256 (beside the sides they serve), or leave --resolution out",
        ),
        (
            ["--guidance", "1,7.5"],
            "--guidance 1,7.5: the graphs were exported without guidance: export again with --guidance, "
            "or leave --guidance at 1",
        ),
    ],
)
def test_a_case_the_graphs_cannot_serve_names_the_export_option(argv, message):
    """The resolution and guidance refusals named no fix, and all three printed Python lists."""
    target = SimpleNamespace(config=PRESETS["tiny"], max_instances=2, resolutions=(64,), guidance=False)
    request = bench_cli.parse_request(bench_cli.parse_args(["--instances", "1", *argv]))
    with pytest.raises(ValueError) as err:
        bench_cli.plan_cases(request, target)
    assert str(err.value) == message


def test_a_side_the_preset_cannot_take_fails_before_it_is_built(caplog):
    assert main(["--model", "tiny", "--resolution", "64,60"]) == 2
    assert one_line_error(caplog).startswith("error: resolution 60 is not supported by tiny")
    assert "building model" not in caplog.text  # SDXL's random weights take a minute on a CPU


def test_a_side_the_model_folder_cannot_take_fails_before_it_loads(tmp_path, caplog):
    folder = write_unet_config(tmp_path / "model")  # no weights: a load fails before any side check
    assert main(["--model", str(folder), "--resolution", "60"]) == 2
    assert one_line_error(caplog).startswith("error: resolution 60 is not supported by sd15-inpaint")


@pytest.mark.parametrize("option", ["--json", "--plot", "--profile"])
def test_an_output_file_that_cannot_be_written_fails_before_the_run(option, tmp_path, caplog):
    """It failed with a traceback at the first write, after the model was built and a case timed."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert main([option, str(blocker / "r.out")]) == 2
    assert one_line_error(caplog) == (
        f"error: {option} {blocker / 'r.out'}: {blocker} is a file, so no folder can be made there: "
        "choose another"
    )
    assert "building model" not in caplog.text


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_an_output_file_in_a_folder_that_takes_no_file(caplog):
    assert main(["--json", "/proc/r.json"]) == 2
    assert one_line_error(caplog).startswith("error: --json /proc/r.json: /proc is not writable (")


def test_sma_fold_is_timed_and_recorded(tmp_path, capsys):
    argv = ["--model", "tiny", "--sma", "fold", "--instances", "1", "--steps", "1", "--guidance", "1"]
    assert main([*argv, "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "r.json")]) == 0
    assert "reference fp32, SMA fold" in capsys.readouterr().out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["environment"]["sma"] == "fold" and len(data["cases"]) == 1


def test_a_run_cut_short_keeps_the_cases_it_finished(tmp_path, monkeypatch):
    """The JSON is rewritten after each case: a GPU session's time limit cut a 1024 matrix in its
    last case and lost all seven before it (call I, bench/RESULTS.md)."""
    timed = []

    def run_then_lose_the_device(backend, case, repeats, warmup):
        if timed:
            raise RuntimeError("CUDA error: device lost")
        timed.append(case)
        return run_case(backend, case, repeats, warmup)

    monkeypatch.setattr(bench_cli, "run_case", run_then_lose_the_device)
    argv = ["--model", "tiny", "--instances", "1,2", "--steps", "1", "--guidance", "1"]
    with pytest.raises(RuntimeError, match="device lost"):
        main([*argv, "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["cases"] == 2
    assert [(c["instances"], c["guidance"]) for c in data["cases"]] == [(1, 1.0)]
    assert data["cases"][0]["median"]["image_s"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left beside it


def test_the_torch_backend_is_profiled(tmp_path, capsys):
    argv = ["--model", "tiny", "--backend", "torch", "--instances", "2", "--steps", "2", "--guidance", "1"]
    assert main([*argv, "--repeats", "1", "--warmup", "1", "--profile", str(tmp_path / "p.txt")]) == 0
    out = capsys.readouterr().out
    assert "torch fp32, SMA fold" in out
    summary = next(line for line in out.splitlines() if line.startswith("N=2 64px 2st no cfg: "))
    assert summary.endswith("ms wall (CPU: no device time)")
    text = (tmp_path / "p.txt").read_text()
    assert summary in text and "aten::convolution" in text and "Self CPU" in text


@pytest.mark.parametrize(
    "name, kind",
    [  # names from the SDXL profiles of call C (bench/RESULTS.md)
        ("nvjet_sm90_hsh_128x64_64x8_2x4_h_bz_bias_TNT", "matmul"),
        ("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", "convolution"),
        ("aten::cudnn_convolution", "convolution"),
        ("void mild::sma::detail::smaForwardMma<__half, MmaConfig<64, 64, 2, 4, 2> >", "attention"),
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64_4x1x1", "attention"),
        ("triton_poi_fused__scaled_dot_product_cudnn_attention_3", "Inductor (Triton)"),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__half, __half>", "layout and copies"),
        ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<c10::Half>", "normalization"),
        ("void at::native::vectorized_elementwise_kernel<8, CUDAFunctor_add<c10::Half> >", "elementwise"),
        ("Memcpy HtoD (Pageable -> Device)", "layout and copies"),
        ("void at::native::indexSelectLargeIndex<c10::Half>", "other"),
    ],
)
def test_device_kernels_are_sorted_by_what_they_do(name, kind):
    assert kernel_kind(name) == kind


def test_device_time_sums_by_kind_largest_first():
    events = [("nvjet_a", 3000.0, 10), ("triton_poi", 500.0, 4), ("nvjet_b", 1000.0, 2), ("memcpy", 250.0, 1)]
    assert time_by_kind(events) == [
        ("matmul", 4.0, 12),
        ("Inductor (Triton)", 0.5, 4),
        ("layout and copies", 0.25, 1),
    ]


def test_each_kinds_costliest_kernels_by_full_name():
    events = [("nvjet_a", 3000.0, 10), ("triton_poi_fused_gelu_mul_7", 500.0, 4), ("nvjet_b", 1000.0, 2)]
    events.append(("nvjet_c", 10.0, 1))
    assert top_by_kind(events, 2) == {
        "matmul": [("nvjet_a", 3.0, 10), ("nvjet_b", 1.0, 2)],
        "Inductor (Triton)": [("triton_poi_fused_gelu_mul_7", 0.5, 4)],
    }


def test_a_compiled_run_records_inductors_tuning(tmp_path, monkeypatch, capsys):
    """PyTorch's TORCHINDUCTOR_* switches change what --compile builds: the JSON and the title say
    which were on. (Compiling itself is the slow test of tests/runtime; skipped here.)"""
    monkeypatch.setattr(torch_backend, "compile_parts", lambda model: None)
    argv = ["--model", "tiny", "--backend", "torch", "--compile", "--instances", "1", "--steps", "1"]
    argv += ["--guidance", "1", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "r.json")]
    with inductor_config.patch(coordinate_descent_tuning=True):
        assert main(argv) == 0
    assert "UNet and VAE compiled, coordinate_descent_tuning" in capsys.readouterr().out
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert settings["compile"] is True
    assert settings["inductor"] == {name: name == "coordinate_descent_tuning" for name in INDUCTOR_TUNING}


def image_run(seconds: float) -> ImageRun:
    return ImageRun(
        image_s=seconds, staged_s=seconds, stages_ms=dict.fromkeys(STAGES, 1.0), unet_steps_ms=[1.0]
    )


@pytest.mark.parametrize(
    ("resolution", "steps", "ratio"), [(512, 25, 0.5), (1024, 25, None), (512, 10, None)]
)
def test_the_paper_ratio_is_given_in_the_papers_setting_only(resolution, steps, ratio):
    result = CaseResult(Case(2, resolution, steps, 1.0), [image_run(0.955)])
    assert paper_ratio(result) == ratio


def test_a_case_whose_repeats_disagree_is_flagged_under_the_table():
    """A busy machine shows as a wide spread of the repeats, not as a median read alone."""
    steady = CaseResult(Case(1, 64, 2, 1.0), [image_run(s) for s in (1.0, 1.02, 1.01)], floor_s=0.1)
    noisy = CaseResult(Case(2, 64, 2, 1.0), [image_run(s) for s in (1.0, 1.5, 1.1)], floor_s=0.1)
    single = CaseResult(Case(1, 64, 2, 7.5), [image_run(1.0)], floor_s=0.1)
    rate = MatrixRate(device="cpu", dtype="float32", size=1024, seconds=0.01, flops_per_s=2e11)
    lines = table([steady, noisy, single], rate).splitlines()
    end = lines[0].index("spread") + len("spread")  # the columns are right-aligned under their names
    assert [line[:end].split()[-1] for line in lines[1:4]] == ["2%", "45%", "-"]
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: N=2 64px 2st no cfg spread over 20%: the machine was busy or its clocks moved; rerun on "
        "an idle machine or with more --repeats before reading those medians"
    ]


def test_a_plot_cut_short_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """The PNG is written under a temporary name and renamed: a failure while drawing (a full disk,
    Ctrl-C) keeps the previous plot and leaves no partial file beside it."""
    from matplotlib.figure import Figure

    def write_half_then_fail(self, target, **kwargs):
        target.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    old = tmp_path / "r.png"
    old.write_bytes(b"the previous plot")
    monkeypatch.setattr(Figure, "savefig", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        plot(old, [CaseResult(Case(1, 64, 1, 1.0), [image_run(1.0)])], "title")
    assert old.read_bytes() == b"the previous plot"
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]


@pytest.mark.parametrize(
    ("exported", "asked", "fix"),
    [("fp16", "fp32", "export again without --fp16 or --bf16"), ("fp32", "bf16", "export again with --bf16")],
)
def test_a_precision_the_graphs_do_not_have_names_the_export_flag(exported, asked, fix, tmp_path):
    """mild-export has no --fp32 flag: fp32 is what it exports without one (the message said --fp32)."""
    manifest = SimpleNamespace(precision=exported)
    options = BenchOptions("tiny", tmp_path, torch.device("cpu"), asked)
    with pytest.raises(ValueError) as err:
        backends._exported("onnxruntime", SimpleNamespace(manifest=manifest), options)
    assert str(err.value) == f"{tmp_path} holds {exported} graphs, not {asked}: drop --precision or {fix}"
