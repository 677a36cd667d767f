"""Gathers what the report needs from the workspace: runs, metrics, op counts, export bundles, latency.

Sources, in order of preference:

* **Runs**: ``WORKSPACE/runs/<name>/`` (``manifest.json``, ``model.json``, ``metrics.json``), each read through
  :func:`neuroposter.manifest.require_manifest` (every file checked against its hash). A folder without a
  manifest, of another kind, or a failed run is ignored with a warning, never shown as a model.
* **Export bundles** (:func:`find_bundles`): the workspace's registry ``WORKSPACE/exports.json`` (written by
  every export, relative to the workspace root, so the report finds them from any current folder and after a
  move) plus any ``--exports DIR`` given explicitly. Every bundle is verified like a run, and a bundle built
  from another version of its run (run key or checkpoint hash differ) refuses the report with the command that
  rebuilds it; failed (``*.failed``) and manifest-less folders are ignored with a warning.
* **SNN counts** (``sdt``, ``snn-mlp``): the run's model is lowered to NIR (``neuroposter.ir.lower_model``) and
  run by the reference simulator (``neuroposter.ir.simulate``, same-step, float, ``record=True``) on the first
  ``samples`` test samples of the run's own encoded set (``neuroposter.encode.load_encoded``; refused when it
  is missing or is not the one the run was trained on); the records are
  counted by :func:`neuroposter.profiling.counts.count_snn`.
* **ANN counts** (``cnn``, ``vit``, ``ann-transformer``): the run's own ONNX bundle (``model.onnx``);
  when it is missing the report exports the run itself with the project's ONNX target
  (``neuroposter.targets.get_exporter("onnx")``) into a temporary folder (nothing is written under
  ``export/``), and says so in the provenance table.
* **Front end**: the DenseNet-169 backbone that produced the features: cut out of a CNN run's ONNX bundle when one
  holds the same backbone at the features' image size, else (``neuroposter.features.build_backbone``
  with the feature store's weights id and image size), exported to ONNX in a temporary folder and counted;
  the SNN pipeline's total (and the ANN transformer's) includes it as its own bar.
* **Mapping verdicts**: the bundles' ``summary.json`` (and ``mapping.json``) when present.
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
from neuroposter.errors import DataError, ManifestError, UsageError
from neuroposter.manifest import MANIFEST_NAME, input_path, read_manifest, require_manifest
from neuroposter.profiling.counts import OpCounts

__all__ = ["RunInfo", "Bundle", "find_runs", "find_bundles", "export_command", "snn_counts_for_run",
           "ann_counts_for_run", "frontend_counts", "mapping_verdicts", "SNN_MODELS", "ANN_MODELS",
           "FEATURE_MODELS"]

log = logging.getLogger(__name__)

SNN_MODELS = ("sdt", "snn-mlp")
ANN_MODELS = ("cnn", "vit", "ann-transformer")
# Models that consume DenseNet-169 features (their pipelines include the front end).
FEATURE_MODELS = ("sdt", "snn-mlp", "ann-transformer")
# Sibling folders the project writes next to an artifact (temporaries, leftovers): never a run or a bundle.
_NOT_ARTIFACTS = (".tmp", ".old", ".partial", ".part", ".lock")


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


def _train_command(run_dir: Path, model: str | None) -> str:
    return f"neuroposter train --model {model or 'MODEL'} --name {run_dir.name} --force"


def _ignored(path: Path, what: str, warnings: list[str], named: bool) -> None:
    """A folder that is not a usable run: an error when the user named it, else a warning (never a model)."""
    if named:
        raise ManifestError(f"{path}: {what}; train it with `neuroposter train`")
    warnings.append(f"{path}: {what}; ignored")


def find_runs(runs_dir: Path, names: list[str] | None = None,
              warnings: list[str] | None = None) -> list[RunInfo]:
    """Run folders under ``runs_dir`` (all, or the named ones), with metrics and verified manifests.

    Every run is read through :func:`neuroposter.manifest.require_manifest`, so its files are checked against
    the hashes in its manifest. Without ``names``, a folder that is not a finished run (no manifest, another
    kind of artifact, a failed run) is skipped with a warning appended to ``warnings``; a named one is an error.

    Raises:
        DataError: a named run does not exist.
        ManifestError: a run's files changed since it was written, or a named folder is not a run.
        UsageError: a run name that is not one safe path component.
    """
    from neuroposter.artifact import check_name

    warnings = warnings if warnings is not None else []
    out: list[RunInfo] = []
    if names:
        dirs = []
        for n in names:
            named_path = os.path.isabs(n) or os.sep in n or bool(os.altsep and os.altsep in n)
            p = Path(n) if named_path else runs_dir / check_name(n, "run name")
            if not p.is_dir():
                raise DataError(f"run {n!r} not found under {runs_dir}; train it with `neuroposter train`")
            dirs.append((p, True))
    else:
        dirs = [(p, False) for p in sorted(runs_dir.glob("*"))
                if p.is_dir() and not p.name.startswith(".") and not p.name.endswith(_NOT_ARTIFACTS)]
    for d, named in dirs:
        if not (d / MANIFEST_NAME).is_file():
            _ignored(d, f"no {MANIFEST_NAME} (not a neuroposter run, or an interrupted one)", warnings, named)
            continue
        try:
            head = read_manifest(d)
        except ManifestError as exc:
            _ignored(d, f"unreadable manifest ({exc})", warnings, named)
            continue
        model_hint = head.get("model") or (head.get("extra") or {}).get("model")
        if head.get("kind") != "run":
            _ignored(d, f"holds a {head.get('kind')!r} artifact, not a run", warnings, named)
            continue
        if head.get("status") == "failed":
            _ignored(d, f"a failed run kept for inspection ({head.get('failure')})", warnings, named)
            continue
        manifest = require_manifest(d, "run", rerun=_train_command(d, model_hint))
        model_json = _maybe_json(d / "model.json")
        metrics = _maybe_json(d / "metrics.json")
        model = (model_json.get("model") or metrics.get("model") or manifest.get("model")
                 or (manifest.get("extra") or {}).get("model") or d.name)
        out.append(RunInfo(d.name, d, str(model), metrics, manifest, model_json))
    return out


@dataclass
class Bundle:
    """One verified export bundle that belongs to a run of the report.

    Attributes:
        path: the bundle folder (usable from the current folder).
        target: the export target (``nir``, ``onnx``, ``loihi``, a chip).
        run: the name of the run it was exported from.
        manifest: its verified manifest.
    """

    path: Path
    target: str
    run: str
    manifest: dict[str, Any]

    def onnx(self) -> Path | None:
        """The bundle's ONNX file (an ``onnx`` bundle), or None."""
        names = [n for n in (self.manifest.get("artifacts") or {}) if str(n).endswith(".onnx")]
        for n in [*sorted(names), "model.onnx"]:
            if (self.path / n).is_file():
                return self.path / n
        return None


