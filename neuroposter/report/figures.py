"""Report figures (matplotlib, Agg backend): accuracy vs energy, energy breakdown, firing rates, ops, mapping."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from neuroposter.profiling.energy import EnergyBreakdown

__all__ = ["accuracy_vs_energy", "accuracy_vs_energy_all", "head_vs_frontend", "energy_breakdown", "firing_rates",
           "ops_per_layer", "mapping_verdicts_fig", "bootstrap_forest", "chips_accuracy_vs_energy"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, *, layout: bool = True) -> str:
    try:
        if layout:
            fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        _plt().close(fig)
    return path.name


def _save_tight(fig: Any, path: Path) -> str:
    """Saves with a tight bounding box: legends and annotations outside the axes are kept, not cut."""
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        _plt().close(fig)
    return path.name


# Largest magnitude drawn: matplotlib's tick locators overflow on axes that span values near the float limit.
_DRAWABLE = 1e200


def _plottable(x: Any, *, log: bool = False) -> bool:
    """A finite number of drawable size (and > 0 for a log axis): anything else is left out of a figure, never
    drawn at a wrong place (extreme profile values can overflow to inf; a zero has no place on a log axis)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(v)) and abs(v) <= _DRAWABLE and (v > 0 or not log)


_MARKERS = "osD^vP*Xph<>"


def _style(runs: list[str]) -> dict[str, tuple[Any, str]]:
    """A fixed (colour, marker) per run, shared by every figure."""
    cmap = _plt().get_cmap("tab10")
    return {r: (cmap(i % 10), _MARKERS[i % len(_MARKERS)]) for i, r in enumerate(runs)}


def _log_x(ax: Any, label: str) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label, fontsize=8)
    ax.grid(True, which="major", ls=":", lw=0.6, alpha=0.7)


def _baseline(ax: Any, value: float | None, metric: str) -> None:
    if value is None:
        return
    ax.axhline(value, ls="--", c="grey", lw=1)
    ax.annotate(f"best constant baseline ({metric} {value:.3f})", xy=(0.01, value), xycoords=("axes fraction", "data"),
                xytext=(0, 3), textcoords="offset points", fontsize=7, color="dimgrey")


def _metric_of(accuracy: pd.DataFrame, metric: str) -> tuple[pd.Series, float | None]:
    acc = accuracy[~accuracy["predictor"].str.startswith("baseline")].set_index("run")[metric].dropna()
    base = accuracy[accuracy["predictor"].str.startswith("baseline")][metric].dropna()
    return acc, (float(base.max()) if not base.empty else None)


