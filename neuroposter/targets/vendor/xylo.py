"""Xylo Audio 2 through SynSense's bit-accurate ``xylosim``, beside the project's own integer reference.

Arithmetic of one step (from the source of ``xylosim`` 0.1.3, ``src/v2/cpp/XyloLayer.cpp`` and
``XyloIAFNeuron.cpp``, and confirmed here spike for spike and state for state against ``xylosim.v2.XyloLayer``):

1. input events of step ``t`` (at most 15 per channel) are delivered to the hidden neurons' synaptic states,
   then the hidden spikes of step ``t - 1`` (at most 31 per neuron) to the hidden and to the output neurons;
   each event adds ``w << weight_shift`` (int8 weight, one shift per matrix: input, recurrent, output) with a
   16-bit saturating add, channel by channel in index order;
2. each neuron: ``i -= decay(i, dash_syn)``; ``v += clip(-decay(v, dash_mem) + sum(i) [+ bias])`` (saturating
   at 16 bits); while ``v >= threshold`` (at most 31 spikes, 1 on an output neuron): a spike and
   ``v -= threshold``; ``decay(x, d) = x >> d`` (arithmetic), or ``sign(x)`` when that is 0.

A feed-forward stack of hidden layers therefore runs in the recurrent matrix with one step per layer (as
rockpool's Xylo mapper places it): the output neurons see the input of step ``t`` at step ``t + L`` for ``L``
hidden layers; the run is padded with ``L`` silent steps.

Deployment (:func:`xylo_config`) of a deployed chip graph: nodes with ``metadata["placement"] == "host"``
run on the host (their last neuron's spikes are the chip's input channels); the chip part must be a chain
``Linear/Affine (zero bias) -> CubaLIF with metadata["xylo"] -> ... -> Linear/Affine -> Output``. Each
connection's weights (on a symmetric per-tensor grid, as :func:`neuroposter.ir.quantize.quantize_nbit`
leaves them) become integers ``q = W / k`` with ``k = max|W| / qmax``; the layer's neurons then work in units of
``k / 2**shift`` (threshold and bias rounded to integers there), the shift of each matrix chosen as large as
keeps every threshold of its layers at most ``2**12`` (membrane headroom of 8 thresholds). The Affine of the
output becomes Xylo's output neurons, set up as read-out filters (``dash_syn = 1``, ``dash_mem = 0``,
threshold 32767): ``v_t = i_t`` with ``i_t = (i_{t-1} + I_t) / 2``, so ``sum_t v_t + i_T = sum_t I_t`` up to
rounding, and the logits are ``(sum_t v_t + i_T) / T * k_out + b_out`` -- the graph's mean output.
Aliases and the second synaptic state are not used (one synapse per neuron).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from neuroposter.ir.graph import Graph, flatten, host_paths
from neuroposter.models.xylo_neuron import MAX_SPIKES_HIDDEN, MAX_SPIKES_OUT
from neuroposter.targets.vendor import VendorError

__all__ = ["XyloConfig", "xylo_config", "chip_input", "simulate_xylo_int", "run_xylosim", "compare", "check",
           "deployed_logits",
           "MAX_INPUT_EVENTS", "XYLOSIM_VERSION"]

#: input events per channel and step at most (xylosim ``MAX_NUM_INP_SPIKES``).
MAX_INPUT_EVENTS = 15
#: the xylosim release whose arithmetic the integer reference implements.
XYLOSIM_VERSION = "0.1.3"
_I16_MIN, _I16_MAX = -(1 << 15), (1 << 15) - 1
_MAX_SHIFT = 8  # int8 << 8 still fits the int16 synaptic state exactly
_THRESHOLD_TARGET = 1 << 12  # largest threshold the shift choice aims at (membrane headroom of 8 thresholds)
_DASH_OUT_SYN, _DASH_OUT_MEM = 1, 0  # read-out filter of the output neurons (see the module docstring)


@dataclass
class XyloConfig:
    """A network in Xylo's terms (integer arrays, as ``xylosim.v2.XyloLayer`` takes them).

    Attributes:
        w_in: input weights ``[n_in, n_hidden]`` (int8 values).
        w_rec: recurrent weights ``[n_hidden, n_hidden]`` (pre, post).
        w_out: read-out weights ``[n_hidden, n_out]``.
        threshold: hidden thresholds ``[n_hidden]`` (int16, >= 1).
        threshold_out: output thresholds ``[n_out]``.
        bias: hidden membrane biases ``[n_hidden]``; bias_out: output biases ``[n_out]``.
        dash_syn, dash_mem: hidden decays ``[n_hidden]``; dash_syn_out, dash_mem_out: output decays ``[n_out]``.
        weight_shift_in, weight_shift_rec, weight_shift_out: left shifts of the three matrices.
        layers: per hidden layer, ``(graph path, first index, end index)`` in the hidden population.
        readout_scale: float units per integer unit of the output neurons (``k_out / 2**weight_shift_out``).
        readout_bias: the output Affine's bias (float, added on the host) ``[n_out]``.
        host_output: the path of the host node whose spikes feed the chip (None: the graph's Input).
        notes: what the deployment rounded (threshold errors) and decided (shifts).
    """

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray
    dash_syn: np.ndarray
    dash_mem: np.ndarray
    dash_syn_out: np.ndarray
    dash_mem_out: np.ndarray
    weight_shift_in: int
    weight_shift_rec: int
    weight_shift_out: int
    layers: list[tuple[str, int, int]]
    readout_scale: float
    readout_bias: np.ndarray
    host_output: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def latency(self) -> int:
        """Steps from an input event to the output neurons (one per hidden layer)."""
        return len(self.layers)

    @property
    def has_bias(self) -> bool:
        """Whether any neuron has a bias (xylosim's global ``has_bias`` flag)."""
        return bool(np.any(self.bias != 0) or np.any(self.bias_out != 0))

    def summary(self) -> dict[str, Any]:
        """Sizes, shifts and rounding notes as plain data."""
        return {"inputs": int(self.w_in.shape[0]), "hidden": int(self.w_rec.shape[0]), "outputs": int(self.w_out.shape[1]),
                "weight_shift": {"input": self.weight_shift_in, "recurrent": self.weight_shift_rec,
                                 "output": self.weight_shift_out},
                "layers": [{"path": p, "neurons": b - a} for p, a, b in self.layers], "latency_steps": self.latency,
                "synapses": int(np.count_nonzero(self.w_in) + np.count_nonzero(self.w_rec) + np.count_nonzero(self.w_out)),
                **self.notes}


# ------------------------------------------------------------------------------------------------------
# deployment: graph -> XyloConfig
# ------------------------------------------------------------------------------------------------------


def _chain(g: Graph) -> tuple[str | None, list[str]]:
    hosted = host_paths(g)
    """(last host node or None, the chip nodes in order up to and including the Output)."""
    path, host_last, chip = g.input, None, []
    seen = set()
    while True:
        succ = g.succs(path, unique=True)
        if len(succ) != 1:
            if isinstance(g.nodes[path].nir, nir.Output):
                return host_last, chip
            raise VendorError(f"Xylo mapping: node {path!r} has {len(succ)} successors; only a feed-forward chain "
                              "Input -> [host nodes] -> (Linear -> Xylo neuron)* -> Linear -> Output is mapped")
        path = succ[0]
        if path in seen:
            raise VendorError(f"Xylo mapping: cycle through {path!r}")
        seen.add(path)
        if isinstance(g.nodes[path].nir, nir.Output):
            chip.append(path)
            return host_last, chip
        if path in hosted:
            if chip:
                raise VendorError(f"Xylo mapping: host node {path!r} after chip nodes {chip}")
            host_last = path
        else:
            chip.append(path)


def _grid(w: np.ndarray, qmax: int, path: str) -> tuple[np.ndarray, float, float]:
    """(integer weights, grid step k, largest relative distance of W from the grid)."""
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    if amax == 0.0:
        raise VendorError(f"Xylo mapping: connection {path!r} has only zero weights")
    k = amax / qmax
    q = np.rint(w / k)
    return q.astype(np.int64), k, float(np.max(np.abs(q * k - w)) / amax)


def _limit(profile: Any, name: str) -> Any:
    limits = getattr(profile, "limits", None)
    return getattr(limits, name, None) if limits is not None else None


def _shift(thetas: list[np.ndarray], ks: list[float], path: str) -> int:
    """The largest shift (<= 8) keeping every threshold of these layers at most 2**12 integer units."""
    worst = max(float(np.max(t / k)) for t, k in zip(thetas, ks))
    s = 0
    while s < _MAX_SHIFT and worst * 2.0 ** (s + 1) <= _THRESHOLD_TARGET:
        s += 1
    if np.rint(worst * 2.0 ** s) > _I16_MAX:
        raise VendorError(f"Xylo mapping: a threshold of {path!r} is {worst:.4g} weight steps, more than a "
                          f"16-bit membrane holds ({_I16_MAX}); the weights are too small for the threshold")
    return s


def xylo_config(graph_q: nir.NIRGraph | Graph, profile: Any) -> XyloConfig:
    """Maps a deployed chip graph onto Xylo's input / recurrent / output matrices (see the module docstring).

    Args:
        graph_q: the deployed graph (host part marked ``placement: host``; chip part on the weight grid).
        profile: the Xylo hardware profile (limits: ``inputs_per_chip``, ``neurons_per_chip``,
            ``outputs_per_chip``, ``weight_bits``, ``fan_in``, ``fan_out``; null ones are not checked).

    Returns:
        The :class:`XyloConfig`.

    Raises:
        VendorError: an unsupported structure or node, or every exceeded Xylo limit (needed vs available).
    """
    g = graph_q if isinstance(graph_q, Graph) else flatten(graph_q)
    host_last, chip = _chain(g)
    if host_last is not None and not g.nodes[host_last].type.spiking:
        raise VendorError(f"Xylo mapping: the host part must end in a spiking neuron (Xylo's inputs are events), "
                          f"got {type(g.nodes[host_last].nir).__name__} {host_last!r}")
    if len(chip) < 4 or len(chip) % 2:
        raise VendorError("Xylo mapping: the chip part must be (Linear -> Xylo neuron)+ -> Linear -> Output, got "
                          + " -> ".join(f"{type(g.nodes[p].nir).__name__}({p})" for p in chip))
    wbits = int(_limit(profile, "weight_bits") or 8)
    qmax = (1 << (wbits - 1)) - 1
    conns, neurons = chip[0:-1:2], chip[1:-1:2]
    qs, ks, grid_err = [], [], {}
    for p in conns:
        node = g.nodes[p].nir
        if not isinstance(node, (nir.Linear, nir.Affine)):
            raise VendorError(f"Xylo mapping: {p!r} is {type(node).__name__}; Xylo's connections are dense "
                              "matrices (Linear/Affine)")
        q, k, err = _grid(np.asarray(node.weight, dtype=np.float64), qmax, p)
        qs.append(q)
        ks.append(k)
        grid_err[p] = err
        if p != conns[-1] and isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
            raise VendorError(f"Xylo mapping: {p!r} has a bias; Xylo's synapses have none (use Linear, or the "
                              "neuron's membrane bias)")
    params = []
    for p in neurons:
        node = g.nodes[p].nir
        meta = (getattr(node, "metadata", None) or {}).get("xylo")
        if not isinstance(node, nir.CubaLIF) or not meta:
            raise VendorError(f"Xylo mapping: neuron {p!r} ({type(node).__name__}) is not a Xylo neuron "
                              "(a CubaLIF with metadata['xylo'], neuroposter.models.xylo_neuron.XyloNeuron.to_nir)")
        n = qs[len(params)].shape[0]
        th = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), (n,))
        params.append({"theta": th, "bias": float(meta.get("bias", 0.0)),
                       "dash_syn": int(meta["dash_syn"]), "dash_mem": int(meta["dash_mem"])})
    sizes = [q.shape[0] for q in qs[:-1]]
    n_in, n_hid, n_out = qs[0].shape[1], int(sum(sizes)), qs[-1].shape[0]
    for l in range(1, len(qs)):
        if qs[l].shape[1] != qs[l - 1].shape[0]:
            raise VendorError(f"Xylo mapping: {conns[l]!r} takes {qs[l].shape[1]} inputs from a layer of "
                              f"{qs[l - 1].shape[0]}")
    # -- limits (all reported together) --
    bad = []
    for name, need in (("inputs_per_chip", n_in), ("neurons_per_chip", n_hid), ("outputs_per_chip", n_out)):
        have = _limit(profile, name)
        if have is not None and need > int(have):
            bad.append(f"{name}: {need} > {have}")
    offs = np.cumsum([0] + sizes)
    w_in = np.zeros((n_in, n_hid), np.int64)
    w_rec = np.zeros((n_hid, n_hid), np.int64)
    w_out = np.zeros((n_hid, n_out), np.int64)
    w_in[:, offs[0]:offs[1]] = qs[0].T
    for l in range(1, len(sizes)):
        w_rec[offs[l - 1]:offs[l], offs[l]:offs[l + 1]] = qs[l].T
    w_out[offs[-2]:offs[-1], :] = qs[-1].T
    fan_in = np.count_nonzero(w_in, axis=0) + np.count_nonzero(w_rec, axis=0)
    fan_out = np.count_nonzero(w_rec, axis=1) + np.count_nonzero(w_out, axis=1)
    for name, arr in (("fan_in", fan_in), ("fan_out", fan_out)):
        have = _limit(profile, name)
        if have is not None and arr.size and int(arr.max()) > int(have):
            bad.append(f"{name}: {int(arr.max())} > {have} (hidden neuron {int(arr.argmax())})")
    if bad:
        raise VendorError("the network exceeds Xylo's limits: " + "; ".join(bad))
    # -- shifts, thresholds, biases in integer units --
    s_in = _shift([params[0]["theta"]], [ks[0]], neurons[0])
    s_rec = _shift([p["theta"] for p in params[1:]], ks[1:-1], neurons[-1]) if len(params) > 1 else 0
    threshold = np.zeros(n_hid, np.int64)
    bias = np.zeros(n_hid, np.int64)
    dash_syn = np.zeros(n_hid, np.int64)
    dash_mem = np.zeros(n_hid, np.int64)
    th_err = {}
    for l, p in enumerate(params):
        unit = 2.0 ** (s_in if l == 0 else s_rec) / ks[l]  # integer units per float unit
        th = np.rint(p["theta"] * unit)
        if np.any(th < 1):
            raise VendorError(f"Xylo mapping: threshold of {neurons[l]!r} rounds to {int(th.min())} < 1 integer unit")
        b = np.rint(p["bias"] * unit)
        if abs(b) > _I16_MAX:
            raise VendorError(f"Xylo mapping: bias of {neurons[l]!r} ({int(b)}) exceeds 16 bits")
        sl = slice(offs[l], offs[l + 1])
        threshold[sl], bias[sl] = th, b
        dash_syn[sl], dash_mem[sl] = p["dash_syn"], p["dash_mem"]
        th_err[neurons[l]] = float(np.max(np.abs(th / unit - p["theta"]) / p["theta"]))
    out_node = g.nodes[conns[-1]].nir
    b_out = np.asarray(getattr(out_node, "bias", np.zeros(n_out)), dtype=np.float64).reshape(-1)
    s_out = 0
    return XyloConfig(
        w_in=w_in, w_rec=w_rec, w_out=w_out, threshold=threshold, threshold_out=np.full(n_out, _I16_MAX, np.int64),
        bias=bias, bias_out=np.zeros(n_out, np.int64), dash_syn=dash_syn, dash_mem=dash_mem,
        dash_syn_out=np.full(n_out, _DASH_OUT_SYN, np.int64), dash_mem_out=np.full(n_out, _DASH_OUT_MEM, np.int64),
        weight_shift_in=s_in, weight_shift_rec=s_rec, weight_shift_out=s_out,
        layers=[(p, int(offs[l]), int(offs[l + 1])) for l, p in enumerate(neurons)],
        readout_scale=ks[-1] / 2.0 ** s_out, readout_bias=b_out, host_output=host_last,
        notes={"weight_grid_rel_error": grid_err, "threshold_rel_error": th_err, "weight_bits": wbits,
               "readout": "output neurons as filters (dash_syn 1, dash_mem 0): logits = (sum_t v_out + i_out[T]) / "
                          "T * k_out + b_out"})


