"""The poster pipelines side by side, as deployed: accuracy of what runs and its energy per inference, front end
included, and which pipeline wins where.

A *pipeline* is everything between the poster image and its genres. :data:`PIPELINES` names the ones the report
compares (issue #15): the seed's pipeline (DenseNet-169 features + the SDT), the pixel SDT (a spiking stem on the
image), the spiking front end feeding the seed's SDT, the CNN and the small ViT. A pipeline is present when the
report has a run of its model.

**What "deployed" means** (one bundle per pipeline, :func:`deployed_bundle`): a verified export bundle of a run of
the pipeline's model, preferring, in order, a chip bundle on the device view's chip (Loihi 2) that passed its
deployed-vs-trained gate, then any other chip bundle that passed it, then one whose gate was off or failed, then the
NIR bundle, then the ONNX bundle; among equals a run trained with the chip's arithmetic (QAT) first, then the run the
report shows for the model. The deployed accuracy is the bundle's own ``verification.deployed_vs_trained`` (the
deployed network's test mAP with the bundle's 95 % bootstrap interval over the test posters); a NIR bundle records
none because its graph equals the model spike for spike (its verification gate), so its deployed accuracy is the
run's test mAP with the report's bootstrap interval. Energy per inference is the deployed run's headline energy in
each view (:mod:`neuroposter.report.headline`: its own op counts; with the DenseNet-169 front end when the model
reads its features, so every pipeline is priced image to genres).

**Which wins where** (:func:`pipeline_winners`): per view, among the pipelines whose deployed-mAP interval overlaps
the most accurate pipeline's (not distinguishable from the best on this test set), the one that costs least.
Read only: nothing here exports, simulates or counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

__all__ = ["Pipeline", "PIPELINES", "deployed_bundle", "pipeline_rows", "pipeline_winners", "pipelines_display",
           "pipelines_text", "missing_pipelines"]


@dataclass(frozen=True)
class Pipeline:
    """One image-to-genres pipeline the report compares.

    Attributes:
        model: the registry name of its model (its runs make the pipeline present).
        label: what a reader calls it.
        front_end: what turns the image into the model's input.
    """

    model: str
    label: str
    front_end: str
    how: str = ""


PIPELINES: tuple[Pipeline, ...] = (
    Pipeline("sdt", "DenseNet-169 features + SDT (the seed's pipeline)", "DenseNet-169 (ANN) + spike encoder",
             "neuroposter train --model sdt"),
    Pipeline("sdt-pixels", "pixel SDT", "spiking conv stem (part of the model)", "neuroposter train --model sdt-pixels"),
    Pipeline("sdt-frontend", "spiking front end + the seed's SDT", "spiking conv network (distilled)",
             "neuroposter train --model sdt-frontend --init-from sdt (or neuroposter demo --size full)"),
    Pipeline("cnn", "CNN (DenseNet-169 + head)", "none (the CNN reads the image)", "neuroposter train --model cnn"),
    Pipeline("vit", "ViT (small, from scratch)", "none (the ViT reads the image)", "neuroposter train --model vit"),
)

DEVICE_CHIP = "loihi"
_HOST_TARGETS = ("nir", "onnx")


def _ok(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _summary(b: Any) -> dict[str, Any]:
    from neuroposter.report.collect import _maybe_json

    return _maybe_json(b.path / "summary.json")


def _rank(b: Any, summ: dict[str, Any], qat: bool, representative: bool) -> tuple[int, ...]:
    gate = next((g for g in summ.get("gates") or [] if g.get("check") == "deployed_vs_trained"
                 and g.get("min") is not None), None)
    passed = bool(gate and gate.get("ok") and float(gate.get("min") or 0) > 0)
    if b.target == DEVICE_CHIP and passed:
        tier = 0
    elif b.target not in _HOST_TARGETS and passed:
        tier = 1
    elif b.target not in _HOST_TARGETS:
        tier = 2
    elif b.target == "nir":
        tier = 3
    else:
        tier = 4
    return tier, 0 if qat else 1, 0 if representative else 1


def deployed_bundle(bundles: Iterable[Any], runs: Sequence[Any], model: str) -> tuple[Any, dict[str, Any]] | None:
    """The bundle that stands for ``model``'s deployment (see the module docstring) and its ``summary.json``;
    None when no verified bundle of a run of ``model`` records what it deployed."""
    from neuroposter.report.seeds import representative

    by_run = {r.name: r for r in runs}
    rep = representative(runs, model)
    best: tuple[tuple[int, ...], Any, dict[str, Any]] | None = None
    for b in bundles:
        r = by_run.get(b.run)
        if r is None or r.model != model or getattr(r, "fitted", False):
            continue
        summ = _summary(b)
        if summ.get("ok") is False:
            continue
        has_entry = bool((summ.get("verification") or {}).get("deployed_vs_trained"))
        if b.target != "nir" and not has_entry:
            continue
        key = _rank(b, summ, bool((r.model_json or {}).get("deploy")), rep is not None and r.name == rep.name)
        if best is None or key < best[0]:
            best = (key, b, summ)
    return None if best is None else (best[1], best[2])


def _where(b: Any, summ: dict[str, Any], entry: dict[str, Any]) -> str:
    if b.target == "nir":
        return f"NIR graph ({b.run}; equal to the model spike for spike)"
    if b.target == "onnx":
        return f"ONNX ({b.run}; onnxruntime)"
    gate = next((g for g in summ.get("gates") or [] if g.get("check") == "deployed_vs_trained"), {})
    agree = entry.get("set_agreement")
    txt = f"{b.target} ({b.run}"
    if _ok(agree):
        txt += f"; genre set kept on {float(agree):.3f}"
        if gate.get("min"):
            txt += f", bound {float(gate['min']):.2f}{'' if gate.get('ok') else ': NOT met'}"
    return txt + ")"


def pipeline_rows(bundles: Iterable[Any], runs: Sequence[Any], headline: pd.DataFrame, ci: pd.DataFrame,
                  views: Sequence[Any]) -> pd.DataFrame:
    """One row per present pipeline, in :data:`PIPELINES` order.

    Columns: ``pipeline``, ``model``, ``front_end``, ``run`` (the deployed run, or the model's representative run
    when nothing is deployed), ``deployed_on`` (where and how; ``"not deployed"``), ``target``, ``map`` (deployed
    test mAP, or the trained one when not deployed), ``map_lo``, ``map_hi``, ``deployed`` (bool),
    ``baseline_map``, and per view ``<key>_mj`` (energy per inference of the pipeline, front end included),
    ``<key>_lower_bound``, ``<key>_profile``.
    """
    from neuroposter.report.seeds import representative

    bundles = list(bundles)
    head = headline.set_index("run") if headline is not None and not headline.empty else pd.DataFrame()
    ci_by = ci.set_index("run") if ci is not None and not ci.empty and "run" in ci else pd.DataFrame()
    rows = []
    for p in PIPELINES:
        rep = representative(runs, p.model)
        if rep is None:
            continue
        found = deployed_bundle(bundles, runs, p.model)
        row: dict[str, Any] = {"pipeline": p.label, "model": p.model, "front_end": p.front_end,
                               "run": rep.name, "deployed_on": "not deployed", "target": None, "map": None,
                               "map_lo": None, "map_hi": None, "deployed": False, "baseline_map": None}
        if found is not None:
            b, summ = found
            entry = (summ.get("verification") or {}).get("deployed_vs_trained") or {}
            row.update(run=b.run, target=b.target, deployed=True, deployed_on=_where(b, summ, entry))
            if entry:
                row["map"] = (entry.get("map") or {}).get("deployed")
                row["map_lo"], row["map_hi"] = (((entry.get("intervals") or {}).get("map") or {}).get("deployed")
                                                or [None, None])
        run = row["run"]
        h = head.loc[run] if run in head.index else None
        if row["map"] is None and h is not None:      # NIR bundle (graph == model) or nothing deployed
            row["map"] = h.get("map")
            if run in ci_by.index:
                row["map_lo"], row["map_hi"] = ci_by.loc[run].get("map_low"), ci_by.loc[run].get("map_high")
        if h is not None:
            row["baseline_map"] = h.get("baseline_map")
        for v in views:
            row[f"{v.key}_mj"] = None if h is None else h.get(f"{v.key}_pipeline_mj")
            row[f"{v.key}_lower_bound"] = False if h is None else bool(h.get(f"{v.key}_pipeline_lower_bound"))
            row[f"{v.key}_profile"] = None if h is None else h.get(f"{v.key}_priced_on")
        rows.append(row)
    return pd.DataFrame(rows)


def _interval(r: Any) -> tuple[float, float]:
    m = float(r["map"])
    lo = float(r["map_lo"]) if _ok(r.get("map_lo")) else m
    hi = float(r["map_hi"]) if _ok(r.get("map_hi")) else m
    return lo, hi


def pipeline_winners(rows: pd.DataFrame, views: Sequence[Any]) -> pd.DataFrame:
    """Per view: ``view``, ``title``, ``best`` (the most accurate deployed pipeline), ``contenders`` (the
    pipelines whose deployed-mAP interval overlaps the best one's), ``winner`` / ``winner_mj`` (the cheapest
    contender with a priced energy) and ``lower_bound`` (its energy is a lower bound)."""
    cols = ["view", "title", "best", "contenders", "winner", "winner_mj", "lower_bound"]
    acc = rows[rows["map"].map(_ok)] if not rows.empty else rows
    if acc.empty:
        return pd.DataFrame(columns=cols)
    best = acc.loc[acc["map"].astype(float).idxmax()]
    best_lo = _interval(best)[0]
    cont = acc[[_interval(r)[1] >= best_lo for _, r in acc.iterrows()]]
    out = []
    for v in views:
        col = f"{v.key}_mj"
        priced = cont[cont[col].map(_ok)] if col in cont else cont.iloc[0:0]
        row = {"view": v.key, "title": getattr(v, "short", "") or v.title, "best": best["pipeline"],
               "contenders": "; ".join(cont["pipeline"]), "winner": None, "winner_mj": None, "lower_bound": False}
        if not priced.empty:
            w = priced.loc[priced[col].astype(float).idxmin()]
            row.update(winner=w["pipeline"], winner_mj=float(w[col]), lower_bound=bool(w[f"{v.key}_lower_bound"]))
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def _mj(v: Any) -> str:
    return f"{float(v):.3g}" if _ok(v) else "n/a"


def _iv(r: Any) -> str:
    if not _ok(r.get("map")):
        return "n/a"
    lo, hi = _interval(r)
    return f"{float(r['map']):.3f} [{lo:.3f}, {hi:.3f}]"


def pipelines_display(rows: pd.DataFrame, views: Sequence[Any]) -> pd.DataFrame:
    """The side-by-side table as strings: pipeline, front end, deployed test mAP [95 % CI], constant, where it is
    deployed, and its energy per inference (front end included) in ``views``."""
    if rows is None or rows.empty:
        return pd.DataFrame()
    out = []
    for _, r in rows.iterrows():
        d = {"pipeline": r["pipeline"], "front end": r["front_end"],
             "test mAP as deployed": _iv(r) + ("" if r["deployed"] else " (trained)"),
             "constant": f"{float(r['baseline_map']):.3f}" if _ok(r["baseline_map"]) else "n/a",
             "deployed as": r["deployed_on"]}
        for v in views:
            name = (getattr(v, "short", "") or v.title).split(" (")[0]
            d[f"{name}, mJ"] = (">= " if r[f"{v.key}_lower_bound"] else "") + _mj(r[f"{v.key}_mj"])
        out.append(d)
    return pd.DataFrame(out)


def pipelines_text(rows: pd.DataFrame, views: Sequence[Any]) -> str | None:
    """One sentence: which pipeline wins where (None without a priced view)."""
    w = pipeline_winners(rows, views)
    w = w[w["winner"].notna()] if not w.empty else w
    if w.empty:
        return None
    first = w.iloc[0]
    best = rows[rows["pipeline"] == first["best"]].iloc[0]
    others = [c for c in str(first["contenders"]).split("; ") if c and c != first["best"]]
    by_winner: dict[str, list[str]] = {}
    for _, r in w.iterrows():
        by_winner.setdefault(str(r["winner"]), []).append(
            f"{str(r['title']).split(' (')[0]} ({'>= ' if r['lower_bound'] else ''}{_mj(r['winner_mj'])} mJ)")
    wins = "; ".join(f"the {name} in the {', '.join(where)}" for name, where in by_winner.items())
    return (f"The poster pipelines as deployed, front end included: the most accurate is the {first['best']} "
            f"({_iv(best)}, {str(best.get('deployed_on') or 'deployed').split(' (')[0]})"
            + (f", not distinguishable from the {', '.join(others)}" if others else "")
            + f"; the cheapest of those is {wins}.")


def missing_pipelines(rows: pd.DataFrame) -> str | None:
    """One sentence naming the pipelines of :data:`PIPELINES` this report has no run of, and the command that makes
    each (None when all are present)."""
    have = set(rows["model"]) if rows is not None and not rows.empty else set()
    gone = [p for p in PIPELINES if p.model not in have]
    if not gone:
        return None
    return "Not in this report (no run): " + "; ".join(f"{p.label} (`{p.how}`)" for p in gone) + "."
