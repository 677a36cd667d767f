"""Builds the energy profiling report: ``WORKSPACE/reports/<name>/`` (HTML, Markdown, CSV, PNG), atomically.

The report is written through :func:`neuroposter.artifact.write_artifact`: its lock is held for the whole
command (a second writer of the same report fails at once), the destination is checked before anything is
counted (``--name .`` or a folder that is not a report is refused; an existing report needs ``force``), and
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

from neuroposter._io import atomic_write_json, sha256_file
from neuroposter.errors import DataError, ManifestError, UsageError
from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.profiles import HardwareProfile, list_profiles, load_profile
from neuroposter.report import collect, figures, headline, tables, uncertainty
from neuroposter.report.writers import Section, to_html, to_markdown

__all__ = ["ReportResult", "build_report"]

log = logging.getLogger(__name__)

# Device profiles shown by default (every profile that is not a generic 45 nm arithmetic table).
_GENERIC = {"horowitz_45nm_fp32", "horowitz_45nm_fp16", "horowitz_45nm_int8", "lemaire_45nm"}
# onnxruntime timing per batch size: one warm-up run (the first run pays the allocations), up to 10 timed runs
# but at most ~3 s of them (at least 3 runs): a DenseNet-169 at batch 8 takes ~1 s per run on a small CPU.
_LATENCY = {"warmup": 1, "repeats": 10, "max_seconds": 3.0}


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
    """

    out_dir: Path
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    energy: pd.DataFrame | None = None
    accuracy: pd.DataFrame | None = None
    headline: pd.DataFrame | None = None
    summary: list[str] = field(default_factory=list)
    accuracy_ci: pd.DataFrame | None = None


def build_report(
    workspace: str | os.PathLike[str],
    *,
    name: str = "default",
    runs: Sequence[str] | None = None,
    profiles: Sequence[str] | None = None,
    samples: int = 32,
    exports: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    frontend: OpCounts | str | None = "auto",
    frontend_profile: str = tables.DEFAULT_FRONTEND_PROFILE,
    latency: bool = True,
    allow_export: bool = True,
    counts: Mapping[str, OpCounts] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    force: bool = False,
) -> ReportResult:
    """Builds the report from the workspace's runs, export bundles and hardware profiles.

    Args:
        workspace: the workspace root.
        name: report name (``WORKSPACE/reports/<name>/``).
        runs: run names (default: every run under ``WORKSPACE/runs``).
        profiles: device profiles to price on (names or YAML paths; default: every chip and ANN platform).
        samples: test samples the SNNs are simulated on (an integer >= 1).
        exports: export-bundle roots to read besides the bundles recorded in ``WORKSPACE/exports.json``
            (the registry every export writes; it is found from any current folder).
        frontend: ``"auto"`` (count the DenseNet-169 backbone), precomputed :class:`OpCounts`, or None (no front
            end: the report then states that the SNN totals exclude it).
        frontend_profile: the ANN profile pricing the front end in the device view of neuromorphic chips.
        latency: measure onnxruntime latency of the ONNX bundles (batch 1 and 8).
        allow_export: export ANN runs without a bundle into a temporary folder to count them.
        counts: precomputed counts per run name (skips lowering/simulation or ONNX for those runs).
        out_dir: write here instead of ``WORKSPACE/reports/<name>``.
        resolved_config: options to save as ``resolved_config.yaml``.
        bootstrap: resamples of the paired bootstrap over test posters (0: no intervals).
        bootstrap_seed: its seed.
        force: replace an existing report of the same name.

    Returns:
        :class:`ReportResult`.

    Raises:
        UsageError: an unsafe ``name``, a destination that is not a report, an existing report without
            ``force``, ``samples`` below 1. ArtifactBusyError: another process writes the same report.
        ManifestError: a run or bundle changed since it was written, or a bundle is stale (says what to re-run).
        DataError: no runs found.
    """
    from neuroposter.artifact import artifact_lock, check_destination
    from neuroposter.workspace import Workspace

    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise UsageError(f"samples must be an integer >= 1 (test samples the SNNs are simulated on), got {samples!r}")
    ws = Path(workspace)
    target = Path(out_dir) if out_dir is not None else Workspace(ws).report(name)
    check_destination(target, "report", force=force, protect=[ws / "runs"], option="--name")
    with artifact_lock(target):  # the whole command: a second writer fails now, not after the counting
        return _build(ws, target, runs=runs, profiles=profiles, samples=int(samples), exports=exports,
                      frontend=frontend, frontend_profile=frontend_profile, latency=latency,
                      allow_export=allow_export, counts=counts, resolved_config=resolved_config,
                      bootstrap=bootstrap, bootstrap_seed=bootstrap_seed, force=force)


