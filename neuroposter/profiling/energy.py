"""The one energy function: op counts x a hardware profile, with a breakdown per term and per layer.

:func:`estimate_energy` is the only place where counts and energy constants meet. Views:

``sdt_paper``
    The Spike-Driven Transformer papers' accounting (E_MAC, E_AC; 4.6 / 0.9 pJ with
    ``horowitz_45nm_fp32``). SNN: the first (encoding) connection layer is priced as dense MACs, either once
    per inference (``first_layer="once"``) or once per timestep (``first_layer="xT"``); every other connection
    layer as ACs = its measured synaptic ops (= input firing rate x T x FLOPs, exact per spike). SDSA masks,
    neuron updates and memory are not priced (the papers' convention). ANN: MACs x E_MAC.
``precision``
    Compute-only at a precision (Horowitz fp32 / fp16 / int8 profiles). SNN: ACs x E_AC, MACs x E_MAC, every
    neuron update (dense: each neuron each step) as one MAC (leak-integrate) + one AC (threshold compare), each
    effective SDSA mask as one AC (an upper bound for an AND). ANN: MACs x E_MAC + other ops x E_AC.
``memory``
    Lemaire-style (ICONIP 2022): the precision terms with E_add / E_mul, plus memory accesses priced by the
    size of the memory they hit (``lemaire_45nm``: E = base + slope x size_bits; Horowitz profiles:
    interpolation between the 8 KB / 32 KB / 1 MB SRAM read costs). SNN: one weight read per synop, one
    address computation (add) per synop, one input-event read per event, membrane state read + write per
    (dense) update, one output-spike write per spike. ANN: one weight read and one input read per MAC (no
    reuse: a naive accelerator, as in Lemaire), one output write per activation.
``device``
    Chip constants. Per-term chips: synops x e_synop + driven neuron updates x e_neuron_update (+ idle updates
    x e_neuron_update_idle where published, else every update at e_neuron_update) + spikes x e_spike (where
    published) [+ static power x latency with ``extras=("static",)``]. All-in chips: synops x e_synop_allin and
    nothing else. Conventional processors with a per-op figure: (synops + neuron updates) or MACs x e_op.
    ANN platforms with e_mac (GPU lower bounds): MACs x e_mac; an SNN there runs densely (dense ops x e_mac).

Ranges: every term is also computed at the low and high end of each constant's range (``min``/``max``);
``high_pj`` is None when a constant is only bounded below (a peak-derived lower bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.profiles import HardwareProfile, load_profile

__all__ = ["VIEWS", "EnergyTerm", "EnergyBreakdown", "estimate_energy", "UnavailableConstant", "memory_access_pj"]

VIEWS = ("sdt_paper", "precision", "memory", "device")
_ALL_IN_KEYS = ("e_synop_allin_pj",)


class UnavailableConstant(Exception):
    """A constant a view needs is not published for the profile (raised internally; becomes ``available=False``)."""


@dataclass(frozen=True)
class EnergyTerm:
    """One term of a breakdown: a count times a constant.

    Attributes:
        term: term name (e.g. ``"synops"``, ``"encoding_mac"``, ``"state_rw"``).
        count: number of events (per inference).
        constant: the profile key priced (e.g. ``"e_synop_pj"``; ``"memory"`` for size-dependent accesses).
        pj: energy at the point values, pJ.
        low_pj: energy at the low ends of the ranges.
        high_pj: energy at the high ends (None: unbounded above).
        source: source of the constant.
        evidence: evidence grade of the constant.
    """

    term: str
    count: float
    constant: str
    pj: float
    low_pj: float
    high_pj: float | None
    source: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class EnergyBreakdown:
    """The energy of one model on one profile under one view.

    Attributes:
        model: the counts' name.
        profile: profile name.
        view: one of :data:`VIEWS`.
        variant: e.g. ``"first_layer=once"``; empty when the view has a single variant.
        available: False when a needed constant is not published (then the totals are None).
        reason: why it is unavailable.
        total_pj: point estimate per inference, pJ.
        low_pj: low end of the range.
        high_pj: high end (None: unbounded above).
        terms: per-term breakdown.
        per_layer: layer name -> pJ (point).
        includes: what the estimate includes.
        excludes: what it leaves out.
        scope: the profile's scope.
        evidence: the profile's evidence grade.
    """

    model: str
    profile: str
    view: str
    variant: str = ""
    available: bool = True
    reason: str = ""
    total_pj: float | None = None
    low_pj: float | None = None
    high_pj: float | None = None
    terms: tuple[EnergyTerm, ...] = ()
    per_layer: Mapping[str, float] = field(default_factory=dict)
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    scope: str = ""
    evidence: str = ""

    @property
    def total_mj(self) -> float | None:
        """Point estimate in millijoules."""
        return None if self.total_pj is None else self.total_pj * 1e-9

    def term_pj(self, term: str) -> float:
        """Energy of one term (0 when absent)."""
        return sum(t.pj for t in self.terms if t.term == term)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"model": self.model, "profile": self.profile, "view": self.view, "variant": self.variant,
                "available": self.available, "reason": self.reason, "total_pj": self.total_pj,
                "low_pj": self.low_pj, "high_pj": self.high_pj, "scope": self.scope, "evidence": self.evidence,
                "terms": [t.__dict__ for t in self.terms], "per_layer": dict(self.per_layer),
                "includes": list(self.includes), "excludes": list(self.excludes)}


# ---------------------------------------------------------------------------------------------- helpers


class _Acc:
    """Accumulates (term, layer, count, constant) items priced with a profile."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.p = profile
        self.items: list[tuple[str, str, float, float, float, float | None, str]] = []

    def const(self, key: str) -> tuple[float, float, float | None]:
        d = self.p.energy_detail.get(key)
        if d is None or d.point is None:
            state = "not in the profile" if d is None else "not published (null)"
            raise UnavailableConstant(f"{key} is {state} for {self.p.name}")
        return d.point, float(d.low if d.low is not None else d.point), d.high

    def has(self, key: str) -> bool:
        d = self.p.energy_detail.get(key)
        return d is not None and d.point is not None

    def add(self, term: str, layer: str, count: float, key: str, mult: float = 1.0) -> None:
        if count == 0:
            return
        pt, lo, hi = self.const(key)
        self.items.append((term, layer, count, count * pt * mult, count * lo * mult,
                           None if hi is None else count * hi * mult, key))

    def add_raw(self, term: str, layer: str, count: float, pj_each: tuple[float, float, float | None],
                key: str) -> None:
        if count == 0:
            return
        pt, lo, hi = pj_each
        self.items.append((term, layer, count, count * pt, count * lo, None if hi is None else count * hi, key))


