"""Multi-label loss: BCE-with-logits with per-genre ``pos_weight = neg / pos`` from the train split."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["pos_weight_from_labels", "multilabel_loss"]


def pos_weight_from_labels(labels: np.ndarray | torch.Tensor, max_weight: float = 10.0) -> torch.Tensor:
    """Per-genre ``neg / pos`` on the train labels, clipped to ``[1, max_weight]``.

    A genre without positives gets ``max_weight``; the lower clip keeps frequent genres (pos > neg)
    at weight 1 rather than down-weighting their positives.

    Returns:
        float32 ``[G]``.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    pos = y.sum(dim=0)
    neg = y.shape[0] - pos
    w = torch.where(pos > 0, neg / pos.clamp(min=1), torch.full_like(pos, max_weight))
    return w.clamp(1.0, max_weight).to(torch.float32)


def multilabel_loss(pos_weight: torch.Tensor | None) -> nn.BCEWithLogitsLoss:
    """``BCEWithLogitsLoss(pos_weight=...)`` averaged over samples and genres."""
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
