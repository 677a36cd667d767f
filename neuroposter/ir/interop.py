"""NIR that other tools load: the portable flat variant, one runner per NIR consumer, and foreign graphs.

neuroposter's graphs are discrete-time with ``dt = 1`` (one step; ``metadata["dt"]``), forward Euler, strict
threshold ``v > v_th`` and reset to zero (``metadata["reset"] = "zero"``). NIR's neurons are continuous-time
(``tau dv/dt = (v_leak - v) + r I``); under forward Euler with the recorded ``dt`` they are exactly the
project's neurons, so a consumer must be told ``dt``. What each consumer takes and why:

* **Norse** (``norse.torch.from_nir(graph, dt=1.0)``): maps LIF to ``LIFBoxCell`` (forward Euler, strict
  threshold, reset to ``v_reset``), ``Affine``, ``Conv2d``, ``SumPool2d`` and ``Flatten``; it has no
  ``Conv1d``, no ``Threshold``, no channel-batched ``Linear`` and does not recurse into sub-graphs (the SDT's
  ``KeyError: 'q'``). Norse's default ``dt`` is 1e-3, under which every decay ``dt/tau`` is 1000x too small:
  pass ``dt`` = the graph's ``metadata["dt"]``. Give it the portable graph (:func:`portable_graph`). Norse
  1.1.0 executes through nirtorch's deprecated ``GraphExecutor``, which orders nodes depth-first from the
  Input: a fork that joins again (the SDSA's K/V AND, the residual sums) is computed with a one-step delay on
  one branch, so Norse runs the spiking MLP (a chain) but **not the SDT** (:func:`consumer_support` says so).
* **snnTorch** (``snntorch.import_nir.import_from_nir``): hard-codes ``dt = 1e-4`` and maps LIF to
  ``Leaky(beta = 1 - dt/tau)`` with the input gain folded into the threshold (``v_th / (r dt/tau)``), reset to
  zero; it asserts ``v_leak = 0`` and has no ``Threshold``/``SumPool2d`` of its own (nirtorch's defaults fill
  ``Conv1d``/``Conv2d``/``SumPool2d``). Give it the portable graph with its time constants rescaled to
  ``dt = 1e-4`` (:func:`rescale_time`): the same discrete system; the portable graph carries the SDT's
  per-token positional bias (a ``v_leak``) as an input current.
* **nirtorch** (``nirtorch.nir_to_torch(graph, node_map)``): the graph interpreter (sums fan-in, recurses
  into sub-graphs, maps ``Conv1d``/``Conv2d``/``Flatten``/pools); it ships no neuron, so :func:`nirtorch_node_map`
  supplies NIR's neurons under forward Euler with the graph's ``dt`` (plus ``Affine``, whose default map
  leaves the bias random in nirtorch 2.6, and the channel-batched ``Linear``). It recurses into sub-graphs
  only when the nodes stand in topological order: it re-queues a node whose inputs are not built yet, and a
  re-queued sub-graph crashes (``'GraphModule' object has no attribute 'items'``); ``nir.read`` returns the
  nodes in alphabetical (HDF5) order, so a nested file fails. It is given the portable graph too.

The **portable graph** (:func:`portable_graph`, the bundle's ``graph_flat.nir``) is the same network with the
sub-graphs inlined (dotted node names, one flat ``NIRGraph``) and rewritten into the NIR nodes all three
consumers map, each rewrite exact (see :func:`portable_graph`). ``x`` of the runners is ``[T, B, ...]`` with
the graph's input elements in the graph's order (``[T, B, D, N]`` or the portable ``[T, B, D, N, 1]``: a
reshape); they return the per-step output ``[T, B, C]`` (float64).

**Foreign graphs** (:func:`load_foreign`): a NIR file written by another tool (snnTorch's ``export_to_nir``,
Norse's ``to_nir``) made runnable by :func:`neuroposter.ir.simulate.simulate` and countable by
:func:`neuroposter.profiling.counts.count_snn`: its ``dt`` recorded, a batch dimension dropped from ``Input``,
scalar neuron parameters broadcast to the layer's shape.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

import nir
import numpy as np

from neuroposter.errors import NeuroposterError
from neuroposter.ir.graph import flatten

__all__ = [
    "InteropError",
    "SNNTORCH_DT",
    "FOREIGN_DT",
    "Consumer",
    "CONSUMERS",
    "is_nested",
    "portable_graph",
    "rescale_time",
    "consumer_support",
    "consumer_graph",
    "nirtorch_node_map",
    "run_in_norse",
    "run_in_snntorch",
    "run_in_nirtorch",
    "run_consumer",
    "load_foreign",
]

#: snnTorch 1.0.0's NIR import and export fix the time step at 1e-4 (``dt = 1e-4`` in ``snntorch/import_nir.py``).
SNNTORCH_DT = 1e-4
#: The time step each known producer writes its graphs in (Norse's ``to_nir`` default ``dt`` is 1e-3).
FOREIGN_DT: dict[str, float] = {"snntorch": SNNTORCH_DT, "norse": 1e-3, "neuroposter": 1.0}


class InteropError(NeuroposterError):
    """A graph that a consumer cannot run faithfully, or a foreign graph that cannot be made runnable."""


def _meta(g: nir.NIRGraph) -> dict[str, Any]:
    return dict(g.metadata) if isinstance(g.metadata, Mapping) else {}


def _dt(g: nir.NIRGraph) -> float:
    return float(np.asarray(_meta(g).get("dt", 1.0)).reshape(-1)[0])


def is_nested(graph: nir.NIRGraph) -> bool:
    """True when ``graph`` holds a sub-``NIRGraph``."""
    return any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values())


# -------------------------------------------------------------------------------------------------
# the portable (flat) variant
# -------------------------------------------------------------------------------------------------


def _lift(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """Token tensors ``[C, N]`` become ``[C, N, 1]`` (Conv2d layout); other shapes stay."""
    if shape is None:
        return None
    return (*shape, 1) if len(shape) == 2 else tuple(shape)


def _reshaped(a: Any, old: tuple[int, ...] | None, new: tuple[int, ...] | None) -> Any:
    arr = np.asarray(a)
    if old is not None and new is not None and old != new and arr.shape == tuple(old):
        return arr.reshape(new).copy()
    return arr.copy() if isinstance(a, np.ndarray) else a


def _neg_dim(d: int, rank: int) -> int:
    return d - rank if d >= 0 else d


def _flatten_node(x: nir.Flatten, old: tuple[int, ...], new: tuple[int, ...]) -> nir.Flatten:
    r_old, r_new = len(old), len(new)
    start = int(np.asarray(x.start_dim).reshape(-1)[0])
    end = int(np.asarray(x.end_dim).reshape(-1)[0])
    start = start if start >= 0 else start + r_old
    end = end if end >= 0 else end + r_old
    if r_old - (end - start) == 2 and len(new) == r_old:
        raise InteropError(f"a Flatten of {list(old)} into token tensors [C, N] has no portable form: the portable "
                           "graph writes tokens as [C, N, 1], and NIR has no reshape that adds that axis")
    # Negative dims mean the same axis with or without a leading batch dim: consumers pass them to torch.
    new_end = -1 if end == r_old - 1 else end - r_new
    return nir.Flatten(input_type={"input": np.array(new)}, start_dim=_neg_dim(start, r_new), end_dim=new_end,
                       metadata=dict(x.metadata or {}))


def _conv1d_as_conv2d(x: nir.Conv1d, path: str) -> nir.Conv2d:
    w = np.asarray(x.weight)
    if w.shape[2] != 1:
        raise InteropError(f"node {path!r}: Conv1d with kernel {w.shape[2]} has no exact Conv2d form that NIR 1.0.8 "
                           "types correctly (it reads one kernel size for both axes); only kernel 1 is rewritten")
    pad = np.asarray(x.padding).reshape(-1)
    if pad.dtype.kind in "SUO":
        raise InteropError(f"node {path!r}: Conv1d with padding {pad[0]!r} is not rewritten")
    n = int(np.asarray(x.input_shape).reshape(-1)[0])
    return nir.Conv2d(input_shape=(n, 1), weight=w[..., None].copy(),
                      stride=(int(np.asarray(x.stride).reshape(-1)[0]), 1), padding=(int(pad[0]), 0),
                      dilation=(int(np.asarray(x.dilation).reshape(-1)[0]), 1),
                      groups=int(np.asarray(x.groups).reshape(-1)[0]), bias=np.asarray(x.bias).copy(),
                      metadata=dict(x.metadata or {}))


def _batched_linear(x: nir.Linear, path: str) -> nir.NIRNode:
    """A channel-batched ``Linear`` (weight ``[D, out, in]``: ``y[d] = W[d] x[d]``) on ``[D, in, 1]``."""
    w = np.asarray(x.weight)
    d, m, k = w.shape
    if m == 1 and np.all(w == 1):   # token sum -> SumPool2d over the token axis
        return nir.SumPool2d(kernel_size=np.array([k, 1]), stride=np.array([k, 1]), padding=np.array([0, 0]),
                             metadata=dict(x.metadata or {}))
    if k == 1:   # broadcast [D, 1, 1] -> [D, m, 1]: a square-kernel Conv2d (NIR types Conv2d by weight.shape[2])
        conv = np.zeros((d, d, m, m), dtype=w.dtype)
        idx = np.arange(d)
        for j in range(m):   # output row j reads the input through kernel row m-1-j, column m-1
            conv[idx, idx, m - 1 - j, m - 1] = w[:, j, 0]
        return nir.Conv2d(input_shape=(1, 1), weight=conv, stride=(1, m), padding=(m - 1, m - 1), dilation=1,
                          groups=1, bias=np.zeros(d, dtype=w.dtype), metadata=dict(x.metadata or {}))
    raise InteropError(f"node {path!r}: a channel-batched Linear {tuple(w.shape)} has no portable form (only a "
                       "token sum of ones [D, 1, N] or a broadcast [D, N, 1] is rewritten)")


def _threshold_as_lif(x: nir.Threshold, old: tuple[int, ...], shape: tuple[int, ...], dt: float) -> nir.LIF:
    th = np.broadcast_to(_reshaped(x.threshold, old, shape), shape).copy()
    z = np.zeros(shape, dtype=th.dtype)
    return nir.LIF(tau=np.full(shape, dt, dtype=th.dtype), r=np.ones(shape, dtype=th.dtype), v_leak=z.copy(),
                   v_threshold=th, v_reset=z.copy(), metadata={**dict(x.metadata or {}), "rewritten_from": "Threshold"})


def _portable_node(path: str, x: nir.NIRNode, old_in: Any, old_out: Any, dt: float,
                   rewrites: dict[str, int]) -> nir.NIRNode:
    new_in, new_out = _lift(old_in), _lift(old_out)
    if isinstance(x, nir.Input):
        return nir.Input(input_type={"input": np.array(new_out)}, metadata=dict(x.metadata or {}))
    if isinstance(x, nir.Output):
        return nir.Output(output_type={"output": np.array(new_in)}, metadata=dict(x.metadata or {}))
    if isinstance(x, nir.Threshold):
        rewrites["Threshold -> LIF(tau=dt)"] = rewrites.get("Threshold -> LIF(tau=dt)", 0) + 1
        return _threshold_as_lif(x, old_out, new_out, dt)
    if isinstance(x, nir.Conv1d):
        rewrites["Conv1d(k=1) -> Conv2d(1x1)"] = rewrites.get("Conv1d(k=1) -> Conv2d(1x1)", 0) + 1
        return _conv1d_as_conv2d(x, path)
    if isinstance(x, nir.Linear) and np.asarray(x.weight).ndim == 3:
        node = _batched_linear(x, path)
        key = ("channel-batched Linear -> " + type(node).__name__)
        rewrites[key] = rewrites.get(key, 0) + 1
        return node
    if isinstance(x, nir.Flatten):
        return _flatten_node(x, tuple(old_in), tuple(new_in))
    if isinstance(x, (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)):
        return copy.deepcopy(x)
    # neurons, Scale, Delay: per-element parameters follow the lifted shape
    y = copy.deepcopy(x)
    for name in ("tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem", "w_in", "scale", "delay"):
        if getattr(y, name, None) is not None:
            setattr(y, name, _reshaped(getattr(y, name), old_out, new_out))
    y.__post_init__()
    return y


def _leak_branch(prefix: str, v_leak: np.ndarray, shape: tuple[int, ...], input_path: str,
                 input_shape: tuple[int, ...]) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Nodes and edges that feed the constant current ``v_leak`` (shape ``[D, N, 1]``) from the graph input:
    ``SumPool2d`` of the input to one position, a zero-weight 1x1 ``Conv2d`` with bias 1 (the constant 1), and a
    ``Conv2d`` with an ``N x N`` kernel (padding ``N-1``, stride ``(1, N)``) whose last column holds ``v_leak``."""
    c_in, n_in, _ = input_shape
    d, n, _ = shape
    dtype = v_leak.dtype
    w = np.zeros((d, 1, n, n), dtype=dtype)
    for j in range(n):
        w[:, 0, n - 1 - j, n - 1] = v_leak[:, j, 0]
    nodes: dict[str, nir.NIRNode] = {
        f"{prefix}.leak_pool": nir.SumPool2d(kernel_size=np.array([n_in, 1]), stride=np.array([n_in, 1]),
                                             padding=np.array([0, 0])),
        f"{prefix}.leak_one": nir.Conv2d(input_shape=(1, 1), weight=np.zeros((1, c_in, 1, 1), dtype=dtype), stride=1,
                                         padding=0, dilation=1, groups=1, bias=np.ones(1, dtype=dtype)),
        f"{prefix}.leak": nir.Conv2d(input_shape=(1, 1), weight=w, stride=(1, n), padding=(n - 1, n - 1), dilation=1,
                                     groups=1, bias=np.zeros(d, dtype=dtype)),
    }
    edges = [(input_path, f"{prefix}.leak_pool"), (f"{prefix}.leak_pool", f"{prefix}.leak_one"),
             (f"{prefix}.leak_one", f"{prefix}.leak"), (f"{prefix}.leak", prefix)]
    return nodes, edges