def accuracy_vs_energy(models: pd.DataFrame, views: Sequence[Any], path: Path) -> str | None:
    """Test mAP against energy per inference, one panel per view (at most two), ONE marker per model: its seed
    mean with the seed standard deviation as error bar when several same-budget seeds were pooled, else its
    representative run's test mAP with the 95 % bootstrap interval; filled = the pipeline with the DenseNet-169
    front end, hollow (joined by a thin line) = the model alone where they differ; log x in mJ; the best constant
    predictor as a dashed line. ``models``: :func:`neuroposter.report.verdict.model_table`."""
    plt = _plt()
    if models is None or models.empty or models["map"].dropna().empty or not views:
        return None
    style = _style(list(models["model"]))
    base = models["baseline_map"].dropna()
    fig, axes = plt.subplots(1, len(views), figsize=(5.6 * len(views), 3.6), squeeze=False, sharey=True)
    for ax, v in zip(axes[0], views):
        for _, r in models.iterrows():
            pooled = int(r["n_seeds"]) >= 2 and _plottable(r["map_seed_mean"]) and _plottable(r["map_seed_sd"])
            y = float(r["map_seed_mean"]) if pooled else r["map"]
            p, h = r[f"{v.key}_pipeline_mj"], r[f"{v.key}_head_mj"]
            if not _plottable(y) or not _plottable(p, log=True):
                continue
            y = float(y)
            if pooled:
                yerr = [[float(r["map_seed_sd"])], [float(r["map_seed_sd"])]]
            elif _plottable(r["map_low"]) and _plottable(r["map_high"]):
                yerr = [[max(y - float(r["map_low"]), 0.0)], [max(float(r["map_high"]) - y, 0.0)]]
            else:
                yerr = None
            c, m = style[r["model"]]
            ax.errorbar([float(p)], [y], yerr=yerr, fmt=m, color=c, ms=7, capsize=3, lw=1, zorder=3,
                        label=f"{r['model']}" + (f" ({int(r['n_seeds'])} seeds)" if pooled else ""))
            if _plottable(h, log=True) and abs(float(h) - float(p)) > 1e-12 * max(abs(float(p)), 1e-300):
                ax.plot([float(h), float(p)], [y, y], color=c, lw=0.7, alpha=0.5, zorder=2)
                ax.scatter([float(h)], [y], facecolors="white", edgecolors=[c], marker=m, s=40, zorder=3)
        _baseline(ax, float(base.max()) if not base.empty else None, "mAP")
        _log_x(ax, "energy per inference (mJ, log); filled: with front end, hollow: model alone")
        ax.set_title(getattr(v, "short", "") or v.title, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("test mAP", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    return _save(fig, path, layout=False)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [text]


def accuracy_vs_energy_all(energy: pd.DataFrame, accuracy: pd.DataFrame, path: Path, *,
                           metric: str = "map") -> str | None:
    """Secondary figure: every profile of every view (pipeline totals), one panel per view, one colour and marker
    per model (legend, no text labels)."""
    plt = _plt()
    pipe = energy[(energy["component"] == "pipeline") & energy["available"].astype(bool)]
    pipe = pipe[[_plottable(v, log=True) for v in pipe["energy_mj"]]]
    acc, base = _metric_of(accuracy, metric)
    acc = acc[[_plottable(v) for v in acc]]
    if pipe.empty or acc.empty:
        return None
    views = [v for v in ("sdt_paper", "precision", "memory", "device") if v in set(pipe["view"])]
    style = _style(list(dict.fromkeys(energy["run"])))
    fig, axes = plt.subplots(1, len(views), figsize=(3.6 * len(views), 3.9), squeeze=False, sharey=True)
    for ax, view in zip(axes[0], views):
        sub = pipe[pipe["view"] == view]
        for run, grp in sub.groupby("run", sort=False):
            if run not in acc.index:
                continue
            c, m = style[run]
            ax.scatter(grp["energy_mj"], [float(acc[run])] * len(grp), color=c, marker=m, s=22, alpha=0.7)
        _baseline(ax, base, metric)
        _log_x(ax, "energy per inference incl. front end (mJ, log)")
        n = sub["evaluation"].nunique()
        ax.set_title(f"{view} ({n} profile{'s' if n != 1 else ''})", fontsize=8)
    axes[0][0].set_ylabel(f"test {metric}")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker=m, ls="", label=r) for r, (c, m) in style.items() if r in acc.index]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path, layout=False)


