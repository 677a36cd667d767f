"""The agreement metrics every target reports: one name, one meaning each.

A deployed network is checked against a reference (the trained model, the integer reference simulator, a
float graph). Every comparison a target makes is one call of :func:`compare` and lands in its
``summary.json`` under ``verification.<comparison>`` with these keys (see ``docs/contracts.md``,
"Agreement metrics"). The *decisions* of a network are ``mean logit > 0`` per class (its genre set), its
top-1 class the largest mean logit.

=============================  ==============================================================================
key                            meaning
=============================  ==============================================================================
``samples``                    samples compared
``top1_agreement``             fraction of samples with the same top-1 class
``set_agreement``              fraction of samples with the identical set of positive classes (genre set)
``prediction_agreement``       fraction of samples whose top-1 class **and** genre set are both identical
``label_agreement``            fraction of all (sample, class) decisions that are identical
``per_label_agreement``        per class (genre name, else its index): fraction of samples deciding it alike
``max_abs_logit_diff``         largest absolute difference of the mean logits (the units of the read-out)
``micro_f1`` (with labels)     ``{"deployed", "reference", "diff"}``: micro-F1 of both decisions vs the labels
``map`` (with labels)          ``{"deployed", "reference", "diff"}``: macro average precision of both mean
                               logits vs the labels (genres without a positive left out; None when none has)
``intervals`` (resamples > 0)  the percentile bootstrap interval ``[low, high]`` of every metric above except
                               ``samples`` and ``max_abs_logit_diff``, same nesting (None where undefined)
``bootstrap``                  ``{"resamples", "seed", "level", "over"}`` of those intervals
``spike_agreement``            fraction of all recorded spikes (every layer, step, sample, neuron) equal
``spike_agreement_min``        the lowest per-layer spike agreement
``spike_agreement_per_layer``  per layer: fraction of its spikes equal
=============================  ==============================================================================

The bootstrap resamples the *samples* with replacement (seeded; the networks are held fixed, so it is the
sampling noise of the evaluation set only), vectorised as sample multiplicities (the weighted metrics of
:mod:`neuroposter.train.bootstrap`, shared with the report's accuracy intervals). The prediction of a spiking
network is the mean of its read-out over the ``T`` steps (``[B, C]``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["float_model_logits", "predictions", "prediction_agreement", "set_agreement", "label_agreement",
           "top1_agreement", "per_label_agreement", "spike_agreement", "micro_f1", "average_precision",
           "compare", "mean_logits", "agreement_line", "RESAMPLES", "LEVEL"]

#: bootstrap resamples and confidence level of the deployed-vs-trained intervals
RESAMPLES = 1000
LEVEL = 0.95
#: samples per forward of the trained model (bounds the float32 copy of the spikes)
_MODEL_CHUNK = 64


def mean_logits(readout: Any, batch: int | None = None) -> np.ndarray:
    """The prediction scores ``[B, C]`` of a time-first read-out ``[T, B, ...]`` (mean over ``T``)."""
    arr = np.asarray(readout, dtype=np.float64)
    m = arr.mean(axis=0)
    return m.reshape((batch if batch is not None else m.shape[0]), -1)


def predictions(mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(top1 [B], decisions [B, C] bool)`` from mean logits ``[B, C]``."""
    m = np.asarray(mean, dtype=np.float64).reshape(np.shape(mean)[0], -1)
    return m.argmax(axis=1), m > 0


