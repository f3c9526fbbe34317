"""Export a MILD model into a folder: the five graphs, tokenizers and manifest.json."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from mild_export.export.branch_weights import BranchWeights, branch_weights_form
from mild_export.export.contracts import ExportShapes, GraphContract, contracts
from mild_export.export.manifest import Manifest, claim_folder, graph_entry, graph_key, weights_sha256
from mild_export.export.modules import graph_modules
from mild_export.export.onnx_export import check_opset, export_graph, opset_for
from mild_export.export.precision import KEPT_IN_FP32, VAE_KEPT_IN_FP32, Precision, SMAForm
from reference.files import file_sha256
from reference.graphs import VAE_GRAPHS, graph_dtypes
from reference.model import MildModel
from reference.text import save_tokenizers

log = logging.getLogger("mild")

GRAPH_ORDER = ("text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet")


@dataclass(frozen=True)
class ExportSettings:
    precision: Precision = Precision.FP32
    sma: SMAForm = SMAForm.PLUGIN
    shapes: ExportShapes = field(default_factory=ExportShapes)
    force: bool = False
    branch_weights: BranchWeights = BranchWeights.LOW_RANK


def check_writable(out: Path) -> None:
    """Fail before minutes of export, not after: create the folder and write its mark."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        claim_folder(out)
    except OSError as err:
        raise ValueError(
            f"output folder {out} is not writable ({err.strerror}): "
            "choose another --out or fix its permissions"
        ) from None


def export_unet(
    model: MildModel,
    unet: nn.Module,
    contract: GraphContract,
    path: Path,
    precision: Precision,
    settings: ExportSettings,
) -> dict[str, Any]:
    """The UNet graph with its Q/K/V in the chosen form; returns the manifest's record of it."""
    rank = 2 * model.config.lora.rank  # fg and bg LoRA sets together
    with branch_weights_form(unet, settings.branch_weights, rank) as conversion:
        export_graph(contract, unet, path, precision, settings.sma)
    if conversion.factored:
        log.info(
            "bg Q/K/V as rank-%d differences from the fg set: %d projections (%d kept whole)",
            rank,
            conversion.factored,
            conversion.whole,
        )
    return {"form": settings.branch_weights.value, **asdict(conversion)}


def export_model(
    model: MildModel, model_id: str, out: Path, settings: ExportSettings, progress: bool = True
) -> Manifest:
    """Write every graph that is missing or stale; reuse the rest (same key, same file hash)."""
    out = Path(out)
    check_opset(settings.precision)
    graph_contracts = contracts(model.config, settings.shapes)  # bad shapes fail before --out is made
    check_writable(out)
    try:
        previous = None if settings.force else Manifest.read(out)
    except ValueError:
        previous = None
    modules = graph_modules(model)
    dtypes = graph_dtypes(model.config, settings.precision.dtype)
    kept = list(KEPT_IN_FP32) if settings.precision is not Precision.FP32 else []
    if any(dtypes[name] != settings.precision.dtype for name in VAE_GRAPHS):
        kept.append(VAE_KEPT_IN_FP32)
    manifest = Manifest(
        model=model_id,
        model_sha256=weights_sha256(model),
        config=model.config.to_dict(),
        precision=settings.precision.value,
        sma=settings.sma.value,
        opset=opset_for(settings.precision),
        shapes=asdict(settings.shapes),
        kept_in_fp32=kept,
    )
    bar = tqdm(GRAPH_ORDER, desc="export", unit="graph", disable=not progress)
    for name in bar:
        contract, module = graph_contracts[name], modules[name]
        unet = name == "unet"
        precision = Precision.of(dtypes[name])
        key = graph_key(
            weights_sha256(module),
            contract,
            precision=precision.value,
            sma=settings.sma.value if unet else None,
            branch_weights=settings.branch_weights.value if unet else None,
            opset=opset_for(settings.precision),
        )
        path = out / f"{name}.onnx"
        old = previous.graphs.get(name) if previous else None
        if old and old.key == key and path.is_file() and file_sha256(path) == old.sha256:
            bar.set_postfix_str(f"{name}: up to date")
            manifest.graphs[name] = old
            if unet:
                manifest.branch_weights = previous.branch_weights
            continue
        bar.set_postfix_str(f"{name}: exporting")
        if unet:
            manifest.branch_weights = export_unet(model, module, contract, path, precision, settings)
        else:
            export_graph(contract, module, path, precision, settings.sma)
        manifest.graphs[name] = graph_entry(contract, path.name, file_sha256(path), key)
    save_tokenizers(model.text, out)
    manifest.write(out)
    return manifest
