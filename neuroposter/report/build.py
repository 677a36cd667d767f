"""Builds the energy profiling report: ``WORKSPACE/reports/<name>/`` (HTML, Markdown, CSV, PNG), atomically.

Computing and rendering are separate: :func:`neuroposter.report.compute.compute_report` gathers the runs,
bundles and stored op counts into a :class:`~neuroposter.report.compute.ReportData`; this module only renders
it (figures, CSV, Markdown/HTML, manifest). The report never lowers, simulates or exports a model.

The report is written through :func:`neuroposter.artifact.write_artifact`: its lock is held for the whole
command (a second writer of the same report fails at once), the destination is checked before anything is
read (``--name .`` or a folder that is not a report is refused; an existing report needs ``force``), and
the finished folder is swapped in atomically with every file hashed into its manifest.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from neuroposter._io import atomic_write_json
from neuroposter.errors import UsageError
from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import OpCounts
from neuroposter.report import figures, tables, verdict
from neuroposter.report.banner import DataProvenance, banner_text, with_provenance
from neuroposter.report.compute import ReportData, compute_report, export_roots
from neuroposter.report.sections import provenance_table, sections
from neuroposter.report.writers import to_html, to_markdown

__all__ = ["ReportResult", "build_report"]

log = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        out_dir: the report folder.
        files: file names written in it.
        warnings: problems met (missing counts, unavailable constants, ...), also in the report.
        energy: the energy table.
        accuracy: the accuracy table.
        headline: one row per run: accuracy, best constant baseline, key-view energies (``headline.csv``).
        summary: the headline sentences generated from those numbers.
        accuracy_ci: paired-bootstrap intervals of the test metrics and of the SDT's differences
            (``accuracy_ci.csv``).
        verdict: the verdict's sentences (the report's first section).
        models: one row per model (``models.csv``): the compact table's numbers.
        break_even: the break-even per headline view (``break_even.csv``).
    """

    out_dir: Path
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    energy: pd.DataFrame | None = None
    accuracy: pd.DataFrame | None = None
    headline: pd.DataFrame | None = None
    summary: list[str] = field(default_factory=list)
    accuracy_ci: pd.DataFrame | None = None
    verdict: list[str] = field(default_factory=list)
    models: pd.DataFrame | None = None
    break_even: pd.DataFrame | None = None


def build_report(
    workspace: str | os.PathLike[str],
    *,
    name: str = "default",
    runs: Sequence[str] | None = None,
    profiles: Sequence[str] | None = None,
    samples: int | None = None,
    exports: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    frontend: OpCounts | str | None = "auto",
    frontend_profile: str = tables.DEFAULT_FRONTEND_PROFILE,
    latency: bool = True,
    counts: Mapping[str, OpCounts] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    force: bool = False,
) -> ReportResult:
    """Builds the report from the workspace's runs, export bundles (with their stored op counts) and profiles.

    Args:
        workspace: the workspace root.
        name: report name (``WORKSPACE/reports/<name>/``).
        runs: run names (default: every run under ``WORKSPACE/runs``).
        profiles: device profiles to price on (names or YAML paths; default: every chip and ANN platform).
        samples: the test samples the SNNs' stored counts must have been made on (an integer >= 1; the whole
            test split passes when it is smaller); None (default): whatever the ``nir`` bundles store.
        exports: export-bundle roots to read besides the bundles recorded in ``WORKSPACE/exports.json``
            (the registry every export writes; it is found from any current folder).
        frontend: ``"auto"`` (the DenseNet-169 backbone's counts stored in a CNN run's ONNX bundle),
            precomputed :class:`OpCounts`, or None (no front end: the report then states that the SNN totals
            exclude it).
        frontend_profile: the ANN profile pricing the front end in the device view of neuromorphic chips.
        latency: measure onnxruntime latency of the ONNX bundles (batch 1 and 8).
        counts: precomputed counts per run name (used instead of the counts stored in the run's bundle).
        out_dir: write here instead of ``WORKSPACE/reports/<name>``.
        resolved_config: options to save as ``resolved_config.yaml``.
        bootstrap: resamples of the paired bootstrap over test posters (0: no intervals).
        bootstrap_seed: its seed.
        force: replace an existing report of the same name.

    Returns:
        :class:`ReportResult`.

    Raises:
        UsageError: an unsafe ``name``, a destination that is not a report, an existing report without
            ``force``, ``samples`` below 1 or not the sample count of an SNN's stored counts (the message
            names the export command that recounts). ArtifactBusyError: another process writes the same report.
        ManifestError: a run or bundle changed since it was written, or a bundle is stale (says what to re-run).
        DataError: no runs found.
    """
    from neuroposter.artifact import artifact_lock, check_destination
    from neuroposter.workspace import Workspace

    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, (int, np.integer))
                                or samples < 1):
        raise UsageError(f"samples must be None or an integer >= 1 (test samples of the SNNs' stored op counts), "
                         f"got {samples!r}")
    ws = Path(workspace)
    target = Path(out_dir) if out_dir is not None else Workspace(ws).report(name)
    check_destination(target, "report", force=force, protect=[ws / "runs"], option="--name")
    with artifact_lock(target):  # the whole command: a second writer fails now, not after the reading
        data = compute_report(ws, runs=runs, profiles=profiles, samples=None if samples is None else int(samples),
                              exports=export_roots(exports), frontend=frontend, frontend_profile=frontend_profile,
                              latency=latency, counts=counts, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed)
        files = write_report(data, target, ws, resolved_config=resolved_config, bootstrap=bootstrap,
                             bootstrap_seed=bootstrap_seed, force=force)
    return ReportResult(target, files=files, warnings=data.warnings, energy=data.energy, accuracy=data.accuracy,
                        headline=data.headline, summary=data.summary, accuracy_ci=data.ci, verdict=data.verdict,
                        models=data.models, break_even=data.break_even)


