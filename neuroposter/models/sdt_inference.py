"""The Spike-Driven Transformer's inference as one event-driven CPU kernel (numba): every synapse a gather-and-add.

:class:`~neuroposter.models.sdt.SpikeDrivenTransformer` in inference (``eval()``, no gradient) runs a dozen dense
GEMMs, BatchNorms and LIF passes, each over the whole ``[T * B * N, d]`` batch and each writing a fresh tensor: the
products pay for every zero of inputs that are spikes (a few to tens of per cent are ones), and every intermediate
goes through memory (and, for the larger ones, through page faults of fresh allocations). Here the whole network
runs per sample, in the order its equations allow, with every intermediate in a few kilobytes of scratch:

* the embed's input (token spikes) and every hidden layer's input are spikes, so each product is the sum of the
  weight rows of the active inputs (:mod:`neuroposter.models.sparse`'s gather-and-add: active inputs compacted
  branch-free, their rows added in increasing index);
* BatchNorm in ``eval()`` is the per-channel affine ``y * alpha + beta`` with ``alpha = weight / sqrt(var + eps)``,
  ``beta = bias - mean * alpha`` (torch's own CPU formulation), applied to each product as it is made;
* every LIF (Norse's ``v~ = v + c (x - v)``, strict ``v~ - v_th > 0``, hard reset to 0, ``v_0 = 0``) runs its
  membrane over ``T`` beside the product that feeds it: a token's membranes live in scratch for its ``T`` steps.
  Only SDSA's KV neuron needs all tokens of a step (its input is ``sum_n K * V``), so a block runs in three passes
  over a sample's tokens: Q/K/V spikes and the KV counts; the KV neuron; the masked projection and the MLP;
* the read-out's spikes are returned as counts over tokens ``[T, B, d]``; the model divides them by ``N`` (what
  ``mean`` computes: sum, then divide) and applies its head in torch.

Samples run in parallel (``prange``; one thread per sample, so the order of every sum is fixed and the result does
not depend on the thread count). Exactness: the KV counts, the AND masks, the LIF updates and the read-out are the
same floating-point operations as the torch path; the products sum in another order than MKL's GEMM (as the sparse
embed already does) and the BatchNorm's affine is applied to them directly, so currents differ from the torch path's
by float round-off (relative ~1e-7 in float32, ~1e-16 in float64) and a membrane within that of its threshold can
fire on one path and not the other. ``tests/models/test_sdt.py`` compares the kernel with the plain-torch SDT written
there from the equations: bit for bit on weights where every sum is exact (ties included), and with the model's torch
path on a demo-sized network (same spikes, logits ``allclose``); the demo's metrics and report numbers did not change.
The spike counts of every LIF are returned too, so firing rates (``firing_rate``, ``spike_count``) are those of the
torch path.

Where: :func:`applies` decides (CPU, float32/float64 weights, eval-mode BatchNorms with running statistics, every
LIF on the compiled ``fused`` backend without ``record_spikes``, plain Linear layers without hooks or replaced
forwards, no gradient needed, not tracing/exporting); :meth:`SpikeDrivenTransformer.forward` uses it when its
``sparse_input`` mode is not ``"off"`` (its subclasses' stems, the pixel SDT's and the spiking front end's, run in
torch before it). The weights are packed for the kernel once per state of the model's tensors. Measured on the
benchmark shapes (``benchmarks/peers.py``, 2 threads, the README's run): 2.06x the inference samples/s of the
torch layers before issue 16 (dense embed, torch-form LIF), 2.24x spikingjelly's. Compiled on first use and cached on disk (``cache=True``) next to this file; the set-up compiles
it (``neuroposter._warm``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor, nn

from neuroposter.models.lif import LIF
from neuroposter.models.lif_kernel import _consts, lif_update, match_torch_threads
from neuroposter.models.sparse import _np, _plain, _tracing, gather_row

__all__ = ["applies", "sdt_inference", "LIFS_PER_BLOCK"]

#: LIF layers per SDT block, in the kernel's count order: SDSA's input, Q, K, V, KV; the MLP's input, hidden.
LIFS_PER_BLOCK = 7


@njit(cache=True, nogil=True)
def _lif_row(u, v, c, th, zero, idx):  # noqa: ANN001 - numba kernel
    """One LIF step of a row of neurons: ``u`` the input currents, ``v`` the membranes (updated); the indices of
    the neurons that fire are written to ``idx``; returns how many fired."""
    n = 0
    for o in range(u.shape[0]):
        vd, f = lif_update(v[o], u[o], c, th, zero)
        idx[n] = o
        n += f
        v[o] = zero if f else vd
    return n


@njit(cache=True, nogil=True)
def _gather(w, idx, n, acc, zero):  # noqa: ANN001 - numba kernel
    """``acc = sum_{p < n} w[idx[p]]`` in increasing ``p``: a spike input's product with ``w [in, out]``."""
    for o in range(acc.shape[0]):
        acc[o] = zero
    for p in range(n):
        wk = w[idx[p]]
        for o in range(acc.shape[0]):
            acc[o] += wk[o]


