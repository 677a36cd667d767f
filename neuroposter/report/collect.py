"""Gathers what the report needs from the workspace: runs, metrics, op counts, export bundles, latency.

Sources, in order of preference:

* **Runs**: ``WORKSPACE/runs/<name>/`` (``manifest.json``, ``model.json``, ``metrics.json``).
* **SNN counts** (``sdt``, ``snn-mlp``): the run's model is lowered to NIR (``neuroposter.ir.lower_model``) and
  run by the reference simulator (``neuroposter.ir.simulate``, same-step, float, ``record=True``) on the first
  ``samples`` test samples of the run's encoded set (``neuroposter.encode.load_encoded``); the records are
  counted by :func:`neuroposter.profiling.counts.count_snn`.
* **ANN counts** (``cnn``, ``vit``, ``ann-transformer``): the ONNX bundle ``<exports>/onnx/<run>/model.onnx``;
  when it is missing the report exports the run itself with the project's ONNX target
  (``neuroposter.targets.get_exporter("onnx")``) into a temporary folder (nothing is written under
  ``export/``), and says so in the provenance table.
* **Front end**: the DenseNet-169 backbone that produced the features: cut out of a CNN run's ONNX bundle when one
  holds the same backbone at the features' image size, else (``neuroposter.features.build_backbone``
  with the feature store's weights id and image size), exported to ONNX in a temporary folder and counted;
  the SNN pipeline's total (and the ANN transformer's) includes it as its own bar.
* **Mapping verdicts**: ``<exports>/<target>/<run>/summary.json`` (and ``mapping.json``) when present.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter._io import read_json, sha256_file
from neuroposter.errors import DataError
from neuroposter.profiling.counts import OpCounts

__all__ = ["RunInfo", "find_runs", "snn_counts_for_run", "ann_counts_for_run", "frontend_counts",
           "mapping_verdicts", "SNN_MODELS", "ANN_MODELS", "FEATURE_MODELS"]

log = logging.getLogger(__name__)

SNN_MODELS = ("sdt", "snn-mlp")
ANN_MODELS = ("cnn", "vit", "ann-transformer")
# Models that consume DenseNet-169 features (their pipelines include the front end).
FEATURE_MODELS = ("sdt", "snn-mlp", "ann-transformer")
_TARGET_FOLDERS = ("loihi", "nir", "onnx", "spinnaker", "spinnaker2", "truenorth", "xylo", "speck")


@dataclass
class RunInfo:
    """One training run as the report sees it.

    Attributes:
        name: run folder name.
        path: run folder.
        model: registry name of the model.
        metrics: content of ``metrics.json`` (empty when missing).
        manifest: content of ``manifest.json``.
        model_json: content of ``model.json``.
        counts: op counts (per inference) when available.
        counts_source: where the counts came from.
        notes: problems met while collecting (shown in the report).
    """

    name: str
    path: Path
    model: str
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    model_json: dict[str, Any] = field(default_factory=dict)
    counts: OpCounts | None = None
    counts_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``"snn"`` or ``"ann"``."""
        return "snn" if self.model in SNN_MODELS else "ann"


def _maybe_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except DataError as exc:
        log.warning("%s", exc)
        return {}
    return data if isinstance(data, dict) else {}


def find_runs(runs_dir: Path, names: list[str] | None = None) -> list[RunInfo]:
    """Run folders under ``runs_dir`` (all, or the named ones), with metrics and manifests read.

    Raises:
        DataError: a named run does not exist.
    """
    out: list[RunInfo] = []
    if names:
        dirs = []
        for n in names:
            p = Path(n) if (os.sep in n or Path(n).is_dir()) else runs_dir / n
            if not p.is_dir():
                raise DataError(f"run {n!r} not found under {runs_dir}; train it with `neuroposter train`")
            dirs.append(p)
    else:
        dirs = sorted(p for p in runs_dir.glob("*") if p.is_dir() and not p.name.startswith("."))
    for d in dirs:
        manifest = _maybe_json(d / "manifest.json")
        if manifest.get("kind") not in (None, "run"):
            continue
        model_json = _maybe_json(d / "model.json")
        metrics = _maybe_json(d / "metrics.json")
        model = (model_json.get("model") or metrics.get("model") or manifest.get("model")
                 or (manifest.get("extra") or {}).get("model") or d.name)
        out.append(RunInfo(d.name, d, str(model), metrics, manifest, model_json))
    return out


def _encoded_path(run: RunInfo, workspace: Path) -> Path:
    enc = (run.manifest.get("inputs") or {}).get("encoded") or {}
    p = enc.get("path") if isinstance(enc, dict) else None
    if p and Path(p).is_dir():
        return Path(p)
    return workspace / "encoded" / "default"


