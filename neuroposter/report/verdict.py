"""The report's answer first: should I deploy the spiking model, and where?

Pure functions over the report's tables; every sentence is computed from them, nothing is hard-coded:

* :func:`model_table` -- one row per model (its representative run, :func:`neuroposter.report.seeds.representative`):
  test mAP with its bootstrap interval, the seed mean/sd over same-budget runs, the best constant baseline, the
  energy per headline view (model alone, front end, pipeline), the chips it runs on, and the paired difference
  to the spiking model. The compact table and the accuracy-vs-energy figure are drawn from it.
* :func:`break_even_table` -- per headline view, the spiking pipeline against the cheapest ANN alternative of
  similar accuracy (CNN, ViT, ANN twin: those whose test mAP is not distinguishable from the SDT's or better),
  and the break-even points computed from the op counts: the SDT head's mean firing rate below which the
  pipeline would cost less, and the front-end cost below which it would. The firing-rate model is first order
  and stated in the report: every activity-driven count of the head (synaptic ops after the encoding layer,
  input events and weight fetches of those layers, spikes, driven neuron updates, SDSA mask ops) scales with
  the head's mean firing rate; the encoding layer, every-step neuron updates and the front end do not. The
  energy function is linear in the counts, so pricing the head at zero and at its measured activity
  (:func:`activity_energy`) gives the line, and the break-even rate is where it meets the alternative.
  The timestep model is first order too: every count made per step (synaptic ops, events, weight fetches, spikes,
  neuron updates, mask ops; the encoding layer's too unless the view computes it once per inference) scales with
  ``T`` at the measured per-step activity; weights, state and the front end do not.
* :func:`winners` -- which model wins where: per view, the cheapest pipeline among every model (spiking or not,
  with or without a front end) whose test-mAP interval overlaps the most accurate model's.
* :func:`verdict_text` -- the sentences: the answer, the accuracy comparison, one sentence per view, the chips.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.energy import estimate_energy
from neuroposter.profiling.profiles import HardwareProfile

__all__ = ["ALTERNATIVES", "compact_views", "model_table", "scaled_counts", "head_firing_rate", "activity_energy",
           "more_steps", "steps_energy",
           "break_even_table", "verdict_text", "winners", "winners_text", "accuracy_relation", "BREAK_EVEN_COLUMNS", "compact_display"]

# The ANN alternatives the spiking model is judged against: the CNN (DenseNet-169 classifier: the SNN's front end
# is its backbone), the ViT, and the SDT's ANN twin (same tokens, same front end).
ALTERNATIVES = ("cnn", "vit", "ann-transformer")

BREAK_EVEN_COLUMNS = [
    "view", "title", "evaluation", "snn_run", "snn_steps", "snn_firing_rate", "snn_model_mj", "snn_floor_mj", "snn_frontend_mj",
    "snn_pipeline_mj", "snn_lower_bound", "alternatives", "alt_model", "alt_run", "alt_pipeline_mj",
    "alt_lower_bound", "status", "rate_break_even", "steps_break_even", "frontend_break_even_mj", "twin_model",
    "twin_head_mj",
    "twin_rate_break_even", "saving", "note"]

#: a pipeline within this fraction of the alternative's energy costs "about the same" (status ``same``): a saving the
#: size of rounding in the front end's cost is no reason to deploy a different model
NEGLIGIBLE_SAVING = 0.01


def _ok(v: Any) -> bool:
    if v is None:
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _mj(v: Any) -> str:
    if not _ok(v):
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _pct(v: Any) -> str:
    if not _ok(v):
        return "n/a"
    v = 100 * float(v)
    return f"{v:.3g} %" if v >= 0.01 else f"{v:.2g} %"


def compact_views(views: Sequence[Any]) -> list[Any]:
    """At most two headline views for the compact table: the SDT-paper view and the device view (else the
    memory-aware view)."""
    by_key = {v.key: v for v in views}
    out = [by_key[k] for k in ("sdt_paper",) if k in by_key]
    second = by_key.get("device") or by_key.get("memory")
    if second is not None:
        out.append(second)
    return out[:2] or list(views)[:2]


# ------------------------------------------------------------------------------------------------- models


def _chips_of(chips: pd.DataFrame, model: str) -> str:
    """Where a model runs: the chips whose deployed bundle is a run of ``model`` (full model or its QAT run)."""
    if chips is None or chips.empty:
        return ""
    dep = chips[(chips["status"] == "deployed") & (chips["model"] == model)]
    return ", ".join(f"{c} ({', '.join(dict.fromkeys(g['run']))})" for c, g in dep.groupby("chip", sort=False))


def model_table(runs: Sequence[Any], head: pd.DataFrame, ci: pd.DataFrame, groups: pd.DataFrame,
                chips: pd.DataFrame, views: Sequence[Any], snn: str) -> pd.DataFrame:
    """One row per model (chip-fitted variants excepted), from its representative run's headline row; see the
    module docstring."""
    from neuroposter.report.seeds import mean_sd, pooled_metric, representative

    rows = []
    ci_by = ci.set_index("run") if ci is not None and not ci.empty else pd.DataFrame()
    hb = head.set_index("run") if not head.empty else pd.DataFrame()
    for model in dict.fromkeys(head["model"]) if not head.empty else []:
        rep = representative(runs, model)
        if rep is None or rep.name not in hb.index:
            continue
        h = hb.loc[rep.name]
        vals, seeds = pooled_metric(groups, runs, model)
        mean, sd = mean_sd(vals)
        left = groups[(groups["model"] == model) & ~groups["pooled"].astype(bool)] if not groups.empty else groups
        row: dict[str, Any] = {"model": model, "run": rep.name, "kind": h["kind"], "map": h["map"],
                               "map_low": None, "map_high": None, "n_seeds": len(vals),
                               "seeds": ", ".join(str(s) for s in seeds), "map_seed_mean": mean, "map_seed_sd": sd,
                               "baseline_map": h["baseline_map"], "baseline_map_name": h["baseline_map_name"],
                               "paired": "", "diff_map": None, "diff_map_low": None, "diff_map_high": None}
        if rep.name in ci_by.index:
            c = ci_by.loc[rep.name]
            row["map_low"], row["map_high"] = c["map_low"], c["map_high"]
            row["paired"] = str(c["paired"])
            if str(c["paired"]) == "yes":
                row["diff_map"], row["diff_map_low"], row["diff_map_high"] = (c["diff_map"], c["diff_map_low"],
                                                                              c["diff_map_high"])
            row["ci_reference"] = c["reference"]
        for v in views:
            for col in ("head", "frontend", "pipeline"):
                row[f"{v.key}_{col}_mj"] = h[f"{v.key}_{col}_mj"]
            row[f"{v.key}_lower_bound"] = any(bool(h[f"{v.key}_{c}_lower_bound"]) for c in ("head", "pipeline"))
            row[f"{v.key}_evaluation"] = h[f"{v.key}_evaluation"]
            row[f"{v.key}_priced_on"] = h[f"{v.key}_priced_on"]
        dev = next((v for v in views if v.key == "device"), None)
        runs_on = _chips_of(chips, model)
        if not runs_on and h["kind"] == "ann" and dev is not None and h[f"{dev.key}_evaluation"]:
            runs_on = f"{str(h[f'{dev.key}_evaluation']).split('/', 1)[1]} (ONNX)"
        row["runs_on"] = runs_on or ("no chip bundle" if h["kind"] == "snn" else "")
        row["left_out"] = "; ".join(f"{r['run']}: {r['reason']}" for _, r in left.iterrows())
        rows.append(row)
    out = pd.DataFrame(rows)
    if not out.empty:   # the spiking model first, then the alternatives, then the rest
        order = {m: i for i, m in enumerate([snn, *ALTERNATIVES])}
        out = out.iloc[sorted(range(len(out)), key=lambda i: (order.get(out["model"].iloc[i], 99), i))]
        out = out.reset_index(drop=True)
    return out


def accuracy_relation(models: pd.DataFrame, snn: str, alt: str) -> tuple[str, str]:
    """``(relation, how)``: relation of ``alt``'s test mAP to the spiking model's -- ``"not distinguishable"``,
    ``"higher"``, ``"lower"`` or ``"unknown"`` -- from the paired bootstrap difference (snn - alt) when there is
    one, else from whether the two 95 % intervals overlap, else from the point estimates (``how`` says which)."""
    m = models.set_index("model")
    if snn not in m.index or alt not in m.index:
        return "unknown", "no run"
    s, a = m.loc[snn], m.loc[alt]
    if str(a.get("paired")) == "yes" and str(a.get("ci_reference")) == str(s["run"]) and all(
            _ok(a[k]) for k in ("diff_map", "diff_map_low", "diff_map_high")):
        lo, hi = float(a["diff_map_low"]), float(a["diff_map_high"])
        how = f"paired difference {float(a['diff_map']):+.3f} [{lo:+.3f}, {hi:+.3f}]"
        return ("lower" if lo > 0 else "higher" if hi < 0 else "not distinguishable"), how
    if all(_ok(x[k]) for x in (s, a) for k in ("map", "map_low", "map_high")):
        if float(a["map_low"]) > float(s["map_high"]):
            return "higher", "95 % intervals do not overlap"
        if float(a["map_high"]) < float(s["map_low"]):
            return "lower", "95 % intervals do not overlap"
        return "not distinguishable", "95 % intervals overlap"
    if _ok(s["map"]) and _ok(a["map"]):
        rel = "higher" if float(a["map"]) > float(s["map"]) else "lower" if float(a["map"]) < float(s["map"]) \
            else "not distinguishable"
        return rel, "point estimates only, no intervals"
    return "unknown", "no test mAP"


# ------------------------------------------------------------------------------------------------- break-even


def _is_encoding(lc: Any, first: Any) -> bool:
    return first is not None and lc.name == first.name


def scaled_counts(counts: OpCounts, s: float) -> OpCounts:
    """``counts`` with every activity-driven count of the head multiplied by ``s`` (see the module docstring):
    synaptic ops, input events and weight fetches of every connection layer after the encoding layer; spikes and
    driven updates of neuron and mask layers. The encoding layer, every-step (dense) counts and weights stay."""
    first = counts.first_layer
    layers = []
    for lc in counts.layers:
        if lc.kind == "synapse" and not _is_encoding(lc, first):
            lc = dataclasses.replace(lc, effective_acs=lc.effective_acs * s, effective_macs=lc.effective_macs * s,
                                     events_in=lc.events_in * s, weight_fetches=lc.weight_fetches * s,
                                     per_step=tuple(x * s for x in lc.per_step))
        elif lc.kind in ("neuron", "mask"):
            lc = dataclasses.replace(lc, spikes=lc.spikes * s, updates_effective=lc.updates_effective * s,
                                     per_step=tuple(x * s for x in lc.per_step))
        layers.append(lc)
    return dataclasses.replace(counts, layers=tuple(layers))


def head_firing_rate(counts: OpCounts) -> float | None:
    """The head's mean firing rate: spikes of all neuron layers / their neuron-steps (None without neurons)."""
    upd = sum(lc.updates_dense for lc in counts.layers if lc.kind == "neuron")
    return None if upd <= 0 else sum(lc.spikes for lc in counts.layers if lc.kind == "neuron") / upd