def portable_graph(graph: nir.NIRGraph, *, leak_as_input: bool = True) -> nir.NIRGraph:
    """The network as one flat graph of the NIR nodes Norse, snnTorch and nirtorch all map (``graph_flat.nir``).

    Sub-graphs are inlined with :func:`neuroposter.ir.graph.flatten` (node names are the dotted paths, e.g.
    ``"blocks.0.attn.and_kv"``; each inlined node's metadata gets ``"subgraph"`` and, for tagged sub-graphs,
    ``"subgraph_op"``). Rewrites, each exact:

    * token tensors ``[C, N]`` become ``[C, N, 1]`` (the Input too) and ``Conv1d(kernel=1)`` the same 1x1
      ``Conv2d`` (Norse has no Conv1d);
    * ``Threshold(theta)`` -> ``LIF(tau=dt, r=1, v_leak=0, v_threshold=theta, v_reset=0)``: under forward
      Euler ``v <- v + (dt/tau)(I - v) = I``, then ``z = [I > theta]`` and reset (exact for the spike sums
      that feed the SDSA ANDs; a float input may differ by one rounding);
    * the channel-batched token sum (``Linear`` of ones ``[D, 1, N]``) -> ``SumPool2d((N, 1))``;
    * the channel-batched broadcast (``Linear`` ``[D, N, 1]``) -> ``Conv2d`` with an ``N x N`` kernel whose
      last column holds the weights, padding ``N-1``, stride ``(1, N)`` (NIR 1.0.8 types a Conv2d by one kernel
      size, so the kernel is square; it stores ``D^2 N^2`` weights, mostly zeros);
    * ``Flatten`` dims are written negative, which mean the same axes with or without a batch dim (the
      consumers hand them to ``torch.nn.Flatten`` on batched tensors);
    * with ``leak_as_input`` (default), a token LIF's ``v_leak`` (the SDT's positional bias; snnTorch asserts
      ``v_leak = 0``) becomes an input current ``<lif>.leak`` fed from the graph input through
      ``<lif>.leak_pool`` (SumPool2d to one position) and ``<lif>.leak_one`` (zero-weight Conv2d, bias 1): with
      ``r = 1``, ``r (I + v_leak) = r I + v_leak``.

    ``metadata`` is the top graph's, plus ``variant = "portable"``, ``rewrites`` (counts by kind) and
    ``input_shape``.

    Raises:
        InteropError: a node without a portable form, or edges that stand twice (consumers disagree on them).
    """
    flat = flatten(graph, strict=True)
    if len(set(flat.edges)) != len(flat.edges):
        dup = [e for e in dict.fromkeys(flat.edges) if flat.edges.count(e) > 1]
        raise InteropError(f"edges {dup[:3]} stand more than once; consumers do not sum repeated edges alike")
    rewrites: dict[str, int] = {}
    nodes: dict[str, nir.NIRNode] = {}
    edges = list(flat.edges)
    in_shape = _lift(flat.nodes[flat.input].out_shape)
    for path, u in flat.nodes.items():
        node = _portable_node(path, u.nir, u.in_shape, u.out_shape, flat.dt, rewrites)
        if u.group:
            tag = flat.tag(path)
            extra = {"subgraph": u.group, **({"subgraph_op": str(tag["op"])} if "op" in tag else {})}
            node.metadata = {**dict(node.metadata or {}), **extra}
        nodes[path] = node
        leak = getattr(node, "v_leak", None)
        if leak_as_input and isinstance(node, nir.LIF) and np.any(np.asarray(leak) != 0):
            shape = tuple(np.asarray(leak).shape)
            if len(shape) != 3 or len(in_shape or ()) != 3 or not np.allclose(np.asarray(node.r), 1):
                raise InteropError(f"node {path!r}: v_leak is moved to an input current only for token LIFs "
                                   "[D, N, 1] with r = 1 in a token graph")
            more, more_edges = _leak_branch(path, np.asarray(leak), shape, flat.input, in_shape)
            nodes.update(more)
            edges.extend(more_edges)
            node.v_leak = np.zeros_like(np.asarray(leak))
            rewrites["LIF v_leak -> input current"] = rewrites.get("LIF v_leak -> input current", 0) + 1
    clean = {p.replace(".", "_") for p in nodes}
    if len(clean) != len(nodes):
        raise InteropError("two node paths differ only by '.' vs '_'; consumers rename '.' to '_'")
    meta = {**flat.metadata, "variant": "portable", "rewrites": dict(sorted(rewrites.items())),
            "input_shape": np.array(_lift(flat.nodes[flat.input].out_shape))}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


