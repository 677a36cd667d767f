"""The report's headline: one row per model with accuracy, the best constant baseline and a few key energy views,
plus a short text generated from those numbers (the fair SDT vs ANN-twin ratio, the front end's share, seed noise).

Every number here is read from the energy table (:func:`neuroposter.report.tables.energy_table`) and the run
metrics; nothing is computed that the long tables do not already hold, except ratios and shares of them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

from neuroposter.report.tables import MEMORY_PROFILE, PAPER_PROFILE, Evaluation, paper_constants

__all__ = ["KeyView", "key_views", "headline_table", "headline_display", "headline_text", "SNN_MODEL",
           "ANN_TWIN", "DEVICE_PROFILE"]

SNN_MODEL = "sdt"
# The ANN twin of the SDT: the same transformer on the same DenseNet-169 tokens (same front end).
ANN_TWIN = "ann-transformer"
DEVICE_PROFILE = "loihi"


@dataclass(frozen=True)
class KeyView:
    """One headline energy column.

    Attributes:
        key: short id (column prefix in ``headline.csv``).
        title: human-readable column title (states the profile and, for the SDT view, the first-layer convention).
        snn: evaluation label used for SNN runs.
        ann: evaluation label used for ANN runs (None: ANNs are not priced under this view).
        short: a short name for compact tables and the verdict (e.g. ``"SDT-paper view (45 nm fp32)"``).
    """

    key: str
    title: str
    snn: str
    ann: str | None
    short: str = ""

    def evaluation(self, kind: str) -> str | None:
        """The evaluation label for a run of ``kind`` (``"snn"`` / ``"ann"``)."""
        return self.snn if kind == "snn" else self.ann


def key_views(energy: pd.DataFrame, frontend_profile: str, device: str = DEVICE_PROFILE) -> list[KeyView]:
    """The headline views: SDT-paper fp32 (first layer once), Horowitz int8, Lemaire memory-aware, and a device
    view (SNNs on ``device``, ANNs on ``frontend_profile``) when the energy table holds ``device/<device>`` rows."""
    views = [
        KeyView("sdt_paper", f"SDT-paper fp32, {paper_constants()}, first layer once [{PAPER_PROFILE}]",
                Evaluation("sdt_paper", PAPER_PROFILE, "once").label, Evaluation("sdt_paper", PAPER_PROFILE).label,
                f"SDT-paper view ({PAPER_PROFILE})"),
        KeyView("int8", "precision-matched int8 [horowitz_45nm_int8]",
                Evaluation("precision", "horowitz_45nm_int8").label, Evaluation("precision", "horowitz_45nm_int8").label,
                "int8 view (horowitz_45nm_int8)"),
        KeyView("memory", f"memory-aware, Lemaire [{MEMORY_PROFILE}]", Evaluation("memory", MEMORY_PROFILE).label,
                Evaluation("memory", MEMORY_PROFILE).label, f"memory-aware view ({MEMORY_PROFILE})"),
    ]
    dev = Evaluation("device", device).label
    if not energy.empty and (energy["evaluation"] == dev).any():
        ann = Evaluation("device", frontend_profile).label
        views.append(KeyView("device", f"device: SNN on {device}, ANN on {frontend_profile}", dev,
                             ann if (energy["evaluation"] == ann).any() else None,
                             f"device view (SNN on {device}, ANN on {frontend_profile})"))
    return views


def _value(energy: pd.DataFrame, run: str, evaluation: str | None,
           component: str) -> tuple[float | None, str, bool]:
    """``(energy_mj, priced_on, lower_bound)`` of one energy row (None when absent or unavailable);
    ``lower_bound``: the row has no high end (a constant is only a minimum)."""
    if evaluation is None:
        return None, "", False
    row = energy[(energy["run"] == run) & (energy["evaluation"] == evaluation) & (energy["component"] == component)]
    if row.empty:
        return None, "", False
    r = row.iloc[0]
    if not bool(r["available"]) or pd.isna(r["energy_mj"]):
        return None, str(r["priced_on"]), False
    return float(r["energy_mj"]), str(r["priced_on"]), bool(pd.isna(r["high_mj"]))


def _best_baseline(metrics: dict[str, Any], metric: str) -> tuple[float | None, str]:
    best: tuple[float | None, str] = (None, "")
    for name, bm in (metrics.get("baselines") or {}).items():
        v = (bm or {}).get(metric)
        if isinstance(v, (int, float)) and not math.isnan(v) and (best[0] is None or v > best[0]):
            best = (float(v), str(name))
    return best


def _test_metric(metrics: dict[str, Any], metric: str) -> float | None:
    v = (metrics.get("test") or {}).get(metric, metrics.get(metric))
    return float(v) if isinstance(v, (int, float)) else None


def headline_table(runs: Iterable[Any], energy: pd.DataFrame, views: Sequence[KeyView]) -> pd.DataFrame:
    """One row per run (chip-fitted variants excepted: see the per-chip table): test mAP / micro-F1, the best constant baseline's, and per key view the model's energy
    alone (``<key>_head_mj``, component ``model``), the front end (``<key>_frontend_mj``) and the pipeline total
    (``<key>_pipeline_mj``), each with a ``*_lower_bound`` flag, the evaluation label and the profiles the pipeline
    was priced on."""
    rows = []
    for r in runs:
        if getattr(r, "fitted", False):
            continue   # a chip-fitted variant: its row is in the per-chip table, priced on its chip
        m = r.metrics or {}
        kind = r.kind
        row: dict[str, Any] = {"run": r.name, "model": r.model, "kind": kind,
                               "map": _test_metric(m, "map"), "micro_f1": _test_metric(m, "micro_f1")}
        row["baseline_map"], row["baseline_map_name"] = _best_baseline(m, "map")
        row["baseline_micro_f1"], row["baseline_micro_f1_name"] = _best_baseline(m, "micro_f1")
        for v in views:
            ev = v.evaluation(kind)
            row[f"{v.key}_evaluation"] = ev or ""
            for comp, col in (("model", "head"), ("frontend", "frontend"), ("pipeline", "pipeline")):
                row[f"{v.key}_{col}_mj"], priced_on, row[f"{v.key}_{col}_lower_bound"] = _value(energy, r.name, ev,
                                                                                                 comp)
            row[f"{v.key}_priced_on"] = priced_on
        rows.append(row)
    return pd.DataFrame(rows)


def _mj(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3g}"


def headline_display(head: pd.DataFrame, views: Sequence[KeyView]) -> pd.DataFrame:
    """The headline as strings for HTML/Markdown: one cell per view, ``model alone / pipeline with front end`` in mJ
    per inference (``>=``: a constant is only a lower bound); the column names the view and profile, and cells of
    the device column also name their profile (it differs between SNN and ANN rows)."""
    out = pd.DataFrame({"model (run)": [f"{m} ({r})" if m != r else r for m, r in zip(head["model"], head["run"])]})
    out["test mAP"] = [_num(v) for v in head["map"]]
    out["best const. mAP"] = [_named(v, n) for v, n in zip(head["baseline_map"], head["baseline_map_name"])]
    out["test micro-F1"] = [_num(v) for v in head["micro_f1"]]
    out["best const. micro-F1"] = [_named(v, n) for v, n in zip(head["baseline_micro_f1"],
                                                                 head["baseline_micro_f1_name"])]
    for v in views:
        cells = []
        for _, r in head.iterrows():
            ev = r[f"{v.key}_evaluation"]
            if not ev:
                cells.append("not priced")
                continue
            cell = " / ".join(">=\u00a0" * bool(r[f"{v.key}_{c}_lower_bound"]) + _mj(r[f"{v.key}_{c}_mj"])
                              for c in ("head", "pipeline"))
            if v.key == "device":
                cell += f" [{ev.split('/', 1)[1]}]"
            cells.append(cell)
        out[f"{v.title}: model alone / with front end (mJ)"] = cells
    return out


def _num(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _named(v: Any, name: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f} ({name})"


def seed_spread(runs: Sequence[Any], model: str, metric: str = "map") -> tuple[list[float], list[Any]]:
    """Test ``metric`` of the runs of ``model`` pooled over seeds -- same training budget as the model's
    representative run, distinct seeds (:mod:`neuroposter.report.seeds`) -- and those seeds."""
    from neuroposter.report.seeds import pooled_metric, seed_groups

    return pooled_metric(seed_groups(runs), runs, model, metric)


def _left_out(runs: Sequence[Any], models: Sequence[str]) -> str:
    """``"sdt-loihi (another training budget (...))"`` for the runs of ``models`` kept out of the seed statistics."""
    from neuroposter.report.seeds import seed_groups

    g = seed_groups(runs)
    if g.empty:
        return ""
    left = g[g["model"].isin(list(models)) & ~g["pooled"].astype(bool)]
    return "; ".join(f"{r['run']} ({r['reason']})" for _, r in left.iterrows())


def headline_text(head: pd.DataFrame, views: Sequence[KeyView], runs: Sequence[Any],
                  snn: str = SNN_MODEL, twin: str = ANN_TWIN, ci: pd.DataFrame | None = None) -> list[str]:
    """Sentences computed from the headline numbers: the SDT vs ANN-twin ratio per view (model alone and
    pipeline), the front end's share of the SNN pipeline, the accuracy difference against the seed noise, and
    (with ``ci``, the table of :func:`neuroposter.report.uncertainty.accuracy_ci`) the paired-bootstrap intervals
    of the SDT's differences to its twin and to every other model (test-set sampling noise only)."""
    out: list[str] = []
    by_model = {m: g.iloc[0] for m, g in head.groupby("model", sort=False)}
    s, a = by_model.get(snn), by_model.get(twin)
    if s is None or a is None:
        out.append(f"Fair head-to-head ({snn} vs its ANN twin {twin}, same tokens, same front end): not possible, "
                   f"{'no ' + snn if s is None else 'no ' + twin} run in this report.")
    else:
        parts = []
        for v in views:
            hs, ha = s[f"{v.key}_head_mj"], a[f"{v.key}_head_mj"]
            ps, pa = s[f"{v.key}_pipeline_mj"], a[f"{v.key}_pipeline_mj"]
            if not _ok(hs) or not _ok(ha):
                parts.append(f"{v.title}: no ratio ({snn} {_mj(hs)} mJ, {twin} {_mj(ha)} mJ)")
                continue
            txt = (f"{v.title}: model alone {_ratio(hs, ha)} ({_mj(hs)} vs {_mj(ha)} mJ)")
            if _ok(ps) and _ok(pa):
                txt += f", pipeline with front end {_ratio(ps, pa)} ({_mj(ps)} vs {_mj(pa)} mJ)"
            if v.key == "device":
                txt += (f" - {snn} on {s[f'{v.key}_evaluation'].split('/', 1)[1]}, {twin} on "
                        f"{a[f'{v.key}_evaluation'].split('/', 1)[1]}: different chips and evidence grades")
            if any(bool(x[f"{v.key}_{c}_lower_bound"]) for x in (s, a) for c in ("head", "pipeline")):
                txt += " (lower-bound figures: the ratio is indicative only)"
            parts.append(txt)
        out.append(f"Fair head-to-head, {snn} / {twin} energy per inference (same DenseNet-169 tokens and front "
                   f"end; below 1x means the SNN uses less): " + "; ".join(parts) + ".")
    shares = []
    for _, r in head[head["kind"] == "snn"].iterrows():
        for v in views:
            fe, p = r[f"{v.key}_frontend_mj"], r[f"{v.key}_pipeline_mj"]
            if _ok(fe) and _ok(p) and p > 0:
                shares.append((r["run"], v, fe / p))
    if shares:
        by_run: dict[str, list[str]] = {}
        for run, v, sh in shares:
            by_run.setdefault(run, []).append(f"{100 * sh:.5g} % ({v.key})")
        out.append("Share of the SNN pipeline's energy spent in the DenseNet-169 front end: "
                   + "; ".join(f"{run}: " + ", ".join(p) for run, p in by_run.items()) + ".")
    elif not head.empty and (head["kind"] == "snn").any():
        out.append("The front end was not counted: SNN pipeline totals exclude it and no share can be stated.")
    if s is not None and a is not None and _ok(s["map"]) and _ok(a["map"]):
        out.append(_accuracy_sentence(s, a, runs, snn, twin))
    if ci is not None and not ci.empty:
        out += _ci_sentences(ci, twin_run=None if a is None else str(a["run"]), snn=snn)
    return out


