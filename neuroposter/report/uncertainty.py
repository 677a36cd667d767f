"""Test-set sampling uncertainty of the accuracy comparison: a paired bootstrap over the test posters.

Each run's ``predictions_test.npz`` (``scores``: sigmoid probabilities ``[n_test, G]``, ``labels`` ``[n_test, G]``)
and the validation-tuned ``thresholds`` of its ``metrics.json`` are resampled with
:func:`neuroposter.train.bootstrap.bootstrap` (every run with the same ``B`` and ``seed``, hence the same
resamples); each run gets its own 95 % percentile intervals and, when its test labels are identical to the
reference run's (the SDT), the paired difference ``reference - run`` with its interval. A run whose test labels
differ is marked unpaired (no difference is given), a run without predictions unavailable.

This is test-set sampling noise only: the trained models are held fixed, so seed-to-seed training noise is not in
these intervals.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from neuroposter.train.bootstrap import BOOTSTRAP_METRICS, BootstrapDistribution, Interval, bootstrap, compare

__all__ = ["CI_COLUMNS", "accuracy_ci", "ci_display", "fmt_interval", "is_true", "METRIC_TITLES", "reference_run"]

log = logging.getLogger(__name__)

METRIC_TITLES = {"map": "mAP", "micro_f1": "micro-F1@0.5", "micro_f1_tuned": "micro-F1 (tuned thr.)"}
CI_COLUMNS = ["run", "model", "reference", "n_test", "bootstrap_B", "bootstrap_seed", "level",
              *[f"{m}{s}" for m in BOOTSTRAP_METRICS for s in ("", "_low", "_high")],
              "paired",
              *[f"diff_{m}{s}" for m in BOOTSTRAP_METRICS for s in ("", "_low", "_high", "_excludes_0")],
              "note"]


def _load(run: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """``(labels, scores, thresholds or None, notes)`` of a run; raises when the predictions are unusable."""
    path = run.path / "predictions_test.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {run.path}")
    with np.load(path) as z:
        if "scores" not in z or "labels" not in z:
            raise KeyError(f"{path} lacks 'scores' / 'labels'")
        scores, labels = np.asarray(z["scores"], dtype=np.float64), np.asarray(z["labels"])
    notes: list[str] = []
    thr = (run.metrics or {}).get("thresholds")
    thresholds = None
    if isinstance(thr, list) and len(thr) == labels.shape[1]:
        thresholds = np.asarray(thr, dtype=np.float64)
    else:
        notes.append("no tuned thresholds for every genre in metrics.json: tuned micro-F1 not bootstrapped")
    return labels, scores, thresholds, notes


def reference_run(runs: Sequence[Any], reference_model: str) -> Any | None:
    """The first run of ``reference_model`` (the headline's SDT row)."""
    return next((r for r in runs if r.model == reference_model), None)


def accuracy_ci(runs: Sequence[Any], reference_model: str = "sdt", *, B: int = 1000, seed: int = 0,
                level: float = 0.95) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: its test mAP / micro-F1 (0.5 and tuned) with bootstrap intervals and the paired
    difference ``reference - run`` (columns :data:`CI_COLUMNS`; ``paired``: ``reference`` / ``yes`` /
    ``no: <why>``).

    Returns:
        ``(table, warnings)``.
    """
    warnings: list[str] = []
    dists: dict[str, BootstrapDistribution] = {}
    notes: dict[str, list[str]] = {}
    for r in runs:
        try:
            labels, scores, thr, notes[r.name] = _load(r)
            dists[r.name] = bootstrap(labels, scores, thr, B=B, seed=seed)
        except Exception as exc:  # noqa: BLE001 - one run's missing predictions must not sink the report
            msg = f"{r.name}: no bootstrap intervals ({type(exc).__name__}: {exc})"
            notes[r.name] = [msg]
            warnings.append(msg)
            continue
        test = (r.metrics or {}).get("test") or {}
        for m in BOOTSTRAP_METRICS:
            v = test.get(m)
            if isinstance(v, (int, float)) and math.isfinite(dists[r.name].point[m]) \
                    and abs(float(v) - dists[r.name].point[m]) > 1e-6:
                msg = (f"{r.name}: {m} recomputed from predictions_test.npz ({dists[r.name].point[m]:.4f}) differs "
                       f"from metrics.json ({float(v):.4f})")
                notes[r.name].append(msg)
                warnings.append(msg)
    ref = reference_run(runs, reference_model)
    ref_dist = dists.get(ref.name) if ref is not None else None
    rows = []
    for r in runs:
        d = dists.get(r.name)
        row: dict[str, Any] = {"run": r.name, "model": r.model, "reference": ref.name if ref is not None else "",
                               "n_test": d.n if d else None, "bootstrap_B": B, "bootstrap_seed": seed, "level": level}
        own = d.intervals(level) if d else {}
        for m in BOOTSTRAP_METRICS:
            iv = own.get(m)
            row[m], row[f"{m}_low"], row[f"{m}_high"] = ((iv.point, iv.low, iv.high) if iv is not None
                                                         else (math.nan,) * 3)
        diff: dict[str, Interval] = {}
        if ref is None:
            row["paired"] = f"no: no {reference_model} run in this report"
        elif r.name == ref.name:
            row["paired"] = "reference"
        elif d is None or ref_dist is None:
            row["paired"] = f"no: predictions of {r.name if d is None else ref.name} unavailable"
        else:
            cmp = compare(ref_dist, d, level)
            row["paired"] = "yes" if cmp.available else f"no: {cmp.reason}"
            diff = cmp.diff
            if not cmp.available:
                warnings.append(f"{ref.name} vs {r.name}: unpaired, no bootstrap difference ({cmp.reason})")
        for m in BOOTSTRAP_METRICS:
            iv = diff.get(m)
            row[f"diff_{m}"], row[f"diff_{m}_low"], row[f"diff_{m}_high"] = ((iv.point, iv.low, iv.high)
                                                                             if iv is not None else (math.nan,) * 3)
            row[f"diff_{m}_excludes_0"] = iv.excludes_zero if iv is not None and iv.available else None
        row["note"] = "; ".join(notes.get(r.name, []))
        rows.append(row)
    return pd.DataFrame(rows, columns=CI_COLUMNS), warnings


def is_true(v: Any) -> bool:
    """A table flag that is set (True, numpy True or the string ``"True"`` read back from CSV)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) == "True"