def export_command(target: str, run: str, bundle: Path, workspace: Path | None = None) -> str:
    """The ``neuroposter export`` command that rebuilds ``bundle`` (from the current folder)."""
    cmd = f"neuroposter export --target {target} --run {run} --force"
    if bundle.parent.name == target and bundle.name == run:
        root = bundle.parent.parent
        if os.path.abspath(root) != os.path.abspath("export"):
            cmd += f" --export-root {root}"
    else:
        cmd += f" --out {bundle}"
    if workspace is not None and os.path.abspath(workspace) != os.path.abspath("workspace"):
        cmd += f" --workspace {workspace}"
    return cmd


def _registered(workspace: Path, warnings: list[str]) -> list[Path]:
    """The bundles recorded in the workspace's ``exports.json``; one listed but gone is a warning."""
    from neuroposter.workspace import EXPORTS_NAME, Workspace

    reg = workspace / EXPORTS_NAME
    if not reg.is_file():
        return []
    try:
        listed = read_json(reg).get("bundles", [])
    except (DataError, AttributeError) as exc:
        warnings.append(f"{reg} is unreadable ({exc}); the bundles it lists are not used")
        return []
    present = Workspace(workspace).exports()
    keep = {os.path.normpath(p) for p in present}
    for rel in listed if isinstance(listed, list) else []:
        p = os.path.normpath(workspace / str(rel))
        if p not in keep:
            warnings.append(f"bundle {p} is listed in {reg} but missing; ignored (export it again if needed)")
    return present