def write_report(data: ReportData, target: Path, ws: Path, *, resolved_config: Mapping[str, Any] | None,
                 bootstrap: int, bootstrap_seed: int, force: bool) -> list[str]:
    """Renders ``data`` into the report folder ``target`` (atomically, with its manifest).

    Returns:
        The file names written (sorted).
    """
    from neuroposter.artifact import write_artifact

    protect = [ws / "runs", *(r.path for r in data.runs), *(b.path for b in data.bundles)]
    with write_artifact(target, "report", force=force, protect=protect, option="--name") as tmp:
        figs, device_bd = _draw_figures(data, tmp)
        files = [f for f in list(figs.values()) + list(device_bd.values()) if f]
        files += _write_tables(data, tmp)
        provenance = provenance_table(data.runs, data.profiles, data.frontend_source, data.verdicts, data.onnx_paths)
        provenance = pd.concat([_data_rows(data.data), provenance], ignore_index=True)
        _csv(provenance, tmp / "provenance.csv", data.data)
        files.append("provenance.csv")
        secs = sections(data, provenance, figs, device_bd)
        title = "neuroposter energy report: is the spiking transformer worth deploying?"
        banner = banner_text(data.data)
        (tmp / "report.md").write_text(to_markdown(title, banner, secs), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(title, banner, secs), encoding="utf-8")
        files += ["report.md", "report.html"]
        if resolved_config is not None:
            import yaml

            from neuroposter._io import to_jsonable

            (tmp / "resolved_config.yaml").write_text(yaml.safe_dump(to_jsonable(dict(resolved_config)),
                                                                     sort_keys=True), encoding="utf-8")
            files.append("resolved_config.yaml")
        inputs: dict[str, Any] = {f"run:{r.name}": {"path": str(r.path), "key": r.manifest.get("key")}
                                  for r in data.runs}
        inputs.update({f"bundle:{b.target}/{b.run}:{i}": {"path": str(b.path), "key": b.manifest.get("key")}
                       for i, b in enumerate(data.bundles)})
        write_manifest(tmp, "report", inputs=inputs,
                       config={"profiles": [p.name for p in data.device_profiles], "samples": data.samples,
                               "exports": [str(e) for e in data.roots], "frontend_profile": data.frontend_profile,
                               "bootstrap": {"B": bootstrap, "seed": bootstrap_seed, "level": 0.95}},
                       extra={"outputs": sorted(files)})
        files.append("manifest.json")
    return sorted(files)