@njit(parallel=True, cache=True, nogil=True)
def _forward(x, u_in, from_spikes, we_t, emb_a, emb_b, pos,  # noqa: ANN001, PLR0913 - numba kernel
             wqkv_t, qkv_a, qkv_b, wp_t, p_bias, p_a, p_b,
             w1_t, b1, a1, bb1, w2_t, b2, a2, bb2, lif_c, lif_th, head, counts):
    """The SDT on ``x [T, B, N, D]`` spikes (``from_spikes``) or on the embedded membranes ``u_in [T, B, N, d]``.

    Weights are ``[in, out]`` (``*_t``), stacked over blocks; ``*_a``/``*_b`` the eval BatchNorms' affine terms;
    ``lif_c``/``lif_th`` the LIFs' ``1/tau`` and thresholds in count order (``LIFS_PER_BLOCK`` per block, then the
    read-out's). Writes the read-out's spike counts over tokens ``head [T, B, d]`` and every LIF's spike count per
    sample ``counts [B, n_lif]``.
    """
    T, B, N = head.shape[0], head.shape[1], pos.shape[0]
    L, d, d3 = wqkv_t.shape[0], wqkv_t.shape[1], wqkv_t.shape[2]
    h = w1_t.shape[2]
    zero = lif_c[0] * 0
    for b in prange(B):
        u = np.empty((T, N, d), lif_c.dtype)
        vin = np.empty(d, lif_c.dtype)
        vq = np.empty(d3, lif_c.dtype)
        vh = np.empty(h, lif_c.dtype)
        vkv = np.empty(d, lif_c.dtype)
        acc = np.empty(max(d3, h), lif_c.dtype)
        acc2 = np.empty(d, lif_c.dtype)
        idx = np.empty(max(d, h, x.shape[3]), np.int32)
        idx2 = np.empty(max(d, h), np.int32)
        qkv = np.empty((T, N, d3), np.uint8)
        kvc = np.empty((T, d), lif_c.dtype)
        kv = np.empty((T, d), np.uint8)
        cnt = np.zeros(counts.shape[1], np.int64)
        # embed: U = BN(S W_e) + P
        if from_spikes:
            for t in range(T):
                for n in range(N):
                    gather_row(x[t, b, n], we_t, idx, acc[:d])
                    for o in range(d):
                        u[t, n, o] = (acc[o] * emb_a[o] + emb_b[o]) + pos[n, o]
        else:
            for t in range(T):
                for n in range(N):
                    for o in range(d):
                        u[t, n, o] = u_in[t, b, n, o]
        for blk in range(L):
            j0 = blk * LIFS_PER_BLOCK
            # SDSA, pass 1: S = SN(U); Q, K, V = SN(BN(S W)); KV counts sum_n K * V
            for t in range(T):
                for o in range(d):
                    kvc[t, o] = zero
            for n in range(N):
                for o in range(d):
                    vin[o] = zero
                for o in range(d3):
                    vq[o] = zero
                for t in range(T):
                    m = _lif_row(u[t, n], vin, lif_c[j0], lif_th[j0], zero, idx)
                    cnt[j0] += m
                    _gather(wqkv_t[blk], idx, m, acc[:d3], zero)
                    for g in range(3):
                        c, th = lif_c[j0 + 1 + g], lif_th[j0 + 1 + g]
                        fired = 0
                        for o in range(g * d, (g + 1) * d):
                            vd, f = lif_update(vq[o], acc[o] * qkv_a[blk, o] + qkv_b[blk, o], c, th, zero)
                            qkv[t, n, o] = f
                            fired += f
                            vq[o] = zero if f else vd
                        cnt[j0 + 1 + g] += fired
                    for o in range(d):
                        kvc[t, o] += qkv[t, n, d + o] * qkv[t, n, 2 * d + o]
            # pass 2: KV = SN_kv(counts), per channel over T
            c, th = lif_c[j0 + 4], lif_th[j0 + 4]
            for o in range(d):
                vkv[o] = zero
            for t in range(T):
                for o in range(d):
                    vd, f = lif_update(vkv[o], kvc[t, o], c, th, zero)
                    kv[t, o] = f
                    cnt[j0 + 4] += f
                    vkv[o] = zero if f else vd
            # pass 3: U += BN((Q * KV) W_o + b_o); then U += BN(SN(BN(SN(U) W_1 + b_1)) W_2 + b_2)
            for n in range(N):
                for o in range(d):
                    vin[o] = zero
                for o in range(h):
                    vh[o] = zero
                for t in range(T):
                    m = 0
                    for o in range(d):
                        idx[m] = o
                        m += qkv[t, n, o] & kv[t, o]
                    _gather(wp_t[blk], idx, m, acc2, zero)
                    for o in range(d):
                        u[t, n, o] = u[t, n, o] + ((acc2[o] + p_bias[blk, o]) * p_a[blk, o] + p_b[blk, o])
                    m = _lif_row(u[t, n], vin, lif_c[j0 + 5], lif_th[j0 + 5], zero, idx)
                    cnt[j0 + 5] += m
                    _gather(w1_t[blk], idx, m, acc[:h], zero)
                    for o in range(h):
                        acc[o] = (acc[o] + b1[blk, o]) * a1[blk, o] + bb1[blk, o]
                    m2 = _lif_row(acc[:h], vh, lif_c[j0 + 6], lif_th[j0 + 6], zero, idx2)
                    cnt[j0 + 6] += m2
                    _gather(w2_t[blk], idx2, m2, acc2, zero)
                    for o in range(d):
                        u[t, n, o] = u[t, n, o] + ((acc2[o] + b2[blk, o]) * a2[blk, o] + bb2[blk, o])
        # read-out: spike counts of SN(U) over tokens
        jh = L * LIFS_PER_BLOCK
        for t in range(T):
            for o in range(d):
                head[t, b, o] = zero
        for n in range(N):
            for o in range(d):
                vin[o] = zero
            for t in range(T):
                m = _lif_row(u[t, n], vin, lif_c[jh], lif_th[jh], zero, idx)
                cnt[jh] += m
                for p in range(m):
                    head[t, b, idx[p]] += 1
        for j in range(counts.shape[1]):
            counts[b, j] = cnt[j]


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, beta)`` of an eval BatchNorm as torch's CPU kernel forms them, in its dtype:
    ``invstd = 1 / sqrt(var + eps)``, ``alpha = invstd * weight``, ``beta = bias - mean * alpha``."""
    var = _np(bn.running_var)
    invstd = 1 / np.sqrt(var + var.dtype.type(bn.eps))
    alpha = invstd * _np(bn.weight) if bn.weight is not None else invstd
    beta = (_np(bn.bias) if bn.bias is not None else np.zeros_like(alpha)) - _np(bn.running_mean) * alpha
    return alpha.astype(var.dtype), beta.astype(var.dtype)


def _lifs(model: nn.Module) -> list[LIF]:
    """The model's LIFs in the kernel's count order."""
    out: list[LIF] = []
    for blk in model.blocks:
        a, m = blk.attn, blk.mlp
        out += [a.sn_in, a.q_sn, a.k_sn, a.v_sn, a.kv_sn, m.sn_in, m.sn_hidden]
    return out + [model.head_sn]


def _parts(model: nn.Module) -> list[nn.Module]:
    """The modules the kernel computes (a subclass's own front end, e.g. the pixel SDT's stem, runs before it)."""
    return [model.embed, model.embed_bn, *model.blocks, model.head_sn, model.head]


def _modules(model: nn.Module) -> list[nn.Module]:
    """Every module the kernel computes, each once."""
    return [m for part in _parts(model) for m in part.modules()]


def _tensors(model: nn.Module, mods: list[nn.Module] | None = None, buffers: bool = True) -> list[Tensor]:
    """The parameters (and buffers) the kernel reads (read from each module's own dicts: no recursive walks)."""
    out = [model.pos_bias]
    for m in _modules(model) if mods is None else mods:
        out += [t for t in m._parameters.values() if t is not None]
        if buffers:
            out += [t for t in m._buffers.values() if t is not None]
    return out


def applies(model: nn.Module, x: Tensor) -> bool:
    """Whether :func:`sdt_inference` computes ``model(x)``'s SDT part (module docstring): a CPU model in float32 or
    float64 in inference (no gradient needed, BatchNorms in eval with running statistics), every LIF on the compiled
    ``fused`` backend (all backends compute the same forward) and not recording its spikes, plain Linear layers and
    BatchNorms, no hooks on them (nor global module hooks) and no replaced forward (quantisation-aware training), not
    tracing or exporting. Hooks on the model itself run as usual (they see its input and output)."""
    from neuroposter.models.sdt import SDSA, SDTBlock, SpikingMLP   # sdt imports this module

    w = model.embed.weight
    if not (x.device.type == "cpu" and w.device.type == "cpu" and w.dtype in (torch.float32, torch.float64)
            and x.dtype in (w.dtype, torch.bool, torch.uint8) and x.numel() > 0):
        return False
    mods = _modules(model)
    tensors = _tensors(model, mods, buffers=False)
    if any(t.dtype != w.dtype or t.device.type != "cpu" for t in tensors):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in tensors)):
        return False
    glob = nn.modules.module
    if _tracing() or glob._global_forward_hooks or glob._global_forward_pre_hooks:
        return False
    if not all(type(b) is SDTBlock and type(b.attn) is SDSA and type(b.mlp) is SpikingMLP
               and b.attn.q.bias is None and b.attn.k.bias is None and b.attn.v.bias is None for b in model.blocks):
        return False
    for m in mods:
        if m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__:   # hooked or replaced (QAT)
            return False
        if isinstance(m, nn.BatchNorm1d):
            if m.training or m.running_mean is None or type(m) is not nn.BatchNorm1d:
                return False
        elif isinstance(m, LIF):
            if type(m) is not LIF or m.backend != "fused" or m.record_spikes or m.cell.dt != 1.0:
                return False
        elif isinstance(m, nn.Linear) and not _plain(m):
            return False
    return True