def _per_sample(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample agreement indicators ``[B]`` (float) of each sample metric, and ``"labels"`` ``[B, C]``."""
    ta, da = predictions(a)
    tb, db = predictions(b)
    same_set = np.all(da == db, axis=1)
    return {"top1_agreement": (ta == tb).astype(np.float64), "set_agreement": same_set.astype(np.float64),
            "prediction_agreement": ((ta == tb) & same_set).astype(np.float64),
            "labels": (da == db).astype(np.float64)}


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if v.size else 1.0


def prediction_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose top-1 class and positive-class set are both identical."""
    return _mean(_per_sample(a, b)["prediction_agreement"])


def set_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose set of positive classes (``mean logit > 0``: the genre set) is identical."""
    return _mean(_per_sample(a, b)["set_agreement"])


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of (sample, class) decisions ``mean logit > 0`` that are identical."""
    return _mean(_per_sample(a, b)["labels"])


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples with the same top-1 class."""
    return _mean(_per_sample(a, b)["top1_agreement"])


def per_label_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per class ``[C]``: fraction of samples whose decision ``mean logit > 0`` on it is identical."""
    eq = _per_sample(a, b)["labels"]
    return eq.mean(axis=0) if len(eq) else np.ones(eq.shape[1])


def micro_f1(decisions: np.ndarray, labels: np.ndarray) -> float:
    """Micro-F1 of boolean decisions ``[B, C]`` against multi-hot labels ``[B, C]`` (0 when both are empty)."""
    d, y = np.asarray(decisions, dtype=bool), np.asarray(labels) > 0
    tp = float(np.sum(d & y))
    fp = float(np.sum(d & ~y))
    fn = float(np.sum(~d & y))
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Macro average precision of scores ``[B, C]`` (mean logits; any monotone map of them gives the same) against
    multi-hot labels, over the classes with a positive (nan when none has one): the run's test ``map``."""
    from neuroposter.train.metrics import average_precision_macro

    return average_precision_macro(np.asarray(labels) > 0, np.asarray(scores, dtype=np.float64))


def spike_agreement(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                    layers: list[str] | None = None) -> dict[str, Any]:
    """Element-wise agreement of recorded spikes, per layer and pooled.

    Args:
        a, b: layer -> spikes (any shapes with the same number of elements per layer; compared as 0/1).
        layers: the layers to compare (default: those of ``a`` that ``b`` also holds, in ``a``'s order).

    Returns:
        ``{"spike_agreement", "spike_agreement_min", "spike_agreement_per_layer"}`` (1.0 / None / {} when
        no layer is compared).
    """
    names = [k for k in a if k in b] if layers is None else list(layers)
    per: dict[str, float] = {}
    same = total = 0
    for name in names:
        x = np.asarray(a[name])
        y = np.asarray(b[name]).reshape(x.shape)
        eq = int(((x != 0) == (y != 0)).sum())
        per[name] = eq / x.size if x.size else 1.0
        same += eq
        total += x.size
    return {"spike_agreement": same / total if total else 1.0,
            "spike_agreement_min": min(per.values()) if per else None,
            "spike_agreement_per_layer": per}


def compare(deployed: np.ndarray | None, reference: np.ndarray | None, *,
            spikes: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]] | None = None,
            labels: np.ndarray | None = None, layers: list[str] | None = None,
            genres: Sequence[str] | None = None, resamples: int = 0, seed: int = 0,
            level: float = LEVEL) -> dict[str, Any]:
    """One comparison of a deployed network with its reference, in the metrics of this module.

    Args:
        deployed, reference: mean logits ``[B, C]`` (None: no prediction comparison).
        spikes: ``(deployed spikes, reference spikes)`` per layer (None: no spike comparison).
        labels: multi-hot ``[B, C]``: adds ``micro_f1`` and ``map``.
        layers: restricts the spike comparison to these layers.
        genres: the class names (``per_label_agreement`` keys; default: the class indices).
        resamples: bootstrap resamples of the intervals (0: none).
        seed: the bootstrap's seed.
        level: the intervals' confidence level.

    Returns:
        The verification entry (keys in the module docstring).
    """
    out: dict[str, Any] = {}
    if deployed is not None and reference is not None:
        a = np.asarray(deployed, dtype=np.float64)
        b = np.asarray(reference, dtype=np.float64)
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        ind = _per_sample(a, b)
        names = _class_names(genres, a.shape[1])
        out.update(samples=int(a.shape[0]),
                   **{k: _mean(ind[k]) for k in ("top1_agreement", "set_agreement", "prediction_agreement")},
                   label_agreement=_mean(ind["labels"]),
                   per_label_agreement=dict(zip(names, per_label_agreement(a, b).tolist())),
                   max_abs_logit_diff=float(np.max(np.abs(a - b))) if a.size else 0.0)
        if labels is not None:
            y = np.asarray(labels).reshape(a.shape) > 0
            fa, fb = micro_f1(a > 0, y), micro_f1(b > 0, y)
            ma, mb = average_precision(a, y), average_precision(b, y)
            out["micro_f1"] = {"deployed": fa, "reference": fb, "diff": fa - fb}
            out["map"] = {"deployed": _num(ma), "reference": _num(mb), "diff": _num(ma - mb)}
        if resamples and a.shape[0]:
            out["intervals"] = _intervals(a, b, None if labels is None else np.asarray(labels).reshape(a.shape) > 0,
                                          ind, names, out, int(resamples), int(seed), float(level))
            out["bootstrap"] = {"resamples": int(resamples), "seed": int(seed), "level": float(level),
                                "over": "samples, with replacement (the networks held fixed)"}
    if spikes is not None:
        out.update(spike_agreement(spikes[0], spikes[1], layers))
    return out


