"""Report figures (matplotlib, Agg backend): accuracy vs energy, energy breakdown, firing rates, ops, mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from neuroposter.profiling.energy import EnergyBreakdown

__all__ = ["accuracy_vs_energy", "energy_breakdown", "firing_rates", "ops_per_layer", "mapping_verdicts_fig"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def accuracy_vs_energy(energy: pd.DataFrame, accuracy: pd.DataFrame, path: Path, *, metric: str = "map") -> str | None:
    """Scatter of pipeline energy (log x) against a test metric, one panel per view; baselines dashed."""
    plt = _plt()
    pipe = energy[(energy["component"] == "pipeline") & energy["available"]]
    acc = accuracy[~accuracy["predictor"].str.startswith("baseline")].set_index("run")[metric]
    if pipe.empty or acc.dropna().empty:
        return None
    views = [v for v in ("sdt_paper", "precision", "memory", "device") if v in set(pipe["view"])]
    fig, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 3.8), squeeze=False)
    base = accuracy[accuracy["predictor"].str.startswith("baseline")][metric].dropna()
    markers = "osD^v<>pP*X"
    for ax, view in zip(axes[0], views):
        sub = pipe[pipe["view"] == view]
        for i, (label, grp) in enumerate(sub.groupby("evaluation")):
            xs, ys, names = [], [], []
            for _, row in grp.iterrows():
                if row["run"] in acc.index and pd.notna(acc[row["run"]]):
                    xs.append(row["energy_mj"])
                    ys.append(float(acc[row["run"]]))
                    names.append(row["run"])
            if xs:
                ax.scatter(xs, ys, marker=markers[i % len(markers)], label=label.split("/", 1)[-1], alpha=0.8)
                for x, y, n in zip(xs, ys, names):
                    ax.annotate(n, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        if not base.empty:
            ax.axhline(float(base.max()), ls="--", c="grey", lw=1, label="best constant baseline")
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("energy per inference incl. front end (mJ)")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(view)
        ax.legend(fontsize=6)
    return _save(fig, path)


def energy_breakdown(breakdowns: Mapping[tuple[str, str], EnergyBreakdown], label: str, path: Path,
                     title: str) -> str | None:
    """Stacked bars per run: the terms of one evaluation, plus the front end as its own bar segment."""
    plt = _plt()
    runs = sorted({r for (r, k) in breakdowns if k == label + "|model" and breakdowns[(r, k)].available})
    if not runs:
        return None
    terms: list[str] = []
    for r in runs:
        for t in breakdowns[(r, label + "|model")].terms:
            if t.term not in terms:
                terms.append(t.term)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.55 * len(runs)))
    left = np.zeros(len(runs))
    cmap = plt.get_cmap("tab20")
    for i, term in enumerate(terms):
        vals = np.array([breakdowns[(r, label + "|model")].term_pj(term) * 1e-9 for r in runs])
        ax.barh(runs, vals, left=left, color=cmap(i % 20), label=term)
        left += vals
    fe = np.array([(breakdowns.get((r, label + "|frontend")).total_pj or 0.0) * 1e-9
                   if breakdowns.get((r, label + "|frontend")) is not None else 0.0 for r in runs])
    if fe.any():
        ax.barh(runs, fe, left=left, color="lightgrey", hatch="//", edgecolor="grey", label="DenseNet-169 front end")
    ax.set_xlabel("energy per inference (mJ)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def firing_rates(runs: Iterable[Any], path: Path) -> str | None:
    """Firing rate per neuron layer, one panel per SNN run."""
    plt = _plt()
    snn = [r for r in runs if r.counts is not None and r.counts.kind == "snn" and r.counts.firing_rates()]
    if not snn:
        return None
    fig, axes = plt.subplots(len(snn), 1, figsize=(9, 2.6 * len(snn)), squeeze=False)
    for ax, r in zip(axes[:, 0], snn):
        fr = r.counts.firing_rates()
        ax.bar(range(len(fr)), list(fr.values()), color="tab:orange")
        ax.set_xticks(range(len(fr)))
        ax.set_xticklabels(list(fr), rotation=60, ha="right", fontsize=6)
        ax.set_ylabel("spikes / neuron / step")
        ax.set_title(f"{r.name}: firing rate per layer (test inputs)", fontsize=9)
    return _save(fig, path)


def ops_per_layer(runs: Iterable[Any], path: Path) -> str | None:
    """Synaptic ops (SNN: effective vs dense) or MACs (ANN) per layer, log scale, one panel per run."""
    plt = _plt()
    rs = [r for r in runs if r.counts is not None]
    if not rs:
        return None
    fig, axes = plt.subplots(len(rs), 1, figsize=(9, 2.6 * len(rs)), squeeze=False)
    for ax, r in zip(axes[:, 0], rs):
        layers = [lc for lc in r.counts.layers if lc.kind in ("synapse", "mac")]
        if len(layers) > 60:  # big CNNs: keep the 60 largest
            layers = sorted(layers, key=lambda lc: -lc.dense_ops)[:60]
        x = np.arange(len(layers))
        ax.bar(x - 0.2, [max(lc.dense_ops, 1e-9) for lc in layers], width=0.4, label="dense (all inputs active)")
        ax.bar(x + 0.2, [max(lc.synops, 1e-9) for lc in layers], width=0.4, label="effective (measured)")
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([lc.name for lc in layers], rotation=60, ha="right", fontsize=5)
        ax.set_ylabel("ops / inference")
        ax.set_title(f"{r.name}: ops per layer", fontsize=9)
        ax.legend(fontsize=6)
    return _save(fig, path)


def mapping_verdicts_fig(rows: list[dict[str, Any]], path: Path) -> str | None:
    """Run x target grid of mapping verdicts (green fits, red does not, grey other)."""
    plt = _plt()
    if not rows:
        return None
    runs = sorted({r["run"] for r in rows})
    targets = sorted({r["target"] for r in rows})
    grid = np.full((len(runs), len(targets)), np.nan)
    text = [["" for _ in targets] for _ in runs]
    for r in rows:
        i, j = runs.index(r["run"]), targets.index(r["target"])
        v = str(r["verdict"]).lower()
        grid[i, j] = 1.0 if v in ("fits", "ok", "true", "pass", "maps") else (0.0 if ("not" in v or v in ("false", "fail")) else 0.5)
        text[i][j] = str(r["verdict"])[:14]
    fig, ax = plt.subplots(figsize=(1.4 * len(targets) + 2, 0.6 * len(runs) + 1.5))
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1)
    for i in range(len(runs)):
        for j in range(len(targets)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels(targets, rotation=30, ha="right")
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels(runs)
    ax.set_title("mapping verdicts (export bundles)", fontsize=9)
    return _save(fig, path)