def chip_input(graph_q: nir.NIRGraph | Graph, cfg: XyloConfig, x: np.ndarray) -> np.ndarray:
    """The chip's input events ``[T, B, n_in]`` (int): the host part's spikes (reference simulator), or ``x``."""
    if cfg.host_output is None:
        ev = np.asarray(x)
        if np.any(ev < 0) or np.any(ev != np.rint(ev)):
            raise VendorError("Xylo's inputs are event counts: x must hold non-negative integers without a host part")
        return ev.reshape(ev.shape[0], ev.shape[1], -1).astype(np.int64)
    from neuroposter.ir.simulate import simulate  # the host part runs in the project's reference simulator

    res = simulate(graph_q, x, mode="same_step", record=True)
    ev = np.asarray(res.records[cfg.host_output])
    return ev.reshape(ev.shape[0], ev.shape[1], -1).astype(np.int64)


# ------------------------------------------------------------------------------------------------------
# the project's integer reference of Xylo
# ------------------------------------------------------------------------------------------------------


def _decay(x: np.ndarray, dash: np.ndarray) -> np.ndarray:
    d = x >> dash
    return np.where((d == 0) & (x != 0), np.sign(x), d)


def _wrap16(x: np.ndarray) -> np.ndarray:
    return ((x - _I16_MIN) & 0xFFFF) + _I16_MIN


