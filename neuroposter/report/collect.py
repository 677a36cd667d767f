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
* **Op counts**: read, never computed. Each run's counts are the ``op_counts.json`` its own bundle stores
  (:mod:`neuroposter.profiling.stored`): the ``nir`` bundle of an SNN run (its graph simulated on test samples
  by the export), the ``onnx`` bundle of an ANN run (its ``model.onnx``). A run without that bundle gets a note
  and a warning naming the ``neuroposter export`` command that produces its counts.
* **Front end**: the DenseNet-169 backbone that produced the features, as the ``frontend`` entry of a CNN run's
  ``onnx`` bundle (the backbone sub-graph of its ONNX file) at the feature store's image size; the SNN
  pipeline's total (and the ANN transformer's) includes it as its own bar.
* **Mapping verdicts**: the bundles' ``summary.json`` (and ``mapping.json``) when present.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from neuroposter._io import read_json
from neuroposter.errors import DataError, ManifestError, UsageError
from neuroposter.manifest import MANIFEST_NAME, input_path, read_manifest, require_manifest
from neuroposter.models import FEATURE_INPUTS, names
from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.stored import OP_COUNTS_NAME, StoredCounts, read_op_counts

__all__ = ["RunInfo", "Bundle", "find_runs", "find_bundles", "export_command", "counts_target", "stored_counts",
           "check_samples", "frontend_counts", "mapping_verdicts", "feature_models"]

log = logging.getLogger(__name__)

# Sibling folders the project writes next to an artifact (temporaries, leftovers): never a run or a bundle.
_NOT_ARTIFACTS = (".tmp", ".old", ".partial", ".part", ".lock")


def feature_models() -> tuple[str, ...]:
    """The models that read DenseNet-169 features (their pipelines include the front end), from the registry."""
    return names(inputs=FEATURE_INPUTS)


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
        return "snn" if self.model in names(kind="snn") else "ann"

    @property
    def fitted(self) -> bool:
        """A chip-fitted variant (``neuroposter fit``): priced on its chip only (the report's per-chip table)."""
        from neuroposter.models import CHIP_FITTED_MODELS

        return self.model in CHIP_FITTED_MODELS


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


def counts_target(run: RunInfo) -> str:
    """The export target whose bundle stores a run's op counts: ``nir`` for an SNN, ``onnx`` for an ANN."""
    return "nir" if run.kind == "snn" else "onnx"


def _counts_bundle(bundles: list[Bundle], run: RunInfo) -> Bundle | None:
    """The run's own (verified, current) bundle of :func:`counts_target` (the first one found)."""
    target = counts_target(run)
    return next((b for b in bundles if b.run == run.name and b.target == target), None)


def stored_counts(run: RunInfo, bundles: list[Bundle], workspace: Path | None = None) -> tuple[StoredCounts, Bundle]:
    """The op counts of a run, read from its ``nir`` (SNN) or ``onnx`` (ANN) bundle's ``op_counts.json``.

    Raises:
        DataError: the run has no such bundle, or the bundle stores no (readable) counts; the message names the
            ``neuroposter export`` command that produces them.
    """
    b = _counts_bundle(bundles, run)
    target = counts_target(run)
    if b is None:
        ws = ""
        if workspace is not None and os.path.abspath(workspace) != os.path.abspath("workspace"):
            ws = f" --workspace {workspace}"
        raise DataError(f"no {target} bundle of run {run.name} (none recorded in the workspace's exports.json or "
                        f"under --exports); its op counts are made by `neuroposter export --target {target} "
                        f"--run {run.name}{ws}`")
    try:
        entry = read_op_counts(b.path)["model"]
    except (DataError, KeyError) as exc:
        raise DataError(f"{b.path} stores no op counts ({exc}); rebuild it with "
                        f"`{export_command(target, run.name, b.path, workspace)}`") from None
    return entry, b


def check_samples(run: RunInfo, entry: StoredCounts, bundle: Bundle, samples: int,
                  workspace: Path | None = None) -> None:
    """Refuses stored SNN counts that were not made on ``samples`` test samples (or on the whole test split
    when it is smaller).

    Raises:
        UsageError: another sample count; the message names the export command that recounts.
    """
    used = int(entry.counts.samples)
    asked = entry.info.get("samples_requested")
    whole_split = isinstance(asked, int) and used < asked   # the test split had fewer samples than asked for
    if used == samples or (whole_split and samples >= used):
        return
    cmd = export_command("nir", run.name, bundle.path, workspace)
    raise UsageError(f"run {run.name}: its stored op counts ({bundle.path / OP_COUNTS_NAME}) were made on {used} "
                     f"test samples, not the {samples} asked for; recount with `{cmd} --opt count_samples={samples}`, "
                     "or leave --samples out to use the stored counts")


def _image_size(features_path: Path, man: Mapping[str, Any]) -> tuple[int, int]:
    """The image size the feature store was computed at (its manifest)."""
    size = (man.get("extra") or {}).get("input_size") or man.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    grid = (man.get("extra") or {}).get("grid") or man.get("grid")
    if isinstance(grid, (list, tuple)) and len(grid) == 2:
        return int(grid[0]) * 32, int(grid[1]) * 32
    raise DataError(f"{features_path}: its manifest records no image size; the front end cannot be counted")


def _features_of(runs: list[RunInfo]) -> tuple[Path, dict[str, Any]]:
    """The feature store the feature-consuming runs were trained on, verified.

    Raises:
        DataError: no run records one. ManifestError: it is missing, changed, or not the one recorded.
    """
    for r in runs:
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


def frontend_counts(runs: list[RunInfo], bundles: list[Bundle]) -> tuple[OpCounts, str]:
    """The DenseNet-169 feature front end's op counts (one image per inference), read from an ONNX bundle.

    The counts are the ``frontend`` entry an ``onnx`` export stores for a model holding the backbone (the CNN):
    the first run of the report whose bundle has one at the image size of the feature store the runs were
    trained on (verified).

    Returns:
        ``(counts, provenance text)``.

    Raises:
        DataError: no run records its feature store, or no such bundle (the message names the export command).
        ManifestError: the feature store is missing or changed.
    """
    feats, fman = _features_of(runs)
    h, w = _image_size(feats, fman)
    for r in runs:
        b = _counts_bundle(bundles, r) if r.kind == "ann" else None
        try:
            entry = read_op_counts(b.path).get("frontend") if b is not None else None
        except DataError:
            entry = None
        if entry is not None and [int(v) for v in entry.info.get("image_size") or ()] == [h, w]:
            return entry.counts, entry.provenance
    raise DataError(f"no ONNX bundle of a cnn run of this report stores the DenseNet-169 backbone's counts at the "
                    f"features' {h}x{w} input; run `neuroposter export --target onnx --run cnn`")


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
