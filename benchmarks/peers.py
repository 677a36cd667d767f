"""The SDT side by side with its peers in one run: neuroposter vs spikingjelly, snnTorch and Norse.

Reproduces issue 16's table: training and inference samples/s of the *same* Spike-Driven Transformer written with
each library's own LIF neurons and layers, on the shapes of ``benchmarks/train_throughput.py`` (its argparse
defaults are read from that script, the widths from :class:`neuroposter.models.SDTConfig`; nothing is copied), with
identical parameter counts (printed and asserted). Rows (:data:`ROWS`):

* ``neuroposter``          -- :class:`~neuroposter.models.SpikeDrivenTransformer` as it runs by default: in training
  stateless layers once on the time-folded batch, the fused LIF over ``T`` compiled (numba, bit-identical to its
  torch form) and the embed event-driven where its input is sparse enough (``neuroposter.models.sparse``: forward
  gather-add and weight-gradient scatter over the input spikes; another float round-off than the GEMM's); in
  inference the whole network as one event-driven kernel (``neuroposter.models.sdt_inference``: every product a
  gather-and-add over its input spikes, BatchNorm's eval affine and the LIFs beside them);
* ``neuroposter-dense-train`` -- the same with the dense embed in training (``sparse_input="inference"``: the GEMM's
  round-off, i.e. training bit for bit as before the sparse training default);
* ``neuroposter-before``   -- the LIF's torch form and the dense embed: neuroposter before issue 16's kernels;
* ``neuroposter-per-step`` -- the same modules one time step at a time (``train_throughput._per_step_forward``);
* ``spikingjelly-linear``  -- spikingjelly 0.0.0.0.14 multi-step (``step_mode="m"``) ``layer.Linear`` /
  ``layer.BatchNorm1d`` / ``neuron.LIFNode`` (``backend="torch"``, the only CPU backend);
* ``spikingjelly-conv1d``  -- the same with the layout of the official SDT code: channels-first tokens
  ``[T, B, C, N]``, 1x1 ``layer.Conv1d`` + ``layer.BatchNorm1d`` on the folded ``[T*B, C, N]``;
* ``snntorch``             -- ``snntorch.Leaky`` (reset to zero) stepped over ``T``, torch layers time-folded;
* ``norse``                -- Norse's ``LIFBoxCell`` stepped over ``T``, torch layers time-folded;
* ``neuroposter-f64``      -- the first row in float64, the precision the project trains spiking models in (an extra
  line, outside the ratios).

The architecture (:class:`PeerSDT`, written here): ``U = BN(S W_e) + P``; per block ``S = SN(U)``, ``Q, K, V =
SN(BN(S W))``, ``KV = SN_kv(sum_n K * V)``, ``U += BN((Q * KV) W_o)``; ``U += BN(SN(BN(SN(U) W_1)) W_2)`` (membrane
shortcuts); readout ``mean_n SN(U) W_h + b_h`` per step. The biases before BatchNorm are zero and frozen as in
neuroposter, so total *and* trainable counts match. Every neuron is the same discrete LIF (``tau = 2``, hard reset to
0, thresholds ``v_th`` and ``kv_v_th``); snnTorch's ``Leaky`` does not scale its input by ``1 / tau``, so it runs with
``beta = 1 - 1/tau`` and thresholds ``tau * v_th`` (its membrane is ``tau`` times the others': same spikes).
Surrogate gradients are each library's default. Outputs are not compared across libraries (different
initialisations); each network is checked to run, to have neuroposter's parameter count and to return
``[T, B, classes]``. neuroposter's own float32 rows are checked against ``neuroposter-before`` (same seed and
initialisation): the first training step's logits and embed weight gradient of the default row (the sparse embed's
sums against the GEMM's, allclose), and the inference logits after the same training steps of the row that trains
densely (bit-identical or allclose, ``rtol = atol = 1e-5``: the inference kernel sums in another order than MKL's
GEMM); both asserted. The default row's logits after training are shown, not asserted: float32 round-off flips a
threshold now and then, and training carries it on. The timing also records CPU seconds per step (all of the
process's threads).

Measured, in float32 for every row: train = forward + backward + AdamW step (BCE-with-logits on the mean over T, as
``train_throughput.py``); inference = ``eval()`` + ``no_grad`` forward. Each (row, repeat) runs in its own
subprocess (no shared allocator or thread state; the same ``torch.set_num_threads``), rows interleaved within each
repeat; warm-up steps, then each step timed on its own (samples/s = batch / median step time, so a burst of other
load spoils a step, not the run); the table shows the median over repeats with the min-max range, and the ratios
are also given on each row's best repeat.

Peers are installed into a throw-away folder with ``pip install --target DIR --no-deps`` (they need nothing beyond
torch/numpy/scipy/matplotlib/tqdm/torchvision, which the project's environment already has), never into the
project's environment, and the workers see them through ``PYTHONPATH``; Norse is a project dependency and is used as
installed. Not a test: the numbers depend on the machine and its load.

    .venv/bin/python benchmarks/peers.py [--threads 2 --repeats 5 --steps 10 --peers-dir DIR --no-install]
    .venv/bin/python benchmarks/peers.py --device cuda      # on a GPU machine: the same rows and ratios on CUDA

On CUDA every row runs its torch form (the compiled LIF and the event-driven inference kernel are CPU kernels;
spikingjelly's row keeps its ``torch`` backend, the one the issue's GPU target names), each timed step synchronised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:          # train_throughput.py is a sibling script, not a package module
    sys.path.insert(0, str(_HERE))

import train_throughput  # noqa: E402

from neuroposter.models import SDTConfig, SpikeDrivenTransformer  # noqa: E402

#: Peers installed into the throw-away folder: distribution name -> pinned version (the latest that runs on the
#: project's torch 2.3; both pure Python).
PEER_VERSIONS = {"spikingjelly": "0.0.0.0.14", "snntorch": "1.0.0"}
#: Default throw-away folder for the peers.
DEFAULT_PEERS_DIR = Path(os.environ.get("TMPDIR") or "/tmp") / "neuroposter-peers"
#: Input spike density: the one ``train_throughput._measure`` draws (a literal there, not importable).
INPUT_DENSITY = 0.1


class _Parsed(Exception):
    """Carries the namespace out of ``train_throughput.main`` (see :func:`throughput_defaults`)."""

    def __init__(self, ns: argparse.Namespace) -> None:
        super().__init__()
        self.ns = ns


def throughput_defaults() -> dict[str, int]:
    """The argparse defaults of ``benchmarks/train_throughput.py`` (``T``, ``batch``, ``N``, ``D``, ``classes``, ...),
    read by parsing an empty command line with its own parser (stopped before it measures anything)."""
    real = argparse.ArgumentParser.parse_args

    def grab(self: argparse.ArgumentParser, args: list[str] | None = None,
             namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        raise _Parsed(real(self, [], namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab):
        try:
            train_throughput.main([])
        except _Parsed as p:
            return dict(vars(p.ns))
    raise RuntimeError("benchmarks/train_throughput.py did not parse its arguments")


def benchmark_config(**overrides: int) -> tuple[SDTConfig, int, int]:
    """``(SDTConfig, T, batch)`` of ``train_throughput.py``: its ``N``/``D``/``classes`` defaults over
    :class:`SDTConfig`'s widths (d_model, depth, MLP width), then ``overrides`` (SDTConfig fields, ``T``, ``batch``)."""
    d = throughput_defaults()
    T, batch = int(overrides.pop("T", d["T"])), int(overrides.pop("batch", d["batch"]))
    cfg = replace(SDTConfig(d_in=d["D"], n_tokens=d["N"], n_classes=d["classes"]), **overrides)
    return cfg, T, batch


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(all parameters, trainable parameters)``."""
    ps = list(model.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


# ---------------------------------------------------------------------------------------------------- architecture
class PeerSDT(nn.Module):
    """The SDT of :mod:`neuroposter.models.sdt`, written against pluggable layers (module docstring).

    Args:
        cfg: the widths and thresholds.
        linear: ``linear(d_in, d_out, bias)`` -> a token-wise map on this layout.
        bn: ``bn(channels)`` -> BatchNorm over the channels of this layout (all other dims pooled).
        neuron: ``neuron(v_th)`` -> a multi-step LIF ``[T, ...] -> [T, ...]`` (``tau = cfg.tau``, hard reset to 0).
        channels_first: tokens as ``[T, B, C, N]`` (the official SDT code's Conv1d layout) instead of ``[T, B, N, C]``.
        reset: called on the model before every forward (stateful neurons: spikingjelly's ``reset_net``).
    """

    def __init__(self, cfg: SDTConfig, linear: Callable[[int, int, bool], nn.Module],
                 bn: Callable[[int], nn.Module], neuron: Callable[[float], nn.Module], *,
                 channels_first: bool = False, reset: Callable[[nn.Module], None] | None = None) -> None:
        super().__init__()
        d, h = cfg.d_model, cfg.mlp_hidden
        self.cfg = cfg
        self.channels_first = channels_first
        self.token_dim = 3 if channels_first else 2            # in [T, B, *, *]
        self._reset = reset
        self.embed = linear(cfg.d_in, d, False)
        self.embed_bn = bn(d)
        self.pos_bias = nn.Parameter(torch.zeros((d, cfg.n_tokens) if channels_first else (cfg.n_tokens, d)))
        nn.init.trunc_normal_(self.pos_bias, std=0.02)
        self.blocks = nn.ModuleList()
        for _ in range(cfg.depth):
            blk = nn.ModuleDict({
                "attn_sn": neuron(cfg.v_th),
                "q": linear(d, d, False), "q_bn": bn(d), "q_sn": neuron(cfg.v_th),
                "k": linear(d, d, False), "k_bn": bn(d), "k_sn": neuron(cfg.v_th),
                "v": linear(d, d, False), "v_bn": bn(d), "v_sn": neuron(cfg.v_th),
                "kv_sn": neuron(cfg.kv_v_th),
                "proj": linear(d, d, True), "proj_bn": bn(d),
                "mlp_sn": neuron(cfg.v_th),
                "fc1": linear(d, h, True), "fc1_bn": bn(h), "hidden_sn": neuron(cfg.v_th),
                "fc2": linear(h, d, True), "fc2_bn": bn(d),
            })
            for name in ("proj", "fc1", "fc2"):          # feed BatchNorm: zero and frozen, as in neuroposter
                with torch.no_grad():
                    blk[name].bias.zero_()
                blk[name].bias.requires_grad_(False)
            self.blocks.append(blk)
        self.head_sn = neuron(cfg.v_th)
        self.head = nn.Linear(d, cfg.n_classes)

    def forward(self, spikes: Tensor) -> Tensor:
        """``spikes [T, B, N, D_in]`` -> logits ``[T, B, C]``."""
        if self._reset is not None:
            self._reset(self)
        x = spikes.transpose(2, 3) if self.channels_first else spikes
        u = self.embed_bn(self.embed(x)) + self.pos_bias
        tok = self.token_dim
        for b in self.blocks:
            s = b["attn_sn"](u)
            q = b["q_sn"](b["q_bn"](b["q"](s)))
            k = b["k_sn"](b["k_bn"](b["k"](s)))
            v = b["v_sn"](b["v_bn"](b["v"](s)))
            kv = b["kv_sn"]((k * v).sum(dim=tok, keepdim=True))
            u = u + b["proj_bn"](b["proj"](q * kv))
            s = b["mlp_sn"](u)
            u = u + b["fc2_bn"](b["fc2"](b["hidden_sn"](b["fc1_bn"](b["fc1"](s)))))
        return self.head(self.head_sn(u).mean(dim=tok))


class TokenBatchNorm(nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` over the last dim of ``[..., C]`` (statistics over all other dims)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _torch_linear(d_in: int, d_out: int, bias: bool) -> nn.Module:
    return nn.Linear(d_in, d_out, bias=bias)


class _PerStep(nn.Module):
    """neuroposter's SDT run one time step at a time through every layer (``train_throughput._per_step_forward``)."""

    def __init__(self, cfg: SDTConfig) -> None:
        super().__init__()
        self.sdt = SpikeDrivenTransformer(cfg)

    def forward(self, spikes: Tensor) -> Tensor:
        return train_throughput._per_step_forward(self.sdt, spikes.to(self.sdt.embed.weight.dtype))


def build_neuroposter(cfg: SDTConfig) -> nn.Module:
    """The project's SDT (time-folded layers, default LIF backend)."""
    return SpikeDrivenTransformer(cfg)


def build_neuroposter_before(cfg: SDTConfig) -> nn.Module:
    """The project's SDT as it ran before issue 16's kernels: the LIF's fused torch form and the dense first layer
    (the reference of the logits check)."""
    from neuroposter.models.lif import set_lif_backend
    from neuroposter.models.sparse import set_sparse_input

    model = SpikeDrivenTransformer(cfg)
    set_lif_backend(model, "fused-torch")
    set_sparse_input(model, "off")
    return model


def build_neuroposter_dense_train(cfg: SDTConfig) -> nn.Module:
    """The project's SDT with the dense embed in training (``sparse_input="inference"``: the GEMM's round-off)."""
    from neuroposter.models.sparse import set_sparse_input

    model = SpikeDrivenTransformer(cfg)
    set_sparse_input(model, "inference")
    return model


def build_neuroposter_per_step(cfg: SDTConfig) -> nn.Module:
    """The project's SDT, every layer stepped over ``T``."""
    return _PerStep(cfg)


class _NorseLIF(nn.Module):
    """Norse's ``LIFBoxCell`` (``dt = 1``, SuperSpike surrogate) stepped over ``T`` from Norse's initial state."""

    def __init__(self, tau: float, v_th: float) -> None:
        super().__init__()
        from norse.torch import LIFBoxCell, LIFBoxParameters

        self.cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / tau), v_leak=torch.as_tensor(0.0),
                                                v_th=torch.as_tensor(v_th), v_reset=torch.as_tensor(0.0)), dt=1.0)

    def forward(self, x: Tensor) -> Tensor:
        state = None
        out = []
        for x_t in x.unbind(0):
            z, state = self.cell(x_t, state)
            out.append(z)
        return torch.stack(out)


