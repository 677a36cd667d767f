"""The report's text: its sections (Markdown/HTML via :mod:`neuroposter.report.writers`) from computed data.

:func:`sections` turns a :class:`~neuroposter.report.compute.ReportData` plus the drawn figures into the
report's sections, one short function per section; nothing here computes a number the tables do not hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from neuroposter._io import sha256_file
from neuroposter.profiling.profiles import HardwareProfile
from neuroposter.report import headline, tables, uncertainty, verdict
from neuroposter.report.pipelines import missing_pipelines, pipelines_display
from neuroposter.report.compute import ReportData
from neuroposter.report.writers import Section

__all__ = ["sections", "provenance_table", "device_profiles_where"]

Figures = Mapping[str, "str | None"]


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


def provenance_table(runs: list[Any], profiles: Mapping[str, HardwareProfile], fe_source: str,
                verdicts: list[dict[str, Any]], onnx_paths: Mapping[str, Path]) -> pd.DataFrame:
    """The provenance table: runs, counts, front end, bundles and profiles, with ids (hashes, keys)."""
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


def device_profiles_where(energy: pd.DataFrame, *, scope: str | None = None, available: bool | None = None) -> str:
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



def sections(data: ReportData, provenance: pd.DataFrame, figs: Figures, device_bd: Figures) -> list[Section]:
    """The report's sections, answer first: the verdict with the compact table and the accuracy-vs-energy figure
    (shown open), then every other section folded (``Section.collapsed``).

    Args:
        data: the computed report.
        provenance: the provenance table.
        figs: figure file per key (None: not drawn).
        device_bd: device-view breakdown figure per profile.
    """
    secs = [_verdict(data, figs), _compact_details(data, figs)]
    # ---- HOOK (issue #14, helper D): the model cards and the standard-architecture reference table of
    # ---- neuroposter/report/baselines.py go here, right after the compact table's details.
    base = _baselines(data)
    if base is not None:
        secs.append(base)
    secs += [_scope(data), _accuracy(data, figs), _deployed(data), _chips(data, figs), _energy(data, figs),
             _breakdown(figs, device_bd), _activity(data, figs), _mapping(data, figs), _latency(data),
             _conventions(), _full_table(data), _terms(data), _provenance(provenance)]
    for s in secs[1:]:
        s.collapsed = True
    return secs


VERDICT_TITLE = "Should I deploy the spiking model, and where?"


def _verdict(data: ReportData, figs: Figures) -> Section:
    s = Section(VERDICT_TITLE)
    s.items(data.verdict)
    views = verdict.compact_views(data.views)
    s.table(verdict.compact_display(data.models, views))
    s.note("One row per model (its representative run; chip-fitted variants: see 'Per chip'). Test mAP with its 95 % "
           "bootstrap interval over the test posters (or the mean ± sd over seeds of the same training budget); "
           "'constant': the best constant predictor's mAP. Energy in mJ per inference, 'alone / pipeline' = the model "
           "alone / with the DenseNet-169 front end it reads (one number: the model reads images itself); "
           + "; ".join(f"{(getattr(v, 'short', '') or v.title).split(' (')[0]} = {v.title}" for v in views)
           + "; '>=': a lower bound. 'runs on': chips with a verified deployment of the model (full model, its "
           "quantisation-aware run) or, for an ANN, the device-view profile. Exact numbers: models.csv, "
           "break_even.csv, headline.csv.")
    if data.pipelines is not None and len(data.pipelines) >= 2:
        s.table(pipelines_display(data.pipelines, views))
        s.note("The poster pipelines side by side, image to genres, as deployed: test mAP of the deployed network "
               "(the chip's integer network, the ONNX model in onnxruntime, or the NIR graph, which equals the model "
               "spike for spike) with its 95 % bootstrap interval over the test posters; 'constant': the best "
               "constant predictor; energy per inference of the deployed run with its front end (DenseNet-169 where "
               "the model reads its features); the spiking front end's and stems' every layer is counted from the "
               "model's own activity. Where several bundles exist, a Loihi 2 bundle that passed its "
               "deployed-vs-trained bound stands for the pipeline. Exact numbers: pipelines.csv."
               + (" " + missing if (missing := missing_pipelines(data.pipelines)) else ""))
    left = data.seeds[~data.seeds["pooled"].astype(bool)] if not data.seeds.empty else data.seeds
    cap = ("Test mAP vs energy per inference, one marker per model (error bar: seed sd when several same-budget "
           "seeds are pooled, else the 95 % bootstrap interval); filled: pipeline with the front end, hollow: the "
           "model alone; dashed: the best constant predictor.")
    if not left.empty:
        cap += (" Left out of the seed statistics: "
                + "; ".join(f"{r['run']} ({r['reason']})" for _, r in left.iterrows()) + ".")
    s.figure(figs["acc"], cap)
    return s


def _compact_details(data: ReportData, figs: Figures) -> Section:
    s = Section("Every run in the headline views, seeds and break-even numbers")
    s.p("One row per run. Accuracy on the test split beside the best constant predictor; energy per inference "
        "(mJ) of the model alone and of the whole pipeline including the DenseNet-169 front end where the model "
        "consumes its features. Each column names its view and profile; the device column names the chip per cell. "
        "'n/a': a needed constant is not published; 'not priced': the view does not apply (headline.csv).")
    s.table(headline.headline_display(data.headline, data.views))
    if data.summary:
        s.items(data.summary)
    s.figure(figs["head_fe"], "Model alone vs DenseNet-169 front end (hatched) per model, headline views, linear mJ")
    s.p("Break-even per headline view (break_even.csv): the spiking pipeline against the cheapest ANN of similar "
        "accuracy; 'rate_break_even': the head's mean firing rate below which the pipeline would cost less (blank: "
        "none, not even zero); 'steps_break_even': the largest number of timesteps T at which it would, at the measured "
        "activity per step (blank: not even T = 1); 'frontend_break_even_mj': the front-end cost below which it would.")
    if not data.break_even.empty:
        s.table(data.break_even[["view", "snn_run", "snn_steps", "snn_firing_rate", "snn_model_mj", "snn_floor_mj",
                                 "snn_frontend_mj", "snn_pipeline_mj", "alt_model", "alt_pipeline_mj", "status",
                                 "rate_break_even", "steps_break_even", "frontend_break_even_mj", "twin_head_mj",
                                 "twin_rate_break_even"]])
    s.p("Seed statistics pool only runs of one model with the same training budget (config epochs and QAT epochs) "
        "and distinct seeds; the others are listed with the reason (seeds.csv).")
    s.table(data.seeds)
    return s


def _baselines(data: ReportData) -> Section | None:
    """Which models these are (:mod:`neuroposter.report.baselines`): a model card per run (architecture, parameters,
    input, MACs / SynOps, training budget) and the standard architectures (DenseNet-169, ViT-B/16, ViT-S/16)
    priced at the posters' input from their ONNX graphs. A failure there is a warning, never a lost report."""
    from neuroposter.report import baselines

    s = Section("Which models these are: model cards and the standard architectures at the same input")
    try:
        cards = baselines.model_cards(data.runs)
        s.items(baselines.model_cards_text(cards))
        ref = baselines.reference_table(data.runs, data.bundles, data.profiles,
                                        frontend_profile=data.frontend_profile)
        s.items(baselines.reference_table_text(ref))
        if not ref.empty:
            s.table(ref)
    except Exception as exc:  # noqa: BLE001 - the cards are never worth losing the report
        data.warnings.append(f"model cards not shown ({type(exc).__name__}: {exc})")
        return None
    return s