def snn_counts_for_run(run: RunInfo, workspace: Path, *, samples: int = 32, weight_bits: int = 8,
                       state_bits: int = 16) -> tuple[OpCounts, str]:
    """Lowers an SNN run to NIR, simulates it on test samples and counts the records.

    Returns:
        ``(counts, provenance text)``.
    """
    import torch

    from neuroposter.encode import load_encoded
    from neuroposter.ir import lower_model, simulate
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling.counts import count_snn
    from neuroposter.train import load_run

    loaded = load_run(run.path)
    enc_path = _encoded_path(run, workspace)
    enc = load_encoded(enc_path)
    T = int(getattr(enc, "T", None) or (run.model_json.get("input_meta") or {}).get("T", 4))
    graph = lower_model(loaded.model, T=T, source_run=str(run.path))
    n = min(int(samples), int(enc.size("test")))
    if n <= 0:
        raise DataError(f"{enc_path} has no test samples")
    spikes = np.stack([np.asarray(enc.spikes("test", i)) for i in range(n)], axis=1).astype(np.float32)  # [T,B,N,D]
    x = to_graph_input(torch.as_tensor(spikes), graph)
    res = simulate(graph, x, mode="same_step", arithmetic="float", record=True)
    counts = count_snn(graph, res, x=x, weight_bits=weight_bits, state_bits=state_bits, name=run.name,
                       meta={"run": str(run.path), "encoded": str(enc_path), "samples": n, "T": T,
                             "simulator": "neuroposter.ir.simulate(mode='same_step', arithmetic='float')"})
    src = (f"NIR lowering of {run.path.name} simulated on {n} test samples of {enc_path} "
           f"(T={T}, same-step, float)")
    return counts, src


def _onnx_bundle(exports: Path, run: RunInfo) -> Path | None:
    for cand in (exports / "onnx" / run.name / "model.onnx", exports / "onnx" / run.model / "model.onnx"):
        if cand.is_file():
            return cand
    return None


def ann_counts_for_run(run: RunInfo, exports: Path, workspace: Path, *, allow_export: bool = True,
                       weight_bits: int = 32) -> tuple[OpCounts, str, Path | None]:
    """ONNX counts of an ANN run (bundle under ``exports``, else a temporary export with the ONNX target).

    Returns:
        ``(counts, provenance text, onnx path or None when the temporary file is gone)``.
    """
    from neuroposter.profiling.onnx_counts import count_onnx

    p = _onnx_bundle(exports, run)
    if p is not None:
        digest = sha256_file(p)[:12]
        return (count_onnx(p, name=run.name, weight_bits=weight_bits, source=f"{p} (sha256 {digest})"),
                f"ONNX bundle {p} (sha256 {digest})", p)
    if not allow_export:
        raise DataError(f"no ONNX bundle for {run.name} under {exports / 'onnx'}; "
                        f"run `neuroposter export --target onnx --run {run.name}`")
    from neuroposter.targets import ExportRequest, get_exporter

    with tempfile.TemporaryDirectory(prefix="np-report-onnx-") as tmp:
        out = Path(tmp) / run.name
        res = get_exporter("onnx")(ExportRequest("onnx", run.path, out, workspace, {}))
        cand = next(iter(sorted(Path(res.out_dir).glob("*.onnx"))), None)
        if cand is None:
            raise DataError(f"the ONNX target wrote no .onnx file for {run.name}")
        counts = count_onnx(cand, name=run.name, weight_bits=weight_bits,
                            source=f"temporary ONNX export of {run.path} by the report")
    return counts, f"temporary ONNX export of {run.path} (the report exported it; no bundle under {exports})", None


