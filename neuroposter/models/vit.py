"""The ViT baseline: torchvision's ``VisionTransformer`` on poster images.

With ImageNet weights available in the local torch hub cache (``vit_b_16`` IMAGENET1K_V1), the
model is ViT-B/16 at 224 x 224 with a new head; otherwise (the default offline case) a small ViT
trained from scratch: 96 x 96 images, patch 16, 4 layers, width 64, 4 heads, MLP 128.
``images [B, 3, S, S] -> logits [B, C]``; posters are resized to the square ``S x S``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["ViTClassifier", "imagenet_vit_checkpoint", "image_to_tensor", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_vit_checkpoint() -> Path | None:
    """The cached torchvision ViT-B/16 ImageNet checkpoint, or None (never downloads)."""
    from torchvision.models import ViT_B_16_Weights

    name = Path(ViT_B_16_Weights.IMAGENET1K_V1.url).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    return path if path.is_file() else None


def image_to_tensor(img: "object", image_size: "int | tuple[int, int] | list[int]") -> Tensor:
    """A PIL image -> ImageNet-normalised ``[3, S, S]`` float tensor (bilinear resize to a square), or ``[3, H, W]``
    for ``image_size = (H, W)`` (a rectangular model input, e.g. the SDT front end's)."""
    from torchvision.transforms import functional as TF

    h, w = (int(image_size), int(image_size)) if isinstance(image_size, int) else (int(v) for v in image_size)
    img = img.convert("RGB").resize((w, h), resample=2)  # type: ignore[attr-defined]  # 2 = BILINEAR
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


class ViTClassifier(nn.Module):
    """torchvision ``VisionTransformer`` classifier: ``images [B, 3, S, S] -> logits [B, C]``.

    Args:
        n_classes: number of genres.
        image_size: square input side S (224 with ImageNet weights).
        patch_size: patch side.
        num_layers: encoder blocks.
        num_heads: attention heads.
        hidden_dim: token width.
        mlp_dim: MLP hidden width.
        dropout: dropout in the encoder (training only).
        weights: ``"none"`` (train from scratch) or ``"imagenet"`` (ViT-B/16 from the local cache;
            the size arguments are then those of ViT-B/16).
        load_pretrained: False builds the architecture only (for loading a full state dict).
    """

    def __init__(self, n_classes: int, image_size: int = 96, patch_size: int = 16, num_layers: int = 4,
                 num_heads: int = 4, hidden_dim: int = 64, mlp_dim: int = 128, dropout: float = 0.1,
                 weights: str = "none", *, load_pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer

        if weights not in ("none", "imagenet"):
            raise ValueError(f"ViT weights must be 'none' or 'imagenet', got {weights!r}")
        self.weights = weights
        if weights == "imagenet":
            image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim = 224, 16, 12, 12, 768, 3072
        self.image_size = image_size
        self.vit = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                                     num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                                     dropout=dropout, num_classes=1000 if weights == "imagenet" else n_classes)
        if weights == "imagenet":
            if load_pretrained:
                ckpt = imagenet_vit_checkpoint()
                if ckpt is None:
                    raise FileNotFoundError("ViT-B/16 ImageNet weights are not in the torch hub cache; "
                                            "use weights='none'")
                self.vit.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
            self.vit.heads.head = nn.Linear(hidden_dim, n_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images ``[B, 3, S, S]`` (ImageNet-normalised). Returns: logits ``[B, C]``."""
        return self.vit(images)