def rescale_time(graph: nir.NIRGraph, dt: float) -> nir.NIRGraph:
    """The same discrete-time network written for time step ``dt``: every ``tau`` (LIF, LI, CubaLIF
    ``tau_syn``/``tau_mem``) and ``Delay`` scaled by ``dt / metadata["dt"]``, IF/I gains ``r`` by the inverse,
    and ``metadata["dt"] = dt`` (recursively). Under forward Euler every update ``dt/tau`` is unchanged."""
    old = _dt(graph)
    k = float(dt) / old
    g = copy.deepcopy(graph)

    def visit(h: nir.NIRGraph) -> None:
        for n in h.nodes.values():
            if isinstance(n, nir.NIRGraph):
                visit(n)
                continue
            for name in ("tau", "tau_syn", "tau_mem", "delay"):
                if getattr(n, name, None) is not None:
                    setattr(n, name, np.asarray(getattr(n, name)) * k)
            if isinstance(n, (nir.IF, nir.I)):
                n.r = np.asarray(n.r) / k
        if "dt" in (h.metadata or {}):
            h.metadata["dt"] = float(dt)

    visit(g)
    g.metadata = {**_meta(g), "dt": float(dt)}
    return g


# -------------------------------------------------------------------------------------------------
# consumers
# -------------------------------------------------------------------------------------------------