def _snn_samples(data: ReportData) -> str:
    """How many test samples the SNN counts of this report were made on."""
    used = sorted({int(r.counts.samples) for r in data.runs if r.counts is not None and r.counts.kind == "snn"})
    if not used:
        return "no SNN counts in this report"
    return f"{' / '.join(str(n) for n in used)} test samples"


def _scope(data: ReportData) -> Section:
    energy = data.energy
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
        f"({device_profiles_where(energy, scope='all-in')}) never combined with extras; constants known only as a "
        "lower bound (e.g. peak-derived GPU figures) give LOWER bounds (shown as '>= x'; high end '-' in the CSV); "
        "chips without published per-op energy "
        f"({device_profiles_where(energy, available=False)}) are marked unavailable rather "
        "than guessed. Static power, routing hops and host I/O are excluded.",
        "Front end: the SNN pipeline (and the ANN transformer on features) needs the DenseNet-169 feature extractor; "
        "its energy is shown as its own component and included in every pipeline total "
        f"(device view of a neuromorphic chip: front end priced on {data.frontend_profile}). "
        f"Source: {data.frontend_source}.",
        "Op counts are the ones each run's export bundle stores (op_counts.json, made by `neuroposter export`): SNN "
        "counts come from simulating the deployed (NIR-lowered) network on "
        f"{_snn_samples(data)}; energies are per inference (one sample, T steps).",
    ])
    if data.warnings:
        s.p("Problems met while building this report:")
        s.items(data.warnings)
    return s