def _deliver(i: np.ndarray, counts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Saturating delivery of ``counts [B, P]`` events through ``w [P, N]`` onto ``i [B, N]`` (xylosim order)."""
    if not counts.any():
        return i
    pos = counts @ np.maximum(w, 0)
    neg = counts @ np.minimum(w, 0)
    out = i + pos + neg
    slow = (i + pos > _I16_MAX) | (i + neg < _I16_MIN)
    for b, n in zip(*np.nonzero(slow)):  # a partial sum saturates: replay the events in order
        acc = int(i[b, n])
        for p in np.nonzero(counts[b] * (w[:, n] != 0))[0]:
            acc = int(np.clip(acc + int(counts[b, p]) * int(w[p, n]), _I16_MIN, _I16_MAX))
        out[b, n] = acc
    return out


def _evolve(i: np.ndarray, v: np.ndarray, dash_syn: np.ndarray, dash_mem: np.ndarray, bias: np.ndarray,
            threshold: np.ndarray, max_spikes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = i - _decay(i, dash_syn)
    dv = np.clip(_wrap16(-_decay(v, dash_mem)) + i, _I16_MIN, _I16_MAX)
    dv = np.clip(dv + bias, _I16_MIN, _I16_MAX)
    v = np.clip(v + dv, _I16_MIN, _I16_MAX)
    n = np.clip(v // threshold, 0, max_spikes)
    return i, v - n * threshold, n


def simulate_xylo_int(cfg: XyloConfig, x: np.ndarray) -> dict[str, np.ndarray]:
    """The project's integer reference of Xylo Audio 2 (numpy, vectorised over the batch; module docstring).

    Args:
        cfg: the network.
        x: input events ``[T, B, n_in]`` (non-negative integers; more than 15 per step count as 15).

    Returns:
        ``spikes``, ``v_mem``, ``i_syn`` ``[T, B, n_hidden]`` and ``out_spikes``, ``v_mem_out``, ``i_syn_out``
        ``[T, B, n_out]`` (int64), as xylosim records them (states after the step's reset).
    """
    x = np.minimum(np.asarray(x, dtype=np.int64), MAX_INPUT_EVENTS)
    T, B = x.shape[:2]
    n_hid, n_out = cfg.w_rec.shape[0], cfg.w_out.shape[1]
    w_in = _wrap16(cfg.w_in << cfg.weight_shift_in)
    w_rec = _wrap16(cfg.w_rec << cfg.weight_shift_rec)
    w_out = _wrap16(cfg.w_out << cfg.weight_shift_out)
    i, v, z = (np.zeros((B, n_hid), np.int64) for _ in range(3))
    io, vo = np.zeros((B, n_out), np.int64), np.zeros((B, n_out), np.int64)
    rec = {k: np.zeros((T, B, n_hid), np.int64) for k in ("spikes", "v_mem", "i_syn")}
    rec.update({k: np.zeros((T, B, n_out), np.int64) for k in ("out_spikes", "v_mem_out", "i_syn_out")})
    bias = cfg.bias if cfg.has_bias else np.zeros_like(cfg.bias)
    bias_out = cfg.bias_out if cfg.has_bias else np.zeros_like(cfg.bias_out)
    for t in range(T):
        i = _deliver(i, x[t], w_in)
        i = _deliver(i, z, w_rec)
        io = _deliver(io, z, w_out)
        i, v, z = _evolve(i, v, cfg.dash_syn, cfg.dash_mem, bias, cfg.threshold, MAX_SPIKES_HIDDEN)
        io, vo, zo = _evolve(io, vo, cfg.dash_syn_out, cfg.dash_mem_out, bias_out, cfg.threshold_out, MAX_SPIKES_OUT)
        rec["spikes"][t], rec["v_mem"][t], rec["i_syn"][t] = z, v, i
        rec["out_spikes"][t], rec["v_mem_out"][t], rec["i_syn_out"][t] = zo, vo, io
    return rec


# ------------------------------------------------------------------------------------------------------
# xylosim
# ------------------------------------------------------------------------------------------------------


def _xylosim() -> Any:
    try:
        import xylosim.v2 as xv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise VendorError(f"xylosim is not installed ({e}); scripts/bootstrap.sh installs xylosim=="
                          f"{XYLOSIM_VERSION} (pip install --no-deps)") from e
    return xv2


def _synapses(xv2: Any, w: np.ndarray) -> list[list[Any]]:
    return [[xv2.XyloSynapse(int(post), 0, int(w[pre, post])) for post in np.nonzero(w[pre])[0]]
            for pre in range(w.shape[0])]


def run_xylosim(cfg: XyloConfig, x: np.ndarray) -> dict[str, np.ndarray]:
    """Runs the network in ``xylosim.v2.XyloLayer``, one sample after the other (it is single-sample).

    Args:
        cfg: the network.
        x: input events ``[T, B, n_in]`` (non-negative integers).

    Returns:
        The records of :func:`simulate_xylo_int`, from xylosim.
    """
    xv2 = _xylosim()
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < 0):
        raise VendorError("xylosim: input event counts must be non-negative")
    x = np.minimum(x, 255)
    T, B = x.shape[:2]
    # XyloLayer keeps raw pointers to the XyloSynapse objects: they must outlive it (kept in ``syn``)
    syn = (_synapses(xv2, cfg.w_in), _synapses(xv2, cfg.w_rec), _synapses(xv2, cfg.w_out))
    layer = xv2.XyloLayer(
        synapses_in=syn[0], synapses_rec=syn[1], synapses_out=syn[2], aliases=[[] for _ in range(cfg.w_rec.shape[0])],
        threshold=[int(a) for a in cfg.threshold], threshold_out=[int(a) for a in cfg.threshold_out],
        has_bias=cfg.has_bias, bias=[int(a) for a in cfg.bias], bias_out=[int(a) for a in cfg.bias_out],
        weight_shift_inp=cfg.weight_shift_in, weight_shift_rec=cfg.weight_shift_rec,
        weight_shift_out=cfg.weight_shift_out, dash_mem=[int(a) for a in cfg.dash_mem],
        dash_mem_out=[int(a) for a in cfg.dash_mem_out], dash_syns=[[int(a)] for a in cfg.dash_syn],
        dash_syns_out=[[int(a)] for a in cfg.dash_syn_out], name="neuroposter")
    n_hid, n_out = cfg.w_rec.shape[0], cfg.w_out.shape[1]
    rec = {k: np.zeros((T, B, n_hid), np.int64) for k in ("spikes", "v_mem", "i_syn")}
    rec.update({k: np.zeros((T, B, n_out), np.int64) for k in ("out_spikes", "v_mem_out", "i_syn_out")})
    for b in range(B):
        layer.reset_all()
        layer.evolve(x[:, b, :].tolist())
        rec["spikes"][:, b] = np.asarray(layer.rec_recurrent_spikes).reshape(T, n_hid)
        rec["v_mem"][:, b] = np.asarray(layer.rec_v_mem).reshape(n_hid, T).T
        rec["i_syn"][:, b] = np.asarray(layer.rec_i_syn).reshape(n_hid, T).T
        rec["out_spikes"][:, b] = np.asarray(layer.rec_out_spikes).reshape(T, n_out)
        rec["v_mem_out"][:, b] = np.asarray(layer.rec_v_mem_out).reshape(n_out, T).T
        rec["i_syn_out"][:, b] = np.asarray(layer.rec_i_syn_out).reshape(n_out, T).T
    del layer, syn
    return rec


# ------------------------------------------------------------------------------------------------------
# check (VENDOR_SIMULATORS contract)
# ------------------------------------------------------------------------------------------------------


def readout(cfg: XyloConfig, rec: dict[str, np.ndarray], T: int) -> np.ndarray:
    """The logits ``[B, C]`` in the float graph's units: ``(sum_t v_out + i_out[-1]) / T * k_out + b_out``."""
    total = rec["v_mem_out"].sum(axis=0) + rec["i_syn_out"][-1]
    return total / float(T) * cfg.readout_scale + cfg.readout_bias


def compare(cfg: XyloConfig, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, Any]:
    """Spike-for-spike and state comparison of two runs (``a`` the reference, ``b`` the vendor's)."""
    layers = {}
    for path, lo, hi in cfg.layers:
        sa, sb = a["spikes"][:, :, lo:hi], b["spikes"][:, :, lo:hi]
        layers[path] = {"neurons": hi - lo, "spikes_compared": int(sa.size), "mismatched_spikes": int(np.sum(sa != sb)),
                        "spike_count_reference": int(sa.sum()), "spike_count_vendor": int(sb.sum())}
    out_mis = int(np.sum(a["out_spikes"] != b["out_spikes"]))
    compared = sum(l["spikes_compared"] for l in layers.values()) + int(a["out_spikes"].size)
    mismatched = sum(l["mismatched_spikes"] for l in layers.values()) + out_mis
    states = {k: int(np.sum(a[k] != b[k])) for k in ("v_mem", "i_syn", "v_mem_out", "i_syn_out")}
    return {"spikes_compared": compared, "mismatched_spikes": mismatched, "layers": layers,
            "output": {"spike_mismatches": out_mis, "v_mem_mismatches": states["v_mem_out"]},
            "state_mismatches": states, "exact": mismatched == 0 and not any(states.values())}


def _float_agreement(graph_q: nir.NIRGraph | Graph, cfg: XyloConfig, x: np.ndarray, ref: dict[str, np.ndarray],
                     logits: np.ndarray) -> dict[str, Any]:
    """How the integer chip agrees with the float graph (reference simulator, same_step): spikes per layer
    (aligned for the chip's one-step-per-layer latency) and top-1 of the logits."""
    from neuroposter.ir.simulate import simulate

    res = simulate(graph_q, x, mode="same_step", record=True)
    T = int(np.asarray(x).shape[0])
    per_layer = {}
    for l, (path, lo, hi) in enumerate(cfg.layers):
        fz = np.asarray(res.records[path]).reshape(T, -1, hi - lo).astype(np.int64)
        iz = ref["spikes"][l:l + T, :, lo:hi]
        per_layer[path] = float(np.mean(fz == iz))
    flog = np.asarray(res.output, dtype=np.float64).reshape(T, logits.shape[0], -1).mean(axis=0)
    return {"spike_agreement": per_layer, "top1_agreement": float(np.mean(flog.argmax(1) == logits.argmax(1))),
            "logits_max_abs_diff": float(np.max(np.abs(flog - logits))), "float_logits": flog.tolist()}


def deployed_logits(graph_q: nir.NIRGraph, x: np.ndarray, profile: Any, *, chunk: int = 256) -> np.ndarray:
    """The deployed network's logits ``[B, C]`` in Xylo's integer arithmetic (:func:`simulate_xylo_int`, padded
    by the chip's latency, read out by :func:`readout`): what the chip answers, for deployed-vs-trained.

    Args:
        graph_q: the deployed graph (see :func:`xylo_config`).
        x: the graph's inputs ``[T, B, ...]``.
        profile: the Xylo hardware profile.
        chunk: samples per simulation (bounds the recorded states' memory).

    Raises:
        VendorError: the graph does not map onto Xylo.
    """
    g = flatten(graph_q)
    cfg = xylo_config(g, profile)
    x = np.asarray(x)
    parts = []
    for lo in range(0, int(x.shape[1]), chunk):
        ev = chip_input(graph_q, cfg, x[:, lo:lo + chunk])
        T = int(ev.shape[0])
        ev = np.concatenate([ev, np.zeros((cfg.latency,) + ev.shape[1:], np.int64)])
        parts.append(readout(cfg, simulate_xylo_int(cfg, ev), T))
    return np.concatenate(parts, axis=0)


def check(graph_q: nir.NIRGraph, x: np.ndarray, profile: Any) -> dict[str, Any]:
    """Runs the deployed Xylo network in xylosim and in the integer reference; compares them spike for spike.

    Args:
        graph_q: the deployed graph (see :func:`xylo_config`).
        x: the graph's inputs ``[T, B, ...]``.
        profile: the Xylo hardware profile.

    Returns:
        The ``VENDOR_SIMULATORS`` dict: ``simulator``, ``version``, ``samples``, ``steps``, ``spikes_compared``,
        ``mismatched_spikes``, ``exact``, ``layers``, ``output``, ``state_mismatches``, ``logits`` (the integer
        reference's read-out ``[B, C]``, float graph units), ``vs_float_graph`` (agreement with the float graph
        in the reference simulator) and ``config`` (sizes, shifts, rounding).

    Raises:
        VendorError: the graph does not map onto Xylo, or xylosim is not installed.
    """
    g = flatten(graph_q)
    cfg = xylo_config(g, profile)
    ev = chip_input(graph_q, cfg, x)
    T, B = ev.shape[:2]
    ev = np.concatenate([ev, np.zeros((cfg.latency,) + ev.shape[1:], np.int64)])
    ref = simulate_xylo_int(cfg, ev)
    ven = run_xylosim(cfg, ev)
    cmp = compare(cfg, ref, ven)
    logits = readout(cfg, ref, T)
    try:
        version = importlib.metadata.version("xylosim")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    return {"simulator": "xylosim (SynSense, bit-accurate Xylo Audio 2 / SYNS61201: xylosim.v2.XyloLayer)",
            "version": version, "reference": "neuroposter.targets.vendor.xylo.simulate_xylo_int", "bit_accurate": True,
            "samples": int(B), "steps": int(T + cfg.latency), "input_steps": int(T), **cmp,
            "logits": logits.tolist(), "vs_float_graph": _float_agreement(graph_q, cfg, x, ref, logits),
            "config": cfg.summary()}