def _figure(warnings: list[str], what: str, draw: Callable[..., str | None], *args: Any, **kw: Any) -> str | None:
    """Draws one figure; a failure leaves the figure out with a warning instead of sinking the report."""
    try:
        return draw(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - a figure is never worth losing the report's numbers
        log.debug("figure %s failed", what, exc_info=True)
        warnings.append(f"figure {what} not drawn ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return None


def _draw_figures(data: ReportData, tmp: Path) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Draws every figure into ``tmp``: ``(figures by key, device breakdowns by profile)``; a figure that failed
    is None (with a warning) and leaves no file behind."""
    fig = functools.partial(_figure, data.warnings)
    bd, head, views = data.breakdowns, data.headline, data.views
    paper_label = tables.Evaluation("sdt_paper", tables.PAPER_PROFILE).label
    figs = {
        "acc": fig("accuracy_vs_energy", figures.accuracy_vs_energy, data.models, verdict.compact_views(views),
                   tmp / "accuracy_vs_energy.png"),
        "acc_all": fig("accuracy_vs_energy_all_profiles", figures.accuracy_vs_energy_all, data.energy, data.accuracy,
                       tmp / "accuracy_vs_energy_all_profiles.png"),
        "head_fe": fig("head_vs_frontend", figures.head_vs_frontend, head, views, tmp / "head_vs_frontend.png"),
        "bd_paper": fig("breakdown_sdt_paper", figures.energy_breakdown, bd, paper_label,
                        tmp / "breakdown_sdt_paper.png",
                        f"SDT-paper view ({tables.paper_constants(data.profiles.get(tables.PAPER_PROFILE))}, "
                        "first layer once)"),
        "bd_memory": fig("breakdown_memory", figures.energy_breakdown, bd,
                         tables.Evaluation("memory", tables.MEMORY_PROFILE).label, tmp / "breakdown_memory.png",
                         "memory-aware view (Lemaire-style)"),
        "bd_int8": fig("breakdown_int8", figures.energy_breakdown, bd,
                       tables.Evaluation("precision", "horowitz_45nm_int8").label, tmp / "breakdown_int8.png",
                       "precision-matched view, int8 (Horowitz)"),
        "fr": fig("firing_rates", figures.firing_rates, data.runs, tmp / "firing_rates.png"),
        "ops": fig("ops_per_layer", figures.ops_per_layer, _representatives(data.runs), tmp / "ops_per_layer.png"),
        "map": fig("mapping_verdicts", figures.mapping_verdicts_fig, data.verdicts, tmp / "mapping_verdicts.png"),
        "ci": fig("accuracy_ci", figures.bootstrap_forest, data.ci, tmp / "accuracy_ci.png"),
        "chips": fig("chips_accuracy_vs_energy", figures.chips_accuracy_vs_energy, data.chips,
                     tmp / "chips_accuracy_vs_energy.png"),
    }
    device_bd: dict[str, str | None] = {}
    for p in data.device_profiles:
        lab = tables.Evaluation("device", p.name).label
        if any(k == lab + "|model" and b.available for (_, k), b in bd.items()):
            device_bd[p.name] = fig(f"breakdown_device_{p.name}", figures.energy_breakdown, bd, lab,
                                    tmp / f"breakdown_device_{p.name}.png",
                                    f"device view: {p.name} ({p.scope}, {p.evidence})")
    # a figure that failed half-way may have left its file: only figures that were drawn are kept
    drawn = {f for f in list(figs.values()) + list(device_bd.values()) if f}
    for png in tmp.glob("*.png"):
        if png.name not in drawn:
            png.unlink()
    return figs, device_bd


def _representatives(runs: Sequence[Any]) -> list[Any]:
    """One run per model (:func:`neuroposter.report.seeds.representative`; chip-fitted variants each their own):
    seeds and chip fine-tunes of a model have its layers, and a panel each would only repeat them."""
    from neuroposter.report.seeds import representative

    out = []
    for model in dict.fromkeys(r.model for r in runs if not getattr(r, "fitted", False)):
        rep = representative(runs, model)
        if rep is not None:
            out.append(rep)
    return out + [r for r in runs if getattr(r, "fitted", False)]


def _csv(df: pd.DataFrame, path: Path, data: DataProvenance) -> None:
    """Writes one CSV of the report with the data provenance columns appended (every CSV carries them)."""
    with_provenance(df, data).to_csv(path, index=False)


def _data_rows(p: DataProvenance) -> pd.DataFrame:
    """The provenance table's rows for the data: posters and the front end's weights."""
    return pd.DataFrame([
        {"item": "data", "what": f"{p.posters} posters, {p.n_test if p.n_test is not None else '?'} test posters, "
                                 f"{len(p.genres) if p.genres else '?'} genres",
         "where": "dataset manifest / data_report.json", "id": "", "note": ", ".join(p.genres)},
        {"item": "front-end weights", "what": f"DenseNet-169 weights: {p.weights}", "where": "feature store manifest",
         "id": "", "note": p.weights_note}], columns=["item", "what", "where", "id", "note"])


def _write_tables(data: ReportData, tmp: Path) -> list[str]:
    """The CSV tables (each with the data provenance columns) and ``counts.json``; returns the file names."""
    tabs = {"energy.csv": data.energy, "accuracy.csv": data.accuracy, "accuracy_ci.csv": data.ci,
            "layers.csv": data.layers, "headline.csv": data.headline, "models.csv": data.models,
            "pipelines.csv": data.pipelines, "break_even.csv": data.break_even, "seeds.csv": data.seeds}
    for name, df in (("deployed.csv", data.deployed), ("chips.csv", data.chips), ("latency.csv", data.latency)):
        if not df.empty:
            tabs[name] = df
    for name, df in tabs.items():
        _csv(df, tmp / name, data.data)
    files = list(tabs)
    atomic_write_json(tmp / "counts.json", {r.name: r.counts.to_dict() for r in data.runs if r.counts is not None}
                      | ({"frontend": data.frontend.to_dict()} if data.frontend is not None else {}))
    files.append("counts.json")
    return files