def _scan(root: Path) -> list[Path]:
    """Bundle folders under an explicitly given export root: ``root`` itself, ``root/<x>`` holding a manifest,
    or ``root/<target>/<run>``."""
    if (root / MANIFEST_NAME).is_file():
        return [root]
    out: list[Path] = []
    for t in sorted(root.iterdir()):
        if not t.is_dir() or t.name.startswith("."):
            continue
        if (t / MANIFEST_NAME).is_file():
            out.append(t)
            continue
        out += [b for b in sorted(t.iterdir()) if b.is_dir() and not b.name.startswith(".")
                and not b.name.endswith(_NOT_ARTIFACTS)]
    return out


def _bundle_run(bundle: Path, manifest: Mapping[str, Any]) -> str:
    if manifest.get("source_run"):
        return str(manifest["source_run"])
    p = input_path(bundle, manifest, "run")
    return p.name if p is not None else bundle.name


def _stale(manifest: Mapping[str, Any], run: RunInfo) -> str | None:
    """Why a bundle does not match the run as it is now (None when it does)."""
    info = (manifest.get("inputs") or {}).get("run")
    info = info if isinstance(info, Mapping) else {}
    key, ckpt = info.get("key"), info.get("checkpoint_sha256")
    now_key = run.manifest.get("key")
    now_ckpt = ((run.manifest.get("files") or {}).get("checkpoint.pt") or {}).get("sha256")
    if key is not None and now_key is not None and key != now_key:
        return f"it was exported from another version of run {run.name} (run key {str(key)[:12]}, now {str(now_key)[:12]})"
    if ckpt is not None and now_ckpt is not None and ckpt != now_ckpt:
        return (f"it was exported from another checkpoint of run {run.name} (sha256 {str(ckpt)[:12]}, "
                f"now {str(now_ckpt)[:12]})")
    return None


def find_bundles(workspace: Path, exports: list[Path], runs: list[RunInfo], warnings: list[str],
                 all_runs: set[str] | None = None) -> list[Bundle]:
    """The export bundles of ``runs``: those in the workspace's registry plus those under ``exports``.

    Each bundle is read through :func:`neuroposter.manifest.require_manifest` (its files checked against their
    hashes) and compared with its run (run key and checkpoint hash). Folders without a manifest, of another
    kind, failed bundles (``*.failed``), bundles whose run is not in the workspace and bundles that do not record
    which version of the run they were built from are skipped with a warning.

    Args:
        workspace: the workspace root.
        exports: export roots given explicitly (``--exports``).
        runs: the runs of the report (bundles of other runs are skipped silently).
        warnings: list to append warnings to.
        all_runs: names of every run of the workspace (a bundle of another run is not warned about).

    Raises:
        UsageError: an explicit export root is not a folder.
        ManifestError: a bundle's files changed, or a bundle is stale (the message names it and the
            ``neuroposter export`` command that rebuilds it).
    """
    cands = list(_registered(workspace, warnings))
    for root in exports:
        if not root.is_dir():
            raise UsageError(f"--exports {root}: no such folder")
        cands += _scan(root)
    by_name = {r.name: r for r in runs}
    known = set(all_runs or ()) | set(by_name)
    seen: set[str] = set()
    out: list[Bundle] = []
    stale: list[str] = []
    for b in cands:
        real = os.path.realpath(b)
        if real in seen:
            continue
        seen.add(real)
        if not (b / MANIFEST_NAME).is_file():
            warnings.append(f"{b}: no {MANIFEST_NAME} (not a neuroposter export bundle); ignored")
            continue
        try:
            head = read_manifest(b)
        except ManifestError as exc:
            warnings.append(f"{exc}; ignored")
            continue
        if head.get("kind") != "export":
            warnings.append(f"{b} holds a {head.get('kind')!r} artifact, not an export bundle; ignored")
            continue
        if head.get("status") == "failed" or b.name.endswith(".failed"):
            warnings.append(f"{b} is a failed export kept for inspection ({head.get('failure') or 'failed'}); "
                            "ignored")
            continue
        target = str(head.get("target") or b.parent.name)
        run_name = _bundle_run(b, head)
        run = by_name.get(run_name)
        if run is None:
            if run_name not in known:
                warnings.append(f"{b}: exported from run {run_name!r}, which is not in this workspace; ignored")
            continue
        source = input_path(b, head, "run")
        if source is not None and source.is_dir() and os.path.realpath(source) != os.path.realpath(run.path):
            warnings.append(f"{b}: exported from the run folder {source}, not from {run.path}; ignored")
            continue
        cmd = export_command(target, run_name, b, workspace)
        manifest = require_manifest(b, "export", rerun=cmd)
        info = (manifest.get("inputs") or {}).get("run")
        if not isinstance(info, Mapping) or (info.get("key") is None and info.get("checkpoint_sha256") is None):
            warnings.append(f"{b} does not record which version of run {run_name} it was exported from; "
                            f"ignored (rebuild it with `{cmd}`)")
            continue
        why = _stale(manifest, run)
        if why is not None:
            stale.append(f"{b} is stale: {why}; rebuild it with `{cmd}`")
            continue
        out.append(Bundle(b, target, run_name, manifest))
    if stale:
        more = f" (and {len(stale) - 1} more stale bundle{'s' if len(stale) > 2 else ''})" if len(stale) > 1 else ""
        raise ManifestError(stale[0] + more)
    return out


