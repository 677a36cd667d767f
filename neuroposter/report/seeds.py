"""Seed statistics from runs with the same training budget only.

Runs of one model are pooled over seeds only when they were trained with the same budget (epochs, QAT epochs and
early stopping's patience): the run config's
``train.epochs`` and ``train.patience``, and for a quantisation-aware fine-tune ``qat.train.epochs`` (the run's ``manifest.json``
``config``, else its ``resolved_config.yaml``). Each model's *representative* run (the report's row for the
model: the run named like the model, else its first float-trained run, else its first run) fixes the budget;
every other run of the model with another budget, an unknown budget or a seed already seen is left out, with
the reason, and the report lists it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import pandas as pd

__all__ = ["SEED_COLUMNS", "training_budget", "budget_text", "representative", "seed_groups", "pooled_metric", "mean_sd"]

SEED_COLUMNS = ["model", "run", "seed", "budget", "representative", "pooled", "reason"]


def _config(run: Any) -> dict[str, Any]:
    cfg = (getattr(run, "manifest", None) or {}).get("config")
    if isinstance(cfg, dict) and cfg:
        return cfg
    path = getattr(run, "path", None)
    p = Path(path) / "resolved_config.yaml" if path is not None else None
    if p is not None and p.is_file():
        import yaml

        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - an unreadable config is an unknown budget
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def _init_from(run: Any, qat: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config of the float run a quantisation-aware fine-tune started from (``qat.init_from.run``, found beside
    the run in its workspace's runs folder), or None."""
    src = ((qat or {}).get("init_from") or {}).get("run") if qat else None
    path = getattr(run, "path", None)
    if not src or path is None:
        return None
    sibling = Path(path).parent / Path(str(src)).name
    if not (sibling / "manifest.json").is_file() and not (sibling / "resolved_config.yaml").is_file():
        return None
    cfg = _config(SimpleNamespace(manifest=_manifest(sibling), path=sibling))
    return cfg or None


def _manifest(folder: Path) -> dict[str, Any]:
    from neuroposter.report.collect import _maybe_json

    return _maybe_json(folder / "manifest.json")


def training_budget(run: Any) -> tuple[int | None, int | None, int | None] | None:
    """``(epochs, qat_epochs, patience)`` of a run (``qat_epochs`` None for float training, ``patience`` None when
    not recorded); None when unknown. Early stopping's patience is part of the budget: it decides how long a run
    trains."""
    cfg = _config(run)
    train = cfg.get("train") or {}
    ep, pat = train.get("epochs"), train.get("patience")
    qat = cfg.get("qat") if isinstance(cfg.get("qat"), dict) else None
    qep = ((qat or {}).get("train") or {}).get("epochs") if qat else None
    src = _init_from(run, qat)
    if src is not None:    # a fine-tune of another run: its float phase is that run's training
        ep = (src.get("train") or {}).get("epochs")
    if not isinstance(ep, (int, float)):
        return None
    return (int(ep), (int(qep) if isinstance(qep, (int, float)) else (0 if qat else None)),
            int(pat) if isinstance(pat, (int, float)) else None)


def budget_text(b: tuple[int | None, ...] | None) -> str:
    """``"3 epochs"``, ``"40 epochs + 2 QAT epochs"``, ``"60 epochs, patience 4"``, ``"unknown budget"``."""
    if b is None:
        return "unknown budget"
    pat = b[2] if len(b) > 2 else None
    return (f"{b[0]} epochs" + (f" + {b[1]} QAT epochs" if b[1] is not None else "")
            + (f", patience {pat}" if pat is not None else ""))


def _seed(run: Any) -> Any:
    return ((_config(run).get("train") or {}).get("seed"))


def representative(runs: Sequence[Any], model: str) -> Any | None:
    """The report's run for ``model``: named like the model, else its first float-trained run, else its first."""
    mine = [r for r in runs if r.model == model and not getattr(r, "fitted", False)]
    if not mine:
        return None
    float_runs = [r for r in mine if not (getattr(r, "model_json", None) or {}).get("deploy")
                  and (training_budget(r) or (0, None))[1] is None]
    return next((r for r in mine if r.name == model), float_runs[0] if float_runs else mine[0])


def seed_groups(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run (chip-fitted variants excepted): whether it is pooled in its model's seed statistics, and
    why not (columns :data:`SEED_COLUMNS`)."""
    rows = []
    models = list(dict.fromkeys(r.model for r in runs if not getattr(r, "fitted", False)))
    for m in models:
        rep = representative(runs, m)
        want = training_budget(rep)
        seeds: dict[Any, str] = {}
        for r in [rep, *[r for r in runs if r.model == m and r is not rep and not getattr(r, "fitted", False)]]:
            b, s = training_budget(r), _seed(r)
            reason = ""
            if want is None:
                reason = "" if r is rep else "the representative run's budget is unknown: nothing is pooled"
            elif b != want:
                reason = f"another training budget ({budget_text(b)}, not {budget_text(want)})"
            elif s in seeds:
                reason = f"seed {s} already pooled (run {seeds[s]})"
            if not reason:
                seeds[s] = r.name
            rows.append({"model": m, "run": r.name, "seed": s, "budget": budget_text(b), "representative": r is rep,
                         "pooled": not reason, "reason": reason})
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def pooled_metric(groups: pd.DataFrame, runs: Sequence[Any], model: str,
                  metric: str = "map") -> tuple[list[float], list[Any]]:
    """Test ``metric`` of the runs pooled for ``model`` (same budget, distinct seeds), and their seeds."""
    from neuroposter.report.headline import _test_metric

    by_name = {r.name: r for r in runs}
    vals, seeds = [], []
    if groups.empty:
        return vals, seeds
    for _, g in groups[(groups["model"] == model) & groups["pooled"].astype(bool)].iterrows():
        r = by_name.get(g["run"])
        v = _test_metric((r.metrics or {}) if r is not None else {}, metric)
        if v is not None and math.isfinite(v):
            vals.append(v)
            seeds.append(g["seed"])
    return vals, seeds


def mean_sd(vals: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (sd None below two values)."""
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) >= 2 else None)