def head_vs_frontend(headline: pd.DataFrame, views: Sequence[Any], path: Path) -> str | None:
    """Stacked horizontal bars per model and headline view: the model alone plus the DenseNet-169 front end
    (hatched), linear mJ, each bar labelled with the model's own energy and its share of the pipeline."""
    plt = _plt()
    if headline.empty or not views:
        return None
    runs = list(headline["run"])
    style = _style(runs)
    fig, axes = plt.subplots(len(views), 1, figsize=(9, 0.9 + 0.42 * len(runs) * len(views) + 0.5 * len(views)),
                             squeeze=False)
    for ax, v in zip(axes[:, 0], views):
        y = np.arange(len(runs))
        heads = np.array([_f(x) for x in headline[f"{v.key}_head_mj"]])
        fes = np.array([_f(x) for x in headline[f"{v.key}_frontend_mj"]])
        # a row is drawn when both bars and their sum are finite numbers of drawable size
        with np.errstate(over="ignore", invalid="ignore"):
            ends = np.nan_to_num(heads, nan=0.0, posinf=np.inf) + np.nan_to_num(fes, nan=0.0, posinf=np.inf)
        ends = np.where(np.isfinite(ends) & (np.abs(ends) <= _DRAWABLE), ends, np.nan)
        ax.barh(y, np.where(np.isfinite(ends), np.nan_to_num(heads), 0.0), color=[style[r][0] for r in runs])
        ax.barh(y, np.where(np.isfinite(ends), np.nan_to_num(fes), 0.0),
                left=np.where(np.isfinite(ends), np.nan_to_num(heads), 0.0), color="lightgrey", hatch="//",
                edgecolor="grey")
        xmax = float(np.nanmax(ends)) if len(runs) and np.isfinite(ends).any() else 0.0
        for i, (h, f, ev) in enumerate(zip(heads, fes, headline[f"{v.key}_evaluation"])):
            if not ev:
                txt = "not priced in this view"
            elif np.isnan(h):
                txt = "n/a (constant not published)"
            elif not np.isfinite(ends[i]):
                txt = "not drawn (too large a number of mJ to draw; see energy.csv)"
            else:
                tot = ends[i]
                share = f" = {100 * (h / tot if tot > 0 else 1.0):.2g} % of {tot:.3g} mJ" if not np.isnan(f) else ""
                txt = f"model {h:.3g} mJ" + share
                if v.key == "device":
                    txt += f" [{ev.split('/', 1)[1]}]"
            ax.annotate(txt, xy=(0.0 if np.isnan(ends[i]) else ends[i], i), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(runs, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, (xmax * 1.6 if np.isfinite(xmax * 1.6) else xmax) if xmax > 0 else 1)
        ax.set_xlabel("energy per inference (mJ, linear)", fontsize=8)
        ax.set_title(v.title, fontsize=8)
    from matplotlib.patches import Patch

    axes[0, 0].legend(handles=[Patch(color="dimgrey", label="model alone (colour per model)"),
                               Patch(facecolor="lightgrey", hatch="//", edgecolor="grey",
                                     label="DenseNet-169 front end")], fontsize=7, loc="lower right")
    return _save(fig, path)


def _f(x: Any) -> float:
    """A float; NaN for a missing value."""
    return float("nan") if x is None or pd.isna(x) else float(x)


def energy_breakdown(breakdowns: Mapping[tuple[str, str], EnergyBreakdown], label: str, path: Path,
                     title: str) -> str | None:
    """Per run, the share of each term in the model's own energy (100 % stacked bars, so small models stay
    legible next to large ones); each bar is labelled with the model's total and the front end's, in mJ."""
    plt = _plt()
    runs = sorted({r for (r, k) in breakdowns if k == label + "|model" and breakdowns[(r, k)].available
                   and _plottable(breakdowns[(r, k)].total_pj)})
    if not runs:
        return None
    terms: list[str] = []
    for r in runs:
        for t in breakdowns[(r, label + "|model")].terms:
            if t.term not in terms:
                terms.append(t.term)
    ncol = 4
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.45 * len(runs) + 0.22 * math.ceil(len(terms) / ncol)))
    left = np.zeros(len(runs))
    totals = np.array([breakdowns[(r, label + "|model")].total_pj or 0.0 for r in runs])
    cmap = plt.get_cmap("tab20")
    for i, term in enumerate(terms):
        vals = np.array([breakdowns[(r, label + "|model")].term_pj(term) for r in runs], dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            share = np.divide(vals, totals, out=np.zeros_like(vals), where=totals > 0) * 100
        share = np.nan_to_num(share, nan=0.0, posinf=0.0, neginf=0.0)
        ax.barh(runs, share, left=left, color=cmap(i % 20), label=term)
        left += share
    for i, r in enumerate(runs):
        fe = breakdowns.get((r, label + "|frontend"))
        txt = f"model {totals[i] * 1e-9:.3g} mJ"
        if fe is not None and fe.total_pj is not None and _plottable(fe.total_pj):
            txt += f" + front end {fe.total_pj * 1e-9:.3g} mJ"
        ax.annotate(txt, xy=(100, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the model's own energy per inference (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    # the legend goes under the axes and the totals to the right of the bars: they can never overlap
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.35 / (1.6 + 0.45 * len(runs))), ncol=ncol,
              title="term", title_fontsize=8, frameon=False)
    return _save_tight(fig, path)


def firing_rates(runs: Iterable[Any], path: Path) -> str | None:
    """Firing rate per neuron layer, one panel per SNN run."""
    plt = _plt()
    snn = [r for r in runs if r.counts is not None and r.counts.kind == "snn" and r.counts.firing_rates()]
    if not snn:
        return None
    n_max = max(len(r.counts.firing_rates()) for r in snn)
    fig, axes = plt.subplots(len(snn), 1, figsize=(max(9.0, 0.28 * n_max + 2), 3.4 * len(snn)), squeeze=False)
    for ax, r in zip(axes[:, 0], snn):
        fr = r.counts.firing_rates()
        ax.bar(range(len(fr)), [v if _plottable(v) else 0.0 for v in fr.values()], color="tab:orange")
        ax.set_xticks(range(len(fr)))
        ax.set_xticklabels([_short(n) for n in fr], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("spikes / neuron / step", fontsize=8)
        ax.set_title(f"{r.name}: firing rate per layer (test inputs)", fontsize=9)
    return _save(fig, path)


def ops_per_layer(runs: Iterable[Any], path: Path, *, top: int = 25) -> str | None:
    """Synaptic ops (SNN: effective vs dense) or MACs (ANN) per layer, log scale, one panel per run (two columns),
    horizontal bars so every layer label is legible (8 pt); at most the ``top`` largest layers of a run."""
    plt = _plt()
    rs = [r for r in runs if r.counts is not None]
    if not rs:
        return None
    per = []
    for r in rs:
        layers = [lc for lc in r.counts.layers if lc.kind in ("synapse", "mac")]
        n_all = len(layers)
        if len(layers) > top:   # big CNNs: keep the largest, in graph order
            keep = {id(lc) for lc in sorted(layers, key=lambda lc: -lc.dense_ops)[:top]}
            layers = [lc for lc in layers if id(lc) in keep]
        per.append((r, layers, n_all))
    ncols = 2 if len(rs) > 1 else 1
    nrows = math.ceil(len(rs) / ncols)
    rows_h = [max(len(per[i][1]) for i in range(k * ncols, min((k + 1) * ncols, len(rs)))) for k in range(nrows)]
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0 * ncols, sum(1.5 + 0.2 * h for h in rows_h)),
                             squeeze=False, gridspec_kw={"height_ratios": [1.5 + 0.2 * h for h in rows_h]})
    for ax, (r, layers, n_all) in zip(axes.flat, per):
        y = np.arange(len(layers))
        ax.barh(y - 0.2, [max(lc.dense_ops, 1e-9) if _plottable(lc.dense_ops) else 1e-9 for lc in layers],
                height=0.4, label="dense (all inputs active)")
        ax.barh(y + 0.2, [max(lc.synops, 1e-9) if _plottable(lc.synops) else 1e-9 for lc in layers], height=0.4,
                label="effective (measured)")
        ax.set_xscale("log")
        ax.set_xlim(left=0.5)
        ax.set_yticks(y)
        ax.set_yticklabels([_short(lc.name) for lc in layers], fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("ops / inference (log)", fontsize=8)
        shown = f" ({len(layers)} largest of {n_all} layers)" if n_all > len(layers) else ""
        ax.set_title(f"{r.name}: ops per layer{shown}", fontsize=9)
    for ax in list(axes.flat)[len(per):]:
        ax.set_visible(False)
    # one legend above the panels: it never covers a bar
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return _save(fig, path, layout=False)


def _short(name: str, width: int = 26) -> str:
    """The last two path parts of a layer name, cut to ``width`` characters (tick labels)."""
    parts = [p for p in name.replace(".", "/").split("/") if p]
    tail = "/".join(parts[-2:]) if parts else name
    return tail if len(tail) <= width else "..." + tail[-(width - 3):]


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
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2, 0.45 * len(runs) + 1.4))
    ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-0.3, vmax=1.3, aspect="auto")
    ax.set_facecolor("whitesmoke")
    for i in range(len(runs)):
        for j in range(len(targets)):
            ax.text(j, i, text[i][j] or "no bundle", ha="center", va="center", fontsize=7,
                    color="black" if text[i][j] else "grey")
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels(targets, rotation=30, ha="right")
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels(runs)
    ax.set_title("mapping verdicts (export bundles)", fontsize=9)
    return _save(fig, path)


