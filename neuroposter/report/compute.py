"""The report's numbers: runs, bundles and stored op counts gathered into tables (no files written here).

:func:`compute_report` reads the workspace (:mod:`neuroposter.report.collect`), prices the stored op counts on
the hardware profiles (:mod:`neuroposter.report.tables`) and returns one :class:`ReportData`; the writers in
:mod:`neuroposter.report.build` only render it. Nothing here lowers, simulates or exports a model: op counts
come from the bundles' ``op_counts.json``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from neuroposter.errors import DataError, ManifestError, UsageError
from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.profiles import HardwareProfile, list_profiles, load_profile
from neuroposter.report import (banner, chips, collect, deployed, headline, pipelines, seeds, tables, uncertainty,
                               verdict)

__all__ = ["ReportData", "compute_report"]

log = logging.getLogger(__name__)

# Device profiles shown by default (every profile that is not a generic 45 nm arithmetic table).
_GENERIC = {"horowitz_45nm_fp32", "horowitz_45nm_fp16", "horowitz_45nm_int8", "lemaire_45nm"}
# onnxruntime timing per batch size: one warm-up run (the first run pays the allocations), up to 10 timed runs
# but at most ~3 s of them (at least 3 runs): a DenseNet-169 at batch 8 takes ~1 s per run on a small CPU.
_LATENCY = {"warmup": 1, "repeats": 10, "max_seconds": 3.0}


@dataclass
class ReportData:
    """Everything the report shows, computed; rendering adds nothing but figures and text.

    Attributes:
        runs: the runs (with their counts and notes).
        bundles: their verified export bundles.
        roots: export roots given explicitly.
        device_profiles: profiles of the device view.
        profiles: every profile used (device, accounting views, front end), by name.
        frontend: the front end's counts (None: not included).
        frontend_source: where they come from, or why they are missing.
        frontend_profile: the ANN profile pricing the front end on neuromorphic chips.
        samples: the SNN test-sample count asked for (None: whatever the bundles store).
        onnx_paths: run -> ONNX file of its bundle (counted and timed).
        energy: the long energy table.
        breakdowns: ``(run, evaluation|component) -> EnergyBreakdown``.
        accuracy: the accuracy table.
        ci: the paired-bootstrap intervals.
        layers: per-layer counts.
        verdicts: mapping verdicts from the bundles.
        latency: onnxruntime latency rows.
        views: the headline's key views.
        headline: one row per run.
        summary: the headline sentences.
        deployed: chip bundles' deployed accuracy beside the run's energy (:mod:`neuroposter.report.deployed`).
        chips: the per-chip table: what runs on each chip target, its accuracy and energy
            (:mod:`neuroposter.report.chips`).
        data: the data banner's facts: posters, front-end weights, test posters, genres
            (:mod:`neuroposter.report.banner`).
        seeds: which runs are pooled in each model's seed statistics and why others are not
            (:mod:`neuroposter.report.seeds`).
        models: one row per model (representative run): the compact table's and the verdict's numbers
            (:func:`neuroposter.report.verdict.model_table`).
        pipelines: one row per image-to-genres pipeline, as deployed, front end included
            (:func:`neuroposter.report.pipelines.pipeline_rows`).
        break_even: per headline view, the spiking pipeline against the cheapest ANN of similar accuracy and the
            break-even firing rate / front-end cost (:func:`neuroposter.report.verdict.break_even_table`).
        verdict: the verdict's sentences.
        warnings: problems met (shown in the report).
    """

    runs: list[collect.RunInfo]
    bundles: list[collect.Bundle]
    roots: list[Path]
    device_profiles: list[HardwareProfile]
    profiles: dict[str, HardwareProfile]
    frontend: OpCounts | None
    frontend_source: str
    frontend_profile: str
    samples: int | None
    onnx_paths: dict[str, Path]
    energy: pd.DataFrame
    breakdowns: dict[Any, Any]
    accuracy: pd.DataFrame
    ci: pd.DataFrame
    layers: pd.DataFrame
    verdicts: list[dict[str, Any]]
    latency: pd.DataFrame
    views: list[Any]
    headline: pd.DataFrame
    summary: list[str]
    deployed: pd.DataFrame = field(default_factory=pd.DataFrame)
    chips: pd.DataFrame = field(default_factory=pd.DataFrame)
    data: banner.DataProvenance = field(default_factory=banner.DataProvenance)
    seeds: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=seeds.SEED_COLUMNS))
    models: pd.DataFrame = field(default_factory=pd.DataFrame)
    pipelines: pd.DataFrame = field(default_factory=pd.DataFrame)
    break_even: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=verdict.BREAK_EVEN_COLUMNS))
    verdict: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def compute_report(ws: Path, *, runs: Sequence[str] | None, profiles: Sequence[str] | None, samples: int | None,
                   exports: list[Path], frontend: OpCounts | str | None, frontend_profile: str, latency: bool,
                   counts: Mapping[str, OpCounts] | None, bootstrap: int, bootstrap_seed: int) -> ReportData:
    """Gathers the runs, bundles and stored counts of ``ws`` and computes every table of the report.

    Raises:
        DataError: no runs. ManifestError: a changed or stale run, bundle or input.
        UsageError: stored SNN counts made on another number of test samples than ``samples``.
    """
    warnings: list[str] = []
    run_infos, bundles = _inputs(ws, runs, exports, warnings)
    device_profiles, all_profiles = _profiles(profiles, frontend_profile)
    onnx_paths = _counts(ws, run_infos, bundles, counts, samples, warnings)
    fe_counts, fe_source = _frontend(frontend, run_infos, bundles, warnings)
    energy, breakdowns = tables.energy_table(run_infos, tables.plan_evaluations(device_profiles), all_profiles,
                                             fe_counts, collect.feature_models(), frontend_profile)
    ci = pd.DataFrame(columns=uncertainty.CI_COLUMNS)
    if bootstrap > 0:
        ci, ci_warnings = uncertainty.accuracy_ci(run_infos, headline.SNN_MODEL, B=bootstrap, seed=bootstrap_seed)
        warnings += ci_warnings
    views = headline.key_views(energy, frontend_profile)
    head = headline.headline_table(run_infos, energy, views)
    deployed_rows = deployed.deployed_rows(bundles, run_infos, head, views)
    chip_rows = chips.chip_rows(bundles, run_infos, host_profile=frontend_profile, profiles=all_profiles)
    groups = seeds.seed_groups(run_infos)
    models = verdict.model_table(run_infos, head, ci, groups, chip_rows, views, headline.SNN_MODEL)
    be = verdict.break_even_table(models, run_infos, views, all_profiles, headline.SNN_MODEL)
    text = verdict.verdict_text(models, be, chip_rows, snn=headline.SNN_MODEL, frontend_counted=fe_counts is not None,
                                frontend_is_cnn_backbone=fe_counts is not None and frontend == "auto", views=views)
    pipe = pipelines.pipeline_rows(bundles, run_infos, head, ci, views)
    pipe_text = pipelines.pipelines_text(pipe, views) if len(pipe) >= 2 else None
    if pipe_text:   # right after the answer and the per-model winners
        text.insert(min(2, len(text)), pipe_text)
    return ReportData(
        runs=run_infos, bundles=bundles, roots=exports, device_profiles=device_profiles, profiles=all_profiles,
        frontend=fe_counts, frontend_source=fe_source, frontend_profile=frontend_profile, samples=samples,
        onnx_paths=onnx_paths, energy=energy, breakdowns=breakdowns, accuracy=tables.accuracy_table(run_infos),
        ci=ci, layers=tables.layer_table(run_infos), verdicts=collect.mapping_verdicts(bundles, run_infos),
        latency=_latency(onnx_paths, warnings) if latency else pd.DataFrame(), views=views, headline=head,
        summary=headline.headline_text(head, views, run_infos, ci=ci) + deployed.deployed_text(deployed_rows),
        deployed=deployed_rows, chips=chip_rows, data=banner.data_provenance(run_infos), seeds=groups, models=models,
        pipelines=pipe, break_even=be, verdict=text, warnings=warnings)


def _inputs(ws: Path, runs: Sequence[str] | None, roots: list[Path], warnings: list[str]
            ) -> tuple[list[collect.RunInfo], list[collect.Bundle]]:
    """The report's runs and their verified bundles."""
    from neuroposter.workspace import EXPORTS_NAME

    run_infos = collect.find_runs(ws / "runs", list(runs) if runs else None, warnings)
    if not run_infos:
        raise DataError(f"no runs under {ws / 'runs'}; train models with `neuroposter train` first")
    all_runs = {p.name for p in (ws / "runs").glob("*") if p.is_dir()} if (ws / "runs").is_dir() else set()
    bundles = collect.find_bundles(ws, roots, run_infos, warnings, all_runs)
    if not roots and not (ws / EXPORTS_NAME).is_file() and Path("export").is_dir():
        warnings.append(f"no {ws / EXPORTS_NAME} (the registry of this workspace's export bundles), so ./export was "
                        "not read (bundles exported by an older neuroposter are not recorded); pass --exports export "
                        "to include them")
    return run_infos, bundles


