"""Spike-Driven Transformer (SDT v1 semantics, Yao et al., NeurIPS 2023) on feature tokens.

Follows the official code (BICLab/Spike-Driven-Transformer ``module/ms_conv.py``: ``MS_SSA_Conv``,
``MS_MLP_Conv``) with two project conventions (``../shared/DESIGN.md`` section 4): the strict
threshold ``z = [v > v_th]`` of Norse/NIR/Lava, hence ``kv_v_th = 0.25`` for the KV neuron, and
1x1 convolutions written as token-wise Linear layers. Equations, all tensors time-first
``[T, B, N, d]``:

.. math::
    U_0 = \\mathrm{BN}(S_{in} W_e) + P                                  \\quad (P: \\text{per-token bias})

    S = \\mathrm{SN}(U),\\; Q, K, V = \\mathrm{SN}(\\mathrm{BN}(S W_{q,k,v}))

    KV = \\mathrm{SN}_{kv}\\big(\\textstyle\\sum_{n} K_{n} \\odot V_{n}\\big)      \\quad (\\text{per channel})

    U \\leftarrow U + \\mathrm{BN}((Q \\odot KV) W_o + b_o)                \\quad (\\text{membrane shortcut})

    U \\leftarrow U + \\mathrm{BN}(\\mathrm{SN}(\\mathrm{BN}(\\mathrm{SN}(U) W_1 + b_1)) W_2 + b_2)

    \\text{logits}_t = \\mathrm{mean}_n\\, \\mathrm{SN}(U)_t\\, W_h + b_h, \\quad \\text{prediction} = \\mathrm{mean}_t\\, \\text{logits}_t

No softmax and no product of two real-valued activations: ``K * V`` and ``Q * KV`` multiply two
0/1 spike tensors, i.e. they are AND masks (written as a float product of 0/1 tensors, which is
exact). ``SN_kv`` with ``tau = 2`` and ``0 <= kv_v_th < 0.5`` is an exact per-channel OR over
tokens at every step: a count ``c >= 1`` gives ``v = c / 2 >= 0.5 > kv_v_th``; a count 0 keeps
``v = 0`` (by induction: the membrane is 0 after every reset and after every silent step).
Heads partition the channels (``d_model / heads`` each); since KV is per channel, heads change no
arithmetic -- they are recorded for the NIR lowering and hardware mapping.

The biases of ``proj``, ``fc1`` and ``fc2`` feed BatchNorm directly, which cancels them: they are
kept (module layout of the official code) but zero and frozen (:func:`~neuroposter.models.lif.freeze_bias_before_bn`).

Efficiency: in training every stateless layer (Linear, BatchNorm) runs once on the time-folded batch
``[T * B * N, d]`` (BatchNorm statistics over T*B*N samples per channel); only neuron dynamics
loop over ``T`` (:class:`~neuroposter.models.lif.LIF`). In inference on CPU (``eval()``, no gradient; see
:func:`neuroposter.models.sdt_inference.applies`) the whole network runs as one event-driven kernel
(:mod:`neuroposter.models.sdt_inference`: every product a gather-and-add over its input spikes) unless
``sparse_input`` is ``"off"``; where the token spikes are too dense for the gather to pay, the embed runs as a GEMM
first and the kernel takes the embedded membranes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from neuroposter.models.lif import LIF, freeze_bias_before_bn, lif_firing_rates
from neuroposter.models import sdt_inference
from neuroposter.models.sparse import DEFAULT_SPARSE_MODE, spike_linear, use_sparse

__all__ = ["SDTConfig", "TokenLinear", "SDSA", "SpikingMLP", "SDTBlock", "SpikeDrivenTransformer"]


@dataclass(frozen=True)
class SDTConfig:
    """Hyper-parameters of :class:`SpikeDrivenTransformer` (defaults sized for a 2-core CPU demo)."""

    d_in: int = 1664          # input channels per token (DenseNet-169 feature width)
    n_tokens: int = 40        # tokens per sample (feature-map positions); sets the positional bias size
    d_model: int = 64         # residual width d
    depth: int = 2            # number of SDT blocks L
    heads: int = 4            # heads partition d_model; KV is per channel, so heads are bookkeeping
    mlp_hidden: int = 128     # hidden width h of the spiking MLP
    n_classes: int = 10       # genres (multi-label logits)
    tau: float = 2.0          # LIF membrane time constant in steps (SDT: 2)
    v_th: float = 1.0         # LIF threshold of every neuron except SN_kv (SDT: 1.0)
    kv_v_th: float = 0.25     # SN_kv threshold; in [0, 0.5) makes it an exact OR under '>' (for tau = 2)

    def __post_init__(self) -> None:
        for name in ("d_in", "n_tokens", "d_model", "depth", "heads", "mlp_hidden", "n_classes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SDTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by heads={self.heads}")
        if self.tau < 1.0:
            raise ValueError(f"SDTConfig.tau must be >= 1 (dt = 1), got {self.tau}")
        if not 0.0 <= self.kv_v_th < 1.0 / self.tau:
            raise ValueError(f"kv_v_th={self.kv_v_th} must lie in [0, 1/tau) = [0, {1.0 / self.tau:g}) for "
                             "SN_kv to be an OR under the strict threshold (a count of 1 gives v = 1/tau)")

    def to_dict(self) -> dict[str, float | int]:
        """Plain constructor kwargs (for ``model.json``)."""
        return asdict(self)


class TokenLinear(nn.Linear):
    """A Linear map applied to every token independently (``[..., N, D_in] -> [..., N, d]``).

    Identical to :class:`torch.nn.Linear`; the separate class names the token-wise role (lowered to
    NIR as a ``Conv1d`` with kernel 1 over channels-first tokens).
    """


def _bn_tokens(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """BatchNorm over all leading dims: ``[..., C] -> [prod(...), C] -> BN -> [..., C]``."""
    shape = x.shape
    return bn(x.reshape(-1, shape[-1])).reshape(shape)


class SDSA(nn.Module):
    """Spike-Driven Self-Attention with its input neuron: ``U [T,B,N,d] -> current [T,B,N,d]``."""

    def __init__(self, cfg: SDTConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.heads = cfg.heads
        self.dim = d
        self.sn_in = LIF(cfg.tau, cfg.v_th)
        self.q = nn.Linear(d, d, bias=False)
        self.q_bn = nn.BatchNorm1d(d)
        self.q_sn = LIF(cfg.tau, cfg.v_th)
        self.k = nn.Linear(d, d, bias=False)
        self.k_bn = nn.BatchNorm1d(d)
        self.k_sn = LIF(cfg.tau, cfg.v_th)
        self.v = nn.Linear(d, d, bias=False)
        self.v_bn = nn.BatchNorm1d(d)
        self.v_sn = LIF(cfg.tau, cfg.v_th)
        self.kv_sn = LIF(cfg.tau, cfg.kv_v_th)
        self.proj = nn.Linear(d, d)
        self.proj_bn = nn.BatchNorm1d(d)
        freeze_bias_before_bn(self.proj)

    def forward(self, u: Tensor) -> Tensor:
        """Args: u: residual membrane current ``[T, B, N, d]``. Returns: the current to add to ``u``."""
        s = self.sn_in(u)                                   # [T, B, N, d] spikes
        q = self.q_sn(_bn_tokens(self.q_bn, self.q(s)))     # [T, B, N, d]
        k = self.k_sn(_bn_tokens(self.k_bn, self.k(s)))
        v = self.v_sn(_bn_tokens(self.v_bn, self.v(s)))
        kv_count = (k * v).sum(dim=2, keepdim=True)         # AND, then count over tokens: [T, B, 1, d]
        kv = self.kv_sn(kv_count)                           # per-channel OR over tokens: [T, B, 1, d]
        x = q * kv                                          # AND mask, broadcast over tokens: [T, B, N, d]
        return _bn_tokens(self.proj_bn, self.proj(x))


class SpikingMLP(nn.Module):
    """The block's spiking MLP with its input neuron: ``U [T,B,N,d] -> current [T,B,N,d]``."""

    def __init__(self, cfg: SDTConfig) -> None:
        super().__init__()
        self.sn_in = LIF(cfg.tau, cfg.v_th)
        self.fc1 = nn.Linear(cfg.d_model, cfg.mlp_hidden)
        self.fc1_bn = nn.BatchNorm1d(cfg.mlp_hidden)
        self.sn_hidden = LIF(cfg.tau, cfg.v_th)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.d_model)
        self.fc2_bn = nn.BatchNorm1d(cfg.d_model)
        freeze_bias_before_bn(self.fc1)
        freeze_bias_before_bn(self.fc2)

    def forward(self, u: Tensor) -> Tensor:
        """Args: u: residual membrane current ``[T, B, N, d]``. Returns: the current to add to ``u``."""
        s = self.sn_in(u)
        h = self.sn_hidden(_bn_tokens(self.fc1_bn, self.fc1(s)))   # [T, B, N, h]
        return _bn_tokens(self.fc2_bn, self.fc2(h))                # [T, B, N, d]