def _encoded_path(run: RunInfo) -> Path:
    """The encoded set the run was trained on.

    Raises:
        DataError: the run's manifest records none. ManifestError: it is missing.
    """
    p = input_path(run.path, run.manifest, "encoded")
    if p is None:
        raise DataError(f"run {run.name}: its manifest records no encoded set; retrain it with "
                        f"`{_train_command(run.path, run.model)}`")
    if not p.is_dir():
        raise ManifestError(f"the encoded set {p} that run {run.name} was trained on is missing; run "
                            "`neuroposter encode` again with the same options, or retrain the run")
    return p


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

    if isinstance(samples, bool) or int(samples) != samples or int(samples) < 1:
        raise UsageError(f"samples must be an integer >= 1, got {samples!r}")
    loaded = load_run(run.path)
    enc_path = _encoded_path(run)
    enc = load_encoded(enc_path)
    want = ((run.manifest.get("inputs") or {}).get("encoded") or {})
    want_key = want.get("key") if isinstance(want, Mapping) else None
    if want_key is not None and getattr(enc, "key", None) not in (None, want_key):
        raise ManifestError(f"the encoded set {enc_path} changed since run {run.name} was trained on it (key "
                            f"{str(enc.key)[:12]}, the run recorded {str(want_key)[:12]}); retrain the run with "
                            f"`{_train_command(run.path, run.model)}`, or encode its set again with the same options")
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


def _onnx_bundle(bundles: list[Bundle], run: RunInfo) -> Path | None:
    """The ONNX file of the run's own (verified, current) ``onnx`` bundle."""
    for b in bundles:
        if b.run == run.name and b.target == "onnx":
            p = b.onnx()
            if p is not None:
                return p
    return None


def ann_counts_for_run(run: RunInfo, bundles: list[Bundle], workspace: Path, *, allow_export: bool = True,
                       weight_bits: int = 32) -> tuple[OpCounts, str, Path | None]:
    """ONNX counts of an ANN run (its own bundle, else a temporary export with the ONNX target).

    Returns:
        ``(counts, provenance text, onnx path or None when the temporary file is gone)``.
    """
    from neuroposter.profiling.onnx_counts import count_onnx

    p = _onnx_bundle(bundles, run)
    if p is not None:
        digest = sha256_file(p)[:12]
        return (count_onnx(p, name=run.name, weight_bits=weight_bits, source=f"{p} (sha256 {digest})"),
                f"ONNX bundle {p} (sha256 {digest})", p)
    if not allow_export:
        raise DataError(f"no ONNX bundle of run {run.name} (none recorded in the workspace's exports.json or "
                        f"under --exports); run `neuroposter export --target onnx --run {run.name}`")
    from neuroposter.targets import ExportRequest, get_exporter

    with tempfile.TemporaryDirectory(prefix="np-report-onnx-") as tmp:
        out = Path(tmp) / run.name
        res = get_exporter("onnx")(ExportRequest("onnx", run.path, out, workspace, {}))
        if getattr(res, "failed", False) or not res.ok:
            raise DataError(f"the temporary ONNX export of {run.name} failed its verification "
                            f"({res.summary.get('reason') or 'see `neuroposter export --target onnx`'})")
        cand = next(iter(sorted(Path(res.out_dir).glob("*.onnx"))), None)
        if cand is None:
            raise DataError(f"the ONNX target wrote no .onnx file for {run.name}")
        counts = count_onnx(cand, name=run.name, weight_bits=weight_bits,
                            source=f"temporary ONNX export of {run.path} by the report")
    return counts, f"temporary ONNX export of {run.path} (the report exported it; the run has no ONNX bundle)", None