def _evaluation(label: str) -> Any:
    from neuroposter.report.tables import Evaluation

    base, _, rest = str(label).partition(" (first layer ")
    view, _, profile = base.partition("/")
    return Evaluation(view, profile, rest.rstrip(")") or "once")


def _priced_mj(variants: Sequence[OpCounts], label: str, profile: HardwareProfile) -> list[float | None] | None:
    """Energy in mJ per inference of each of ``variants`` (an SNN's own counts) under the evaluation ``label``;
    None for one the profile cannot price, None overall when the counts are not valid for the view."""
    from neuroposter.report.tables import _finite

    ev = _evaluation(label)
    out: list[float | None] = []
    for c in variants:
        try:
            b = _finite(estimate_energy(c, profile, view=ev.view, first_layer=ev.first_layer))
        except ValueError:
            return None
        out.append(b.total_pj * 1e-9 if b.available and b.total_pj is not None else None)
    return out


def activity_energy(counts: OpCounts, label: str, profile: HardwareProfile) -> tuple[float | None, float | None]:
    """``(energy at zero head activity, energy at the measured activity)`` in mJ per inference of an SNN's own
    counts under the evaluation ``label`` (None when the profile cannot price them)."""
    e = _priced_mj([scaled_counts(counts, 0.0), scaled_counts(counts, 1.0)], label, profile)
    return (None, None) if e is None else (e[0], e[1])