def memory_access_pj(profile: HardwareProfile, size_bits: float) -> tuple[float, float, float | None]:
    """Energy of one memory access in a memory of ``size_bits`` (point, low, high), pJ.

    ``lemaire_45nm``-style profiles: ``e_sram_access_base + e_sram_access_per_size_bit x size_bits``.
    Horowitz-style profiles: log-size interpolation between the 8 KB / 32 KB / 1 MB 64-bit read costs, clamped
    to the end points (memories above 1 MB are priced as 1 MB SRAM, not DRAM).

    Raises:
        UnavailableConstant: the profile has no memory costs.
    """
    e = profile.energy
    if e.get("e_sram_access_base_pj") is not None and e.get("e_sram_access_per_size_bit_pj") is not None:
        v = e["e_sram_access_base_pj"] + e["e_sram_access_per_size_bit_pj"] * size_bits  # type: ignore[operator]
        return v, v, v
    pts = [(8 * 1024 * 8, e.get("e_sram_read_8kb_pj")), (32 * 1024 * 8, e.get("e_sram_read_32kb_pj")),
           (1024 * 1024 * 8, e.get("e_sram_read_1mb_pj"))]
    if any(v is None for _, v in pts):
        raise UnavailableConstant(f"{profile.name} has no SRAM access costs (needed by the memory view)")
    s = max(size_bits, 1.0)
    if s <= pts[0][0]:
        v = float(pts[0][1])  # type: ignore[arg-type]
    elif s >= pts[-1][0]:
        v = float(pts[-1][1])  # type: ignore[arg-type]
    else:
        for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
            if s0 <= s <= s1:
                f = (math.log(s) - math.log(s0)) / (math.log(s1) - math.log(s0))
                v = float(v0) + f * (float(v1) - float(v0))  # type: ignore[arg-type]
                break
    return v, v, v


def _elems(shape: Sequence[int] | None) -> int:
    return int(math.prod(shape)) if shape else 0


# ------------------------------------------------------------------------------------------------- views


