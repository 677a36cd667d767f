r"""SNN op counts from actual runs: the reference simulator's records on test inputs, per layer and timestep.

Input: a NIR graph (contract section 6: one time step, no batch dim, tokens channels-first ``[D, N]``,
SDSA blocks as sub-graphs tagged ``metadata["op"] == "sdsa"``) and the simulator's records:
``records[path]`` = spikes ``[T, B, *shape]`` of every neuron-like node and ``inputs[path]`` = the values
feeding every connection node ``[T, B, *in_shape]`` (node paths join sub-graph names with ``.``).

Definitions (per sample = totals over the batch divided by B; totals are over all T steps):

* **Synaptic operations** of a connection node (Affine, Linear, Conv1d, Conv2d, SumPool2d, AvgPool2d):
  :math:`\sum_{t}\sum_i [x_{t,i} \ne 0]\, \mathrm{fanout}_i`, where the fan-out of input element *i* counts
  its non-zero weights that reach a valid output position (exact for weight-shared convolutions: border-,
  stride-, padding-, dilation- and group-aware). This equals NeuroBench's ``SynapticOperations``: binarise
  inputs and weights, re-run the layer without bias, sum the outputs. A layer whose inputs all lie in
  {-1, 0, 1} counts them as **ACs** (accumulates), otherwise as **MACs** (NeuroBench's rule), e.g. an
  encoding layer fed real values or multi-level spike counts.
* **Dense ops**: the same with every input active (NeuroBench ``Dense``; the ANN-equivalent MACs).
* **Neuron updates**: dense = every neuron every step; effective = neuron-steps whose input received at
  least one event (or a non-zero bias), i.e. the updates an event-driven chip performs.
* **SDSA**: a ``Threshold`` inside an SDSA sub-graph or fed by two or more edges is an AND (mask); its dense mask ops are its
  size x T, its effective mask ops the positions where at least one operand spiked. The token sum and
  broadcast inside an SDSA sub-graph are weight-shared connections; their synops are additions
  (``sdsa=True`` on those layers).
* **Memory traffic** at deployment precision: weight fetches (sparse: one per synop; dense: every weight of
  the layer once per step), neuron state read + write per update, bytes = count x bits / 8.
* **Firing rate**: spikes / (neurons x T).
"""

from __future__ import annotations

import logging
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Iterable, Mapping

import numpy as np

from neuroposter.ir.graph import Graph, flatten
from neuroposter.ir.nodes import names

__all__ = ["LayerCounts", "OpCounts", "count_snn"]

log = logging.getLogger(__name__)

# Node roles from the one node-type table (neuroposter.ir.nodes). A ``Scale`` (a per-element gain: the
# integer graph's explicit identity synapse) passes its input's events through and is not counted as a layer.
_CONNECTIONS = frozenset(names(role="conn")) - {"Scale"}
_NEURONS = frozenset(names(role="neuron"))
_SPIKING = frozenset(names(role="neuron", spiking=True))
_PASS_THROUGH = frozenset(names(role="input") + names(role="output") + names(role="identity")
                          + names(role="reshape") + names(role="delay")) | {"Scale"}