_PER_STEP = ("dense_ops", "effective_macs", "effective_acs", "other_ops", "events_in", "spikes", "updates_dense",
             "updates_effective", "weight_fetches", "weight_fetches_dense")


def more_steps(counts: OpCounts, k: int) -> OpCounts:
    """``counts`` of the same network run for ``k`` times as many timesteps at the same per-step activity: every
    count made per step multiplied by ``k`` (``per_step`` repeated ``k`` times, ``T`` multiplied); weights, state
    and activation bytes stay."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    layers = tuple(dataclasses.replace(lc, per_step=tuple(lc.per_step) * k,
                                       **{f: getattr(lc, f) * k for f in _PER_STEP}) for lc in counts.layers)
    return dataclasses.replace(counts, T=counts.T * k, layers=layers)


def steps_energy(counts: OpCounts, label: str, profile: HardwareProfile) -> tuple[float | None, float | None]:
    """``(energy at the measured T, energy added by each further timestep)`` in mJ per inference of an SNN's own
    counts under the evaluation ``label`` (None when the profile cannot price them). The energy is linear in the
    counts, so the runs at ``T`` and ``2 T`` give the line (:func:`more_steps`)."""
    e = _priced_mj([more_steps(counts, 1), more_steps(counts, 2)], label, profile)
    if e is None or e[0] is None or e[1] is None:
        return None, None
    return e[0], (e[1] - e[0]) / max(counts.T, 1)


def _similar(models: pd.DataFrame, snn: str) -> list[str]:
    """The alternatives of similar or better accuracy (not significantly worse than the spiking model)."""
    return [a for a in ALTERNATIVES if a in set(models["model"])
            and accuracy_relation(models, snn, a)[0] in ("not distinguishable", "higher", "unknown")]


def break_even_table(models: pd.DataFrame, runs: Sequence[Any], views: Sequence[Any],
                     profiles: Mapping[str, HardwareProfile], snn: str) -> pd.DataFrame:
    """One row per headline view: the spiking pipeline against the cheapest alternative of similar accuracy, and
    the break-even firing rate and front-end cost (columns :data:`BREAK_EVEN_COLUMNS`; ``status``: ``cheaper``,
    ``same`` (cheaper by less than :data:`NEGLIGIBLE_SAVING` of the alternative's energy), ``break-even`` (a lower
    firing rate would do), ``impossible`` (not even at zero spikes), ``no alternative`` or ``unavailable``)."""
    rows: list[dict[str, Any]] = []
    m = models.set_index("model") if not models.empty else pd.DataFrame()
    if snn not in m.index:
        return pd.DataFrame(columns=BREAK_EVEN_COLUMNS)
    s = m.loc[snn]
    run = next((r for r in runs if r.name == s["run"]), None)
    counts = getattr(run, "counts", None)
    similar = _similar(models, snn)
    for v in views:
        row: dict[str, Any] = {"view": v.key, "title": getattr(v, "short", "") or v.title,
                               "evaluation": s[f"{v.key}_evaluation"], "snn_run": s["run"],
                               "snn_model_mj": s[f"{v.key}_head_mj"], "snn_frontend_mj": s[f"{v.key}_frontend_mj"],
                               "snn_pipeline_mj": s[f"{v.key}_pipeline_mj"],
                               "snn_lower_bound": bool(s[f"{v.key}_lower_bound"]), "alternatives": ", ".join(similar),
                               "status": "unavailable", "note": ""}
        cands = [(float(m.loc[a, f"{v.key}_pipeline_mj"]), a) for a in similar
                 if _ok(m.loc[a, f"{v.key}_pipeline_mj"])]
        if cands:
            alt_e, alt = min(cands)
            row.update(alt_model=alt, alt_run=m.loc[alt, "run"], alt_pipeline_mj=alt_e,
                       alt_lower_bound=bool(m.loc[alt, f"{v.key}_lower_bound"]))
        from neuroposter.report.headline import ANN_TWIN

        if ANN_TWIN in m.index and _ok(m.loc[ANN_TWIN, f"{v.key}_head_mj"]):
            row["twin_model"], row["twin_head_mj"] = ANN_TWIN, float(m.loc[ANN_TWIN, f"{v.key}_head_mj"])
        prof = profiles.get(_evaluation(row["evaluation"]).profile) if row["evaluation"] else None
        e0 = e1 = e_t = per_step = None
        if counts is not None and prof is not None:
            e0, e1 = activity_energy(counts, row["evaluation"], prof)
            e_t, per_step = steps_energy(counts, row["evaluation"], prof)
            row["snn_firing_rate"] = head_firing_rate(counts)
            row["snn_steps"] = int(counts.T)
        row["snn_floor_mj"] = e0
        fe = float(s[f"{v.key}_frontend_mj"]) if _ok(s[f"{v.key}_frontend_mj"]) else 0.0
        if not cands:
            row["status"] = "no alternative"
            row["note"] = "no CNN, ViT or ANN-twin run of similar accuracy priced in this view"
        elif not (_ok(e0) and _ok(e1) and _ok(s[f"{v.key}_pipeline_mj"])):
            row["note"] = "the spiking model's energy is not available in this view (a constant is not published)"
        else:
            alt_e = row["alt_pipeline_mj"]
            pipe = fe + e1
            row["frontend_break_even_mj"] = alt_e - e1
            rate = row.get("snn_firing_rate")
            slope = e1 - e0
            r_star = (rate * (alt_e - fe - e0) / slope) if _ok(rate) and slope > 0 else None
            if _ok(row.get("twin_head_mj")) and _ok(rate) and slope > 0 and row["twin_head_mj"] > e0:
                row["twin_rate_break_even"] = rate * (row["twin_head_mj"] - e0) / slope
            row["rate_break_even"] = r_star
            if _ok(e_t) and _ok(per_step) and per_step > 0:
                # the largest T (>= 1) at which the pipeline costs no more than the alternative; None: not even 1
                t_star = math.floor(counts.T + (alt_e - fe - e_t) / per_step + 1e-9)
                row["steps_break_even"] = t_star if t_star >= 1 else None
            row["saving"] = (alt_e - pipe) / alt_e if alt_e > 0 else None
            if pipe < alt_e and _ok(row["saving"]) and row["saving"] < NEGLIGIBLE_SAVING:
                row["status"] = "same"
            elif pipe < alt_e:
                row["status"] = "cheaper"
            elif fe + e0 >= alt_e:
                row["status"] = "impossible"
                row["rate_break_even"] = None
            else:
                row["status"] = "break-even" if r_star is not None else "impossible"
        rows.append(row)
    return pd.DataFrame(rows, columns=BREAK_EVEN_COLUMNS)


# ------------------------------------------------------------------------------------------------- text


def _iv(r: Any) -> str:
    if not _ok(r.get("map")):
        return "n/a"
    if _ok(r.get("map_low")) and _ok(r.get("map_high")):
        return f"{float(r['map']):.3f} [{float(r['map_low']):.3f}, {float(r['map_high']):.3f}]"
    return f"{float(r['map']):.3f}"


def _lb(flag: Any) -> str:
    return ">= " if bool(flag) else ""


def _up_to(rate: Any) -> str:
    """``"up to a mean firing rate of 7.7 %"``; a break-even at or above one spike per neuron and step is no limit."""
    return "at any firing rate" if float(rate) >= 1 else f"up to a mean firing rate of {_pct(rate)}"


def _steps_clause(b: Any) -> str:
    """``", up to T = 9 timesteps (it runs 4)"`` / ``", nor would fewer timesteps (it runs 4)"`` for
    the timestep break-even (empty when it is not known)."""
    steps = b.get("snn_steps")
    if not _ok(steps):
        return ""
    t_star = b.get("steps_break_even")
    if b["status"] == "cheaper":
        return f", up to T = {int(t_star)} timesteps (it runs {int(steps)})" if _ok(t_star) else ""
    if _ok(t_star) and int(t_star) >= 1:
        return f", or at most T = {int(t_star)} timesteps at the same activity per step (it runs {int(steps)})"
    return f", nor would any number of timesteps (it runs {int(steps)}; even T = 1 costs more)"


def _view_sentence(b: Any, snn: str) -> str:
    lb = _lb(b["snn_lower_bound"])
    head = (f"{b['title']}: {snn} {lb}{_mj(b['snn_model_mj'])} mJ alone, {lb}{_mj(b['snn_pipeline_mj'])} mJ with "
            "the front end")
    st = b["status"]
    if st in ("unavailable", "no alternative"):
        return head + f"; no comparison ({b['note']})."
    alt = f"the {b['alt_model']} ({_lb(b['alt_lower_bound'])}{_mj(b['alt_pipeline_mj'])} mJ)"
    rate = _pct(b["snn_firing_rate"])
    fe_be = b["frontend_break_even_mj"]
    fe_txt = (f"the front end would have to cost below {_mj(fe_be)} mJ" if _ok(fe_be) and float(fe_be) > 0
              else "not even a free front end would do")
    if st == "same":
        fe = b["snn_frontend_mj"]
        share = (f"; the shared front end, {_mj(fe)} mJ, is {_pct(float(fe) / float(b['snn_pipeline_mj']))} of it"
                 if _ok(fe) and _ok(b["snn_pipeline_mj"]) and float(b["snn_pipeline_mj"]) > 0 else "")
        txt = (head + f": about the same as {alt}, the cheapest ANN of similar accuracy "
               f"({_pct(b['saving'])} less{share})")
    elif st == "cheaper":
        txt = head + f": LESS than {alt}, the cheapest ANN of similar accuracy"
        if _ok(b["rate_break_even"]):
            txt += f", {_up_to(b['rate_break_even'])} (it runs at {rate})"
        txt += _steps_clause(b)
    elif st == "impossible":
        floor = float(b["snn_floor_mj"]) + (float(b["snn_frontend_mj"]) if _ok(b["snn_frontend_mj"]) else 0.0)
        txt = (head + f": more than {alt}, the cheapest ANN of similar accuracy; even at zero spikes it costs "
               f"{_mj(floor)} mJ (front end {_mj(b['snn_frontend_mj'])}), so no firing rate breaks even"
               f"{_steps_clause(b)} -- {fe_txt}")
    else:
        txt = (head + f": more than {alt}, the cheapest ANN of similar accuracy; the head would need a mean firing "
               f"rate below {_pct(b['rate_break_even'])} (it runs at {rate}){_steps_clause(b)}, or {fe_txt}")
    if _ok(b.get("twin_head_mj")):
        th = f"the {b['twin_model']}'s head ({_mj(b['twin_head_mj'])} mJ, same front end)"
        if _ok(b["snn_model_mj"]) and float(b["snn_model_mj"]) < float(b["twin_head_mj"]):
            txt += f". The head alone is cheaper than {th}"
            if _ok(b.get("twin_rate_break_even")):
                txt += f", {_up_to(b['twin_rate_break_even'])}"
        elif _ok(b.get("twin_rate_break_even")):
            txt += (f". The head alone would undercut {th} below a firing rate of "
                    f"{_pct(b['twin_rate_break_even'])}")
        else:
            txt += f". The head alone costs more than {th} even at zero spikes"
    if bool(b["snn_lower_bound"]) or bool(b["alt_lower_bound"]):
        txt += " (lower-bound figures: indicative only)"
    return txt + "."


def _accuracy_phrase(rels: Mapping[str, tuple[str, str]]) -> str:
    """``"its test mAP is not distinguishable from the cnn's and vit's, below the ann-transformer's"``."""
    if not rels:
        return "no ANN alternative is in this report"
    words = {"not distinguishable": "not distinguishable from", "higher": "below", "lower": "above",
             "unknown": "not comparable with"}
    groups: dict[str, list[str]] = {}
    for a, (rel, _) in rels.items():
        groups.setdefault(words.get(rel, "not comparable with"), []).append(f"the {a}'s")
    return "its test mAP is " + ", ".join(f"{w} {' and '.join(names)}" for w, names in groups.items())


def _answer(be: pd.DataFrame, snn: str, rels: Mapping[str, tuple[str, str]]) -> str:
    cheaper = [str(r["title"]) for _, r in be.iterrows() if r["status"] == "cheaper"]
    same = [str(r["title"]) for _, r in be.iterrows() if r["status"] == "same"]
    dearer = [str(r["title"]) for _, r in be.iterrows() if r["status"] in ("break-even", "impossible")]
    judged = cheaper + same + dearer
    acc = _accuracy_phrase(rels)
    if not judged:
        return (f"Cannot be decided from this report: {acc}, and no view prices both the {snn} pipeline and an "
                "ANN alternative of similar accuracy.")
    if not cheaper and same:
        rest = f"; in the {', '.join(dearer)} it costs more" if dearer else ""
        return (f"No meaningful saving: {acc}, and in the {', '.join(same)} the {snn} pipeline costs within "
                f"{_pct(NEGLIGIBLE_SAVING)} of the cheapest ANN of similar accuracy -- the DenseNet-169 front end they "
                f"share is nearly all of it{rest}. The spiking head alone is cheaper there (below): it pays only "
                "where the front end is removed or far cheaper.")
    if not cheaper:
        alts = sorted({str(r["alt_model"]) for _, r in be.iterrows() if r["status"] in ("break-even", "impossible")})
        n_floor = int((be["status"] == "impossible").sum())
        why = (f"; in {n_floor} of them not even at zero spikes" if n_floor else "")
        return (f"No, not on this evidence: {acc}, and in none of the {len(judged)} energy views does the {snn} "
                f"pipeline cost less than the cheapest ANN of similar accuracy ({', '.join(alts)}){why}.")
    worse = any(rel == "higher" for rel, _ in rels.values())
    lead = "Yes, if its lower accuracy is acceptable," if worse else "Yes"
    rest = f"; it does not in: {', '.join(dearer)}" if dearer else ""
    return (f"{lead} where energy is counted as in: {', '.join(cheaper)} -- there the {snn} pipeline costs less "
            f"than the cheapest ANN of similar accuracy{rest}; {acc}.")


def winners(models: pd.DataFrame, views: Sequence[Any]) -> pd.DataFrame:
    """Which model wins where: per headline view, among the models whose test-mAP interval overlaps the most
    accurate model's (not distinguishable from the best on this test set), the one whose pipeline (front end
    included) costs least. Columns: ``view``, ``title``, ``best_model``, ``contenders`` (comma-separated),
    ``winner``, ``winner_mj``, ``winner_kind``, ``spiking`` (the cheapest spiking contender) and ``spiking_mj``."""
    cols = ["view", "title", "best_model", "contenders", "winner", "winner_mj", "winner_kind", "spiking",
            "spiking_mj"]
    if models.empty:
        return pd.DataFrame(columns=cols)
    acc = models[models["map"].map(_ok)]
    if acc.empty:
        return pd.DataFrame(columns=cols)
    best = acc.loc[acc["map"].astype(float).idxmax()]
    lo = float(best["map_low"]) if _ok(best.get("map_low")) else float(best["map"])

    def close(r: Any) -> bool:
        hi = float(r["map_high"]) if _ok(r.get("map_high")) else float(r["map"])
        return hi >= lo

    cont = acc[acc.apply(close, axis=1)]
    rows = []
    for v in views:
        col = f"{v.key}_pipeline_mj"
        priced = cont[cont[col].map(_ok)] if col in cont else cont.iloc[0:0]
        row: dict[str, Any] = {"view": v.key, "title": getattr(v, "short", "") or v.title,
                               "best_model": best["model"], "contenders": ", ".join(map(str, cont["model"]))}
        if not priced.empty:
            w = priced.loc[priced[col].astype(float).idxmin()]
            row.update(winner=w["model"], winner_mj=float(w[col]), winner_kind=w.get("kind"))
            snn = priced[priced["kind"] == "snn"]
            if not snn.empty:
                sw = snn.loc[snn[col].astype(float).idxmin()]
                row.update(spiking=sw["model"], spiking_mj=float(sw[col]))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def winners_text(models: pd.DataFrame, views: Sequence[Any]) -> str | None:
    """One sentence from :func:`winners` (None without a priced view)."""
    w = winners(models, views)
    w = w[w["winner"].notna()] if not w.empty else w
    if w.empty:
        return None
    parts = []
    for _, r in w.iterrows():
        txt = f"{r['title']}: {r['winner']} ({_mj(r['winner_mj'])} mJ)"
        if _ok(r["spiking_mj"]) and r["spiking"] != r["winner"]:
            txt += f", cheapest spiking pipeline {r['spiking']} ({_mj(r['spiking_mj'])} mJ)"
        parts.append(txt)
    first = w.iloc[0]
    return (f"Which model wins where (every model whose test-mAP interval overlaps the most accurate one's, "
            f"{first['best_model']}: {first['contenders']}; energy per inference with its front end): "
            + "; ".join(parts) + ".")


def verdict_text(models: pd.DataFrame, be: pd.DataFrame, chips: pd.DataFrame, *, snn: str,
                 frontend_counted: bool, frontend_is_cnn_backbone: bool,
                 views: Sequence[Any] | None = None) -> list[str]:
    """The verdict's sentences (see the module docstring); every number comes from ``models``, ``be`` and
    ``chips``."""
    if models.empty or snn not in set(models["model"]):
        return [f"No {snn} run in this report: there is no spiking model to decide about."]
    m = models.set_index("model")
    s = m.loc[snn]
    alts = [a for a in ALTERNATIVES if a in m.index]
    rels = {a: accuracy_relation(models, snn, a) for a in alts}
    out = [_answer(be, snn, rels)]
    wins = winners_text(models, views) if views else None
    if wins:
        out.append(wins)
    acc = f"Accuracy (test mAP, 95 % bootstrap interval): {snn} ({s['run']}) {_iv(s)}"
    for a in alts:
        rel, how = rels[a]
        word = {"not distinguishable": "not distinguishable", "higher": f"higher than the {snn}'s",
                "lower": f"lower than the {snn}'s"}.get(rel, "not comparable")
        acc += f"; {a} {_iv(m.loc[a])}: {word} ({how})"
    if _ok(s["baseline_map"]):
        acc += f"; best constant predictor {float(s['baseline_map']):.3f} ({s['baseline_map_name']})"
    out.append(acc + ".")
    if not frontend_counted:
        out.append("The DenseNet-169 front end was NOT counted: the spiking pipeline's totals below exclude it.")
    if frontend_is_cnn_backbone and "cnn" in m.index:
        c = m.loc["cnn"]
        key = next((k for k in ("sdt_paper", "memory", "int8") if _ok(s.get(f"{k}_frontend_mj"))
                    and _ok(c.get(f"{k}_pipeline_mj"))), None)
        if key is not None and float(c[f"{key}_pipeline_mj"]) > 0:
            out.append(f"The spiking pipeline contains the CNN's backbone: its front end ({_mj(s[f'{key}_frontend_mj'])} "
                       f"mJ, {key} view) is {100 * float(s[f'{key}_frontend_mj']) / float(c[f'{key}_pipeline_mj']):.3g} "
                       f"% of the whole CNN ({_mj(c[f'{key}_pipeline_mj'])} mJ), so the pipeline costs at least about "
                       "as much as the CNN in every view.")
    out += [_view_sentence(b, snn) for _, b in be.iterrows()]
    if not be.empty and be["status"].isin(["break-even", "impossible", "cheaper"]).any():
        out.append("Break-even model: the head's activity-driven counts (synaptic ops after the encoding layer, "
                   "spikes, driven updates, SDSA masks) scale with its mean firing rate; the encoding layer, "
                   "every-step neuron updates and the front end do not.")
    out += _chips_sentences(chips, m, snn, alts)
    return out


def _overlap(r: Any, m: pd.DataFrame, alts: Sequence[str]) -> str:
    """Whether a deployed interval overlaps each alternative's (``"not distinguishable from any ANN"``, ...)."""
    sep, same = [], []
    for a in alts:
        am = m.loc[a]
        if not all(_ok(x) for x in (r["deployed_map_lo"], r["deployed_map_hi"], am["map_low"], am["map_high"])):
            continue
        apart = float(am["map_low"]) > float(r["deployed_map_hi"]) or float(am["map_high"]) < float(r["deployed_map_lo"])
        (sep if apart else same).append(a)
    if not sep and not same:
        return ""
    if not sep:
        return "intervals overlap every ANN's"
    return f"distinguishable from the {', '.join(sep)}" + (f", not from the {', '.join(same)}" if same else "")