def _profiles(profiles: Sequence[str] | None, frontend_profile: str
              ) -> tuple[list[HardwareProfile], dict[str, HardwareProfile]]:
    """The device-view profiles, and every profile the report prices on (by name)."""
    names = list(profiles) if profiles else [p for p in list_profiles() if p not in _GENERIC]
    device_profiles = [load_profile(p) for p in names]
    all_profiles: dict[str, HardwareProfile] = {p.name: p for p in device_profiles}
    for p in (*tables.PRECISION_PROFILES, tables.MEMORY_PROFILE, tables.PAPER_PROFILE, frontend_profile):
        all_profiles.setdefault(load_profile(p).name, load_profile(p))
    return device_profiles, all_profiles


def _counts(ws: Path, runs: list[collect.RunInfo], bundles: list[collect.Bundle],
            counts: Mapping[str, OpCounts] | None, samples: int | None, warnings: list[str]) -> dict[str, Path]:
    """Sets every run's counts (precomputed, else stored in its bundle); a run without them gets a note.

    Returns:
        run -> the ONNX file of its bundle (ANN runs).
    """
    onnx_paths: dict[str, Path] = {}
    for r in runs:
        if counts and r.name in counts:
            r.counts, r.counts_source = counts[r.name], str(counts[r.name].meta.get("source", "precomputed counts"))
            continue
        if r.fitted:
            r.notes.append(f"{r.name}: a chip-fitted variant, priced on its chip with its host part (section 'Per "
                           "chip'), not in the chip-independent energy views")
            continue
        try:
            entry, b = collect.stored_counts(r, bundles, ws)
        except DataError as exc:
            msg = f"{r.name}: no op counts ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            r.notes.append(msg)
            warnings.append(msg)
            continue
        if r.kind == "snn" and samples is not None:
            collect.check_samples(r, entry, b, samples, ws)
        r.counts, r.counts_source = entry.counts, entry.provenance
        onnx = b.onnx() if r.kind == "ann" else None
        if onnx is not None:
            onnx_paths[r.name] = onnx
    return onnx_paths