def _export_roots(exports: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    if exports is None:
        return []
    if isinstance(exports, (str, os.PathLike)):
        return [Path(exports)]
    return [Path(e) for e in exports]


def _figure(warnings: list[str], what: str, draw: Callable[..., str | None], *args: Any, **kw: Any) -> str | None:
    """Draws one figure; a failure leaves the figure out with a warning instead of sinking the report."""
    try:
        return draw(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - a figure is never worth losing the report's numbers
        log.debug("figure %s failed", what, exc_info=True)
        warnings.append(f"figure {what} not drawn ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return None


def _build(ws: Path, target: Path, *, runs, profiles, samples, exports, frontend, frontend_profile, latency,
           allow_export, counts, resolved_config, bootstrap, bootstrap_seed, force) -> ReportResult:
    from neuroposter.artifact import write_artifact
    from neuroposter.workspace import EXPORTS_NAME

    warnings: list[str] = []
    roots = _export_roots(exports)
    run_infos = collect.find_runs(ws / "runs", list(runs) if runs else None, warnings)
    if not run_infos:
        raise DataError(f"no runs under {ws / 'runs'}; train models with `neuroposter train` first")
    all_runs = {p.name for p in (ws / "runs").glob("*") if p.is_dir()} if (ws / "runs").is_dir() else set()
    bundles = collect.find_bundles(ws, roots, run_infos, warnings, all_runs)
    if not roots and not (ws / EXPORTS_NAME).is_file() and Path("export").is_dir():
        warnings.append(f"no {ws / EXPORTS_NAME} (the registry of this workspace's export bundles), so ./export was "
                        "not read (bundles exported by an older neuroposter are not recorded); pass --exports export "
                        "to include them")
    names = list(profiles) if profiles else [p for p in list_profiles() if p not in _GENERIC]
    device_profiles = [load_profile(p) for p in names]
    all_profiles: dict[str, HardwareProfile] = {p.name: p for p in device_profiles}
    for p in (*tables.PRECISION_PROFILES, tables.MEMORY_PROFILE, tables.PAPER_PROFILE, frontend_profile):
        all_profiles.setdefault(load_profile(p).name, load_profile(p))

    # ---- counts
    onnx_paths: dict[str, Path] = {}
    for r in run_infos:
        if counts and r.name in counts:
            r.counts, r.counts_source = counts[r.name], str(counts[r.name].meta.get("source", "precomputed counts"))
            continue
        try:
            if r.kind == "snn":
                r.counts, r.counts_source = collect.snn_counts_for_run(r, ws, samples=samples)
            else:
                r.counts, r.counts_source, p = collect.ann_counts_for_run(r, bundles, ws, allow_export=allow_export)
                if p is not None:
                    onnx_paths[r.name] = p
        except (ManifestError, UsageError):
            raise  # a changed or stale input is refused, never priced
        except Exception as exc:  # noqa: BLE001 - one run's failure must not sink the report
            msg = f"{r.name}: no op counts ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            r.notes.append(msg)
            warnings.append(msg)
    fe_counts: OpCounts | None = None
    fe_source = "not included (frontend=None): SNN and ann-transformer totals EXCLUDE the feature extractor"
    if isinstance(frontend, OpCounts):
        fe_counts, fe_source = frontend, str(frontend.meta.get("source", "precomputed front-end counts"))
    elif frontend == "auto" and any(r.model in collect.FEATURE_MODELS for r in run_infos):
        try:
            fe_counts, fe_source = collect.frontend_counts(ws, run_infos, bundles)
        except ManifestError:
            raise
        except Exception as exc:  # noqa: BLE001
            msg = f"front end not counted ({type(exc).__name__}: {exc}); feature-model totals exclude it"
            warnings.append(msg)
            fe_source = msg

    # ---- tables
    evals = tables.plan_evaluations(device_profiles)
    energy, breakdowns = tables.energy_table(run_infos, evals, all_profiles, fe_counts, collect.FEATURE_MODELS,
                                             frontend_profile)
    accuracy = tables.accuracy_table(run_infos)
    ci = pd.DataFrame(columns=uncertainty.CI_COLUMNS)
    if bootstrap > 0:
        ci, ci_warnings = uncertainty.accuracy_ci(run_infos, headline.SNN_MODEL, B=bootstrap, seed=bootstrap_seed)
        warnings += ci_warnings
    layers = tables.layer_table(run_infos)
    verdicts = collect.mapping_verdicts(bundles, run_infos)
    lat_rows: list[dict[str, Any]] = []
    if latency:
        from neuroposter.profiling.latency import measure_latency

        for rn, p in onnx_paths.items():
            try:
                for lr in measure_latency(p, batches=(1, 8), **_LATENCY):
                    lat_rows.append({"run": rn, "onnx": str(p), **lr.to_dict()})
            except Exception as exc:  # noqa: BLE001
                warnings.append(f"{rn}: latency not measured ({type(exc).__name__}: {exc})")
    latency_df = pd.DataFrame(lat_rows)

    views = headline.key_views(energy, frontend_profile)
    head = headline.headline_table(run_infos, energy, views)
    summary = headline.headline_text(head, views, run_infos, ci=ci)
    result = ReportResult(target, warnings=warnings, energy=energy, accuracy=accuracy, headline=head, summary=summary,
                          accuracy_ci=ci)
    protect = [ws / "runs", *(r.path for r in run_infos), *(b.path for b in bundles)]
    with write_artifact(target, "report", force=force, protect=protect, option="--name") as tmp:
        files: list[str] = []
        fig = functools.partial(_figure, warnings)
        paper_label = tables.Evaluation("sdt_paper", tables.PAPER_PROFILE).label
        figs = {
            "acc": fig("accuracy_vs_energy", figures.accuracy_vs_energy, head, views, tmp / "accuracy_vs_energy.png"),
            "acc_all": fig("accuracy_vs_energy_all_profiles", figures.accuracy_vs_energy_all, energy, accuracy,
                           tmp / "accuracy_vs_energy_all_profiles.png"),
            "head_fe": fig("head_vs_frontend", figures.head_vs_frontend, head, views, tmp / "head_vs_frontend.png"),
            "bd_paper": fig("breakdown_sdt_paper", figures.energy_breakdown, breakdowns, paper_label,
                            tmp / "breakdown_sdt_paper.png",
                            f"SDT-paper view ({tables.paper_constants(all_profiles.get(tables.PAPER_PROFILE))}, "
                            "first layer once)"),
            "bd_memory": fig("breakdown_memory", figures.energy_breakdown, breakdowns,
                             tables.Evaluation("memory", tables.MEMORY_PROFILE).label, tmp / "breakdown_memory.png",
                             "memory-aware view (Lemaire-style)"),
            "bd_int8": fig("breakdown_int8", figures.energy_breakdown, breakdowns,
                           tables.Evaluation("precision", "horowitz_45nm_int8").label, tmp / "breakdown_int8.png",
                           "precision-matched view, int8 (Horowitz)"),
            "fr": fig("firing_rates", figures.firing_rates, run_infos, tmp / "firing_rates.png"),
            "ops": fig("ops_per_layer", figures.ops_per_layer, run_infos, tmp / "ops_per_layer.png"),
            "map": fig("mapping_verdicts", figures.mapping_verdicts_fig, verdicts, tmp / "mapping_verdicts.png"),
            "ci": fig("accuracy_ci", figures.bootstrap_forest, ci, tmp / "accuracy_ci.png"),
        }
        device_bd: dict[str, str | None] = {}
        for p in device_profiles:
            lab = tables.Evaluation("device", p.name).label
            if any(k == lab + "|model" and b.available for (_, k), b in breakdowns.items()):
                device_bd[p.name] = fig(f"breakdown_device_{p.name}", figures.energy_breakdown, breakdowns, lab,
                                        tmp / f"breakdown_device_{p.name}.png",
                                        f"device view: {p.name} ({p.scope}, {p.evidence})")
        # a figure that failed half-way may have left its file: only figures that were drawn are kept
        drawn = {f for f in list(figs.values()) + list(device_bd.values()) if f}
        for png in tmp.glob("*.png"):
            if png.name not in drawn:
                png.unlink()
        files += [f for f in list(figs.values()) + list(device_bd.values()) if f]
        energy.to_csv(tmp / "energy.csv", index=False)
        accuracy.to_csv(tmp / "accuracy.csv", index=False)
        ci.to_csv(tmp / "accuracy_ci.csv", index=False)
        layers.to_csv(tmp / "layers.csv", index=False)
        head.to_csv(tmp / "headline.csv", index=False)
        files += ["energy.csv", "accuracy.csv", "accuracy_ci.csv", "layers.csv", "headline.csv"]
        if not latency_df.empty:
            latency_df.to_csv(tmp / "latency.csv", index=False)
            files.append("latency.csv")
        atomic_write_json(tmp / "counts.json", {r.name: r.counts.to_dict() for r in run_infos if r.counts is not None}
                          | ({"frontend": fe_counts.to_dict()} if fe_counts is not None else {}))
        files.append("counts.json")
        provenance = _provenance(run_infos, all_profiles, fe_source, verdicts, onnx_paths)
        provenance.to_csv(tmp / "provenance.csv", index=False)
        files.append("provenance.csv")
        sections = _sections(run_infos, energy, accuracy, latency_df, verdicts, provenance, figs, device_bd,
                             fe_counts, fe_source, frontend_profile, samples, warnings, breakdowns, head, views,
                             summary, ci)
        title = "neuroposter energy profiling report"
        intro = ("Energy per inference of each trained model under several accounting views and hardware "
                 "profiles, with accuracy and the constant-predictor baselines beside it. Every number is traceable "
                 "to its run, export bundle and profile source (see Provenance).")
        (tmp / "report.md").write_text(to_markdown(title, intro, sections), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(title, intro, sections), encoding="utf-8")
        files += ["report.md", "report.html"]
        if resolved_config is not None:
            import yaml

            from neuroposter._io import to_jsonable

            (tmp / "resolved_config.yaml").write_text(yaml.safe_dump(to_jsonable(dict(resolved_config)),
                                                                     sort_keys=True), encoding="utf-8")
            files.append("resolved_config.yaml")
        inputs: dict[str, Any] = {f"run:{r.name}": {"path": str(r.path), "key": r.manifest.get("key")}
                                  for r in run_infos}
        inputs.update({f"bundle:{b.target}/{b.run}:{i}": {"path": str(b.path), "key": b.manifest.get("key")}
                       for i, b in enumerate(bundles)})
        write_manifest(tmp, "report", inputs=inputs,
                       config={"profiles": [p.name for p in device_profiles], "samples": samples,
                               "exports": [str(e) for e in roots], "frontend_profile": frontend_profile,
                               "bootstrap": {"B": bootstrap, "seed": bootstrap_seed, "level": 0.95}},
                       extra={"outputs": sorted(files)})
        files.append("manifest.json")
    result.files = sorted(files)
    return result


def _ci_block(s: Section, ci: pd.DataFrame, fig: str | None) -> None:
    """The bootstrap intervals in the accuracy section: how they were made, the table, the forest plot."""
    if ci.empty:
        s.p("No bootstrap intervals (bootstrap disabled or no runs).")
        return
    ref = ci["reference"].iloc[0] or headline.SNN_MODEL
    n = ci["n_test"].dropna()
    s.p(f"Uncertainty from test-set sampling (accuracy_ci.csv): a paired bootstrap over the "
        f"{int(n.iloc[0]) if not n.empty else '?'} test posters (resampled with replacement, "
        f"B = {int(ci['bootstrap_B'].iloc[0])}, seed {int(ci['bootstrap_seed'].iloc[0])}; every model sees the same "
        f"resamples), recomputing each model's macro mAP and micro-F1 (at 0.5 and at its validation-tuned "
        f"thresholds) from predictions_test.npz. Brackets: 95% percentile intervals; the difference is {ref} - "
        "model on the same resamples, 'excl. 0' when its interval excludes 0. A model whose test labels differ "
        f"from {ref}'s (not the same posters in the same order) gets no paired difference. These intervals capture "
        "test-set sampling noise only, NOT seed-to-seed training noise (the models are held fixed); genres without "
        "a positive in a resample are left out of that resample's mAP.")
    s.table(uncertainty.ci_display(ci))
    if fig is not None:
        s.figure(fig, f"Paired-bootstrap differences {ref} - model (point and 95% percentile interval; left of 0: "
                      f"{ref} is worse). Test-set sampling noise only, not seed-to-seed training noise")


def _provenance(runs: list[Any], profiles: Mapping[str, HardwareProfile], fe_source: str,
                verdicts: list[dict[str, Any]], onnx_paths: Mapping[str, Path]) -> pd.DataFrame:
    rows = []
    for r in runs:
        rows.append({"item": f"run {r.name}", "what": f"model {r.model}: metrics.json, checkpoint",
                     "where": str(r.path), "id": str(r.manifest.get("key") or "")[:16],
                     "note": r.manifest.get("created", "")})
        rows.append({"item": f"counts {r.name}", "what": "op counts", "where": r.counts_source or "-",
                     "id": (sha256_file(onnx_paths[r.name])[:16] if r.name in onnx_paths else ""),
                     "note": "; ".join(r.notes)})
    rows.append({"item": "front end", "what": "DenseNet-169 feature extractor counts", "where": fe_source,
                 "id": "", "note": ""})
    for v in verdicts:
        rows.append({"item": f"bundle {v['target']}/{v['run']}", "what": "summary.json / mapping.json",
                     "where": v["path"], "id": "", "note": v["verdict"]})
    for p in profiles.values():
        rows.append({"item": f"profile {p.name}", "what": f"{p.kind}, {p.scope}, evidence {p.evidence}",
                     "where": str(p.path or ""), "id": sha256_file(p.path)[:16] if p.path else "",
                     "note": " | ".join(p.sources)})
    return pd.DataFrame(rows, columns=["item", "what", "where", "id", "note"])


def _device_profiles_where(energy: pd.DataFrame, *, scope: str | None = None, available: bool | None = None) -> str:
    """Comma-separated device-view profiles of this report with the given scope / model-row availability."""
    if energy.empty:
        return "none in this report"
    e = energy[(energy["view"] == "device") & (energy["component"] == "model")]
    if scope is not None:
        e = e[e["scope"] == scope]
    if available is not None:
        e = e[e["available"].astype(bool) == available]
    names = sorted(set(e["profile"]))
    return ", ".join(names) if names else "none in this report"


def _sections(runs, energy, accuracy, latency_df, verdicts, provenance, figs, device_bd, fe_counts, fe_source,
              frontend_profile, samples, warnings, breakdowns, head, views, summary, ci) -> list[Section]:
    secs: list[Section] = []
    s = Section("Headline: is the spiking transformer worth deploying?")
    s.p("One row per model. Accuracy on the test split beside the best constant predictor; energy per inference "
        "(mJ) of the model alone and of the whole pipeline including the DenseNet-169 front end where the model "
        "consumes its features (sdt, snn-mlp, ann-transformer; cnn and vit read images, so both numbers are the "
        "same). Each column names its view and profile; the device column names the chip per cell. 'n/a': a "
        "needed constant is not published; 'not priced': the view does not apply. Ranges and every other profile: "
        "see 'Energy per view and profile'; exact rows: headline.csv / energy.csv.")
    s.table(headline.headline_display(head, views))
    if summary:
        s.items(summary)
    s.figure(figs["acc"], "Test mAP vs energy per inference, one panel per headline view: filled marker = pipeline "
                          "with the front end, hollow = model alone; dashed: best constant-predictor baseline")
    s.figure(figs["head_fe"], "Model alone vs DenseNet-169 front end (hatched) per model, headline views, linear mJ")
    secs.append(s)

    s = Section("What the estimates include and exclude")
    s.items([
        f"SDT-paper view: {tables.paper_constants()} ({tables.PAPER_PROFILE}). The first connection layer of an SNN "
        "(the encoding layer) is priced as dense MACs, reported both once per inference and once per timestep (x T); "
        "every other layer as measured synaptic ops x E_AC. SDSA masks, neuron updates, memory and static power are "
        "NOT included (the papers' convention).",
        "Precision-matched view: Horowitz fp32 / fp16 / int8 arithmetic only; SNN neuron updates priced every step "
        "(one MAC + one AC), SDSA masks as one AC each (an upper bound). Memory and static power excluded.",
        "Memory-aware view (Lemaire et al. 2022): arithmetic plus weight, state, input-event and spike memory accesses "
        "priced by memory size; ANNs with one weight and one input read per MAC (no reuse, pessimistic). Routing, "
        "DRAM and static power excluded.",
        "Device view: per-term chip constants (synops, neuron updates, spikes) or one all-in constant "
        f"({_device_profiles_where(energy, scope='all-in')}) never combined with extras; constants known only as a "
        "lower bound (e.g. peak-derived GPU figures) give LOWER bounds (shown as '>= x'; high end '-' in the CSV); "
        "chips without published per-op energy "
        f"({_device_profiles_where(energy, available=False)}) are marked unavailable rather "
        "than guessed. Static power, routing hops and host I/O are excluded.",
        "Front end: the SNN pipeline (and the ANN transformer on features) needs the DenseNet-169 feature extractor; "
        "its energy is shown as its own component and included in every pipeline total "
        f"(device view of a neuromorphic chip: front end priced on {frontend_profile}). Source: {fe_source}.",
        f"SNN counts come from simulating the deployed (NIR-lowered) network on {samples} test samples; "
        "energies are per inference (one sample, T steps).",
    ])
    if warnings:
        s.p("Problems met while building this report:")
        s.items(warnings)
    secs.append(s)

    s = Section("Accuracy (test set) and constant-predictor baselines")
    s.p("Test metrics of each model, followed by the constant-predictor baselines of the same run (accuracy.csv).")
    s.table(accuracy)
    _ci_block(s, ci, figs.get("ci"))
    secs.append(s)

    s = Section("Energy per view and profile")
    s.p("mJ per inference; rows = run, columns = view/profile. 'x (lo-hi)': range from the constants' ranges; "
        "'>= x': the constant is only a lower bound (peak-derived); 'n/a': a needed constant is not published; "
        "'-': not priced (ANNs are not priced on neuromorphic chips; the SDT first-layer xT variant applies to "
        "SNNs only). Long form with scope, evidence and sources: energy.csv and 'Full energy table' below.")
    s.p("Pipeline totals (model + DenseNet-169 front end where the model consumes features), accounting views:")
    s.table(tables.energy_pivot(energy, "pipeline", ["sdt_paper", "precision", "memory"]))
    s.p("Model alone (no front end), accounting views:")
    s.table(tables.energy_pivot(energy, "model", ["sdt_paper", "precision", "memory"]))
    s.p(f"Pipeline totals, device views (an SNN's front end priced on {frontend_profile} when the chip is "
        "neuromorphic):")
    s.table(tables.energy_pivot(energy, "pipeline", ["device"], strip_view=True))
    s.p("Model alone, device views:")
    s.table(tables.energy_pivot(energy, "model", ["device"], strip_view=True))
    s.figure(figs["acc_all"], "Secondary: test mAP vs pipeline energy for every profile of each view (one colour "
                              "per model)")
    secs.append(s)

    s = Section("Energy breakdown per term")
    s.p("Each bar splits one model's own energy into its terms (100 % = the model alone); the model's total and "
        "the front end's are given in mJ beside the bar.")
    s.figure(figs["bd_paper"], "SDT-paper view (first layer once)")
    s.figure(figs["bd_int8"], "Precision-matched int8 view")
    s.figure(figs["bd_memory"], "Memory-aware view")
    for pname, f in device_bd.items():
        s.figure(f, f"Device view on {pname}")
    s.p("Every term with its count, constant, evidence grade and source: see 'Energy terms' near the end.")
    secs.append(s)

    s = Section("Activity: firing rates and ops per layer")
    s.figure(figs["fr"], "Firing rate per layer of the SNNs on the test inputs")
    s.figure(figs["ops"], "Dense vs effective (measured) ops per layer")
    tot = []
    for r in runs:
        if r.counts is not None:
            t = r.counts.totals()
            nb = r.counts.neurobench()
            tot.append({"run": r.name, "kind": r.counts.kind, "T": r.counts.T, "samples": r.counts.samples,
                        "MACs": t["macs"], "ACs (synops)": t["acs"], "dense": t["dense_ops"],
                        "mask ops (eff.)": t["mask_ops_effective"], "SDSA adds": t["sdsa_adds"],
                        "neuron upd. dense": t["neuron_updates_dense"], "neuron upd. eff.": t["neuron_updates_effective"],
                        "spikes": t["spikes"], "NeuroBench Effective_ACs": nb["Effective_ACs"]})
    if fe_counts is not None:
        tot.append({"run": "(front end)", "kind": "ann", "T": 1, "samples": 1, "MACs": fe_counts.macs,
                    "dense": fe_counts.dense_ops})
    s.table(pd.DataFrame(tot))
    secs.append(s)

    s = Section("Mapping verdicts per chip")
    if verdicts:
        s.figure(figs["map"], "Fit / no-fit per run and target, from the export bundles")
        s.table(pd.DataFrame(verdicts))
    else:
        s.p("No export bundles with summary.json / mapping.json were found; run `neuroposter export --target <chip>`.")
    secs.append(s)

    s = Section("Measured latency (onnxruntime, this machine)")
    if latency_df.empty:
        s.p("Not measured (no ONNX bundles, or --no-latency).")
    else:
        s.table(latency_df[["run", "batch", "median_ms", "q1_ms", "q3_ms", "iqr_ms", "per_sample_ms",
                            "throughput_per_s", "repeats", "machine"]])
    secs.append(s)

    s = Section("Counting conventions")
    s.items([
        "Synaptic ops = sum over input events of the fan-out (non-zero weights reaching a valid output), exact for "
        "weight-shared convolutions; equal to NeuroBench's Effective_ACs (binarise inputs and weights, re-run, sum). "
        "Inputs outside {-1,0,1} make a layer's ops MACs (NeuroBench's rule).",
        "Neuron updates: dense = every neuron every step; effective = neuron-steps with an input event or a non-zero "
        "bias/leak. SDSA: AND masks counted per element; token sums/broadcasts as additions.",
        "ANN MACs from ONNX: Conv, ConvTranspose, Gemm and MatMul (incl. attention QK^T and AV); other arithmetic per "
        "element with fixed factors (softmax 3, LayerNorm 8, BatchNorm 2); data movement not counted.",
    ])
    secs.append(s)

    s = Section("Full energy table (every run, view, profile and component)")
    s.p("The long form of the tables above (energy.csv has it with the profile and counts sources).")
    s.table(energy[["run", "component", "evaluation", "priced_on", "scope", "evidence", "energy_mj", "low_mj",
                    "high_mj", "available", "reason"]])
    secs.append(s)

    rows = []
    for (run, key), b in breakdowns.items():
        if not key.endswith("|model") or not b.available:
            continue
        for t in b.terms:
            rows.append({"run": run, "evaluation": key[:-6], "term": t.term, "count": t.count, "constant": t.constant,
                         "mJ": t.pj * 1e-9, "evidence": t.evidence, "source": t.source[:90]})
    s = Section("Energy terms (every model, evaluation and term)")
    s.p("Every term with its count, constant, evidence grade and source:")
    s.table(pd.DataFrame(rows))
    secs.append(s)

    s = Section("Provenance")
    s.p("Where every number comes from: runs (manifest keys), counts (simulation or ONNX bundle with hash), the front "
        "end, export bundles and hardware profiles (file hash and sources with evidence tags).")
    s.table(provenance)
    secs.append(s)
    return secs