def _f(v: float, signed: bool) -> str:
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def fmt_interval(point: Any, low: Any, high: Any, *, signed: bool = False) -> str:
    """``"0.700 [0.638, 0.792]"`` (``signed``: ``"-0.017 [-0.070, +0.039]"``); ``"n/a"`` when not available."""
    vals = [point, low, high]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return "n/a"
    return f"{_f(float(point), signed)} [{_f(float(low), signed)}, {_f(float(high), signed)}]"


def _row_interval(row: pd.Series, prefix: str, signed: bool) -> str:
    return fmt_interval(row[prefix], row[f"{prefix}_low"], row[f"{prefix}_high"], signed=signed)


def ci_display(ci: pd.DataFrame) -> pd.DataFrame:
    """The interval table as strings: model, each metric with its 95 % interval, and the difference
    ``reference - model`` with its interval (``excl. 0`` when the interval excludes 0; ``unpaired`` /
    ``reference`` otherwise)."""
    if ci.empty:
        return pd.DataFrame()
    ref = ci["reference"].iloc[0] or "reference"
    pct = f"{100 * float(ci['level'].iloc[0]):.0f}% CI"
    out = pd.DataFrame({"model (run)": [f"{m} ({r})" if m != r else r for m, r in zip(ci["model"], ci["run"])]})
    for m in BOOTSTRAP_METRICS:
        out[f"{METRIC_TITLES[m]} [{pct}]"] = [_row_interval(r, m, False) for _, r in ci.iterrows()]
    for m in ("map", "micro_f1", "micro_f1_tuned"):
        cells = []
        for _, r in ci.iterrows():
            paired = str(r["paired"])
            if paired == "reference":
                cells.append("(reference)")
            elif paired != "yes":
                cells.append("unpaired: n/a" if "labels differ" in paired else "n/a")
            else:
                cell = _row_interval(r, f"diff_{m}", True)
                if is_true(r[f"diff_{m}_excludes_0"]):
                    cell += " excl. 0"
                cells.append(cell)
        out[f"{METRIC_TITLES[m]} diff {ref} - model [{pct}]"] = cells
    return out
