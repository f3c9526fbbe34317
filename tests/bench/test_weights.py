"""mild-bench's UNet weight report: the export's weights against one UNet of the architecture."""

import contextlib
import io
import json
import shutil

import pytest

from mild_export.bench.weights import graph_weight_bytes, unet_params, unet_weights
from mild_export.cli.bench import main as bench
from mild_export.cli.export import main as export
from reference.branch_attention import BranchLinear
from reference.merge import merge_model, save_merged
from tests.conftest import make_trained_tiny

SMALLEST = ["--no-engines", "--resolution", "16", "--max-instances", "1"]


@pytest.fixture(scope="module")
def model():
    return make_trained_tiny(seed=3)  # random LoRA sets: no two weight tensors alike


@pytest.fixture(scope="module")
def folders(model, tmp_path_factory):
    merged = save_merged(merge_model(model), tmp_path_factory.mktemp("m") / "merged", base_model="tiny")
    out = {}
    for form in ("low-rank", "full"):
        out[form] = tmp_path_factory.mktemp(form)
        assert export(["--model", str(merged), *SMALLEST, "--bg-weights", form, "--out", str(out[form])]) == 0
    return out


def test_low_rank_saves_exactly_the_bg_set_less_its_factors(model, folders):
    rank = 2 * model.config.lora.rank
    projections = [m for m in merge_model(model).unet.modules() if isinstance(m, BranchLinear)]
    bg_set = sum(p.weight_bg.numel() for p in projections)
    factors = sum(rank * sum(p.weight_fg.shape) for p in projections)
    full, low = (graph_weight_bytes(folders[f] / "unet.onnx") for f in ("full", "low-rank"))
    assert full - low == 4 * (bg_set - factors)
    base = [p for n, p in model.unet.unet.named_parameters() if "lora_" not in n and ".processor." not in n]
    assert unet_params(model.config) == sum(p.numel() for p in base)


def test_report_line_and_json(model, folders, tmp_path):
    weights = unet_weights(folders["low-rank"], model.config, "fp32")
    assert list(weights.held) == ["unet.onnx"]  # --no-engines: no unet.plan
    ratio = weights.held["unet.onnx"] / weights.one_unet_bytes
    # the exporter stores identical tensors (LayerNorm ones, zero biases) once: a little under 1 + factors
    assert 0.95 < ratio < 1.2
    report = tmp_path / "r.json"
    stdout = io.StringIO()
    argv = ["--engines", str(folders["low-rank"]), "--instances", "1", "--steps", "1", "--repeats", "1"]
    with contextlib.redirect_stdout(stdout):
        assert bench([*argv, "--warmup", "0", "--json", str(report)]) == 0
    assert weights.line() in stdout.getvalue()
    assert f"unet.onnx {ratio:.3f}x" in weights.line() and "(target: at most 1.2x)" in weights.line()
    recorded = json.loads(report.read_text())["settings"]["unet_weights"]
    assert recorded == {"params": weights.params, "precision": "fp32", "held": weights.held}


def test_the_torch_backend_reports_the_unet_it_holds(model, tmp_path):
    """Where the model is the deployment, its UNet in memory is what is weighed: merged, the bg
    set as low-rank factors, the projections fused (views counted once)."""
    report = tmp_path / "r.json"
    stdout = io.StringIO()
    argv = ["--backend", "torch", "--instances", "1", "--steps", "1", "--repeats", "1", "--warmup", "0"]
    with contextlib.redirect_stdout(stdout):
        assert bench([*argv, "--resolution", "64", "--guidance", "1", "--json", str(report)]) == 0
    recorded = json.loads(report.read_text())["settings"]["unet_weights"]
    one = unet_params(model.config) * 4
    ratio = recorded["held"]["torch UNet"] / one
    assert 1.0 < ratio < 1.2, ratio  # whole bg sets would add the Q/K/V again
    assert f"torch UNet {ratio:.3f}x (target: at most 1.2x)" in stdout.getvalue()


def test_an_engine_file_is_reported_with_the_plugin_library_it_embeds(model, folders, tmp_path):
    shutil.copy(folders["low-rank"] / "unet.onnx", tmp_path / "unet.onnx")
    (tmp_path / "unet.plan").write_bytes(bytes(3 * 2**20))
    (tmp_path / "libmild_plugins.so").write_bytes(bytes(2 * 2**20))
    weights = unet_weights(tmp_path, model.config, "fp32")
    assert weights.held["unet.plan (file, the 2.0 MiB plugin library embedded)"] == 3 * 2**20