def _chips_sentences(chips: pd.DataFrame, m: pd.DataFrame, snn: str, alts: Sequence[str]) -> list[str]:
    if chips is None or chips.empty:
        return [f"Chips: no chip export in this report (`neuroposter export --target loihi --run {snn}`)."]
    dep = chips[chips["status"] == "deployed"]
    full = dep[dep["model"] == snn]
    fitted = dep[dep["variant"].astype(str).str.startswith("fitted")]
    none = list(dict.fromkeys(chips[chips["status"] != "deployed"]["chip"]))
    parts = []
    for _, r in full.iterrows():
        e = f"{_mj(r['energy_mj'])} mJ on the chip" if _ok(r["energy_mj"]) else "chip energy unpublished"
        iv = (f"{float(r['deployed_map']):.3f} [{float(r['deployed_map_lo']):.3f}, {float(r['deployed_map_hi']):.3f}]"
              if all(_ok(r[k]) for k in ("deployed_map", "deployed_map_lo", "deployed_map_hi"))
              else _mj(r["deployed_map"]))
        ov = _overlap(r, m, alts)
        parts.append(f"{r['chip']} ({r['run']}): mAP {iv}{', ' + ov if ov else ''}, {e}")
    text = (f"Where the {snn} runs (deployed accuracy; chip energy without the front end): "
            + ("; ".join(parts) if parts else "no chip deploys the full model"))
    if not fitted.empty:
        text += ("; only chip-fitted variants run on " + ", ".join(
            f"{r['chip']} (mAP {_mj(r['deployed_map'])})" for _, r in fitted.iterrows()))
    if none:
        text += f"; nothing deployed on {', '.join(none)}"
    return [text + "."]


