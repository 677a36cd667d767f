"""A spiking front end for the seed's SDT: the DenseNet-169 token spikes made by a spiking CNN on the poster.

The seed's SDT (``--model sdt``, :class:`~neuroposter.models.sdt.SpikeDrivenTransformer`) reads the multilevel-coded
DenseNet-169 tokens ``[T, B, N = 40, D = 1664]`` (the 8x5 feature grid, row-major). :class:`FrontendSDT` keeps that
SDT **unchanged** -- its weights loaded from a trained ``sdt`` run and frozen -- and replaces DenseNet + encoder by a
spiking convolutional network on the image that emits the same kind of input: binary spikes, ``[T, B, 40, 1664]``,
one token per cell of the same 8x5 grid in the same order. Equations (tensors time-first):

.. math::
    \\text{tokens} = \\mathrm{SpikingStem}(X)\\ [T, B, N, c_k]   \\quad (k \\text{ stages of Conv3x3+BN+LIF+AvgPool2x2
    on } X\\ [B, 3, H, W],\\ H = 8 \\cdot 2^k,\\ W = 5 \\cdot 2^k)

    S_{fe} = \\mathrm{SN}(\\mathrm{BN}(\\text{tokens}\\, W_p))\\ [T, B, N, 1664]   \\quad (W_p: \\text{token-wise 1x1
    projection})

    \\text{logits} = \\mathrm{SDT}(S_{fe}) \\quad (\\text{the } \\texttt{sdt} \\text{ run's weights, frozen})

Direct encoding as in the pixel SDT (:mod:`neuroposter.models.sdt_pixels`): the image is the input current of the
first convolution at every step; every later layer accumulates spikes (or 2x2 spike counts after a pooling).

**Frozen head.** Everything but ``stem`` is the SDT: its parameters do not require gradients and its BatchNorm
layers stay in eval mode whatever ``train()`` says (:meth:`FrontendSDT.train`), so training moves the front end
only; the task loss still back-propagates *through* the head (surrogate gradients of its LIFs) into the front end.

**Distillation.** In training mode the front end's spikes of the last forward are kept, and
:meth:`FrontendSDT.auxiliary_loss` returns ``distill_weight * mean((S_fe - S_enc)^2)`` against the encoded DenseNet
token spikes ``S_enc`` of the same posters (the training loop adds it to the task loss when the task carries them;
:attr:`neuroposter.train.data.SplitData.aux`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from neuroposter.models.lif import LIF
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer, TokenLinear, _bn_tokens
from neuroposter.models.sdt_pixels import SpikingStem, image_hw

__all__ = ["TokenFrontEnd", "FrontendSDT", "DEFAULT_WIDTHS", "frontend_image_size"]

#: channels of the three conv stages (sized so a 800-poster demo trains in seconds on 2 CPU cores)
DEFAULT_WIDTHS: tuple[int, ...] = (4, 8, 16)


def frontend_image_size(grid: Sequence[int], n_stages: int) -> tuple[int, int]:
    """The image ``(H, W)`` whose ``n_stages`` 2x2 poolings end on the token ``grid`` ``(gh, gw)``."""
    k = 2 ** int(n_stages)
    return int(grid[0]) * k, int(grid[1]) * k


class TokenFrontEnd(SpikingStem):
    """A :class:`~neuroposter.models.sdt_pixels.SpikingStem` ending in a token projection to ``d_out`` channels
    (token-wise Linear + BatchNorm1d + LIF): images -> binary spikes ``[T, B, N, d_out]``.

    Module paths: ``conv<i>``, ``bn<i>``, ``sn<i>``, ``pool<i>`` per stage, then ``proj``, ``proj_bn``, ``proj_sn``.
    """

    def __init__(self, T: int, image_size: int | Sequence[int], widths: Sequence[int], d_out: int,
                 tau: float = 2.0, v_th: float = 1.0, in_channels: int = 3) -> None:
        super().__init__(T, image_size, tau=tau, v_th=v_th, in_channels=in_channels, widths=widths)
        self.d_out = int(d_out)
        self.proj = TokenLinear(self.widths[-1], self.d_out, bias=False)
        self.proj_bn = nn.BatchNorm1d(self.d_out)
        self.proj_sn = LIF(tau, v_th)
        # every front-end BatchNorm starts with beta = v_th: a N(v_th, 1) current fires ~25-30 % of the T = 4 steps
        # under tau = 2 (about the encoder's spike density, 31 % on the tiny demo) where beta = 0 gives ~3 %, which
        # left the eval-mode front end silent while its running statistics were still the initial ones
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.constant_(m.bias, float(v_th))

    def forward(self, x: Tensor) -> Tensor:
        """Args: images ``[B, 3, H, W]`` or currents ``[T', B, 3, H, W]``. Returns: spikes ``[T, B, N, d_out]``."""
        tokens = super().forward(x)                                          # [T, B, N, c_k] pooled spikes
        return self.proj_sn(_bn_tokens(self.proj_bn, self.proj(tokens)))    # [T, B, N, d_out] 0/1


class FrontendSDT(SpikeDrivenTransformer):
    """The seed's SDT behind a spiking front end: ``images [B, 3, H, W] -> logits [T, B, C]`` (module docstring).

    A :class:`~neuroposter.models.sdt.SpikeDrivenTransformer` (the ``sdt`` run's configuration: ``d_in`` = 1664,
    ``n_tokens`` = 40, ...) whose input spikes come from a :class:`TokenFrontEnd` (``self.stem``). The SDT's
    parameters carry the names of an ``sdt`` checkpoint (``embed.weight``, ``blocks.0...``), so
    :meth:`load_head` takes that checkpoint as it is.

    Args:
        n_classes: genres.
        image_size: ``(H, W)`` (or a square side); must end on the SDT's token grid after the front end's poolings.
        grid: the token grid ``(gh, gw)`` of the SDT's input (DenseNet's, 8x5 at the project's poster size).
        T: time steps (the ``sdt`` run's).
        widths: channels of the front end's conv stages.
        distill_weight: weight of the distillation term (:meth:`auxiliary_loss`).
        head_run, head_key: the ``sdt`` run the head came from and its run key (recorded, not used).
        d_in, n_tokens, d_model, depth, heads, mlp_hidden, tau, v_th, kv_v_th: the SDT's (:class:`SDTConfig`).
    """

    def __init__(self, n_classes: int = 10, image_size: int | Sequence[int] = (64, 40),
                 grid: Sequence[int] = (8, 5), T: int = 4, widths: Sequence[int] = DEFAULT_WIDTHS,
                 distill_weight: float = 1.0, head_run: str = "", head_key: str = "",
                 d_in: int = 1664, n_tokens: int = 40, d_model: int = 64, depth: int = 2, heads: int = 4,
                 mlp_hidden: int = 128, tau: float = 2.0, v_th: float = 1.0, kv_v_th: float = 0.25) -> None:
        cfg = SDTConfig(d_in=d_in, n_tokens=n_tokens, d_model=d_model, depth=depth, heads=heads,
                        mlp_hidden=mlp_hidden, n_classes=n_classes, tau=tau, v_th=v_th, kv_v_th=kv_v_th)
        super().__init__(cfg)
        stem = TokenFrontEnd(T, image_hw(image_size), widths, d_in, tau, v_th)
        grid = (int(grid[0]), int(grid[1]))
        if stem.grid != grid or stem.n_tokens != int(n_tokens):
            want = frontend_image_size(grid, len(stem.widths))
            raise ValueError(f"a {stem.image_hw[0]}x{stem.image_hw[1]} image ends on a {stem.grid[0]}x{stem.grid[1]} "
                             f"grid after {len(stem.widths)} poolings, not the SDT's {grid[0]}x{grid[1]} "
                             f"({n_tokens} tokens); use image size {want[0]}x{want[1]}")
        self.stem = stem
        self.T, self.image_size, self.grid = int(T), stem.image_hw, grid
        self.widths, self.distill_weight = stem.widths, float(distill_weight)
        self.head_run, self.head_key = str(head_run), str(head_key)
        self._fe_spikes: Tensor | None = None
        for name, p in self.named_parameters():
            if not name.startswith("stem."):
                p.requires_grad_(False)

    def head_modules(self) -> list[nn.Module]:
        """The frozen SDT's top-level modules (everything but ``stem``)."""
        return [m for name, m in self.named_children() if name != "stem"]

    def train(self, mode: bool = True) -> "FrontendSDT":
        """Training mode for the front end only: the SDT's BatchNorm keeps its running statistics (eval)."""
        super().train(mode)
        for m in self.head_modules():
            m.eval()
        return self

    def load_head(self, state: Mapping[str, Tensor]) -> None:
        """Loads an ``sdt`` run's checkpoint (its full state dict) into the SDT; refuses a partial or misfitting one.

        Raises:
            ValueError: missing or unexpected keys, or shapes that differ (the message says which).
        """
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("stem.")}
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(f"the sdt checkpoint does not fit this head: missing {missing[:4]}, unexpected "
                             f"{extra[:4]}")
        bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            raise ValueError(f"the sdt checkpoint's shapes differ from this head's at {bad[:4]}")
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(state[k].to(v.dtype))

    def frontend(self, images: Tensor) -> Tensor:
        """The front end alone: images -> binary spikes ``[T, B, N, d_in]`` (the SDT's input)."""
        return self.stem(images)

    def forward(self, images: Tensor) -> Tensor:  # type: ignore[override]
        """Args: images ``[B, 3, H, W]`` or currents ``[T, B, 3, H, W]``. Returns: logits ``[T, B, C]``."""
        spikes = self.stem(images)
        self._fe_spikes = spikes if self.training else None
        return super().forward(spikes)

    def auxiliary_loss(self, target: Tensor) -> Tensor:
        """``distill_weight * MSE`` of the last training forward's front-end spikes against ``target``.

        Args:
            target: the encoded DenseNet token spikes of the same posters, batch-first ``[B, T, N, D]`` (as stored).

        Raises:
            RuntimeError: no training forward since the last call.
        """
        if self._fe_spikes is None:
            raise RuntimeError("auxiliary_loss needs a forward in training mode first")
        s = self._fe_spikes
        t = target.to(s.device, s.dtype).transpose(0, 1)                   # [T, B, N, D]
        if t.shape != s.shape:
            raise ValueError(f"distillation targets {tuple(t.shape)} do not match the front end's spikes "
                             f"{tuple(s.shape)} (time-first)")
        self._fe_spikes = None
        return self.distill_weight * torch.mean((s - t) ** 2)