def _diff_phrase(row: Any, metric: str) -> str:
    from neuroposter.report.uncertainty import METRIC_TITLES, is_true

    vals = [row[f"diff_{metric}{sfx}"] for sfx in ("", "_low", "_high")]
    if not all(_ok(v) for v in vals):
        return f"{METRIC_TITLES[metric]} n/a"
    verdict = "CI excludes 0" if is_true(row[f"diff_{metric}_excludes_0"]) else "CI includes 0"
    return (f"{METRIC_TITLES[metric]} {vals[0]:+.3f} [{100 * float(row['level']):.0f}% CI {vals[1]:+.3f}, "
            f"{vals[2]:+.3f}] ({verdict})")


def _pair_phrase(row: Any, ref: str) -> str:
    paired = str(row["paired"])
    if paired != "yes":
        return f"{ref} - {row['run']}: no paired difference ({paired.removeprefix('no: ')})"
    return f"{ref} - {row['run']}: " + ", ".join(_diff_phrase(row, m) for m in ("map", "micro_f1", "micro_f1_tuned"))


def _ci_sentences(ci: pd.DataFrame, twin_run: str | None, snn: str) -> list[str]:
    """The bootstrap sentences: the fair pair first, then the reference against every other run."""
    ref = str(ci["reference"].iloc[0] or "")
    if not ref:
        return [f"Test-set bootstrap intervals of the differences: not possible, no {snn} run in this report."]
    refrow = ci[ci["run"] == ref]
    n = refrow["n_test"].iloc[0] if not refrow.empty else None
    posters = f"the {int(n)} test posters" if _ok(n) else "the test posters"
    how = (f"paired bootstrap over {posters}, B = {int(ci['bootstrap_B'].iloc[0])} resamples, "
           f"seed {int(ci['bootstrap_seed'].iloc[0])}, {100 * float(ci['level'].iloc[0]):.0f}% percentile intervals, "
           f"difference = {ref} - model; this captures test-set sampling noise only, NOT seed-to-seed training noise")
    if _ok(n) and int(n) < 30:
        how += (f"; with only {int(n)} test posters these percentile intervals are rough (a resample repeats few "
                "posters and drops genres from its mAP)")
    out = []
    others = ci[(ci["run"] != ref) & (ci["run"] != twin_run)]
    if twin_run is not None and (ci["run"] == twin_run).any():
        out.append(f"Test-set sampling uncertainty of the fair pair ({how}): "
                   f"{_pair_phrase(ci[ci['run'] == twin_run].iloc[0], ref)}.")
        if not others.empty:
            out.append(f"{ref} against every other model (same bootstrap): "
                       + "; ".join(_pair_phrase(r, ref) for _, r in others.iterrows()) + ".")
    elif not others.empty:
        out.append(f"Test-set sampling uncertainty, {ref} against every other model ({how}): "
                   + "; ".join(_pair_phrase(r, ref) for _, r in others.iterrows()) + ".")
    return out