def _sdt_paper(c: OpCounts, acc: _Acc, first_layer: str) -> tuple[list[str], list[str]]:
    if c.kind == "ann":
        for lc in c.layers:
            acc.add("mac", lc.name, lc.effective_macs, "e_mac_pj")
        return (["MACs of Conv/Gemm/MatMul x E_MAC"],
                ["non-MAC ops (softmax, norms, activations)", "memory access", "static power"])
    first = c.first_layer
    for lc in c.layers:
        if lc.kind != "synapse":
            continue
        if first is not None and lc.name == first.name:
            per_step = lc.dense_ops / max(c.T, 1)
            n = per_step * (c.T if first_layer == "xT" else 1)
            acc.add("encoding_mac", lc.name, n, "e_mac_pj")
        else:
            acc.add("sop_ac", lc.name, lc.synops, "e_ac_pj")
    conv = "once per inference" if first_layer == "once" else f"once per timestep (x T = {c.T})"
    return ([f"first (encoding) layer as dense MACs x E_MAC, {conv}",
             "all other connection layers: measured synaptic ops (rate x T x FLOPs) x E_AC, incl. SDSA token sums"],
            ["SDSA masks (AND) - free in this model", "neuron updates (leak, threshold, reset)",
             "memory access", "static power", "the feature front end (reported as its own bar)"])


def _precision(c: OpCounts, acc: _Acc) -> tuple[list[str], list[str]]:
    if c.kind == "ann":
        for lc in c.layers:
            acc.add("mac", lc.name, lc.effective_macs, "e_mac_pj")
            acc.add("other_ops", lc.name, lc.other_ops, "e_ac_pj")
        return (["MACs x E_MAC", "non-MAC arithmetic x E_AC (one add-equivalent per op)"],
                ["memory access", "control overhead", "static power"])
    for lc in c.layers:
        if lc.kind == "synapse":
            acc.add("synop_ac", lc.name, lc.effective_acs, "e_ac_pj")
            acc.add("synop_mac", lc.name, lc.effective_macs, "e_mac_pj")
        elif lc.kind == "neuron":
            acc.add("neuron_leak_mac", lc.name, lc.updates_dense, "e_mac_pj")
            acc.add("neuron_threshold_ac", lc.name, lc.updates_dense, "e_ac_pj")
        elif lc.kind == "mask":
            acc.add("mask_and", lc.name, lc.updates_effective, "e_ac_pj")
    return (["synaptic ops: ACs x E_AC, non-binary inputs x E_MAC",
             "every neuron every step: one MAC (leak-integrate) + one AC (threshold/reset)",
             "SDSA AND masks where an operand spiked, one AC each (upper bound)"],
            ["memory access", "spike routing", "bias additions", "static power"])


def _memory(c: OpCounts, acc: _Acc) -> tuple[list[str], list[str]]:
    p = acc.p
    add_key = "e_add_pj" if acc.has("e_add_pj") else "e_ac_pj"
    mul_key = "e_mul_pj"
    acc.const(add_key)
    mac_key = "e_mac_pj"
    if c.kind == "ann":
        for lc in c.layers:
            acc.add("mac", lc.name, lc.effective_macs, mac_key)
            acc.add("other_ops", lc.name, lc.other_ops, add_key)
            if lc.effective_macs:
                acc.add_raw("weight_read", lc.name, lc.effective_macs,
                            memory_access_pj(p, max(lc.weight_bytes * 8, 1)), "memory")
                act_bits = lc.activation_bytes * 8 if lc.activation_bytes else _elems(lc.out_shape) * c.state_bits
                acc.add_raw("input_read", lc.name, lc.effective_macs, memory_access_pj(p, act_bits), "memory")
            n_out = _elems(lc.out_shape)
            if n_out:
                acc.add_raw("output_write", lc.name, n_out, memory_access_pj(p, n_out * c.state_bits), "memory")
        return (["MACs x E_MAC", "non-MAC ops x E_add",
                 "one weight read and one input read per MAC (no reuse), one write per output; "
                 "each access priced by the size of the memory it hits"],
                ["weight/activation reuse in caches or systolic arrays (this is a pessimistic, naive accelerator)",
                 "DRAM traffic", "static power"])
    for lc in c.layers:
        if lc.kind == "synapse":
            acc.add("synop_add", lc.name, lc.effective_acs, add_key)
            acc.add("synop_mac", lc.name, lc.effective_macs, mac_key)
            acc.add("addressing_add", lc.name, lc.synops, add_key)
            acc.add_raw("weight_read", lc.name, lc.weight_fetches,
                        memory_access_pj(p, max(lc.weight_bytes * 8, 1)), "memory")
            acc.add_raw("input_event_read", lc.name, lc.events_in,
                        memory_access_pj(p, max(_elems(lc.in_shape), 1) * 32), "memory")
        elif lc.kind in ("neuron", "mask"):
            if lc.kind == "neuron":
                acc.add("neuron_leak", lc.name, lc.updates_dense, mul_key)
                acc.add("neuron_integrate", lc.name, lc.updates_dense, add_key)
            else:
                acc.add("mask_and", lc.name, lc.updates_effective, add_key)
            n_upd = lc.updates_dense if lc.kind == "neuron" else lc.updates_effective
            acc.add_raw("state_read_write", lc.name, 2 * n_upd,
                        memory_access_pj(p, max(lc.n_neurons * c.state_bits, 1)), "memory")
            acc.add_raw("spike_write", lc.name, lc.spikes, memory_access_pj(p, max(lc.n_neurons, 1) * 32), "memory")
    return (["synaptic adds (MACs for non-binary inputs) + one address add per synop",
             "leak multiply + integrate add per neuron per step; AND masks as adds",
             "one weight read per synop, one input-event read per event, membrane read + write per update, "
             "one write per output spike; each access priced by the size of the memory it hits"],
            ["spike routing / network-on-chip", "bias reads", "static power", "DRAM traffic"])


