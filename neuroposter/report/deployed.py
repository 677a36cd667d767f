"""Deployed accuracy beside deployed energy: what a chip export keeps of the trained model, with and without
quantisation-aware training.

One row per verified chip bundle (Loihi 2, a simulated chip) whose ``summary.json`` holds
``verification.deployed_vs_trained`` (:mod:`neuroposter.targets.verify`): the deployed network's mAP and micro-F1
on the test split (not the float model's), the trained model's beside them, how often the deployed network keeps
the trained model's genre set and top-1 genre (with the bundle's bootstrap intervals), the export's bound on it,
and the run's energy per inference from the headline table (same run: its NIR bundle's op counts). A run trained
with the target's arithmetic in the loop (``model.json`` ``"deploy"``) is marked so; its float-trained origin is
the comparison. Read only: nothing here exports or simulates.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import pandas as pd

__all__ = ["deployed_rows", "deployed_display", "deployed_text"]


def _json(path: Any) -> dict[str, Any]:
    from neuroposter.report.collect import _maybe_json

    return _maybe_json(path)


def _trained_with(run: Any) -> tuple[str, str | None]:
    """``(description, origin)``: "float" or the target's arithmetic, and the float run it was fine-tuned from."""
    deploy = (run.model_json or {}).get("deploy")
    if not deploy:
        return "float", None
    src = (((run.metrics or {}).get("qat") or {}).get("init_from") or {}).get("run")
    origin = str(src).rstrip("/").split("/")[-1] if src else None
    return f"{deploy.get('target')} arithmetic (QAT{f', from {origin}' if origin else ''})", origin


def deployed_rows(bundles: Iterable[Any], runs: Sequence[Any], headline: pd.DataFrame,
                  views: Sequence[Any]) -> pd.DataFrame:
    """One row per chip bundle with a deployed-vs-trained verification (see the module docstring).

    Columns: ``run``, ``target``, ``trained_with``, ``qat`` (bool), ``origin`` (the float run a QAT run was
    fine-tuned from, else None), ``samples``, ``deployed_map`` / ``trained_map`` (+ ``_lo``,
    ``_hi`` of the deployed one), ``deployed_micro_f1`` / ``trained_micro_f1`` (+ interval), ``set_agreement`` (+
    interval), ``top1_agreement``, ``bound`` (the export's ``--min-trained-agreement``; 0: switched off),
    ``gate_ok``, and per headline view ``<key>_head_mj`` / ``<key>_pipeline_mj`` of the run. Refused bundles
    (nothing deployed) are left out.
    """
    by_run = {r.name: r for r in runs}
    head = {r["run"]: r for _, r in headline.iterrows()} if not headline.empty else {}
    rows = []
    for b in bundles:
        if b.target in ("nir", "onnx") or b.run not in by_run:
            continue
        summ = _json(b.path / "summary.json")
        entry = (summ.get("verification") or {}).get("deployed_vs_trained")
        if not entry or summ.get("ok") is False:      # a refusal: nothing deployed (its what-if is in the bundle)
            continue
        iv = entry.get("intervals") or {}
        gate = next((g for g in summ.get("gates") or [] if g.get("check") == "deployed_vs_trained"), {})
        trained_with, origin = _trained_with(by_run[b.run])
        row: dict[str, Any] = {"run": b.run, "target": b.target, "trained_with": trained_with,
                               "qat": trained_with != "float", "origin": origin,
                               "samples": entry.get("samples"), "split": (summ.get("inputs") or {}).get("split")}
        for key in ("map", "micro_f1"):
            d = entry.get(key) or {}
            row[f"deployed_{key}"], row[f"trained_{key}"] = d.get("deployed"), d.get("reference")
            lo_hi = (iv.get(key) or {}).get("deployed") or [None, None]
            row[f"deployed_{key}_lo"], row[f"deployed_{key}_hi"] = lo_hi
        row["set_agreement"] = entry.get("set_agreement")
        row["set_agreement_lo"], row["set_agreement_hi"] = iv.get("set_agreement") or [None, None]
        row["top1_agreement"] = entry.get("top1_agreement")
        row["bound"], row["gate_ok"] = gate.get("min"), gate.get("ok")
        h = head.get(b.run)
        for v in views:
            for col in ("head", "pipeline"):
                row[f"{v.key}_{col}_mj"] = None if h is None else h.get(f"{v.key}_{col}_mj")
        rows.append(row)
    return pd.DataFrame(rows)


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _with_iv(v: Any, lo: Any, hi: Any) -> str:
    text = _f(v)
    return text + (f" [{_f(lo)}-{_f(hi)}]" if lo is not None and hi is not None and text != "n/a" else "")


def _mj(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def deployed_display(rows: pd.DataFrame, views: Sequence[Any]) -> pd.DataFrame:
    """The rows as strings: accuracies with their 95 % bootstrap intervals, energy ``model / pipeline`` in mJ."""
    if rows.empty:
        return rows
    out = pd.DataFrame({
        "run -> target": [f"{r} -> {t}" for r, t in zip(rows["run"], rows["target"])],
        "trained with": rows["trained_with"],
        "test samples": rows["samples"],
        "deployed mAP": [_with_iv(*x) for x in zip(rows["deployed_map"], rows["deployed_map_lo"],
                                                    rows["deployed_map_hi"])],
        "trained mAP": [_f(v) for v in rows["trained_map"]],
        "deployed micro-F1": [_with_iv(*x) for x in zip(rows["deployed_micro_f1"], rows["deployed_micro_f1_lo"],
                                                         rows["deployed_micro_f1_hi"])],
        "trained micro-F1": [_f(v) for v in rows["trained_micro_f1"]],
        "same genre set": [_with_iv(*x) for x in zip(rows["set_agreement"], rows["set_agreement_lo"],
                                                      rows["set_agreement_hi"])],
        "same top-1": [_f(v) for v in rows["top1_agreement"]],
        "bound": [("off" if b == 0 else f">= {b:g}: " + ("holds" if ok else "fails")) if b is not None else "-"
                  for b, ok in zip(rows["bound"], rows["gate_ok"])],
    })
    for v in views:
        if f"{v.key}_head_mj" in rows:
            out[f"{v.key} mJ (model / pipeline)"] = [f"{_mj(a)} / {_mj(b)}" for a, b in
                                                     zip(rows[f"{v.key}_head_mj"], rows[f"{v.key}_pipeline_mj"])]
    return out


def deployed_text(rows: pd.DataFrame) -> list[str]:
    """Sentences comparing each quantisation-aware run with its float-trained origin on the same target."""
    out: list[str] = []
    if rows.empty:
        return out
    for _, r in rows.iterrows():
        if not r["qat"]:
            continue
        origin = r["origin"]
        base = rows[(rows["run"] == origin) & (rows["target"] == r["target"])] if origin else rows.iloc[0:0]
        line = (f"{r['run']} on {r['target']} (trained with its arithmetic): deployed mAP {_f(r['deployed_map'])}, "
                f"micro-F1 {_f(r['deployed_micro_f1'])}; keeps the trained model's genre set on "
                f"{_f(r['set_agreement'])} and its top-1 genre on {_f(r['top1_agreement'])} of {r['samples']} "
                "test samples")
        if not base.empty:
            b = base.iloc[0]
            line += (f" -- the float-trained {origin} deployed there: mAP {_f(b['deployed_map'])}, micro-F1 "
                     f"{_f(b['deployed_micro_f1'])}, genre set kept on {_f(b['set_agreement'])}, top-1 on "
                     f"{_f(b['top1_agreement'])}")
        out.append(line + ".")
    return out
