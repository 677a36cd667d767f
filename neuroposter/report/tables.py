"""Report tables (pandas): energy per model x view x profile, accuracy with baselines, layers, provenance."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.energy import EnergyBreakdown, estimate_energy
from neuroposter.profiling.profiles import HardwareProfile

__all__ = ["Evaluation", "plan_evaluations", "energy_table", "energy_pivot", "accuracy_table", "layer_table",
           "METRIC_COLUMNS", "PAPER_PROFILE", "PRECISION_PROFILES", "MEMORY_PROFILE", "DEFAULT_FRONTEND_PROFILE",
           "paper_constants"]

METRIC_COLUMNS = ("micro_f1", "macro_f1", "samples_f1", "map", "p_at_1", "hamming")
PAPER_PROFILE = "horowitz_45nm_fp32"
PRECISION_PROFILES = ("horowitz_45nm_fp32", "horowitz_45nm_fp16", "horowitz_45nm_int8")
MEMORY_PROFILE = "lemaire_45nm"
DEFAULT_FRONTEND_PROFILE = "jetson_agx_orin"


@dataclass(frozen=True)
class Evaluation:
    """One energy evaluation: a view, a profile and (SDT view) a first-layer convention."""

    view: str
    profile: str
    first_layer: str = "once"

    @property
    def label(self) -> str:
        """Short label, e.g. ``sdt_paper/horowitz_45nm_fp32 (first layer once)``."""
        base = f"{self.view}/{self.profile}"
        return f"{base} (first layer {self.first_layer})" if self.view == "sdt_paper" else base


def plan_evaluations(device_profiles: Sequence[HardwareProfile]) -> list[Evaluation]:
    """The standard views: SDT-paper (both conventions), precision-matched, memory-aware, per device."""
    ev = [Evaluation("sdt_paper", PAPER_PROFILE, "once"), Evaluation("sdt_paper", PAPER_PROFILE, "xT")]
    ev += [Evaluation("precision", p) for p in PRECISION_PROFILES]
    ev.append(Evaluation("memory", MEMORY_PROFILE))
    ev += [Evaluation("device", p.name) for p in device_profiles]
    return ev


def paper_constants(profile: HardwareProfile | None = None) -> str:
    """``"E_MAC 4.6 / E_AC 0.9 pJ"`` as read from the SDT-paper profile (never written into the code)."""
    from neuroposter.profiling.profiles import load_profile

    p = profile if profile is not None else load_profile(PAPER_PROFILE)

    def fmt(key: str) -> str:
        v = p.energy.get(key)
        return "n/a" if v is None else f"{v:g}"

    return f"E_MAC {fmt('e_mac_pj')} / E_AC {fmt('e_ac_pj')} pJ"


def _mj(v: float | None) -> float | None:
    return None if v is None else v * 1e-9


_NOT_FINITE = ("not a finite number: the counts times the profile's constants overflow (check the profile's "
               "values)")


def _finite(b: EnergyBreakdown) -> EnergyBreakdown:
    """``b``, or ``b`` marked unavailable when a total or a term is infinite or NaN (never priced as such)."""
    values = [b.total_pj, b.low_pj, b.high_pj, *(getattr(t, "pj", None) for t in b.terms)]
    if not b.available or all(v is None or math.isfinite(float(v)) for v in values):
        return b
    return dataclasses.replace(b, available=False, reason=_NOT_FINITE, total_pj=None, low_pj=None, high_pj=None,
                               terms=())


def _sum(a: float | None, b: float | None) -> float | None:
    """``a + b`` (None counts as 0); None when the sum is not finite."""
    v = (a or 0.0) + (b or 0.0)
    return v if math.isfinite(v) else None


def energy_table(
    runs: Iterable[Any],
    evaluations: Sequence[Evaluation],
    profiles: dict[str, HardwareProfile],
    frontend: OpCounts | None,
    frontend_models: Sequence[str],
    frontend_profile: str,
) -> tuple[pd.DataFrame, dict[tuple[str, str], EnergyBreakdown]]:
    """One row per run x evaluation x component (model, frontend, pipeline).

    Returns:
        ``(table, breakdowns)`` where ``breakdowns[(run, label + "|" + component)]`` holds the full breakdowns.
    """
    rows: list[dict[str, Any]] = []
    keep: dict[tuple[str, str], EnergyBreakdown] = {}
    for run in runs:
        c: OpCounts | None = run.counts
        if c is None:
            continue
        for ev in evaluations:
            prof = profiles[ev.profile]
            if ev.view == "device" and c.kind == "ann" and prof.kind == "neuromorphic":
                continue
            if ev.view == "sdt_paper" and c.kind == "ann" and ev.first_layer == "xT":
                continue
            try:
                b = estimate_energy(c, prof, view=ev.view, first_layer=ev.first_layer)
            except ValueError as exc:  # all-in profile under a per-term view
                b = EnergyBreakdown(c.name, prof.name, ev.view, available=False, reason=str(exc),
                                    scope=prof.scope, evidence=prof.evidence)
            b = _finite(b)
            keep[(run.name, ev.label + "|model")] = b
            fb = None
            fprof = prof
            if frontend is not None and run.model in frontend_models:
                if ev.view == "device" and prof.kind != "ann":
                    fprof = profiles[frontend_profile]
                fb = _finite(estimate_energy(frontend, fprof, view=ev.view, first_layer="once"))
                keep[(run.name, ev.label + "|frontend")] = fb
            base = {"run": run.name, "model": run.model, "kind": c.kind, "view": ev.view,
                    "first_layer": ev.first_layer if ev.view == "sdt_paper" and c.kind == "snn" else "",
                    "evaluation": ev.label, "profile": prof.name, "scope": prof.scope, "evidence": prof.evidence,
                    "profile_source": "; ".join(prof.sources), "counts_source": run.counts_source}
            rows.append({**base, "component": "model", "energy_mj": _mj(b.total_pj), "low_mj": _mj(b.low_pj),
                         "high_mj": _mj(b.high_pj), "available": b.available, "reason": b.reason,
                         "priced_on": prof.name})
            if fb is not None:
                # the front end is traced to its own counts (the DenseNet-169 graph) and to the profile
                # it was priced on, which differs from the chip's in the device view of a neuromorphic chip
                fe_src = str((frontend.meta or {}).get("source") or f"ONNX front-end counts {frontend.name}")
                fe_base = {**base, "scope": fprof.scope, "evidence": fprof.evidence,
                           "profile_source": "; ".join(fprof.sources), "counts_source": fe_src}
                rows.append({**fe_base, "component": "frontend", "energy_mj": _mj(fb.total_pj),
                             "low_mj": _mj(fb.low_pj), "high_mj": _mj(fb.high_pj), "available": fb.available,
                             "reason": fb.reason, "priced_on": fprof.name})
                if fprof.name != prof.name:  # the pipeline total rests on both profiles and both counts
                    base = {**base, "evidence": f"{prof.evidence}; front end: {fprof.evidence}",
                            "profile_source": f"{base['profile_source']} | front end on {fprof.name}: "
                                              f"{fe_base['profile_source']}",
                            "counts_source": f"{base['counts_source']} | front end: {fe_src}"}
                else:
                    base = {**base, "counts_source": f"{base['counts_source']} | front end: {fe_src}"}
            both = b.available and (fb is None or fb.available)
            bounded = both and b.high_pj is not None and (fb is None or fb.high_pj is not None)
            tot = None if not both else _sum(b.total_pj, fb.total_pj if fb else 0.0)
            low = None if not both else _sum(b.low_pj, fb.low_pj if fb else 0.0)
            high = _sum(b.high_pj, fb.high_pj if fb else 0.0) if bounded else None
            reason = b.reason or (fb.reason if fb is not None else "")
            if both and (tot is None or low is None or (bounded and high is None)):  # the sum overflows
                both, tot, low, high, reason = False, None, None, None, _NOT_FINITE
            rows.append({**base, "component": "pipeline", "energy_mj": _mj(tot), "low_mj": _mj(low),
                         "high_mj": _mj(high), "available": both, "reason": reason,
                         "priced_on": prof.name if fb is None else f"{prof.name} + front end on {fprof.name}"})
    cols = ["run", "model", "kind", "component", "view", "first_layer", "evaluation", "profile", "priced_on",
            "scope", "evidence", "energy_mj", "low_mj", "high_mj", "available", "reason", "profile_source",
            "counts_source"]
    return pd.DataFrame(rows, columns=cols), keep


def accuracy_table(runs: Iterable[Any]) -> pd.DataFrame:
    """Test metrics of every run, followed by its constant-predictor baselines."""
    rows = []
    for r in runs:
        m = r.metrics or {}
        test = m.get("test") or {k: m.get(k) for k in METRIC_COLUMNS}
        rows.append({"run": r.name, "model": r.model, "predictor": r.model,
                     **{k: test.get(k) for k in METRIC_COLUMNS}})
        for bname, bm in (m.get("baselines") or {}).items():
            rows.append({"run": r.name, "model": r.model, "predictor": f"baseline: {bname}",
                         **{k: (bm or {}).get(k) for k in METRIC_COLUMNS}})
    return pd.DataFrame(rows, columns=["run", "model", "predictor", *METRIC_COLUMNS])


def layer_table(runs: Iterable[Any]) -> pd.DataFrame:
    """Per-layer counts of every run (synops/MACs, spikes, firing rate, updates)."""
    rows = []
    for r in runs:
        if r.counts is None:
            continue
        for lc in r.counts.layers:
            rows.append({"run": r.name, "layer": lc.name, "op_type": lc.op_type, "kind": lc.kind,
                         "dense_ops": lc.dense_ops, "effective_acs": lc.effective_acs,
                         "effective_macs": lc.effective_macs, "other_ops": lc.other_ops, "spikes": lc.spikes,
                         "firing_rate": lc.firing_rate, "updates_dense": lc.updates_dense,
                         "updates_effective": lc.updates_effective, "sdsa_core": lc.sdsa and lc.kind == "synapse",
                         "weights": lc.n_weights})
    return pd.DataFrame(rows)


def _cell(point: Any, low: Any, high: Any, available: Any) -> str:
    """``"x"``, ``"x (lo-hi)"`` when the range differs, ``">= x"`` for a lower bound, ``"n/a"`` when unavailable."""
    if not bool(available) or pd.isna(point):
        return "n/a"
    f = "{:.3g}".format
    if pd.isna(high):
        return f">=\u00a0{f(point)}" if pd.isna(low) or f(low) == f(point) else f"{f(point)} (>=\u00a0{f(low)})"
    if pd.isna(low) or (f(low) == f(point) == f(high)):
        return f(point)
    return f"{f(point)} ({f(low)}-{f(high)})"


def energy_pivot(energy: pd.DataFrame, component: str, views: Sequence[str] | None = None,
                 strip_view: bool = False) -> pd.DataFrame:
    """Wide form of the energy table for one component: rows = run, columns = evaluation, cells = mJ per
    inference (with the low-high range when it differs; ``>=`` for a lower bound; ``n/a`` unpublished constant;
    ``-`` not priced). ``views`` keeps only those views; ``strip_view`` drops the ``view/`` prefix of column names."""
    sub = energy[energy["component"] == component]
    if views is not None:
        sub = sub[sub["view"].isin(views)]
    if sub.empty:
        return pd.DataFrame()
    runs = list(dict.fromkeys(sub["run"]))
    widest = max(runs, key=lambda r: (sub["run"] == r).sum())  # its evaluations in plan order (SNNs have them all)
    cols = list(dict.fromkeys([*sub.loc[sub["run"] == widest, "evaluation"], *sub["evaluation"]]))
    cells = {(r.run, r.evaluation): _cell(r.energy_mj, r.low_mj, r.high_mj, r.available)
             for r in sub.itertuples(index=False)}
    out = pd.DataFrame({"run": runs})
    for c in cols:
        out[c.split("/", 1)[1] if strip_view else c] = [cells.get((r, c), "-") for r in runs]
    return out