def _image_size(workspace: Path, features_path: Path | None) -> tuple[int, int]:
    if features_path is not None:
        man = _maybe_json(features_path / "manifest.json")
        size = (man.get("extra") or {}).get("input_size") or man.get("input_size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
        grid = (man.get("extra") or {}).get("grid") or man.get("grid")
        if isinstance(grid, (list, tuple)) and len(grid) == 2:
            return int(grid[0]) * 32, int(grid[1]) * 32
    return 224, 224


def _frontend_from_bundle(exports: Path, runs: list[RunInfo], h: int, w: int) -> tuple[OpCounts, str] | None:
    """The front end cut out of a CNN run's ONNX bundle (DenseNet-169 backbone + pool + head on images of the
    same size): the sub-graph from the image input to the backbone output, counted like any ONNX graph. Saves
    exporting the backbone again; None when no such bundle exists."""
    import onnx

    from neuroposter.profiling.onnx_counts import count_onnx

    for r in runs:
        p = _onnx_bundle(exports, r) if r.model == "cnn" else None
        if p is None:
            continue
        model = onnx.load(str(p), load_external_data=False)
        inits = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
        backbone = [n for n in model.graph.node if n.name.startswith("/backbone/")]
        if len(dims) != 4 or tuple(dims[2:]) != (h, w) or not backbone:
            continue
        sub = _onnx_subgraph(model, inputs[0], backbone[-1].output[0])
        digest = sha256_file(p)[:12]
        how = f"backbone sub-graph ({inputs[0].name} -> {backbone[-1].output[0]}) of the {r.name} bundle {p} " \
              f"(sha256 {digest})"
        counts = count_onnx(sub, name="densenet169-frontend", source=f"{how}, {h}x{w} input")
        return counts, f"DenseNet-169 front end: {how}; {h}x{w} input; counted without re-exporting"
    return None


def _onnx_subgraph(model: Any, graph_input: Any, output: str) -> Any:
    """The nodes of ``model`` that ``output`` depends on (original order), as a model with that one output."""
    import onnx

    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[int] = set()
    todo = [output]
    while todo:
        n = producer.get(todo.pop())
        if n is None or id(n) in keep:
            continue
        keep.add(id(n))
        todo += [i for i in n.input if i]
    nodes = [n for n in model.graph.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    graph = onnx.helper.make_graph(
        nodes, f"{model.graph.name}-sub", [graph_input],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializer=[t for t in model.graph.initializer if t.name in used],
        value_info=[v for v in model.graph.value_info if v.name in used])
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def frontend_counts(workspace: Path, runs: list[RunInfo], exports: Path | None = None) -> tuple[OpCounts, str]:
    """ONNX counts of the DenseNet-169 feature front end (backbone only, one image per inference).

    Taken from a CNN run's ONNX bundle under ``exports`` when one holds the same backbone at the features' image
    size (:func:`_frontend_from_bundle`); otherwise the backbone is exported to a temporary ONNX file."""
    import torch

    from neuroposter.profiling.onnx_counts import count_onnx

    feats = None
    for r in runs:
        f = (r.manifest.get("inputs") or {}).get("features") or {}
        if isinstance(f, dict) and f.get("path") and Path(f["path"]).is_dir():
            feats = Path(f["path"])
            break
    if feats is None and (workspace / "features" / "default").is_dir():
        feats = workspace / "features" / "default"
    h, w = _image_size(workspace, feats)
    if exports is not None:
        found = _frontend_from_bundle(exports, runs, h, w)
        if found is not None:
            return found
    weights = "random"
    if feats is not None:
        weights = str((_maybe_json(feats / "manifest.json").get("extra") or {}).get("weights") or "random")
    try:
        from neuroposter.features import build_backbone

        backbone = build_backbone("random")  # MAC counts do not depend on the weight values
        how = f"neuroposter.features.build_backbone (features weights id {weights!r})"
    except Exception as exc:  # noqa: BLE001 - fall back to torchvision's definition of the same network
        import torchvision

        backbone = torch.nn.Sequential(torchvision.models.densenet169(weights=None).features, torch.nn.ReLU())
        how = f"torchvision densenet169().features + ReLU (build_backbone unavailable: {type(exc).__name__})"
    backbone.eval()
    with tempfile.TemporaryDirectory(prefix="np-report-frontend-") as tmp:
        p = Path(tmp) / "frontend.onnx"
        torch.onnx.export(backbone, torch.zeros(1, 3, h, w), str(p), input_names=["image"],
                          output_names=["features"], opset_version=17)
        counts = count_onnx(p, name="densenet169-frontend", source=f"{how}, {h}x{w} input, exported by the report")
    return counts, f"DenseNet-169 front end: {how}; {h}x{w} input; ONNX export counted"


def mapping_verdicts(exports: Path, runs: list[RunInfo]) -> list[dict[str, Any]]:
    """Rows ``{run, target, verdict, detail, path}`` from export bundles' ``summary.json`` / ``mapping.json``."""
    rows: list[dict[str, Any]] = []
    targets = sorted({p.name for p in exports.glob("*") if p.is_dir()} | set(_TARGET_FOLDERS)) if exports.is_dir() else []
    for r in runs:
        for t in targets:
            d = exports / t / r.name
            summ = _maybe_json(d / "summary.json")
            mapping = _maybe_json(d / "mapping.json")
            if not summ and not mapping:
                continue
            rows.append({"run": r.name, "target": t, "verdict": _verdict(summ, mapping),
                         "detail": _detail(summ, mapping), "path": str(d)})
    return rows


def _verdict(summ: Mapping[str, Any], mapping: Mapping[str, Any]) -> str:
    for src in (summ, mapping):
        for key in ("verdict", "fits", "fit", "ok", "maps"):
            if key in src:
                v = src[key]
                if isinstance(v, bool):
                    return "fits" if v else "does not fit"
                return str(v)
    return "unknown"


def _detail(summ: Mapping[str, Any], mapping: Mapping[str, Any]) -> str:
    parts = []
    for src in (summ, mapping):
        for key in ("reason", "violations", "violated", "limit", "cores_used", "chips", "agreement",
                    "spike_agreement", "prediction_agreement"):
            if key in src and src[key] not in (None, [], {}):
                v = src[key]
                if isinstance(v, list):
                    v = "; ".join(str(x) for x in v[:3]) + (" ..." if len(v) > 3 else "")
                parts.append(f"{key}: {v}")
    return ", ".join(dict.fromkeys(parts))[:300]