def _frontend(frontend: OpCounts | str | None, runs: list[collect.RunInfo], bundles: list[collect.Bundle],
              warnings: list[str]) -> tuple[OpCounts | None, str]:
    """The front end's counts and where they come from (or why they are missing: also a warning)."""
    if isinstance(frontend, OpCounts):
        return frontend, str(frontend.meta.get("source", "precomputed front-end counts"))
    if frontend == "auto" and any(r.model in collect.feature_models() for r in runs):
        try:
            return collect.frontend_counts(runs, bundles)
        except (ManifestError, UsageError):
            raise
        except DataError as exc:
            msg = f"front end not counted ({type(exc).__name__}: {exc}); feature-model totals exclude it"
            warnings.append(msg)
            return None, msg
    return None, "not included (frontend=None): SNN and ann-transformer totals EXCLUDE the feature extractor"


def _latency(onnx_paths: Mapping[str, Path], warnings: list[str]) -> pd.DataFrame:
    """onnxruntime latency of the ONNX bundles at batch 1 and 8 (a failure is a warning)."""
    from neuroposter.profiling.latency import measure_latency

    rows: list[dict[str, Any]] = []
    for rn, p in onnx_paths.items():
        try:
            for lr in measure_latency(p, batches=(1, 8), **_LATENCY):
                rows.append({"run": rn, "onnx": str(p), **lr.to_dict()})
        except Exception as exc:  # noqa: BLE001 - one run's timing is never worth losing the report
            warnings.append(f"{rn}: latency not measured ({type(exc).__name__}: {exc})")
    return pd.DataFrame(rows)


def export_roots(exports: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    """``--exports`` as a list of folders."""
    if exports is None:
        return []
    if isinstance(exports, (str, os.PathLike)):
        return [Path(exports)]
    return [Path(e) for e in exports]