def _accuracy(data: ReportData, figs: Figures) -> Section:
    s = Section("Accuracy (test set) and constant-predictor baselines")
    s.p("Test metrics of each model, followed by the constant-predictor baselines of the same run (accuracy.csv).")
    s.table(data.accuracy)
    _ci_block(s, data.ci, figs.get("ci"))
    return s


def _deployed(data: ReportData) -> Section:
    from neuroposter.report.deployed import deployed_display

    s = Section("Deployed on a chip: accuracy as deployed, beside energy")
    if data.deployed.empty:
        s.p("No chip bundle with a deployed-vs-trained verification was found (`neuroposter export --target loihi`).")
        return s
    s.p("One row per chip bundle: the deployed network's test mAP and micro-F1 (the integer network the chip runs, "
        "not the float model), the trained model's beside them, and how often the deployed network keeps the trained "
        "model's genre set and top-1 genre, with 95 % bootstrap intervals over the test samples; 'bound' is the "
        "export's --min-trained-agreement on the genre set ('off': switched off to show a float-trained run for "
        "comparison). 'trained with': float training, or the target's arithmetic in the forward pass "
        "(quantisation-aware, `neuroposter train --target`). Energy: the same run's per-inference energy in the "
        "headline views (model alone / pipeline with the DenseNet-169 front end), from its NIR bundle's op counts "
        "(deployed.csv); each chip bundle's energy from its own deployed graph's counts: see 'Per chip' below.")
    s.table(deployed_display(data.deployed, data.views))
    return s


def _chips(data: ReportData, figs: Figures) -> Section:
    from neuroposter.report.chips import chips_display, chips_text

    s = Section("Per chip: the model that runs there, its accuracy and its energy")
    if data.chips.empty:
        s.p("No chip targets in this report.")
        return s
    s.p("One block per chip target, one row per export bundle that deployed a network there (mapping fits, deployed "
        "network verified): the run and whether it is the full model (mapped as it is, partitioned over cores and "
        "chips where the mapping needed them) or a chip-fitted variant (`neuroposter fit`: derived from the chip's "
        "limits, trained with its arithmetic), with its size (neurons and synapses as mapped, weights of the deployed "
        "graph). Accuracy: the deployed network's test mAP with its 95 % bootstrap interval, beside the full model's "
        "(the float-trained run's test mAP) and the best constant predictor's. Energy per inference: the bundle's "
        "own op counts (its deployed graph simulated on test samples at export, op_counts.json) priced with the "
        "chip's profile in the device view (a range where the constants have one; 'unpublished': the chip has no "
        "published per-op energy, nothing is guessed); a fitted variant's host-side projection runs on the host and "
        f"is priced separately on {data.frontend_profile} (the report's host profile, which also prices the "
        "DenseNet-169 front end on neuromorphic chips). Mapping: chips used (of the system the profile describes), "
        "cores, synapse memory (a lower bound). The front end is excluded from these energies. A chip without a "
        "deployed bundle shows why (the refusal verdict). Long form: chips.csv.")
    s.table(chips_display(data.chips))
    text = chips_text(data.chips)
    if text:
        s.items(text)
    if figs.get("chips") is None:
        s.p("No accuracy-vs-energy plot: no chip bundle deployed a network with a recorded accuracy.")
        return s
    s.figure(figs["chips"], "Deployed test mAP (95% bootstrap interval) vs energy per inference on each chip "
                                "(chip + host part, log x; horizontal bars: the constants' range), one marker per "
                                "chip bundle (filled: full model, hollow: fitted variant); right strip: chips with "
                                "unpublished per-op energy; dash-dot: the full model's mAP; dashed: the best constant "
                                "baseline")
    return s


def _energy(data: ReportData, figs: Figures) -> Section:
    energy = data.energy
    s = Section("Energy per view and profile")
    s.p("mJ per inference; rows = run, columns = view/profile. 'x (lo-hi)': range from the constants' ranges; "
        "'>= x': the constant is only a lower bound (peak-derived); 'n/a': a needed constant is not published; "
        "'-': not priced (ANNs are not priced on neuromorphic chips; the SDT first-layer xT variant applies to "
        "SNNs only). Long form with scope, evidence and sources: energy.csv and 'Full energy table' below.")
    s.p("Pipeline totals (model + DenseNet-169 front end where the model consumes features), accounting views:")
    s.table(tables.energy_pivot(energy, "pipeline", ["sdt_paper", "precision", "memory"]))
    s.p("Model alone (no front end), accounting views:")
    s.table(tables.energy_pivot(energy, "model", ["sdt_paper", "precision", "memory"]))
    s.p(f"Pipeline totals, device views (an SNN's front end priced on {data.frontend_profile} when the chip is "
        "neuromorphic):")
    s.table(tables.energy_pivot(energy, "pipeline", ["device"], strip_view=True))
    s.p("Model alone, device views:")
    s.table(tables.energy_pivot(energy, "model", ["device"], strip_view=True))
    s.figure(figs["acc_all"], "Secondary: test mAP vs pipeline energy for every profile of each view (one colour "
                              "per model)")
    return s


