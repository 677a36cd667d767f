"""The agreement metrics every target reports: one name, one meaning each.

A deployed network is checked against a reference (the float model, the reference simulator, a float
graph). Every comparison a target makes is one call of :func:`compare` and lands in its
``summary.json`` under ``verification.<comparison>`` with these keys (see ``docs/contracts.md``,
"Agreement metrics"):

===============================  ==========================================================================
key                              meaning
===============================  ==========================================================================
``samples``                      samples compared
``prediction_agreement``         fraction of samples whose *prediction* is identical: the top-1 class and the
                                 whole set of classes with a positive mean logit (multi-label decision)
``label_agreement``              fraction of (sample, class) decisions ``mean logit > 0`` that are identical
``top1_agreement``               fraction of samples with the same top-1 class
``max_abs_logit_diff``           largest absolute difference of the mean logits (the units of the read-out)
``spike_agreement``              fraction of all recorded spikes (every layer, step, sample, neuron) equal
``spike_agreement_min``          the lowest per-layer spike agreement
``spike_agreement_per_layer``    per layer: fraction of its spikes equal
``micro_f1`` (with labels)       ``{"deployed", "reference", "diff"}``: micro-F1 of both decisions vs labels
===============================  ==========================================================================

The prediction of a spiking network is the mean of its read-out over the ``T`` steps (``[B, C]``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["float_model_logits", "predictions", "prediction_agreement", "label_agreement", "top1_agreement", "spike_agreement",
           "micro_f1", "compare", "mean_logits"]


def mean_logits(readout: Any, batch: int | None = None) -> np.ndarray:
    """The prediction scores ``[B, C]`` of a time-first read-out ``[T, B, ...]`` (mean over ``T``)."""
    arr = np.asarray(readout, dtype=np.float64)
    m = arr.mean(axis=0)
    return m.reshape((batch if batch is not None else m.shape[0]), -1)


def predictions(mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(top1 [B], decisions [B, C] bool)`` from mean logits ``[B, C]``."""
    m = np.asarray(mean, dtype=np.float64).reshape(np.shape(mean)[0], -1)
    return m.argmax(axis=1), m > 0


def prediction_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose top-1 class and positive-class set are both identical."""
    ta, da = predictions(a)
    tb, db = predictions(b)
    same = (ta == tb) & np.all(da == db, axis=1)
    return float(same.mean()) if same.size else 1.0


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of (sample, class) decisions ``mean logit > 0`` that are identical."""
    _, da = predictions(a)
    _, db = predictions(b)
    return float((da == db).mean()) if da.size else 1.0


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples with the same top-1 class."""
    ta, _ = predictions(a)
    tb, _ = predictions(b)
    return float((ta == tb).mean()) if ta.size else 1.0


def micro_f1(decisions: np.ndarray, labels: np.ndarray) -> float:
    """Micro-F1 of boolean decisions ``[B, C]`` against multi-hot labels ``[B, C]`` (0 when both are empty)."""
    d, y = np.asarray(decisions, dtype=bool), np.asarray(labels) > 0
    tp = float(np.sum(d & y))
    fp = float(np.sum(d & ~y))
    fn = float(np.sum(~d & y))
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0


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
            labels: np.ndarray | None = None, layers: list[str] | None = None) -> dict[str, Any]:
    """One comparison of a deployed network with its reference, in the metrics of this module.

    Args:
        deployed, reference: mean logits ``[B, C]`` (None: no prediction comparison).
        spikes: ``(deployed spikes, reference spikes)`` per layer (None: no spike comparison).
        labels: multi-hot ``[B, C]``: adds ``micro_f1``.
        layers: restricts the spike comparison to these layers.

    Returns:
        The verification entry (keys in the module docstring).
    """
    out: dict[str, Any] = {}
    if deployed is not None and reference is not None:
        a = np.asarray(deployed, dtype=np.float64)
        b = np.asarray(reference, dtype=np.float64)
        out.update(samples=int(a.shape[0]), prediction_agreement=prediction_agreement(a, b),
                   label_agreement=label_agreement(a, b), top1_agreement=top1_agreement(a, b),
                   max_abs_logit_diff=float(np.max(np.abs(a - b))) if a.size else 0.0)
        if labels is not None:
            fa, fb = micro_f1(predictions(a)[1], labels), micro_f1(predictions(b)[1], labels)
            out["micro_f1"] = {"deployed": fa, "reference": fb, "diff": fa - fb}
    if spikes is not None:
        out.update(spike_agreement(spikes[0], spikes[1], layers))
    return out


def float_model_logits(model: Any, spikes: np.ndarray) -> np.ndarray:
    """The float model's read-out ``[T, B, C]`` (float64) on spikes ``[T, B, N, D]``: the reference a deployed
    spiking network is compared with."""
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(spikes, dtype=torch.float32))
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().cpu().numpy().astype(np.float64)