def _device(c: OpCounts, acc: _Acc, extras: Sequence[str], latency_s: float | None) -> tuple[list[str], list[str]]:
    p = acc.p
    e = p.energy
    if p.scope == "all-in":
        if c.kind == "ann":
            raise UnavailableConstant(f"{p.name} is a neuromorphic chip; an ANN does not run on it")
        for lc in c.layers:
            if lc.kind == "synapse":
                acc.add("synop_allin", lc.name, lc.synops, "e_synop_allin_pj")
        return ([f"synaptic events x the all-in constant of {p.name} (includes: {', '.join(p.includes) or 'all'})"],
                ["nothing is added on top of an all-in figure; it holds at its published operating point only"])
    if "e_op_pj" in e:
        if c.kind == "ann":
            for lc in c.layers:
                acc.add("op", lc.name, lc.effective_macs, "e_op_pj")
            return (["MACs x energy per op"], ["non-MAC ops", "overhead beyond the per-op figure"])
        for lc in c.layers:
            if lc.kind == "synapse":
                acc.add("synop", lc.name, lc.synops, "e_op_pj")
            elif lc.kind in ("neuron", "mask"):
                acc.add("neuron_update", lc.name, lc.updates_dense, "e_op_pj")
        return (["(synops + neuron updates every step) x energy per op (keras-spiking rule)"],
                ["overhead beyond the per-op figure"])
    if p.kind == "ann":
        key = "e_mac_pj"
        if c.kind == "ann":
            for lc in c.layers:
                acc.add("mac", lc.name, lc.effective_macs, key)
                if "e_flop_pj" in e:
                    acc.add("other_ops", lc.name, lc.other_ops, "e_flop_pj")
            inc = ["MACs x e_mac (+ other ops x e_flop where given)"]
        else:
            for lc in c.layers:
                if lc.kind == "synapse":
                    acc.add("dense_mac", lc.name, lc.dense_ops, key)
                elif lc.kind in ("neuron", "mask"):
                    acc.add("neuron_update_mac", lc.name, lc.updates_dense, key)
            inc = ["SNN executed densely (a GPU/CPU does not skip zero spikes): dense ops + neuron updates x e_mac"]
        return inc, ["utilisation below peak (constants are lower bounds where marked)", "host, DRAM beyond the constant"]
    if c.kind == "ann":
        raise UnavailableConstant(f"{p.name} is a neuromorphic chip; an ANN does not run on it")
    idle = acc.has("e_neuron_update_idle_pj")
    for lc in c.layers:
        if lc.kind == "synapse":
            acc.add("synops", lc.name, lc.synops, "e_synop_pj")
        elif lc.kind in ("neuron", "mask"):
            if idle:
                acc.add("neuron_update_active", lc.name, lc.updates_effective, "e_neuron_update_pj")
                acc.add("neuron_update_idle", lc.name, lc.updates_dense - lc.updates_effective,
                        "e_neuron_update_idle_pj")
            else:
                acc.add("neuron_update", lc.name, lc.updates_dense, "e_neuron_update_pj")
            if acc.has("e_spike_pj"):
                acc.add("spikes", lc.name, lc.spikes, "e_spike_pj")
    inc = ["synops x e_synop",
           "neuron updates (driven at e_neuron_update, idle at e_neuron_update_idle)" if idle
           else "every neuron every step x e_neuron_update"]
    if acc.has("e_spike_pj"):
        inc.append("spikes x e_spike")
    exc = ["spike routing hops (needs a placement)", "host I/O and readout"]
    if "static" in extras:
        if latency_s is None:
            raise ValueError("extras=('static',) needs latency_s (seconds per inference)")
        pt, lo, hi = acc.const("static_mw")
        acc.items.append(("static", "(chip)", latency_s, pt * latency_s * 1e9, lo * latency_s * 1e9,
                          None if hi is None else hi * latency_s * 1e9, "static_mw"))
        inc.append(f"static power x {latency_s:g} s")
    else:
        exc.append("static power")
    return inc, exc