def _breakdown(figs: Figures, device_bd: Figures) -> Section:
    s = Section("Energy breakdown per term")
    s.p("Each bar splits one model's own energy into its terms (100 % = the model alone); the model's total and "
        "the front end's are given in mJ beside the bar.")
    s.figure(figs["bd_paper"], "SDT-paper view (first layer once)")
    s.figure(figs["bd_int8"], "Precision-matched int8 view")
    s.figure(figs["bd_memory"], "Memory-aware view")
    for pname, f in device_bd.items():
        s.figure(f, f"Device view on {pname}")
    s.p("Every term with its count, constant, evidence grade and source: see 'Energy terms' near the end.")
    return s


def _activity(data: ReportData, figs: Figures) -> Section:
    s = Section("Activity: firing rates and ops per layer")
    s.figure(figs["fr"], "Firing rate per layer of the SNNs on the test inputs")
    s.figure(figs["ops"], "Dense vs effective (measured) ops per layer, one panel per model (its representative run: "
                          "seeds and chip fine-tunes have the same layers; every run's totals in the table below)")
    tot = []
    for r in data.runs:
        if r.counts is not None:
            t = r.counts.totals()
            nb = r.counts.neurobench()
            tot.append({"run": r.name, "kind": r.counts.kind, "T": r.counts.T, "samples": r.counts.samples,
                        "MACs": t["macs"], "ACs (synops)": t["acs"], "dense": t["dense_ops"],
                        "mask ops (eff.)": t["mask_ops_effective"], "SDSA adds": t["sdsa_adds"],
                        "neuron upd. dense": t["neuron_updates_dense"], "neuron upd. eff.": t["neuron_updates_effective"],
                        "spikes": t["spikes"], "NeuroBench Effective_ACs": nb["Effective_ACs"]})
    fe = data.frontend
    if fe is not None:
        tot.append({"run": "(front end)", "kind": "ann", "T": 1, "samples": 1, "MACs": fe.macs, "dense": fe.dense_ops})
    s.table(pd.DataFrame(tot))
    return s


def _mapping(data: ReportData, figs: Figures) -> Section:
    s = Section("Mapping verdicts per chip")
    if data.verdicts:
        s.figure(figs["map"], "Fit / no-fit per run and target, from the export bundles")
        s.table(pd.DataFrame(data.verdicts))
    else:
        s.p("No export bundles with summary.json / mapping.json were found; run `neuroposter export --target <chip>`.")
    return s


def _latency(data: ReportData) -> Section:
    s = Section("Measured latency (onnxruntime, this machine)")
    if data.latency.empty:
        s.p("Not measured (no ONNX bundles, or --no-latency).")
    else:
        s.table(data.latency[["run", "batch", "median_ms", "q1_ms", "q3_ms", "iqr_ms", "per_sample_ms",
                              "throughput_per_s", "repeats", "machine"]])
    return s


def _conventions() -> Section:
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
    return s


def _full_table(data: ReportData) -> Section:
    s = Section("Full energy table (every run, view, profile and component)")
    s.p("The long form of the tables above (energy.csv has it with the profile and counts sources).")
    s.table(data.energy[["run", "component", "evaluation", "priced_on", "scope", "evidence", "energy_mj", "low_mj",
                         "high_mj", "available", "reason"]])
    return s


def _terms(data: ReportData) -> Section:
    rows = []
    for (run, key), b in data.breakdowns.items():
        if not key.endswith("|model") or not b.available:
            continue
        for t in b.terms:
            rows.append({"run": run, "evaluation": key[:-6], "term": t.term, "count": t.count, "constant": t.constant,
                         "mJ": t.pj * 1e-9, "evidence": t.evidence, "source": t.source[:90]})
    s = Section("Energy terms (every model, evaluation and term)")
    s.p("Every term with its count, constant, evidence grade and source:")
    s.table(pd.DataFrame(rows))
    return s


def _provenance(provenance: pd.DataFrame) -> Section:
    s = Section("Provenance")
    s.p("Where every number comes from: runs (manifest keys), counts (op_counts.json of the run's NIR or ONNX "
        "bundle, with the ONNX file's hash), the front end, export bundles and hardware profiles (file hash and "
        "sources with evidence tags).")
    s.table(provenance)
    return s