def bootstrap_forest(ci: pd.DataFrame, path: Path) -> str | None:
    """Forest plot of the paired-bootstrap differences ``reference - model`` (one row per paired run, one panel per
    metric: point and percentile interval, a dashed line at 0; red when the interval excludes 0)."""
    from neuroposter.report.uncertainty import METRIC_TITLES

    plt = _plt()
    if ci is None or ci.empty:
        return None
    rows = ci[ci["paired"].astype(str) == "yes"]
    metrics = [m for m in METRIC_TITLES
               if rows[[f"diff_{m}", f"diff_{m}_low", f"diff_{m}_high"]].notna().all(axis=1).any()]
    if rows.empty or not metrics:
        return None
    ref = str(ci["reference"].iloc[0])
    pct = f"{100 * float(ci['level'].iloc[0]):.0f}%"
    labels = list(rows["run"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.9 * len(metrics) + 0.6, 0.55 * len(labels) + 1.6),
                             squeeze=False, sharey=True)
    y = np.arange(len(labels))[::-1]
    for ax, m in zip(axes[0], metrics):
        for yi, (_, r) in zip(y, rows.iterrows()):
            p, lo, hi = r[f"diff_{m}"], r[f"diff_{m}_low"], r[f"diff_{m}_high"]
            if pd.isna(p) or pd.isna(lo) or pd.isna(hi):
                continue
            col = "C3" if (lo > 0 or hi < 0) else "C0"
            ax.errorbar([p], [yi], xerr=[[p - lo], [hi - p]], fmt="o", color=col, capsize=3, ms=5, lw=1.4)
            ax.annotate(f"{p:+.3f} [{lo:+.3f}, {hi:+.3f}]", xy=(p, yi), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7)
        ax.axvline(0, ls="--", c="grey", lw=1)
        ax.set_title(f"{METRIC_TITLES[m]}: {ref} - model", fontsize=9)
        ax.set_xlabel(f"difference ({pct} bootstrap interval)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="x", ls=":", lw=0.6, alpha=0.7)
        ax.set_ylim(-0.7, len(labels) - 0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(labels)
    return _save(fig, path)


def chips_accuracy_vs_energy(rows: pd.DataFrame, path: Path) -> str | None:
    """Deployed test mAP (the bundle's 95 % bootstrap interval as error bars) against energy per inference (chip
    plus host part, log x, the constants' range as horizontal bars), one labelled marker per chip bundle: filled =
    the full model, hollow = a chip-fitted variant. Bundles whose chip has no published per-op energy stand on a
    separate "unpublished" strip at the right, never at a made-up energy; dashed lines: the full model's mAP and
    the best constant baseline."""
    plt = _plt()
    if rows is None or rows.empty:
        return None
    dep = rows[(rows["status"] == "deployed").to_numpy() & np.array([_plottable(v) for v in rows["deployed_map"]],
                                                                       dtype=bool)]
    if dep.empty:
        return None
    priced = dep[[_plottable(v, log=True) for v in dep["energy_mj"]]]
    strip = dep.drop(priced.index)
    fig, (ax, sx) = plt.subplots(1, 2, figsize=(10.5, 4.6), sharey=True, gridspec_kw={"width_ratios": [5, 1.2]})
    style = _style(list(dict.fromkeys(rows["chip"])))

    def yerr(r: Any) -> list[list[float]]:
        y, lo, hi = float(r["deployed_map"]), r["deployed_map_lo"], r["deployed_map_hi"]
        return [[y - float(lo) if _plottable(lo) else 0.0], [float(hi) - y if _plottable(hi) else 0.0]]

    def draw(a: Any, x: float, r: Any, xerr: Any = None, label: bool = True) -> None:
        c, m = style[r["chip"]]
        fitted = str(r["variant"]).startswith("fitted")
        a.errorbar([x], [float(r["deployed_map"])], yerr=yerr(r), xerr=xerr, fmt=m, ms=7, capsize=3, lw=1,
                   color=c, mfc="white" if fitted else c, mec=c, zorder=3)
        if label:
            a.annotate(f"{r['chip']}: {r['run']}", xy=(x, float(r["deployed_map"])), xytext=(5, -10),
                       textcoords="offset points", fontsize=7, color=c)

    for _, r in priced.iterrows():
        x = float(r["energy_mj"])
        lo, hi = r["energy_low_mj"], r["energy_high_mj"]
        xerr = [[x - float(lo) if _plottable(lo, log=True) else 0.0],
                [float(hi) - x if _plottable(hi, log=True) else 0.0]]
        draw(ax, x, r, xerr)
    # the strip: one column per bundle, labels to its right, spread so that they never overlap
    n = len(strip)
    ys = [float(r["deployed_map"]) for _, r in strip.iterrows()]
    for i, (_, r) in enumerate(strip.iterrows()):
        draw(sx, (i + 0.5) / max(n, 1), r, label=False)
    gap = 0.02   # mAP units between two labels
    placed: list[float] = []
    for i in sorted(range(n), key=lambda k: ys[k]):
        y = max(ys[i], placed[-1] + gap) if placed else ys[i]
        placed.append(y)
        r = strip.iloc[i]
        c = style[r["chip"]][0]
        sx.annotate(f"{r['chip']}: {r['run']}", xy=((i + 0.5) / n, ys[i]), xytext=(1.04, y),
                    textcoords=("axes fraction", "data"), fontsize=7, color=c, va="center",
                    arrowprops={"arrowstyle": "-", "color": c, "lw": 0.5}, annotation_clip=False)
    full = dep[[_plottable(v) for v in dep["full_map"]]]
    base = dep[[_plottable(v) for v in dep["baseline_map"]]]
    for a in (ax, sx):
        if not full.empty:
            a.axhline(float(full["full_map"].iloc[0]), ls="-.", c="black", lw=0.9,
                      label=(f"full model {full['full_run'].iloc[0]} (float, mAP {float(full['full_map'].iloc[0]):.3f})"
                             if a is ax else None))
        if not base.empty:
            a.axhline(float(base["baseline_map"].max()), ls="--", c="grey", lw=1,
                      label=(f"best constant baseline (mAP {float(base['baseline_map'].max()):.3f})"
                             if a is ax else None))
    if not (full.empty and base.empty):
        ax.legend(loc="lower right", fontsize=7, frameon=True)
    if priced.empty:
        ax.text(0.5, 0.5, "no chip bundle with a priced energy", transform=ax.transAxes, ha="center", fontsize=8,
                color="grey")
    else:
        _log_x(ax, "energy per inference, chip + host part (mJ, log)")
    ax.set_ylabel("deployed test mAP (95% bootstrap interval)", fontsize=8)
    ax.set_title("deployed accuracy vs energy per chip bundle (filled: full model, hollow: fitted variant)",
                 fontsize=8)
    sx.set_xlim(0, 1)
    sx.set_xticks([])
    sx.set_xlabel("unpublished\nper-op energy", fontsize=8)
    sx.set_facecolor("whitesmoke")
    fig.tight_layout()
    return _save_tight(fig, path)