def estimate_energy(
    counts: OpCounts,
    profile: HardwareProfile | str,
    *,
    view: str,
    first_layer: str = "once",
    extras: Iterable[str] = (),
    latency_s: float | None = None,
) -> EnergyBreakdown:
    """Energy of one inference: ``counts`` priced with ``profile`` under ``view``.

    Args:
        counts: per-inference op counts (:func:`~neuroposter.profiling.counts.count_snn` or
            :func:`~neuroposter.profiling.onnx_counts.count_onnx`).
        profile: a :class:`HardwareProfile` or a profile name.
        view: ``"sdt_paper"``, ``"precision"``, ``"memory"`` or ``"device"`` (see the module docstring).
        first_layer: SDT-paper convention for the encoding layer: ``"once"`` or ``"xT"``.
        extras: per-term extras to add in the device view: ``"static"`` (static power x ``latency_s``).
        latency_s: seconds per inference (for ``"static"``).

    Returns:
        The :class:`EnergyBreakdown`; ``available=False`` with a reason when a needed constant is not
        published (e.g. Loihi 2's per-op energies).

    Raises:
        ValueError: unknown view or convention; per-term extras or a per-term view requested on an all-in
            profile (all-in figures are never combined with per-term extras).
    """
    p = load_profile(profile)
    if view not in VIEWS:
        raise ValueError(f"unknown energy view {view!r}; choose from {', '.join(VIEWS)}")
    if first_layer not in ("once", "xT"):
        raise ValueError(f"first_layer must be 'once' or 'xT', got {first_layer!r}")
    extras = tuple(extras)
    unknown = set(extras) - {"static"}
    if unknown:
        raise ValueError(f"unknown extras {sorted(unknown)}; available: static")
    if p.scope == "all-in" and (extras or view in ("precision", "memory", "sdt_paper")):
        what = f"extras {list(extras)}" if extras else f"the per-term {view!r} view"
        raise ValueError(f"{p.name} is an all-in profile ({'; '.join(p.sources)}): refusing to add {what} "
                         "to an all-in figure; use view='device' with no extras")
    if extras and view != "device":
        raise ValueError("extras apply to the device view only")
    acc = _Acc(p)
    variant = f"first_layer={first_layer}" if view == "sdt_paper" and counts.kind == "snn" else ""
    try:
        if view == "sdt_paper":
            inc, exc = _sdt_paper(counts, acc, first_layer)
        elif view == "precision":
            inc, exc = _precision(counts, acc)
        elif view == "memory":
            inc, exc = _memory(counts, acc)
        else:
            inc, exc = _device(counts, acc, extras, latency_s)
    except UnavailableConstant as exc_:
        return EnergyBreakdown(model=counts.name, profile=p.name, view=view, variant=variant, available=False,
                               reason=str(exc_), scope=p.scope, evidence=p.evidence)
    terms: dict[tuple[str, str], list[float]] = {}
    per_layer: dict[str, float] = {}
    unbounded: set[str] = set()
    for term, layer, count, pt, lo, hi, key in acc.items:
        t = terms.setdefault((term, key), [0.0, 0.0, 0.0, 0.0])
        t[0] += count
        t[1] += pt
        t[2] += lo
        if hi is None:
            unbounded.add(term)
        else:
            t[3] += hi
        per_layer[layer] = per_layer.get(layer, 0.0) + pt
    out_terms = tuple(
        EnergyTerm(term=term, count=v[0], constant=key, pj=v[1], low_pj=v[2],
                   high_pj=None if term in unbounded else v[3],
                   source=p.source_of(key) if key in p.energy_detail else "; ".join(p.sources),
                   evidence=p.evidence_of(key) if key in p.energy_detail else p.evidence)
        for (term, key), v in terms.items())
    total = sum(t.pj for t in out_terms)
    low = sum(t.low_pj for t in out_terms)
    high = None if unbounded else sum(t.high_pj or 0.0 for t in out_terms)
    exc = list(exc) + [x for x in p.excludes if x not in exc]
    return EnergyBreakdown(model=counts.name, profile=p.name, view=view, variant=variant, available=True,
                           total_pj=total, low_pj=low, high_pj=high, terms=out_terms, per_layer=per_layer,
                           includes=tuple(inc), excludes=tuple(exc), scope=p.scope, evidence=p.evidence)