def build_norse(cfg: SDTConfig) -> nn.Module:
    """The SDT with Norse's LIF-box neurons, torch layers time-folded."""
    return PeerSDT(cfg, _torch_linear, TokenBatchNorm, lambda th: _NorseLIF(cfg.tau, th))


class _SnnTorchLIF(nn.Module):
    """``snntorch.Leaky`` (reset to zero, default surrogate) stepped over ``T``: ``mem <- beta mem + x`` with
    ``beta = 1 - 1/tau`` and threshold ``tau * v_th`` is ``tau`` times the LIF ``v <- v + (x - v) / tau``."""

    def __init__(self, tau: float, v_th: float) -> None:
        super().__init__()
        import snntorch

        self.lif = snntorch.Leaky(beta=1.0 - 1.0 / tau, threshold=tau * v_th, reset_mechanism="zero")

    def forward(self, x: Tensor) -> Tensor:
        mem = torch.zeros_like(x[0])
        out = []
        for x_t in x.unbind(0):
            spk, mem = self.lif(x_t, mem)
            out.append(spk.to(x.dtype))    # its surrogates return float32 spikes whatever the input (no-op here)
        return torch.stack(out)


def build_snntorch(cfg: SDTConfig) -> nn.Module:
    """The SDT with snnTorch's ``Leaky`` neurons, torch layers time-folded."""
    return PeerSDT(cfg, _torch_linear, TokenBatchNorm, lambda th: _SnnTorchLIF(cfg.tau, th))