def _accuracy_sentence(s: Any, a: Any, runs: Sequence[Any], snn: str, twin: str) -> str:
    diff = s["map"] - a["map"]
    txt = f"Test mAP: {snn} {s['map']:.3f}, {twin} {a['map']:.3f} (difference {diff:+.3f})"
    if _ok(s["baseline_map"]):
        txt += f"; best constant baseline {s['baseline_map']:.3f}"
    vs, ss = seed_spread(runs, snn)
    va, sa = seed_spread(runs, twin)
    if len(vs) >= 2 and len(va) >= 2:
        sd = math.sqrt(statistics.stdev(vs) ** 2 / len(vs) + statistics.stdev(va) ** 2 / len(va))
        diff_mean = statistics.fmean(vs) - statistics.fmean(va)
        verdict = "larger" if abs(diff_mean) > 2 * sd else "not larger"
        txt += (f". Over seeds of the same training budget ({snn}: {len(vs)} seeds, sd {statistics.stdev(vs):.3f}; "
                f"{twin}: {len(va)} seeds, sd {statistics.stdev(va):.3f}) the mean difference {diff_mean:+.3f} is "
                f"{verdict} than twice its standard error ({2 * sd:.3f}).")
    else:
        n_test = None
        for r in runs:
            if r.name == s["run"]:
                n_test = ((r.metrics or {}).get("split_sizes") or {}).get("test")
        txt += (f". Seed noise NOT assessed: {len(vs)} seed(s) of {snn} and {len(va)} of {twin} in this report "
                f"(train more seeds to tell whether the difference is real)"
                + (f"; the test split has only {n_test} samples" if n_test else "") + ".")
    left = _left_out(runs, (snn, twin))
    if left:
        txt += f" Left out of the seed statistics (only runs with the same training budget are pooled): {left}."
    return txt


def _ok(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _ratio(x: float, y: float) -> str:
    return "undefined (zero)" if y == 0 else f"{x / y:.3g}x"