def _steps(module: Any, x: Any, shape: tuple[int, ...], *, stateful: bool, dtype: Any) -> np.ndarray:
    import torch

    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu())
    T, B = int(xt.shape[0]), int(xt.shape[1])
    xt = xt.reshape(T, B, *shape).to(dtype)
    outs, state = [], None
    with torch.no_grad():
        for t in range(T):
            if stateful:
                out, state = module(xt[t], state)
            else:
                out = module(xt[t])
                out = out[0] if isinstance(out, tuple) else out
            outs.append(out.detach().to(torch.float64).reshape(B, -1).numpy())
    return np.stack(outs)


def _input_shape(graph: nir.NIRGraph) -> tuple[int, ...]:
    ins = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    if len(ins) != 1:
        raise InteropError(f"the graph has {len(ins)} Input nodes; the runners need one")
    return tuple(int(s) for s in np.asarray(next(iter(ins[0].input_type.values()))).reshape(-1))


def run_in_norse(graph: nir.NIRGraph, x: Any) -> np.ndarray:
    """Runs ``graph`` in Norse: ``norse.torch.from_nir(graph, dt=metadata["dt"])``, stepped over ``T`` with its state.

    Passes ``dt`` = the graph's ``metadata["dt"]`` (1 for neuroposter's graphs) because Norse's LIFBoxCell
    integrates ``v += dt/tau (...)`` and its default ``dt = 1e-3`` would make every decay 1000x too small.
    Norse computes in float32. ``graph`` must be flat and use Norse's nodes: pass :func:`portable_graph`.

    Returns:
        The per-step output ``[T, B, C]`` (float64).
    """
    import torch
    import norse.torch

    module = norse.torch.from_nir(graph, dt=_dt(graph))
    return _steps(module, x, _input_shape(graph), stateful=True, dtype=torch.float32)