def _class_names(genres: Sequence[str] | None, n: int) -> list[str]:
    if genres is not None and len(genres) == n:
        return [str(g) for g in genres]
    return [str(i) for i in range(n)]


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _intervals(a: np.ndarray, b: np.ndarray, y: np.ndarray | None, ind: Mapping[str, np.ndarray],
               names: list[str], point: Mapping[str, Any], resamples: int, seed: int,
               level: float) -> dict[str, Any]:
    """Percentile bootstrap intervals of the entry's metrics: every resample at once (``[R, n]`` multiplicities)."""
    from neuroposter.train.bootstrap import (percentile_interval, resample_indices, resample_weights,
                                             weighted_ap_macro, weighted_micro_f1)

    n = a.shape[0]
    w = resample_weights(resample_indices(n, resamples, seed))           # [R, n], every row sums to n

    def iv(dist: np.ndarray, p: float | None) -> list[float] | None:
        i = percentile_interval(dist, float("nan") if p is None else p, level)
        return [i.low, i.high] if i.available else None

    out: dict[str, Any] = {k: iv(w @ ind[k] / n, point[k])
                           for k in ("top1_agreement", "set_agreement", "prediction_agreement")}
    per_label = w @ ind["labels"] / n                                     # [R, C]
    out["label_agreement"] = iv(per_label.mean(axis=1), point["label_agreement"])
    out["per_label_agreement"] = {g: iv(per_label[:, j], point["per_label_agreement"][g])
                                  for j, g in enumerate(names)}
    if y is not None:
        fa, fb = weighted_micro_f1(y, a > 0, w), weighted_micro_f1(y, b > 0, w)
        ma, mb = weighted_ap_macro(y, a, w), weighted_ap_macro(y, b, w)
        f, m = point["micro_f1"], point["map"]
        out["micro_f1"] = {"deployed": iv(fa, f["deployed"]), "reference": iv(fb, f["reference"]),
                           "diff": iv(fa - fb, f["diff"])}
        out["map"] = {"deployed": iv(ma, m["deployed"]), "reference": iv(mb, m["reference"]),
                      "diff": iv(ma - mb, m["diff"])}
    return out


def agreement_line(entry: Mapping[str, Any], what: str) -> str:
    """One line of a deployed-vs-trained entry: its agreements, micro-F1 and mAP with their intervals."""
    ivs = entry.get("intervals") or {}

    def f(key: str, sub: str | None = None, signed: bool = False) -> str:
        v = entry.get(key) if sub is None else (entry.get(key) or {}).get(sub)
        i = ivs.get(key) if sub is None else (ivs.get(key) or {}).get(sub)
        if v is None:
            return "n/a"
        text = f"{v:+.3f}" if signed else f"{v:.3f}"
        return text + (f" [{i[0]:.3f}, {i[1]:.3f}]" if i else "")

    line = (f"  {what}, {entry['samples']} samples: top-1 {f('top1_agreement')}, identical genre set "
            f"{f('set_agreement')}, per-label {f('label_agreement')}")
    if "micro_f1" in entry:
        line += (f"; micro-F1 {f('micro_f1', 'deployed')} vs {f('micro_f1', 'reference')} "
                 f"(diff {f('micro_f1', 'diff', True)}), mAP {f('map', 'deployed')} vs {f('map', 'reference')} "
                 f"(diff {f('map', 'diff', True)})")
    if ivs:
        line += f" ({100 * entry['bootstrap']['level']:g} % bootstrap intervals)"
    return line


def float_model_logits(model: Any, spikes: Any) -> np.ndarray:
    """The trained model's read-out ``[T, B, C]`` (float64) on spikes ``[T, B, N, D]``, ``_MODEL_CHUNK`` samples
    per forward: the reference a deployed spiking network is compared with (a quantisation-aware run's forward
    already holds the target's arithmetic)."""
    import torch

    x = torch.as_tensor(np.asarray(spikes)) if not isinstance(spikes, torch.Tensor) else spikes
    B = int(x.shape[1])
    parts = []
    with torch.no_grad():
        for lo in range(0, B, _MODEL_CHUNK):
            out = model(x[:, lo:lo + _MODEL_CHUNK].to(torch.float32))
            out = out[0] if isinstance(out, tuple) else out
            parts.append(out.detach().cpu().numpy().astype(np.float64))
    return np.concatenate(parts, axis=1 if parts[0].ndim == 3 else 0)