def _fingerprint(model: nn.Module) -> tuple:
    """What the packed weights depend on: every parameter's and buffer's storage and in-place version (an optimiser
    step, ``load_state_dict`` or ``copy_`` moves the version; ``.to()`` makes new storage) and the LIFs' constants."""
    return (tuple((t.data_ptr(), t._version, t.dtype) for t in _tensors(model))
            + tuple((id(m.cell.p), m.cell.dt) for m in _lifs(model)))


def _pack(model: nn.Module) -> tuple:
    """The kernel's weight arguments (module docstring), computed once per state of the model's tensors."""
    key = _fingerprint(model)
    cached = model.__dict__.get("_sdt_inference_pack")
    if cached is not None and cached[0] == key:
        return cached[1]
    dt = model.embed.weight.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    blocks = list(model.blocks)
    lifs = _lifs(model)

    def stack(arrays: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(arrays).astype(npdt, copy=False))

    def bias(layer: nn.Linear) -> np.ndarray:
        return _np(layer.bias) if layer.bias is not None else np.zeros(layer.out_features, npdt)

    def affine(bns: list[nn.BatchNorm1d]) -> tuple[np.ndarray, np.ndarray]:
        ab = [_bn_affine(bn) for bn in bns]
        return stack([a for a, _ in ab]), stack([b for _, b in ab])

    qkv = [[_bn_affine(bn) for bn in (b.attn.q_bn, b.attn.k_bn, b.attn.v_bn)] for b in blocks]
    emb_a, emb_b = _bn_affine(model.embed_bn)
    consts = [_consts(m.cell.p.tau_mem_inv * m.cell.dt, m.cell.p.v_th, dt) for m in lifs]   # [c, v_th, 0, 1]
    packed = (
        _np(model.embed.weight.t()), emb_a, emb_b, _np(model.pos_bias),
        stack([torch.cat([b.attn.q.weight, b.attn.k.weight, b.attn.v.weight]).detach().t().numpy() for b in blocks]),
        stack([np.concatenate([a for a, _ in q]) for q in qkv]), stack([np.concatenate([b_ for _, b_ in q]) for q in qkv]),
        stack([_np(b.attn.proj.weight.t()) for b in blocks]), stack([bias(b.attn.proj) for b in blocks]),
        *affine([b.attn.proj_bn for b in blocks]),
        stack([_np(b.mlp.fc1.weight.t()) for b in blocks]), stack([bias(b.mlp.fc1) for b in blocks]),
        *affine([b.mlp.fc1_bn for b in blocks]),
        stack([_np(b.mlp.fc2.weight.t()) for b in blocks]), stack([bias(b.mlp.fc2) for b in blocks]),
        *affine([b.mlp.fc2_bn for b in blocks]),
        np.array([k[0] for k in consts], dtype=npdt), np.array([k[1] for k in consts], dtype=npdt),
    )
    model.__dict__["_sdt_inference_pack"] = (key, packed)     # a plain attribute: not state, not a sub-module
    return packed