def run_in_snntorch(graph: nir.NIRGraph, x: Any) -> np.ndarray:
    """Runs ``graph`` in snnTorch: ``snntorch.import_nir.import_from_nir(rescale_time(graph, 1e-4))``.

    snnTorch's import fixes ``dt = 1e-4`` (``beta = 1 - 1e-4/tau``), so the graph's time constants are rescaled
    to that step first (:func:`rescale_time`: the same discrete network). Its neurons keep their state inside
    the modules (``init_hidden``), so the state is cleared with ``snntorch.utils.reset`` before the ``T`` steps.
    snnTorch computes in float32 and prints its own warnings (threshold scaling).

    Returns:
        The per-step output ``[T, B, C]`` (float64).
    """
    import contextlib
    import io

    import torch
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):   # snnTorch prints while it converts
        module = import_from_nir(rescale_time(graph, SNNTORCH_DT))
    snntorch.utils.reset(module)
    with contextlib.redirect_stdout(io.StringIO()):
        return _steps(module, x, _input_shape(graph), stateful=False, dtype=torch.float32)


class _EulerNeuron:
    """Builds the torch module of a NIR neuron under forward Euler with step ``dt`` (the nirtorch node map)."""

    @staticmethod
    def module(node: nir.NIRNode, dt: float) -> Any:
        import torch

        def t(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64))

        class Neuron(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.kind = type(node).__name__
                for name in ("threshold", "tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem",
                             "w_in"):
                    if getattr(node, name, None) is not None:
                        self.register_buffer(name, t(getattr(node, name)))
                if self.kind != "Threshold" and getattr(node, "v_reset", None) is None:
                    self.register_buffer("v_reset", torch.zeros(()))

            def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
                x = x.to(torch.float64)
                if self.kind == "Threshold":
                    return (x > self.threshold).to(x.dtype), None
                if self.kind == "CubaLIF":
                    i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
                    i = i + dt / self.tau_syn * (self.w_in * x - i)
                    v = v + dt / self.tau_mem * ((self.r * i + self.v_leak) - v)
                else:
                    v = torch.zeros_like(x) if state is None else state
                    if self.kind == "LIF":
                        v = v + dt / self.tau * ((self.r * x + self.v_leak) - v)
                    else:   # IF
                        v = v + dt * self.r * x
                z = v > self.v_threshold
                v = torch.where(z, self.v_reset.expand_as(v), v)
                return z.to(x.dtype), ((i, v) if self.kind == "CubaLIF" else v)

        return Neuron()


def nirtorch_node_map(dt: float) -> dict[type, Callable[[nir.NIRNode], Any]]:
    """The ``node_map`` given to ``nirtorch.nir_to_torch``: NIR's spiking neurons (LIF, CubaLIF, IF, Threshold)
    under forward Euler with step ``dt``, strict threshold and reset to ``v_reset``; ``Affine`` (nirtorch 2.6's
    default assigns the bias to ``weight.bias``, leaving the layer's bias random); channel-batched ``Linear``
    (``y[..., o] = sum_i W[..., o, i] x[..., i]``). Everything else is nirtorch's default map."""
    import torch

    class _Affine(torch.nn.Module):
        def __init__(self, node: nir.NIRNode) -> None:
            super().__init__()
            self.register_buffer("weight", torch.as_tensor(np.asarray(node.weight, dtype=np.float64)))
            b = getattr(node, "bias", None)
            self.register_buffer("bias", torch.as_tensor(np.asarray(0.0 if b is None else b, dtype=np.float64)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = (self.weight @ x.to(self.weight.dtype).unsqueeze(-1)).squeeze(-1)
            return y + self.bias

    neuron = partial(_EulerNeuron.module, dt=float(dt))
    return {nir.LIF: neuron, nir.CubaLIF: neuron, nir.IF: neuron, nir.Threshold: neuron,
            nir.Affine: _Affine, nir.Linear: _Affine}


def run_in_nirtorch(graph: nir.NIRGraph, x: Any) -> np.ndarray:
    """Runs ``graph`` with ``nirtorch.nir_to_torch(graph, nirtorch_node_map(dt), dtype=float64)`` (a nested graph
    only with its nodes in topological order; pass :func:`portable_graph`, see the module docstring).

    nirtorch interprets the graph (fan-in sums, sub-graphs, convolutions, pooling, Flatten); it has no neuron
    of its own, so :func:`nirtorch_node_map` supplies NIR's neurons under forward Euler with the graph's
    ``metadata["dt"]``.

    Returns:
        The per-step output ``[T, B, C]`` (float64).
    """
    import torch
    import nirtorch

    module = nirtorch.nir_to_torch(graph, nirtorch_node_map(_dt(graph)), dtype=torch.float64)
    return _steps(module, x, _input_shape(graph), stateful=True, dtype=torch.float64)


@dataclass(frozen=True)
class Consumer:
    """One NIR consumer.

    Attributes:
        name: registry key.
        package: the Python package it needs.
        call: the one-line call a user writes (on the file named ``{file}``).
        nested: it takes nested graphs (else it is given :func:`portable_graph`).
        run: ``run(graph, x) -> [T, B, C]``.
    """

    name: str
    package: str
    call: str
    nested: bool
    run: Callable[[nir.NIRGraph, Any], np.ndarray]


#: The NIR consumers the interop tests and the NIR export run, by name.
CONSUMERS: dict[str, Consumer] = {
    "norse": Consumer("norse", "norse", 'norse.torch.from_nir(nir.read("{file}"), dt=1.0)', False, run_in_norse),
    "snntorch": Consumer(
        "snntorch", "snntorch",
        'snntorch.import_nir.import_from_nir(neuroposter.ir.interop.rescale_time(nir.read("{file}"), 1e-4))',
        False, run_in_snntorch),
    "nirtorch": Consumer(
        "nirtorch", "nirtorch",
        'nirtorch.nir_to_torch(nir.read("{file}"), neuroposter.ir.interop.nirtorch_node_map(dt=1.0))',
        False, run_in_nirtorch),
}


def _depth_first_order(graph: nir.NIRGraph) -> list[str]:
    """The order nirtorch's deprecated ``GraphExecutor`` (Norse's ``from_nir``) runs a flat graph in: a depth-first
    preorder from the Input, children in edge order (``nirtorch.graph_utils.trace_execution``)."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for s, d in graph.edges:
        succ[s].append(d)
    start = next(n for n, x in graph.nodes.items() if isinstance(x, nir.Input))
    order: list[str] = []
    seen: set[str] = set()
    stack = [start]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        order.append(n)
        stack.extend(reversed([c for c in succ[n] if c not in seen]))
    return order


def _norse_order_problem(graph: nir.NIRGraph) -> str | None:
    order = _depth_first_order(graph)
    pos = {n: i for i, n in enumerate(order)}
    for s, d in graph.edges:
        if s in pos and d in pos and pos[s] > pos[d]:
            return (f"Norse's from_nir runs nirtorch's deprecated GraphExecutor, which evaluates nodes in depth-first "
                    f"order from the Input; {d!r} runs before its input {s!r} and so reads {s!r}'s output of the "
                    "previous step (a graph with a fork that joins again, e.g. the SDSA's K/V AND or a residual "
                    "sum, is computed with a one-step delay), and it returns the last node of that order "
                    f"({order[-1]!r}) instead of the Output")
    if not isinstance(graph.nodes[order[-1]], nir.Output):
        return f"Norse's from_nir returns the last node of its depth-first order ({order[-1]!r}), not the Output"
    return None


def consumer_support(graph: nir.NIRGraph, name: str) -> str | None:
    """None when consumer ``name`` can run ``graph`` faithfully (as given, or its portable form), else why not.

    Raises:
        KeyError: an unknown consumer name.
    """
    c = CONSUMERS[name]
    if c.nested:
        return None
    try:
        portable = portable_graph(graph)
    except InteropError as exc:
        return f"{name} needs the portable graph, which cannot be made: {exc}"
    if name == "norse":
        return _norse_order_problem(portable)
    return None


def consumer_graph(graph: nir.NIRGraph, name: str, *, portable: nir.NIRGraph | None = None) -> nir.NIRGraph:
    """The graph consumer ``name`` is given: ``graph`` when it takes nested graphs, else :func:`portable_graph`
    (``portable`` if already made)."""
    if CONSUMERS[name].nested:
        return graph
    return portable if portable is not None else portable_graph(graph)


def run_consumer(name: str, graph: nir.NIRGraph, x: Any, *, portable: nir.NIRGraph | None = None) -> np.ndarray:
    """Runs ``graph`` in consumer ``name`` (:data:`CONSUMERS`) on ``x`` ``[T, B, ...]``: ``[T, B, C]``.

    Raises:
        InteropError: the consumer cannot run the graph (:func:`consumer_support` says why).
    """
    why = consumer_support(graph, name)
    if why:
        raise InteropError(why)
    return CONSUMERS[name].run(consumer_graph(graph, name, portable=portable), x)


# -------------------------------------------------------------------------------------------------
# foreign graphs
# -------------------------------------------------------------------------------------------------


_NEURON_PARAMS = ("tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem", "w_in", "threshold")


def _to_numpy(node: nir.NIRNode) -> None:
    for k, v in list(vars(node).items()):
        if k in ("input_type", "output_type", "metadata"):
            continue
        if hasattr(v, "detach"):   # Norse 1.1.0 writes torch tensors
            setattr(node, k, v.detach().cpu().numpy())


def load_foreign(source: str | os.PathLike[str] | nir.NIRGraph, *, producer: str | None = None,
                 dt: float | None = None) -> nir.NIRGraph:
    """A NIR graph written by another tool, made runnable by :func:`neuroposter.ir.simulate.simulate` (and so
    countable by :func:`neuroposter.profiling.counts.count_snn`).

    * ``metadata["dt"]``: ``dt``, else the graph's own ``metadata["dt"]``, else the producer's step
      (:data:`FOREIGN_DT`: snnTorch 1e-4, Norse 1e-3); NIR leaves the step to the reader.
    * A leading batch dim of 1 in an ``Input`` or ``Output`` (snnTorch/Norse exports without ``ignore_dims``)
      is dropped.
    * Scalar neuron parameters are broadcast to the layer's shape (from the node that feeds it), torch tensors
      become numpy arrays, and the types are re-inferred and checked.

    Args:
        source: a ``.nir`` file (read without the type check, which such files may fail) or a graph.
        producer: ``"snntorch"``, ``"norse"`` or ``"neuroposter"`` (for the default ``dt``).
        dt: the producer's time step, overriding the default.

    Returns:
        A type-checked ``nir.NIRGraph`` with ``metadata["dt"]``, ``["producer"]`` and ``["reset"] = "zero"``
        unless given.

    Raises:
        InteropError: an unreadable file, no known ``dt``, or a graph whose types still do not check.
    """
    if isinstance(source, nir.NIRGraph):
        graph = copy.deepcopy(source)
    else:
        try:
            graph = nir.read(str(source), type_check=False)
        except Exception as exc:  # noqa: BLE001 - nir raises assorted errors
            raise InteropError(f"{source}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    meta = _meta(graph)
    if dt is None:
        if "dt" in meta:
            dt = float(np.asarray(meta["dt"]).reshape(-1)[0])
        elif producer in FOREIGN_DT:
            dt = FOREIGN_DT[producer]
        else:
            raise InteropError("the graph records no dt; pass dt= (the producer's time step) or producer= one of "
                               f"{', '.join(FOREIGN_DT)}")

    def fix(g: nir.NIRGraph) -> None:
        for name, n in list(g.nodes.items()):
            if isinstance(n, nir.NIRGraph):
                fix(n)
                continue
            _to_numpy(n)
            if isinstance(n, (nir.Input, nir.Output)):     # a batch dim of 1 on either end of the graph
                types = n.input_type if isinstance(n, nir.Input) else n.output_type
                shape = np.asarray(next(iter(types.values()))).reshape(-1)
                if shape.size > 1 and shape[0] == 1:
                    kind = nir.Input if isinstance(n, nir.Input) else nir.Output
                    key = "input_type" if kind is nir.Input else "output_type"
                    g.nodes[name] = kind(**{key: {key.split("_")[0]: shape[1:].copy()}},
                                         metadata=dict(n.metadata or {}))
        preds = {d: s for s, d in g.edges}
        for name, n in g.nodes.items():
            params = [p for p in _NEURON_PARAMS if getattr(n, p, None) is not None]
            if not params or isinstance(n, nir.NIRGraph):
                continue
            src = g.nodes.get(preds.get(name, ""))
            out = getattr(src, "output_type", None) or {}
            shape = next(iter(out.values()), None) if out else None
            if shape is None or any(np.asarray(getattr(n, p)).size != 1 for p in params):
                continue
            shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
            for p in params:
                setattr(n, p, np.full(shape, float(np.asarray(getattr(n, p)).reshape(-1)[0])))
            n.__post_init__()

    fix(graph)
    graph.metadata = {**meta, "dt": float(dt), "producer": str(meta.get("producer", producer or "unknown")),
                      "reset": str(meta.get("reset", "zero"))}
    try:
        graph.infer_types()
        graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=graph.metadata, type_check=True)
    except Exception as exc:  # noqa: BLE001 - nir raises assorted errors
        raise InteropError(f"the foreign graph's types do not check ({type(exc).__name__}: {exc})") from None
    return graph