# ------------------------------------------------------------------------------------------------- display


def _energy_cell(r: Any, key: str) -> str:
    h, p, lb = r.get(f"{key}_head_mj"), r.get(f"{key}_pipeline_mj"), _lb(r.get(f"{key}_lower_bound"))
    if not r.get(f"{key}_evaluation"):
        return "not priced"
    if not _ok(p):
        return "n/a"
    if not _ok(h) or abs(float(h) - float(p)) <= 1e-12 * abs(float(p)):
        return f"{lb}{_mj(p)}"
    return f"{lb}{_mj(h)} / {lb}{_mj(p)}"


def compact_display(models: pd.DataFrame, views: Sequence[Any]) -> pd.DataFrame:
    """The compact table as strings: model, test mAP [95 % CI] (or the seed mean +- sd), best constant mAP,
    energy ``alone / pipeline`` in the (at most two) compact views, and where it runs."""
    if models is None or models.empty:
        return pd.DataFrame()
    rows = []
    for _, r in models.iterrows():
        if int(r["n_seeds"]) >= 2 and _ok(r["map_seed_mean"]) and _ok(r["map_seed_sd"]):
            acc = f"{float(r['map_seed_mean']):.3f} ± {float(r['map_seed_sd']):.3f} ({int(r['n_seeds'])} seeds)"
        else:
            acc = _iv(r)
        row = {"model": r["model"] if r["model"] == r["run"] else f"{r['model']} ({r['run']})", "test mAP": acc,
               "constant": f"{float(r['baseline_map']):.3f}" if _ok(r["baseline_map"]) else "-"}
        for v in views:
            row[(getattr(v, "short", "") or v.title).split(" (")[0]] = _energy_cell(r, v.key)
        row["runs on"] = r["runs_on"] or "-"
        rows.append(row)
    return pd.DataFrame(rows)