def sdt_inference(model: nn.Module, x: Tensor | None = None, u0: Tensor | None = None) -> Tensor:
    """The SDT's logits ``[T, B, C]`` from the kernel: from spikes ``x [T, B, N, D]`` (the embed summed over their
    events) or from the embedded membranes ``u0 [T, B, N, d]`` (``BN(S W_e) + P``, e.g. where the spikes are too
    dense for the gather to pay). Sets every LIF's spike count (``firing_rate``, ``spike_count``) as its torch
    forward would. Check :func:`applies` first. The weights are packed for the kernel once per state of the model's
    tensors (re-packed after any change to a parameter or buffer)."""
    if (x is None) == (u0 is None):
        raise ValueError("sdt_inference needs exactly one of x (spikes) and u0 (embedded membranes)")
    cfg = model.cfg
    dt = model.embed.weight.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    we_t, emb_a, emb_b, pos, *rest = _pack(model)
    lifs = _lifs(model)
    if x is not None:
        T, B, N, _ = x.shape
        xs = _np(x.view(torch.uint8) if x.dtype == torch.bool else x)
        u_in = np.empty((1, 1, 1, 1), npdt)
    else:
        T, B, N, _ = u0.shape
        xs = np.empty((1, 1, 1, 1), npdt)
        u_in = _np(u0)
    head = np.empty((T, B, cfg.d_model), npdt)
    counts = np.empty((B, len(lifs)), np.float64)
    match_torch_threads()
    _forward(xs, u_in, x is not None, we_t, emb_a, emb_b, pos, *rest, head, counts)
    total = counts.sum(0)
    tok, kv, hidden = T * B * N * cfg.d_model, T * B * cfg.d_model, T * B * N * cfg.mlp_hidden
    numel = [tok, tok, tok, tok, kv, tok, hidden] * cfg.depth + [tok]     # the elements of each LIF's output
    for m, spikes, n in zip(lifs, total, numel):
        m._record_count(torch.tensor(spikes, dtype=dt), n)
    s_mean = torch.from_numpy(head) / N          # what mean over tokens computes: the sum, then divided by N
    return model.head(s_mean)