@dataclass(frozen=True)
class LayerCounts:
    """Counts of one layer (a NIR node or an ONNX node), per sample, summed over timesteps.

    Attributes:
        name: node path.
        op_type: NIR node type or ONNX op type.
        kind: ``"synapse"`` (SNN connection), ``"neuron"``, ``"mask"`` (SDSA AND), ``"mac"`` (ANN MAC node),
            ``"other"`` (ANN non-MAC arithmetic).
        dense_ops: synaptic ops / MACs with every input active (over all steps).
        effective_macs: event-driven ops on non-binary inputs (NeuroBench Effective_MACs).
        effective_acs: event-driven ops on binary inputs (NeuroBench Effective_ACs) = synops.
        other_ops: non-MAC arithmetic (ANN) .
        per_step: effective synaptic ops (synapse layers) or spikes (neuron layers) per timestep.
        events_in: non-zero inputs (events) arriving at the layer.
        n_neurons: neurons of a neuron layer (elements of a mask layer).
        spikes: spikes emitted.
        updates_dense: neuron updates, every neuron every step (mask ops for a mask layer).
        updates_effective: driven neuron updates (effective mask ops for a mask layer).
        n_weights: weight elements of the layer.
        weight_bytes: bytes of the weights at deployment precision.
        weight_fetches: sparse weight fetches (one per synop) for an SNN layer; weight reads for an ANN node.
        weight_fetches_dense: every weight once per step.
        state_bytes: bytes of the neuron state of the layer at deployment precision.
        kernel_area: connections per input per output channel (conv kernel area; 1 for dense layers).
        has_bias: whether the layer adds a bias every step.
        sdsa: neuron/mask layers: inside an SDSA sub-graph; connection layers: an SDSA core op (token sum or
            broadcast: inside an SDSA sub-graph, 0/1 weights, fed by or feeding a mask), not Q/K/V/proj.
        in_shape: input shape (without time and batch).
        out_shape: output shape (without time and batch).
        activation_bytes: bytes of the layer's output activations (ANN).
        approximations: notes where an exact count was not possible.
    """

    name: str
    op_type: str
    kind: str
    dense_ops: float = 0.0
    effective_macs: float = 0.0
    effective_acs: float = 0.0
    other_ops: float = 0.0
    per_step: tuple[float, ...] = ()
    events_in: float = 0.0
    n_neurons: int = 0
    spikes: float = 0.0
    updates_dense: float = 0.0
    updates_effective: float = 0.0
    n_weights: int = 0
    weight_bytes: float = 0.0
    weight_fetches: float = 0.0
    weight_fetches_dense: float = 0.0
    state_bytes: float = 0.0
    kernel_area: int = 1
    has_bias: bool = False
    sdsa: bool = False
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None
    activation_bytes: float = 0.0
    approximations: tuple[str, ...] = ()

    @property
    def synops(self) -> float:
        """Event-driven synaptic operations (ACs + MACs)."""
        return self.effective_acs + self.effective_macs

    @property
    def firing_rate(self) -> float | None:
        """Spikes per neuron per step (None for non-neuron layers)."""
        if self.kind not in ("neuron", "mask") or self.n_neurons == 0 or self.updates_dense == 0:
            return None
        return self.spikes / self.updates_dense

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (with ``synops`` and ``firing_rate``)."""
        d = asdict(self)
        d["synops"] = self.synops
        d["firing_rate"] = self.firing_rate
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerCounts:
        """The inverse of :meth:`to_dict` (the derived ``synops`` and ``firing_rate`` are recomputed).

        Values keep the types JSON gives them (so ``to_dict`` of the result writes the same JSON); tuples come
        back as tuples, and a float written as ``null`` (NaN) comes back as NaN.

        Raises:
            ValueError: a field is missing or unknown.
        """
        names = {f.name: f for f in fields(cls)}
        given = {k: v for k, v in data.items() if k not in ("synops", "firing_rate")}
        unknown, missing = sorted(set(given) - set(names)), sorted(
            n for n, f in names.items() if f.default is MISSING and f.default_factory is MISSING and n not in given)
        if unknown or missing:
            raise ValueError(f"not a LayerCounts record: unknown fields {unknown}, missing fields {missing}")
        out: dict[str, Any] = {}
        for k, v in given.items():
            if k in ("per_step", "in_shape", "out_shape", "approximations"):  # tuples (JSON gives lists)
                v = None if v is None else tuple(v)
            elif v is None and isinstance(names[k].default, float):
                v = float("nan")
            out[k] = v
        return cls(**out)


@dataclass(frozen=True)
class OpCounts:
    """Op counts of one network on its test inputs, per sample (one inference of T steps).

    Attributes:
        name: label (run name, ONNX file).
        kind: ``"snn"`` or ``"ann"``.
        T: timesteps per inference (1 for an ANN).
        samples: test samples the counts are averaged over.
        layers: per-layer counts, in graph order.
        weight_bits: deployment weight precision used for byte counts.
        state_bits: deployment neuron-state (SNN) or activation (ANN) precision.
        meta: provenance and notes (source graph, run, inputs).
    """

    name: str
    kind: str
    T: int
    samples: int
    layers: tuple[LayerCounts, ...]
    weight_bits: int = 8
    state_bits: int = 16
    meta: Mapping[str, Any] = field(default_factory=dict)

    def _sum(self, attr: str, kinds: Iterable[str] | None = None) -> float:
        ks = set(kinds) if kinds is not None else None
        return float(sum(getattr(lc, attr) for lc in self.layers if ks is None or lc.kind in ks))

    @property
    def macs(self) -> float:
        """Effective MACs (ANN: all MACs; SNN: ops on non-binary inputs)."""
        return self._sum("effective_macs")

    @property
    def acs(self) -> float:
        """Effective ACs (synops on binary inputs)."""
        return self._sum("effective_acs")

    @property
    def synops(self) -> float:
        """All event-driven synaptic operations (SNN)."""
        return self._sum("effective_acs", ["synapse"]) + self._sum("effective_macs", ["synapse"])

    @property
    def dense_ops(self) -> float:
        """Dense synaptic ops / MACs (NeuroBench Dense)."""
        return self._sum("dense_ops", ["synapse", "mac"])

    @property
    def other_ops(self) -> float:
        """Non-MAC arithmetic (ANN)."""
        return self._sum("other_ops")

    @property
    def mask_ops_dense(self) -> float:
        """SDSA AND (mask) operations, every element every step."""
        return self._sum("updates_dense", ["mask"])

    @property
    def mask_ops_effective(self) -> float:
        """SDSA AND operations with at least one operand spiking."""
        return self._sum("updates_effective", ["mask"])

    @property
    def sdsa_adds(self) -> float:
        """Additions of the SDSA token sums/broadcasts (synops of connections inside SDSA)."""
        return float(sum(lc.synops for lc in self.layers if lc.kind == "synapse" and lc.sdsa))

    @property
    def neuron_updates_dense(self) -> float:
        """Neuron updates, every neuron every step (mask layers excluded)."""
        return self._sum("updates_dense", ["neuron"])

    @property
    def neuron_updates_effective(self) -> float:
        """Driven neuron updates (mask layers excluded)."""
        return self._sum("updates_effective", ["neuron"])

    @property
    def spikes(self) -> float:
        """Spikes emitted by all neuron and mask layers."""
        return self._sum("spikes", ["neuron", "mask"])

    @property
    def n_weights(self) -> int:
        """Weight elements of all layers."""
        return int(self._sum("n_weights"))

    @property
    def first_layer(self) -> LayerCounts | None:
        """The first connection layer (the encoding layer of the SDT energy convention)."""
        for lc in self.layers:
            if lc.kind in ("synapse", "mac"):
                return lc
        return None

    def firing_rates(self) -> dict[str, float]:
        """Firing rate per neuron/mask layer."""
        return {lc.name: lc.firing_rate for lc in self.layers if lc.firing_rate is not None}  # type: ignore[misc]

    def neurobench(self) -> dict[str, float]:
        """NeuroBench-compatible ``SynapticOperations`` (per sample)."""
        return {"Effective_MACs": self._sum("effective_macs", ["synapse", "mac"]),
                "Effective_ACs": self._sum("effective_acs", ["synapse"]),
                "Dense": self.dense_ops}

    def totals(self) -> dict[str, float]:
        """The headline totals as a flat dict."""
        return {
            "macs": self.macs, "acs": self.acs, "synops": self.synops, "dense_ops": self.dense_ops,
            "other_ops": self.other_ops, "mask_ops_dense": self.mask_ops_dense,
            "mask_ops_effective": self.mask_ops_effective, "sdsa_adds": self.sdsa_adds,
            "neuron_updates_dense": self.neuron_updates_dense,
            "neuron_updates_effective": self.neuron_updates_effective, "spikes": self.spikes,
            "n_weights": float(self.n_weights), "weight_bytes": self._sum("weight_bytes"),
            "weight_fetches": self._sum("weight_fetches"), "weight_fetches_dense": self._sum("weight_fetches_dense"),
            "activation_bytes": self._sum("activation_bytes"),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        return {"name": self.name, "kind": self.kind, "T": self.T, "samples": self.samples,
                "weight_bits": self.weight_bits, "state_bits": self.state_bits, "meta": dict(self.meta),
                "totals": self.totals(), "layers": [lc.to_dict() for lc in self.layers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpCounts:
        """The inverse of :meth:`to_dict` (``totals`` is recomputed from the layers, not read).

        Raises:
            ValueError: a field or a layer field is missing or unknown.
        """
        keys = ("name", "kind", "T", "samples", "weight_bits", "state_bits", "meta", "layers")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"not an OpCounts record: missing fields {missing}")
        return cls(name=data["name"], kind=data["kind"], T=data["T"], samples=data["samples"],
                   layers=tuple(LayerCounts.from_dict(lc) for lc in data["layers"]),
                   weight_bits=data["weight_bits"], state_bits=data["state_bits"], meta=dict(data["meta"] or {}))

    def with_precision(self, weight_bits: int, state_bits: int) -> OpCounts:
        """The same counts with byte terms recomputed at another deployment precision."""
        layers = tuple(replace(lc, weight_bytes=lc.n_weights * weight_bits / 8,
                               state_bytes=lc.n_neurons * state_bits / 8) for lc in self.layers)
        return replace(self, layers=layers, weight_bits=weight_bits, state_bits=state_bits)


# ----------------------------------------------------------------------------------------- graph walk


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _pair(v: Any, n: int) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return tuple(a * n if len(a) == 1 else a)


class _Layer:
    """A connection node as a bias-free linear map with binarised weights (torch)."""

    def __init__(self, node: Any, in_shape: tuple[int, ...] | None) -> None:
        import torch

        self.type = type(node).__name__
        self.node = node
        self.kernel_area = 1
        self.bias = None
        w = getattr(node, "weight", None)
        self.w = None if w is None else torch.as_tensor((_np(w) != 0).astype(np.float32))
        b = getattr(node, "bias", None)
        if b is not None and np.any(_np(b) != 0):
            self.bias = _np(b)
        if self.type in ("Conv1d", "Conv2d"):
            nd = 1 if self.type == "Conv1d" else 2
            self.kernel_area = int(np.prod(_np(w).shape[2:]))
            self.stride = _pair(node.stride, nd)
            self.dilation = _pair(node.dilation, nd)
            self.groups = int(node.groups)
            pad = node.padding
            self.padding = pad if isinstance(pad, str) else _pair(pad, nd)
            self.nd = nd
        elif self.type in ("SumPool2d", "AvgPool2d"):
            self.kernel = _pair(node.kernel_size, 2)
            self.stride = _pair(node.stride, 2)
            self.padding = _pair(node.padding, 2)
            self.kernel_area = int(np.prod(self.kernel))
        self.in_shape = in_shape

    def apply(self, x: Any) -> Any:
        """``x``: float tensor ``[M, *in_shape]`` -> ``[M, *out_shape]`` (bias-free, binarised weights)."""
        import torch
        import torch.nn.functional as F

        if self.type in ("Affine", "Linear"):
            # weight (..., out, in) over x (..., in): batched over leading weight dims (NIR semantics)
            return torch.matmul(self.w, x.unsqueeze(-1)).squeeze(-1)
        if self.type == "Conv1d":
            return F.conv1d(x, self.w, None, self.stride, self.padding, self.dilation, self.groups)
        if self.type == "Conv2d":
            return F.conv2d(x, self.w, None, self.stride, self.padding, self.dilation, self.groups)
        # SumPool/AvgPool: binarised weights are all ones -> sum pooling
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=True) * self.kernel_area

    def fanout(self, in_shape: tuple[int, ...]) -> np.ndarray:
        """Fan-out (non-zero weights reaching a valid output) of every input element."""
        import torch

        ones = torch.ones((1, *in_shape), requires_grad=True)
        self.apply(ones).sum().backward()
        return ones.grad[0].numpy()


def _sum_per_sample(a: np.ndarray, B: int) -> float:
    return float(a.sum()) / max(B, 1)


def count_snn(
    graph: Any,
    result: Any,
    *,
    inputs: Mapping[str, Any] | None = None,
    x: Any | None = None,
    weight_bits: int = 8,
    state_bits: int = 16,
    name: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> OpCounts:
    """Counts spikes, synaptic ops, SDSA mask ops, neuron updates and memory traffic from simulator records.

    Args:
        graph: the deployed ``nir.NIRGraph`` that was simulated (or its
            :func:`~neuroposter.ir.graph.flatten`).
        result: the ``SimResult`` of ``neuroposter.ir.simulate(..., record=True)`` (``.records``, ``.inputs``),
            or a dict ``path -> spikes [T, B, *shape]``.
        inputs: ``path -> values [T, B, *in_shape]`` feeding each connection node (overrides ``result.inputs``).
            A connection node without an entry gets the sum of its spiking predecessors' records.
        x: the graph input ``[T, B, *input_shape]`` (used for connection nodes fed by the graph input).
        weight_bits: deployment weight precision (bytes of weight fetches).
        state_bits: deployment neuron-state precision (bytes of state reads/writes).
        name: label of the counts.
        meta: provenance to keep with the counts.

    Returns:
        :class:`OpCounts` of kind ``"snn"``, per sample.

    Raises:
        ValueError: records with inconsistent time/batch dimensions, a connection node whose input can
            be neither read nor reconstructed, or a graph that does not flatten
            (:class:`~neuroposter.ir.graph.GraphError`).
    """
    import torch

    records = getattr(result, "records", result) or {}
    ins = dict(getattr(result, "inputs", None) or {})
    ins.update(inputs or {})
    records = {k: _np(v) for k, v in records.items()}
    ins = {k: _np(v) for k, v in ins.items()}
    g = graph if isinstance(graph, Graph) else flatten(graph)
    nodes = {p: n.nir for p, n in g.nodes.items()}
    edges = g.edges                 # with repetition: NIR sums a repeated edge twice
    preds: dict[str, list[str]] = {p: [] for p in nodes}
    for s, d in edges:
        preds[d].append(s)
    input_paths = list(g.inputs)
    xin = _np(x) if x is not None else None

    shapes = [v.shape[:2] for v in list(records.values()) + list(ins.values())]
    if xin is not None:
        shapes.append(xin.shape[:2])
    if not shapes:
        raise ValueError("no records: simulate with record=True")
    T = max(s[0] for s in shapes)
    B = shapes[0][1]
    if any(s[1] != B for s in shapes):
        raise ValueError(f"records disagree on the batch size: {sorted({s[1] for s in shapes})}")

    order, recurrent = g.topo_sort()
    order += recurrent  # nodes on or behind a cycle follow in graph order: recurrence is not ordered
    events: dict[str, np.ndarray | None] = {}  # path -> bool events [T, B, *shape] of the node's output
    values: dict[str, np.ndarray | None] = {}  # path -> actual output values when known (spikes / graph input)
    layers: list[LayerCounts] = []

    def pad_t(a: np.ndarray) -> np.ndarray:
        if a.shape[0] == T:
            return a
        pad = np.zeros((T - a.shape[0], *a.shape[1:]), dtype=a.dtype)
        return np.concatenate([pad, a], axis=0)  # per-hop records start later: align at the end

    def resolve(path: str, want_values: bool) -> np.ndarray | None:
        """Sum of predecessor outputs (values if all known, else events) for ``path``."""
        acc = None
        for p in preds.get(path, []):
            a = values.get(p) if want_values else events.get(p)
            if a is None:
                return None
            a = pad_t(a).astype(np.float32)
            if acc is None:
                acc = a
            elif acc.shape == a.shape:
                acc = acc + a
            else:
                return None
        return acc

    approx_global: list[str] = []
    for path in order:
        node = nodes[path]
        typ = g.nodes[path].type.name
        sdsa = g.tag(path).get("op") == "sdsa"
        if path in input_paths:
            if path in ins:
                v = ins[path]
            elif xin is not None and len(input_paths) == 1:
                v = xin
            else:
                v = None
            values[path] = v
            events[path] = None if v is None else (v != 0)
            continue
        if typ in _PASS_THROUGH:
            v = resolve(path, True)
            e = resolve(path, False)
            if typ == "Flatten":
                v = None if v is None else v.reshape(*v.shape[:2], -1)
                e = None if e is None else e.reshape(*e.shape[:2], -1)
            values[path] = v
            events[path] = None if e is None else (e > 0)
            continue
        if typ in _CONNECTIONS:
            approx: list[str] = []
            if path in ins:
                xv = ins[path]
            else:
                xv = resolve(path, True)
                if xv is None:
                    ev = resolve(path, False)
                    if ev is None:
                        raise ValueError(f"cannot count {path} ({typ}): no recorded input and no recorded "
                                         f"predecessor; pass inputs={{{path!r}: ...}}")
                    xv = ev
                    approx.append("input reconstructed from predecessor events (values unknown)")
            xv = pad_t(xv)
            in_shape = tuple(xv.shape[2:])
            lay = _Layer(node, in_shape)
            n_w = g.synapses(path).stored      # the one synapse count (neuroposter.ir.graph)
            fan = lay.fanout(in_shape)
            nz = (xv != 0)
            binary = bool(np.all(np.isin(xv[nz], (-1.0, 1.0)))) if nz.any() else True
            per_step = np.array([(nz[t] * fan).sum() for t in range(T)], dtype=np.float64) / max(B, 1)
            eff = float(per_step.sum())
            dense = float(fan.sum()) * T
            with torch.no_grad():
                out = lay.apply(torch.as_tensor(nz.reshape(T * B, *in_shape).astype(np.float32)))
            out_np = out.numpy().reshape(T, B, *out.shape[1:])
            ev_out = out_np > 0
            if lay.bias is not None:
                try:
                    bias_b = np.broadcast_to(lay.bias.reshape(lay.bias.shape + (1,) * (out_np.ndim - 2 - lay.bias.ndim)),
                                             out_np.shape[2:]) != 0
                    ev_out = ev_out | bias_b
                except ValueError:
                    ev_out = np.ones_like(ev_out)
                    approx.append("bias shape did not broadcast; every output treated as driven")
            events[path] = ev_out
            values[path] = None
            layers.append(LayerCounts(
                name=path, op_type=typ, kind="synapse", dense_ops=dense,
                effective_acs=eff if binary else 0.0, effective_macs=0.0 if binary else eff,
                per_step=tuple(float(v) for v in per_step), events_in=_sum_per_sample(nz, B),
                n_weights=n_w, weight_bytes=n_w * weight_bits / 8,
                weight_fetches=eff, weight_fetches_dense=float(n_w) * T,
                kernel_area=lay.kernel_area, has_bias=lay.bias is not None, sdsa=sdsa,
                in_shape=in_shape, out_shape=tuple(out_np.shape[2:]), approximations=tuple(approx),
            ))
            continue
        if typ in _NEURONS:
            approx = []
            rec = records.get(path)
            drive = resolve(path, False)
            if rec is not None:
                rec = pad_t(rec)
                shape = tuple(rec.shape[2:])
            elif drive is not None:
                shape = tuple(drive.shape[2:])
            else:
                shape = _node_shape(node)
            n = int(np.prod(shape)) if shape else 0
            leak = getattr(node, "v_leak", None)
            leak_mask = None
            if leak is not None and np.any(_np(leak) != 0):
                try:
                    leak_mask = np.broadcast_to(_np(leak) != 0, shape)
                except ValueError:
                    leak_mask = np.ones(shape, bool)
            if drive is None or tuple(drive.shape[2:]) != shape:
                driven = float(n * T)
                approx.append("input events unknown; effective updates = dense")
            else:
                d_ = drive > 0
                if leak_mask is not None:  # a non-zero v_leak (e.g. positional bias) drives the neuron each step
                    d_ = d_ | leak_mask
                driven = _sum_per_sample(d_, B)
            if rec is not None:
                spikes_t = rec.reshape(T, B, -1).astype(np.float64).sum(axis=(1, 2)) / max(B, 1)
                values[path] = rec.astype(np.float32)
                events[path] = rec != 0
            else:
                spikes_t = np.zeros(T)
                values[path] = None
                events[path] = None
                if typ in _SPIKING:
                    approx.append("no spike record")
            kind = "mask" if typ == "Threshold" and (sdsa or len(preds.get(path, [])) >= 2) else "neuron"
            layers.append(LayerCounts(
                name=path, op_type=typ, kind=kind, per_step=tuple(float(v) for v in spikes_t),
                spikes=float(spikes_t.sum()), n_neurons=n, updates_dense=float(n * T),
                updates_effective=driven, state_bytes=n * state_bits / 8, sdsa=sdsa,
                out_shape=shape, approximations=tuple(approx),
            ))
            continue
        approx_global.append(f"{path}: node type {typ} not counted")
        values[path] = None
        events[path] = None
    # SDSA core connections (token sum, broadcast): inside an SDSA sub-graph and fed by, or feeding, a mask.
    masks = {lc.name for lc in layers if lc.kind == "mask"}
    succs: dict[str, list[str]] = {}
    for s_, d_ in edges:
        succs.setdefault(s_, []).append(d_)

    def near_mask(path: str, nbrs: Mapping[str, list[str]], depth: int = 0) -> bool:
        for q in nbrs.get(path, []):
            if q in masks:
                return True
            if type(nodes[q]).__name__ in _PASS_THROUGH and depth < 8 and near_mask(q, nbrs, depth + 1):
                return True
        return False

    def structural(path: str) -> bool:  # token sum / broadcast maps hold only 0/1 weights; projections do not
        w = getattr(nodes[path], "weight", None)
        return w is None or bool(np.all(np.isin(_np(w), (0.0, 1.0))))

    layers = [replace(lc, sdsa=lc.sdsa and structural(lc.name)
                      and (near_mask(lc.name, preds) or near_mask(lc.name, succs)))
              if lc.kind == "synapse" else lc for lc in layers]
    m = dict(meta or {})
    if approx_global:
        m["not_counted"] = approx_global
    return OpCounts(name=name or str((getattr(graph, "metadata", None) or {}).get("source_run", "snn")),
                    kind="snn", T=int(T), samples=int(B), layers=tuple(layers),
                    weight_bits=weight_bits, state_bits=state_bits, meta=m)


def _node_shape(node: Any) -> tuple[int, ...]:
    for attr in ("v_threshold", "tau", "r", "threshold"):
        v = getattr(node, attr, None)
        if v is not None:
            return tuple(np.shape(v))
    it = getattr(node, "input_type", None) or {}
    v = it.get("input") if isinstance(it, dict) else None
    return tuple(int(s) for s in v) if v is not None else ()