def _sj_neuron(cfg: SDTConfig) -> Callable[[float], nn.Module]:
    from spikingjelly.activation_based import neuron

    return lambda th: neuron.LIFNode(tau=cfg.tau, v_threshold=th, v_reset=0.0, decay_input=True,
                                     step_mode="m", backend="torch")


def _sj_reset(model: nn.Module) -> None:
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


class _SJTokenBatchNorm(nn.Module):
    """spikingjelly's multi-step ``layer.BatchNorm1d`` on channels-last tokens: ``[T, B, N, C]`` as the
    ``[T, B*N, C, 1]`` it accepts (a view)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer

        self.bn = layer.BatchNorm1d(c, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        T, B, N, C = x.shape
        return self.bn(x.reshape(T, B * N, C, 1)).reshape(T, B, N, C)


def build_spikingjelly_linear(cfg: SDTConfig) -> nn.Module:
    """The SDT in spikingjelly multi-step mode: ``layer.Linear`` on ``[T, B, N, C]`` tokens, torch LIF backend."""
    from spikingjelly.activation_based import layer

    return PeerSDT(cfg, lambda i, o, b: layer.Linear(i, o, bias=b, step_mode="m"), _SJTokenBatchNorm,
                   _sj_neuron(cfg), reset=_sj_reset)


def build_spikingjelly_conv1d(cfg: SDTConfig) -> nn.Module:
    """The SDT in spikingjelly multi-step mode with the official code's layout: ``[T, B, C, N]`` tokens, 1x1
    ``layer.Conv1d`` and ``layer.BatchNorm1d`` on the folded ``[T*B, C, N]``."""
    from spikingjelly.activation_based import layer

    return PeerSDT(cfg, lambda i, o, b: layer.Conv1d(i, o, kernel_size=1, bias=b, step_mode="m"),
                   lambda c: layer.BatchNorm1d(c, step_mode="m"), _sj_neuron(cfg),
                   channels_first=True, reset=_sj_reset)


@dataclass(frozen=True)
class Row:
    """One line of the table: a label, the peer it needs (None: the project's environment), a builder, the dtype."""

    label: str
    peer: str | None
    build: Callable[[SDTConfig], nn.Module]
    dtype: torch.dtype = torch.float32
    in_ratio: bool = True       # the float64 line is extra: outside the ratios


#: The rows, in table order (name -> :class:`Row`).
ROWS: dict[str, Row] = {
    "neuroposter": Row("neuroposter, time-folded (compiled LIF, event-driven embed; inference: event-driven kernel)",
                       None, build_neuroposter),
    "neuroposter-dense-train": Row("neuroposter, the same with the dense embed in training", None,
                                   build_neuroposter_dense_train),
    "neuroposter-before": Row("neuroposter, torch-form LIF, dense embed (before #16)", None, build_neuroposter_before),
    "neuroposter-per-step": Row("neuroposter, per-step", None, build_neuroposter_per_step),
    "spikingjelly-linear": Row("spikingjelly {v} multi-step, Linear (torch backend)", "spikingjelly",
                               build_spikingjelly_linear),
    "spikingjelly-conv1d": Row("spikingjelly {v}, Conv1d as in the official SDT code", "spikingjelly",
                               build_spikingjelly_conv1d),
    "snntorch": Row("snnTorch {v}", "snntorch", build_snntorch),
    "norse": Row("Norse {v}", "norse", build_norse),
    "neuroposter-f64": Row("neuroposter, time-folded, float64", None, build_neuroposter, torch.float64, False),
}
#: neuroposter's rows (the rest are peers).
OWN_ROWS = ("neuroposter", "neuroposter-dense-train", "neuroposter-before", "neuroposter-per-step", "neuroposter-f64")
#: neuroposter's float32 rows whose inference logits (after the same training steps from the same initialisation) are
#: compared with ``neuroposter-before``'s: the dense-training row trains bit-identically and must match to the float32
#: round-off of the inference kernel's other summation order (its spikes, hence logits, are usually bit-identical); the
#: default row trains its embed with another round-off, so only its distance is shown (its first step is asserted:
#: :data:`FIRST_STEP_CHECKED`). (The per-step row normalises each step's batch on its own in training: another network,
#: not compared.)
LOGIT_CHECKED = ("neuroposter", "neuroposter-dense-train")
#: Rows whose first training step (logits and the embed's weight gradient, from the same initialisation) is compared
#: with ``neuroposter-before``'s, and the tolerance (float32: the sparse embed's sums against MKL's).
FIRST_STEP_CHECKED = ("neuroposter", "neuroposter-dense-train")
FIRST_STEP_TOL = {"rtol": 1e-4, "atol": 1e-5}


def build_row(name: str, cfg: SDTConfig) -> nn.Module:
    """The network of row ``name`` in its dtype. Raises ``KeyError`` listing the valid names."""
    if name not in ROWS:
        raise KeyError(f"unknown row {name!r}; valid: {', '.join(ROWS)}")
    return ROWS[name].build(cfg).to(ROWS[name].dtype)


# ------------------------------------------------------------------------------------------------------ measuring
def _version(peer: str | None) -> tuple[str, str]:
    if peer is None:
        return "", ""
    import importlib
    from importlib import metadata

    mod = importlib.import_module(peer)
    try:
        ver = metadata.version(peer)
    except metadata.PackageNotFoundError:
        ver = str(getattr(mod, "__version__", "?"))
    return ver, str(Path(mod.__file__).parent)


def measure(name: str, cfg: SDTConfig, T: int, batch: int, threads: int, warmup: int, steps: int,
            device: str = "cpu") -> dict:
    """Samples/s of one row, train and inference, plus its sanity facts (run in a fresh process). On ``cuda`` every
    timed step ends with ``torch.cuda.synchronize()`` (the GPU's work is counted, not only its launch)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    row = ROWS[name]
    ver, where = _version(row.peer)
    dev = torch.device(device)
    model = build_row(name, cfg).to(dev).train()
    total, trainable = count_params(model)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, batch, cfg.n_tokens, cfg.d_in, generator=g) < INPUT_DENSITY).to(row.dtype).to(dev)
    y = (torch.rand(batch, cfg.n_classes, generator=g) < 0.2).to(row.dtype).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    shape: list[int] = []

    def train_step() -> None:
        out = model(x)
        shape[:] = list(out.shape)
        loss = loss_fn(out.mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn: Callable[[], None]) -> tuple[float, float]:
        for _ in range(warmup):
            fn()
        sync()
        times, cpu = [], []
        for _ in range(steps):                # each step on its own: the median drops bursts of other load
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return batch / statistics.median(times), batch / statistics.median(cpu)

    first = None
    if name in FIRST_STEP_CHECKED + ("neuroposter-before",):   # one forward/backward of the fresh model, no update
        out = model(x)
        loss_fn(out.mean(0), y).backward()
        first = {"logits": out.detach().double().flatten().tolist(),
                 "embed_grad": model.embed.weight.grad.double().flatten().tolist()}
        opt.zero_grad(set_to_none=True)
    train, train_cpu = timed(train_step)
    model.eval()
    with torch.no_grad():
        out = model(x)
        finite = bool(torch.isfinite(out).all())
        infer, infer_cpu = timed(lambda: model(x))
    return {"row": name, "train": train, "infer": infer, "train_cpu": train_cpu, "infer_cpu": infer_cpu,
            # inference logits after the same training steps: compared across neuroposter's rows
            "logits": out.double().cpu().flatten().tolist() if name in LOGIT_CHECKED + ("neuroposter-before",) else None,
            "first_step": first,
            "params": total, "trainable": trainable,
            "shape": shape, "infer_shape": list(out.shape), "finite": finite, "threads": torch.get_num_threads(),
            "version": ver, "where": where, "device": _device_name(dev)}


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


# ------------------------------------------------------------------------------------------------------ peers dir
def _installed(peers_dir: Path, dist: str, version: str) -> bool:
    return (peers_dir / f"{dist}-{version}.dist-info").is_dir()


def ensure_peers(peers_dir: Path, install: bool, needed: set[str] | None = None) -> None:
    """Installs the missing :data:`PEER_VERSIONS` (those in ``needed``; None: all) into ``peers_dir``
    (``pip install --target --no-deps``), or with ``install=False`` exits with what to do."""
    missing = [f"{d}=={v}" for d, v in PEER_VERSIONS.items()
               if (needed is None or d in needed) and not _installed(peers_dir, d, v)]
    if not missing:
        return
    if not install:
        raise SystemExit(f"error: {peers_dir} lacks {', '.join(missing)}; run without --no-install to install them "
                         f"there, or pass --peers-dir with a folder that has them")
    print(f"installing {', '.join(missing)} into {peers_dir} (throw-away; not the project's environment)",
          flush=True)
    peers_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--upgrade", "--target", str(peers_dir), *missing], check=True)


def _worker_env(peers_dir: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    root = str(_HERE.parent)               # this checkout's neuroposter, then the peers, then what was there
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, str(peers_dir), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


def _run_worker(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--device", args.device]
    if args.T is not None:
        cmd += ["--T", str(args.T)]
    if args.batch is not None:
        cmd += ["--batch", str(args.batch)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"error: row {name} failed:\n{p.stderr.strip()[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------ reporting
def _fmt(xs: list[float]) -> str:
    med = statistics.median(xs)
    return f"{med:8.1f} ({min(xs):.0f}-{max(xs):.0f})"


def _logit_check(results: dict[str, list[dict]]) -> list[str]:
    """Lines comparing neuroposter's rows' inference logits with ``neuroposter-before``'s (see LOGIT_CHECKED)."""
    if "neuroposter-before" not in results:
        return []
    ref = torch.tensor(results["neuroposter-before"][0]["logits"])
    lines = []
    for n in LOGIT_CHECKED:
        if n not in results:
            continue
        got = torch.tensor(results[n][0]["logits"])
        diff = float((got - ref).abs().max())
        same = bool(torch.equal(got, ref))
        close = bool(torch.allclose(got, ref, rtol=1e-5, atol=1e-5))
        lines.append(f"logits check {n} vs neuroposter-before (after the same training steps): "
                     f"{'bit-identical' if same else f'max |diff| {diff:.2e}'}"
                     + ("" if same else (", allclose (rtol=atol=1e-5)" if close else ", NOT allclose")))
        if n != "neuroposter" and not close:
            lines.append(f"LOGITS CHECK FAILED: {n}")
    ref1 = results["neuroposter-before"][0].get("first_step")
    for n in FIRST_STEP_CHECKED:
        got1 = results[n][0].get("first_step") if n in results else None
        if not (ref1 and got1):
            continue
        parts, ok = [], True
        for key in ("logits", "embed_grad"):
            a, b = torch.tensor(got1[key]), torch.tensor(ref1[key])
            ok &= bool(torch.allclose(a, b, **FIRST_STEP_TOL))
            parts.append(f"{key} " + ("bit-identical" if torch.equal(a, b) else
                                      f"max |diff| {float((a - b).abs().max()):.2e} of max |value| "
                                      f"{float(b.abs().max()):.2e}"))
        lines.append(f"first training step {n} vs neuroposter-before: " + ", ".join(parts)
                     + (f" (allclose, rtol={FIRST_STEP_TOL['rtol']:g} atol={FIRST_STEP_TOL['atol']:g})" if ok
                        else ", NOT allclose"))
        if not ok:
            lines.append(f"LOGITS CHECK FAILED: {n} (first training step)")
    spread = float(ref.reshape(-1, 1).std()) if ref.numel() else 0.0
    lines.append(f"(reference logits' spread {spread:.3g}: the network is not constant)")
    return lines


def report(results: dict[str, list[dict]], cfg: SDTConfig, T: int, batch: int, args: argparse.Namespace) -> str:
    """The table with ratios and the machine, as printed."""
    first = {n: rs[0] for n, rs in results.items()}
    cols = ("train", "infer", "train_cpu", "infer_cpu")
    med = {n: {k: statistics.median(r[k] for r in rs) for k in cols} for n, rs in results.items()}
    lines = [f"SDT, T={T} batch={batch} tokens={cfg.n_tokens}x{cfg.d_in} width={cfg.d_model} depth={cfg.depth} "
             f"mlp={cfg.mlp_hidden} classes={cfg.n_classes}; parameters {first['neuroposter']['params']} "
             f"({first['neuroposter']['trainable']} trainable) in every row; float32 unless marked; input spike "
             f"density {INPUT_DENSITY}",
             f"samples/s: median of {args.repeats} interleaved repeats (min-max), each a fresh process timing "
             f"{args.steps} steps one by one after {args.warmup} warm-up steps (batch / median step time); "
             f"train = forward + backward + AdamW, inference = eval() + no_grad forward; 'cpu' columns: per CPU "
             f"second of the process (all its threads), less sensitive to other load on a shared machine", ""]
    w = max(len(_label(n, first[n])) for n in results) + 2
    lines.append(f"| {'implementation':<{w}} | {'train samples/s':>22} | {'inference samples/s':>22} | "
                 f"{'train /cpu-s':>12} | {'infer /cpu-s':>12} |")
    lines.append(f"|{'-' * (w + 2)}|{'-' * 23}:|{'-' * 23}:|{'-' * 13}:|{'-' * 13}:|")
    for n, rs in results.items():
        lines.append(f"| {_label(n, first[n]):<{w}} | {_fmt([r['train'] for r in rs]):>22} | "
                     f"{_fmt([r['infer'] for r in rs]):>22} | {med[n]['train_cpu']:12.1f} | "
                     f"{med[n]['infer_cpu']:12.1f} |")
    peers = [n for n in results if n not in OWN_ROWS and ROWS[n].in_ratio]
    lines.append("")
    if peers:
        for own in ("neuroposter", "neuroposter-dense-train", "neuroposter-before", "neuroposter-per-step"):
            if own not in med:
                continue
            for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
                parts = []
                for col, title in (("train", "train"), ("infer", "inference")):
                    best = max(peers, key=lambda n: med[n][col + suffix])
                    parts.append(f"{title} {med[own][col + suffix] / med[best][col + suffix]:.2f}x "
                                 f"(fastest peer: {best})")
                lines.append(f"ratio {own} / fastest peer ({clock}-clock medians): " + "; ".join(parts))
        best = {n: {k: max(r[k] for r in rs) for k in cols} for n, rs in results.items()}
        parts = [f"{title} {best['neuroposter'][col] / max(best[n][col] for n in peers):.2f}x"
                 for col, title in (("train", "train"), ("infer", "inference"))] if "neuroposter" in best else []
        if parts:
            lines.append("ratio neuroposter / fastest peer on each row's best repeat (least disturbed by other load): "
                         + "; ".join(parts))
    if "neuroposter-before" in med and "neuroposter" in med:
        lines.append("neuroposter / neuroposter-before (this issue's kernels), wall | cpu: train "
                     f"{med['neuroposter']['train'] / med['neuroposter-before']['train']:.2f}x | "
                     f"{med['neuroposter']['train_cpu'] / med['neuroposter-before']['train_cpu']:.2f}x, inference "
                     f"{med['neuroposter']['infer'] / med['neuroposter-before']['infer']:.2f}x | "
                     f"{med['neuroposter']['infer_cpu'] / med['neuroposter-before']['infer_cpu']:.2f}x")
    if "neuroposter-f64" in med and "neuroposter" in med:
        lines.append(f"float64 / float32 step time, neuroposter time-folded: train "
                     f"{med['neuroposter']['train'] / med['neuroposter-f64']['train']:.2f}x, inference "
                     f"{med['neuroposter']['infer'] / med['neuroposter-f64']['infer']:.2f}x")
    lines += _logit_check(results)
    threads = sorted({r["threads"] for rs in results.values() for r in rs})
    by_peer = {ROWS[n].peer: first[n] for n in results if ROWS[n].peer}
    vers = ", ".join(f"{peer} {r['version']} ({r['where']})" for peer, r in by_peer.items()) or "none"
    lines += [f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs; python {platform.python_version()}, torch {torch.__version__}; "
              f"threads per process: {', '.join(map(str, threads))}; device: {next(iter(first.values()))['device']}",
              f"peers: {vers}"]
    return "\n".join(lines)


def _label(name: str, r: dict) -> str:
    return ROWS[name].label.format(v=r["version"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads in every process (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per row; the median is shown")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed run")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (train and inference each)")
    p.add_argument("--T", type=int, default=None, help="time steps (default: train_throughput.py's)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: train_throughput.py's)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of: {', '.join(ROWS)}")
    p.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR,
                   help=f"throw-away folder for the peers (default {DEFAULT_PEERS_DIR})")
    p.add_argument("--no-install", action="store_true", help="fail if --peers-dir lacks a peer instead of installing")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where every row runs (default cpu; cuda: the first GPU, each step synchronised)")
    p.add_argument("--worker", choices=list(ROWS), default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); run it on a "
                "machine with a GPU, or leave --device at cpu")
    over = {k: v for k, v in (("T", a.T), ("batch", a.batch)) if v is not None}
    cfg, T, batch = benchmark_config(**over)
    if a.worker:
        print(json.dumps(measure(a.worker, cfg, T, batch, a.threads, a.warmup, a.steps, a.device)))
        return 0
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        p.error(f"unknown row(s) {', '.join(bad)}; valid: {', '.join(ROWS)}")
    peers_dir = a.peers_dir.expanduser().resolve()
    ensure_peers(peers_dir, install=not a.no_install, needed={ROWS[r].peer for r in rows if ROWS[r].peer})
    env = _worker_env(peers_dir, a.threads)
    results: dict[str, list[dict]] = {r: [] for r in rows}
    from neuroposter._progress import progress

    with progress(total=a.repeats * len(rows), desc="peer benchmark", unit="run") as bar:
        for _ in range(a.repeats):                      # interleaved: load changes hit every row alike
            for r in rows:
                results[r].append(_run_worker(r, a, env))
                bar.update(1)
    # sanity: every network ran, has neuroposter's parameter count and returns [T, B, classes]
    want = [T, batch, cfg.n_classes]
    for r, rs in results.items():
        for res in rs:
            assert res["shape"] == want and res["infer_shape"] == want, f"{r}: output {res['shape']}, want {want}"
            assert res["finite"], f"{r}: non-finite outputs"
    counts = {r: (rs[0]["params"], rs[0]["trainable"]) for r, rs in results.items()}
    assert len(set(counts.values())) == 1, f"parameter counts differ: {counts}"
    text = report(results, cfg, T, batch, a)
    print(text)
    if "LOGITS CHECK FAILED" in text:
        raise SystemExit("error: a neuroposter row's inference logits differ from neuroposter-before's (see above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