def _image_size(features_path: Path, man: Mapping[str, Any]) -> tuple[int, int]:
    """The image size the feature store was computed at (its manifest)."""
    size = (man.get("extra") or {}).get("input_size") or man.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    grid = (man.get("extra") or {}).get("grid") or man.get("grid")
    if isinstance(grid, (list, tuple)) and len(grid) == 2:
        return int(grid[0]) * 32, int(grid[1]) * 32
    raise DataError(f"{features_path}: its manifest records no image size; the front end cannot be counted")


def _frontend_from_bundle(bundles: list[Bundle], runs: list[RunInfo], h: int, w: int) -> tuple[OpCounts, str] | None:
    """The front end cut out of a CNN run's ONNX bundle (DenseNet-169 backbone + pool + head on images of the
    same size): the sub-graph from the image input to the backbone output, counted like any ONNX graph. Saves
    exporting the backbone again; None when no such bundle exists."""
    import onnx

    from neuroposter.profiling.onnx_counts import count_onnx

    for r in runs:
        p = _onnx_bundle(bundles, r) if r.model == "cnn" else None
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


def _features_of(runs: list[RunInfo]) -> tuple[Path, dict[str, Any]]:
    """The feature store the feature-consuming runs were trained on, verified.

    Raises:
        DataError: no run records one. ManifestError: it is missing, changed, or not the one recorded.
    """
    for r in runs:
        if r.model not in FEATURE_MODELS and r.model != "cnn":
            continue
        p = input_path(r.path, r.manifest, "features")
        if p is None:
            continue
        if not p.is_dir():
            raise ManifestError(f"the feature store {p} that run {r.name} was trained on is missing; run "
                                "`neuroposter features` again with the same options")
        man = require_manifest(p, "features", rerun="neuroposter features --force")
        want = (r.manifest.get("inputs") or {}).get("features") or {}
        want_key = want.get("key") if isinstance(want, Mapping) else None
        if want_key is not None and man.get("key") not in (None, want_key):
            raise ManifestError(f"the feature store {p} changed since run {r.name} was trained on it; retrain "
                                f"the run with `{_train_command(r.path, r.model)}`")
        return p, man
    raise DataError("no run records the feature store it was trained on")


def frontend_counts(workspace: Path, runs: list[RunInfo], bundles: list[Bundle] | None = None
                    ) -> tuple[OpCounts, str]:
    """ONNX counts of the DenseNet-169 feature front end (backbone only, one image per inference).

    The image size is the one of the feature store the runs were trained on (verified). Taken from a CNN run's
    ONNX bundle when one holds the same backbone at that size (:func:`_frontend_from_bundle`); otherwise the
    backbone is exported to a temporary ONNX file."""
    import torch

    from neuroposter.profiling.onnx_counts import count_onnx

    feats, fman = _features_of(runs)
    h, w = _image_size(feats, fman)
    if bundles:
        found = _frontend_from_bundle(bundles, runs, h, w)
        if found is not None:
            return found
    weights = str((fman.get("extra") or {}).get("weights") or fman.get("weights") or "random")
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


def mapping_verdicts(bundles: list[Bundle], runs: list[RunInfo]) -> list[dict[str, Any]]:
    """Rows ``{run, target, verdict, detail, path}`` from the bundles' ``summary.json`` / ``mapping.json``."""
    order = {r.name: i for i, r in enumerate(runs)}
    rows: list[dict[str, Any]] = []
    for b in sorted(bundles, key=lambda b: (order.get(b.run, len(order)), b.target, str(b.path))):
        if b.run not in order:
            continue
        summ = _maybe_json(b.path / "summary.json")
        mapping = _maybe_json(b.path / "mapping.json")
        if not summ and not mapping:
            continue
        rows.append({"run": b.run, "target": b.target, "verdict": _verdict(summ, mapping),
                     "detail": _detail(summ, mapping), "path": str(b.path)})
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
