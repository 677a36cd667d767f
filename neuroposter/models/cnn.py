"""The CNN baseline: the DenseNet-169 backbone that produced the features plus a classifier head.

``images [B, 3, H, W] -> backbone [B, 1664, H', W'] -> global average pool [B, 1664] -> head -> logits [B, C]``.
The backbone comes from :func:`neuroposter.features.build_backbone` with the weights id recorded in
the feature store manifest, so the head trained on the stored pooled features (``pooled.npy``, the
same global average of the same backbone's output) is exactly the head of this image model, and the
whole module can be exported to ONNX.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CNNClassifier", "make_head"]


def make_head(d_feat: int, n_classes: int, hidden: int = 0, dropout: float = 0.2) -> nn.Sequential:
    """Classifier head on pooled features: ``Dropout -> Linear`` or ``Linear -> ReLU -> Dropout -> Linear``."""
    if hidden > 0:
        return nn.Sequential(nn.Linear(d_feat, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_feat, n_classes))


class CNNClassifier(nn.Module):
    """DenseNet-169 features + global average pool + head: ``images [B, 3, H, W] -> logits [B, C]``.

    Args:
        n_classes: number of genres.
        weights: backbone weights id as recorded by the feature store (``"imagenet"``, ``"random"``,
            ``"file:<path>"``), passed to :func:`neuroposter.features.build_backbone`.
        d_feat: backbone output channels (1664 for DenseNet-169).
        head_hidden: hidden width of the head (0: a linear head).
        dropout: dropout before the head's last Linear (training only).
        backbone: an already built backbone to use instead (e.g. ``FeatureStore.build_backbone()``,
            which also resolves ``file:`` weights through the path in the store manifest).
        load_backbone_weights: False builds the backbone architecture only (``"random"`` init), for
            callers that load a full state dict right after (``load_run``).

    The backbone is frozen (``requires_grad=False``, as :func:`build_backbone` returns it); call
    :meth:`unfreeze_backbone` to fine-tune end to end.
    """

    def __init__(self, n_classes: int, weights: str = "random", d_feat: int = 1664, head_hidden: int = 0,
                 dropout: float = 0.2, *, backbone: nn.Module | None = None,
                 load_backbone_weights: bool = True) -> None:
        super().__init__()
        from neuroposter.features import build_backbone

        self.weights = weights
        if backbone is None:
            backbone = build_backbone(weights if load_backbone_weights else "random")
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = make_head(d_feat, n_classes, head_hidden, dropout)

    def unfreeze_backbone(self) -> None:
        """Makes the backbone trainable (end-to-end fine-tuning)."""
        for p in self.backbone.parameters():
            p.requires_grad_(True)

    def pooled_features(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W] -> pooled features [B, d_feat]`` (what ``pooled.npy`` stores)."""
        return torch.flatten(self.pool(self.backbone(images)), 1)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images ``[B, 3, H, W]`` (ImageNet-normalised). Returns: logits ``[B, C]``."""
        return self.head(self.pooled_features(images))
