"""What an encoding keeps: firing statistics, bits per feature, reconstruction and linear probes.

Used by :func:`neuroposter.encode.encode_store` to write ``encoding_report.json`` and its figure.

* Firing rate: spikes / (samples x tokens x features), per time step and per feature.
* Bits per feature: the code's capacity (1 for ``threshold``, ``log2(T+1)`` otherwise) and the
  measured entropy of each feature's spike code (count, or first-spike time for ``latency``).
* Reconstruction: a per-feature lookup decoder (the mean normalised training value of every spike
  code) fitted on train and scored on test, as MSE in normalised units and ``R^2``.
* Linear probe: one-vs-rest logistic regression (scikit-learn) on the spike counts averaged over
  time and tokens vs on the normalised features averaged over tokens, fitted on train and scored
  on test (micro-F1 at 0.5, macro-F1, mAP), next to the best constant predictor's micro-F1.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

__all__ = ["EncodingStats", "linear_probe", "constant_predictor", "write_figure"]


class EncodingStats:
    """Streaming statistics of one split's spikes (and, on train, the lookup decoder)."""

    def __init__(self, T: int, dim: int) -> None:
        self.T, self.dim = T, dim
        self.step_spikes = np.zeros(T, dtype=np.float64)  # spikes per step
        self.feature_spikes = np.zeros(dim, dtype=np.float64)  # spikes per feature
        self.code_hist = np.zeros((T + 1, dim), dtype=np.int64)  # code histogram per feature
        self.code_sum = np.zeros((T + 1, dim), dtype=np.float64)  # sum of normalised x per code
        self.vectors = 0  # (sample, token) pairs seen
        self.events = 0
        self.sq_err = 0.0
        self.sq_err_mean = 0.0
        self.sum_u = np.zeros(dim, dtype=np.float64)

    def update(self, spikes: np.ndarray, code: np.ndarray, u: np.ndarray) -> None:
        """Adds a batch: ``spikes [T, B, N, D]``, ``code [B, N, D]``, normalised ``u [B, N, D]``."""
        self.step_spikes += spikes.reshape(self.T, -1).sum(axis=1)
        self.feature_spikes += spikes.reshape(-1, self.dim).sum(axis=0)
        self.events += int(spikes.sum(dtype=np.int64))
        c = code.reshape(-1, self.dim)
        uu = u.reshape(-1, self.dim).astype(np.float64)
        self.vectors += c.shape[0]
        self.sum_u += uu.sum(axis=0)
        for k in range(self.T + 1):
            m = c == k
            self.code_hist[k] += m.sum(axis=0)
            self.code_sum[k] += np.where(m, uu, 0.0).sum(axis=0)

    def decoder(self) -> np.ndarray:
        """``[T+1, D]`` lookup table: mean normalised value per code (``code / T`` where unseen)."""
        fallback = np.repeat((np.arange(self.T + 1) / self.T)[:, None], self.dim, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = self.code_sum / self.code_hist
        return np.where(self.code_hist > 0, table, fallback)

    def score(self, code: np.ndarray, u: np.ndarray, table: np.ndarray, train_mean: np.ndarray) -> None:
        """Accumulates the reconstruction error of ``u`` from its codes with ``table``."""
        c = code.reshape(-1, self.dim)
        uu = u.reshape(-1, self.dim).astype(np.float64)
        est = table[c, np.arange(self.dim)[None, :]]
        self.sq_err += float(((est - uu) ** 2).sum())
        self.sq_err_mean += float(((train_mean[None, :] - uu) ** 2).sum())

    def summary(self) -> dict[str, Any]:
        """Firing rates and measured bits of this split."""
        n = max(self.vectors, 1)
        per_feature = self.feature_spikes / (n * self.T)
        p = self.code_hist / np.maximum(self.code_hist.sum(axis=0, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=0)
        return {
            "vectors": int(self.vectors),
            "events": int(self.events),
            "firing_rate": float(self.events / (n * self.T * self.dim)),
            "firing_rate_per_step": (self.step_spikes / (n * self.dim)).round(6).tolist(),
            "firing_rate_per_feature": _percentiles(per_feature),
            "silent_features": int((self.feature_spikes == 0).sum()),
            "saturated_features": int((per_feature >= 0.999).sum()),
            "entropy_bits_per_feature": {"mean": float(ent.mean()), **_percentiles(ent)},
        }


def _percentiles(a: np.ndarray) -> dict[str, float]:
    q = np.percentile(a, [0, 5, 50, 95, 100]) if a.size else np.zeros(5)
    return {"min": float(q[0]), "p5": float(q[1]), "median": float(q[2]), "p95": float(q[3]),
            "max": float(q[4]), "mean": float(a.mean()) if a.size else 0.0}


def constant_predictor(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """The best constant label set (the top-k train genres, k chosen on train) and its test micro-F1."""
    from sklearn.metrics import f1_score

    order = np.argsort(-y_train.sum(axis=0), kind="stable")
    best_k, best = 0, -1.0
    for k in range(0, y_train.shape[1] + 1):
        pred = np.zeros_like(y_train)
        pred[:, order[:k]] = 1
        f = f1_score(y_train, pred, average="micro", zero_division=0)
        if f > best:
            best_k, best = k, f
    pred = np.zeros_like(y_test)
    pred[:, order[:best_k]] = 1
    return {"micro_f1": float(f1_score(y_test, pred, average="micro", zero_division=0)),
            "labels": [int(i) for i in order[:best_k]]}


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                 C: float = 0.1, max_iter: int = 300, seed: int = 0) -> dict[str, float]:
    """One-vs-rest logistic regression on standardised inputs; test micro/macro-F1 at 0.5 and mAP."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegression(C=C, max_iter=max_iter, random_state=seed), n_jobs=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # labels absent from the training split
        clf.fit(x_train, y_train)
        scores = clf.predict_proba(x_test)
    pred = (scores >= 0.5).astype(np.uint8)
    present = y_test.sum(axis=0) > 0
    m_ap = (float(average_precision_score(y_test[:, present], scores[:, present], average="macro"))
            if present.any() else float("nan"))
    return {
        "micro_f1": float(f1_score(y_test, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
        "map": m_ap,
    }


def write_figure(path: str | os.PathLike[str], report: dict[str, Any], per_feature_rate: np.ndarray,
                 entropy: np.ndarray) -> None:
    """Writes the four-panel encoding figure (PNG) next to the report."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from neuroposter._io import atomic_path

    fig = Figure(figsize=(11, 7.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axs = fig.subplots(2, 2)
    T = int(report["T"])
    title = (f"{report['encoder']} encoder, T={T}, {report['form']} (N={report['n_tokens']}, "
             f"D={report['dim']})")
    fig.suptitle(title)

    ax = axs[0, 0]
    rates = report["splits"]["train"]["firing_rate_per_step"]
    ax.bar(np.arange(T), rates, color="tab:blue")
    ax.set_xlabel("time step")
    ax.set_ylabel("firing rate")
    ax.set_title(f"rate per step (train; overall {report['firing_rate']:.3f})")

    ax = axs[0, 1]
    ax.plot(np.sort(per_feature_rate)[::-1], color="tab:orange")
    ax.set_xlabel("feature (sorted)")
    ax.set_ylabel("firing rate")
    ax.set_title("rate per feature (train)")

    ax = axs[1, 0]
    ax.hist(entropy, bins=40, color="tab:green")
    cap = report["bits_per_feature"]["capacity"]
    ax.axvline(cap, color="k", ls="--", label=f"capacity {cap:.2f} bits")
    ax.set_xlabel("measured entropy of the spike code (bits)")
    ax.set_ylabel("features")
    ax.set_title("bits per feature (train)")
    ax.legend(loc="upper left")

    ax = axs[1, 1]
    probe = report.get("probe") or {}
    names, vals, colors = [], [], []
    for label, key, color in (("spikes", "spikes", "tab:blue"), ("features", "features", "tab:gray"),
                              ("constant", "constant", "tab:red")):
        if key in probe and probe[key] is not None:
            names.append(label)
            vals.append(probe[key]["micro_f1"])
            colors.append(color)
    if names:
        ax.bar(names, vals, color=colors)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom")
    rec = report.get("reconstruction") or {}
    r2 = rec.get("r2")
    ax.set_ylabel("test micro-F1 (linear probe)")
    ax.set_title("information kept" + (f" (reconstruction R^2 {r2:.3f})" if r2 is not None and
                                       not math.isnan(r2) else ""))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
