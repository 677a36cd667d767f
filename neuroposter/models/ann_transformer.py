"""The SDT's ANN twin: the same tokens (normalised float features), depth and width, with softmax
attention, GELU and LayerNorm (pre-norm ViT blocks). ``features [B, N, D_in] -> logits [B, C]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

__all__ = ["ANNTransformerConfig", "ANNTransformer"]


@dataclass(frozen=True)
class ANNTransformerConfig:
    """Hyper-parameters of :class:`ANNTransformer` (defaults match :class:`SDTConfig`)."""

    d_in: int = 1664       # input channels per token
    n_tokens: int = 40     # tokens per sample (learned positional embedding size)
    d_model: int = 64      # residual width
    depth: int = 2         # transformer blocks
    heads: int = 4         # attention heads
    mlp_hidden: int = 128  # MLP hidden width
    n_classes: int = 10    # genres
    dropout: float = 0.1   # dropout on attention/MLP outputs (training only)

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by heads={self.heads}")

    def to_dict(self) -> dict[str, float | int]:
        """Plain constructor kwargs (for ``model.json``)."""
        return asdict(self)


class _Block(nn.Module):
    """Pre-norm transformer block: ``x += MHA(LN(x))``; ``x += MLP(LN(x))``."""

    def __init__(self, cfg: ANNTransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_hidden, cfg.d_model), nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ANNTransformer(nn.Module):
    """Float transformer on feature tokens: ``[B, N, D_in] -> logits [B, C]``."""

    def __init__(self, cfg: ANNTransformerConfig | None = None, **kwargs: float | int) -> None:
        super().__init__()
        if cfg is None:
            cfg = ANNTransformerConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either cfg or keyword arguments, not both")
        self.cfg = cfg
        self.embed = nn.Linear(cfg.d_in, cfg.d_model)
        self.pos = nn.Parameter(torch.zeros(cfg.n_tokens, cfg.d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, features: Tensor) -> Tensor:
        """Args: features ``[B, N, D_in]``. Returns: logits ``[B, C]``."""
        if features.dim() != 3 or features.shape[1:] != (self.cfg.n_tokens, self.cfg.d_in):
            raise ValueError(f"ann-transformer expects [B, {self.cfg.n_tokens}, {self.cfg.d_in}], "
                             f"got {tuple(features.shape)}")
        x = self.embed(features.to(self.embed.weight.dtype)) + self.pos   # [B, N, d]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))                       # [B, C]