class SDTBlock(nn.Module):
    """One SDT block: two membrane shortcuts, ``U += SDSA(U)``; ``U += MLP(U)``."""

    def __init__(self, cfg: SDTConfig) -> None:
        super().__init__()
        self.attn = SDSA(cfg)
        self.mlp = SpikingMLP(cfg)

    def forward(self, u: Tensor) -> Tensor:
        u = u + self.attn(u)
        return u + self.mlp(u)


class SpikeDrivenTransformer(nn.Module):
    """The SDT classifier on spike tokens: ``spikes [T, B, N, D_in] -> logits [T, B, C]``.

    The prediction is the mean of the logits over ``T``. See the module docstring for equations.

    Args:
        cfg: an :class:`SDTConfig` (or pass its fields as keyword arguments).
    """

    def __init__(self, cfg: SDTConfig | None = None, **kwargs: float | int) -> None:
        super().__init__()
        if cfg is None:
            cfg = SDTConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either cfg or keyword arguments, not both")
        self.cfg = cfg
        self.embed = TokenLinear(cfg.d_in, cfg.d_model, bias=False)
        self.embed_bn = nn.BatchNorm1d(cfg.d_model)
        self.pos_bias = nn.Parameter(torch.zeros(cfg.n_tokens, cfg.d_model))
        nn.init.trunc_normal_(self.pos_bias, std=0.02)
        self.blocks = nn.ModuleList(SDTBlock(cfg) for _ in range(cfg.depth))
        self.head_sn = LIF(cfg.tau, cfg.v_th)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        #: how ``embed`` treats its spike input (:data:`neuroposter.models.sparse.SPARSE_MODES`): by default
        #: gather-and-add over the active inputs in inference, the dense GEMM in training
        self.sparse_input = DEFAULT_SPARSE_MODE

    def forward(self, spikes: Tensor) -> Tensor:
        """Args: spikes ``[T, B, N, D_in]`` (0/1, any dtype). Returns: logits ``[T, B, C]``."""
        if spikes.dim() != 4:
            raise ValueError(f"SDT expects spikes [T, B, N, D_in], got shape {tuple(spikes.shape)}")
        T, B, N, D = spikes.shape
        if N != self.cfg.n_tokens or D != self.cfg.d_in:
            raise ValueError(f"SDT built for N={self.cfg.n_tokens} tokens of D={self.cfg.d_in}, "
                             f"got N={N}, D={D}")
        fast = self.sparse_input != "off" and sdt_inference.applies(self, spikes)
        if fast and use_sparse(spikes, self.embed.weight):          # inference, all of it event-driven
            return sdt_inference.sdt_inference(self, x=spikes)
        e = spike_linear(self.embed, spikes, "off" if fast else self.sparse_input)   # sparse or dense (.sparse)
        u = _bn_tokens(self.embed_bn, e) + self.pos_bias                # [T, B, N, d]
        if fast:                                                        # inference on spikes too dense to gather
            return sdt_inference.sdt_inference(self, u0=u)
        for block in self.blocks:
            u = block(u)
        s = self.head_sn(u)                                             # [T, B, N, d]
        return self.head(s.mean(dim=2))                                 # [T, B, C]

    def firing_rates(self) -> dict[str, float]:
        """Firing rate of every LIF layer in the last forward, keyed by module path."""
        return lif_firing_rates(self)
