"""Pooling composed into the next synapse: one chip synapse realises a pool and the connection after it at once.

On Loihi 2 (and on SpiNNaker's projections) every synapse is one weighted connection from a neuron population to
another; a ``SumPool2d`` (or
``AvgPool2d``) standing between a neuron and a connection is no population of its own, so the pool and that
connection are **one** synapse. :func:`compose_pools` rewrites a flat float graph so that no pool remains,
exactly (every composed weight is a copy of one original weight, times ``1 / (ky kx)`` for an average pool):

* pool ``(ky, kx)`` (stride = kernel, no padding) -> ``Conv2d`` (kernel ``K``, stride 1, padding ``p``,
  dilation 1) is one ``Conv2d`` of kernel ``(ky K, kx K)``, stride ``(ky, kx)``, padding ``(ky p, kx p)``
  whose kernel is the ``K x K`` kernel with each tap repeated ``ky x kx`` times::

      y[o, Y, X] = sum_{i,a,b} W[o,i,a,b] P[i, Y-p+a, X-p+b],   P[i,y,x] = sum_{u<ky,v<kx} s[i, ky y+u, kx x+v]
                 = sum_{i,A,B} W'[o,i,A,B] s[i, ky Y - ky p + A, kx X - kx p + B],   W'[o,i,A,B] = W[o,i,A//ky,B//kx]

  (a padded row of ``P`` is exactly the ``ky`` padded rows of ``s`` it would sum: the input height and width
  must be multiples of the kernel, which is checked);
* pool ``(ky, kx)`` -> ``Flatten`` of ``[C, h, w]`` into tokens ``[C, h w]`` -> token-wise ``Conv1d`` (kernel 1) is
  one ``Conv2d`` of kernel ``(ky, kx)``, stride ``(ky, kx)`` (``W'[o,i,:,:] = W[o,i,0]``, the Conv1d's bias),
  followed by a ``Flatten`` of its output (named ``"<conv>.flatten"``) into the same tokens;
* a pool followed by neurons only (through reshapes) becomes a depthwise ``Conv2d`` of ones (its own synapse).

The composed node keeps the connection's name and metadata (``metadata["composed_from"]`` lists the nodes it
replaces); the pool (and a Flatten left without sources) disappears. Anything else after a pool is refused with
:class:`~neuroposter.ir.quantize.QuantizationError` naming the node. The NIR graph the export writes
(``graph.nir``) keeps its pools: only the integer graph (Loihi 2) or the lowered graph of a chip that hosts no pool
node (:func:`neuroposter.targets.chips.lower_for_profile`) is composed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import nir
import numpy as np

from neuroposter.ir.graph import Graph, Node
from neuroposter.ir.nodes import node_type
from neuroposter.ir.quantize import QuantizationError

__all__ = ["POOLS", "compose_pools"]

#: The pooling node types the composition removes.
POOLS: tuple[type[nir.NIRNode], ...] = (nir.SumPool2d, nir.AvgPool2d)


def _pair(x: Any) -> tuple[int, int]:
    a = np.asarray(x).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _pool_params(name: str, nd: Node) -> tuple[tuple[int, int], float]:
    """``((ky, kx), factor)`` of a pool that tiles its input exactly; refuses anything else."""
    x, t = nd.nir, nd.type.name
    k, st, pad = _pair(x.kernel_size), _pair(x.stride), _pair(x.padding)
    if st != k or pad != (0, 0):
        raise QuantizationError(name, t, f"only non-overlapping pools compose into a synapse (stride = kernel, no "
                                f"padding); got kernel {k}, stride {st}, padding {pad}")
    c, h, w = nd.in_shape
    if h % k[0] or w % k[1]:
        raise QuantizationError(name, t, f"input {h}x{w} is not a multiple of the kernel {k[0]}x{k[1]}")
    return k, (1.0 / (k[0] * k[1]) if isinstance(x, nir.AvgPool2d) else 1.0)


def _conv_padding(name: str, nd: Node, kh: int, kw: int) -> tuple[int, int]:
    pad = nd.nir.padding
    if isinstance(pad, str):
        return (0, 0) if pad == "valid" else ((kh - 1) // 2, (kw - 1) // 2)
    return _pair(pad)


def _new(path: str, x: nir.NIRNode, ins: tuple[int, ...], outs: tuple[int, ...], group: str) -> Node:
    return Node(path, x, node_type(x), tuple(ins), tuple(outs), group)


def _after_conv2d(pool: str, pn: Node, conv: str, cn: Node) -> Node:
    """The one Conv2d of ``pool -> Conv2d``."""
    (ky, kx), f = _pool_params(pool, pn)
    c = cn.nir
    w = np.asarray(c.weight, dtype=np.float64)
    if _pair(c.stride) != (1, 1) or _pair(c.dilation) != (1, 1):
        raise QuantizationError(conv, "Conv2d", "a pool composes only into a stride-1, undilated convolution; got "
                                f"stride {_pair(c.stride)}, dilation {_pair(c.dilation)}")
    py, px = _conv_padding(conv, cn, w.shape[2], w.shape[3])
    wc = np.repeat(np.repeat(w, ky, axis=2), kx, axis=3) * f
    bias = np.asarray(c.bias, dtype=np.float64) if c.bias is not None else np.zeros(w.shape[0])
    new = nir.Conv2d(input_shape=tuple(pn.in_shape[1:]), weight=wc, stride=np.array([ky, kx]),
                     padding=np.array([ky * py, kx * px]), dilation=np.array([1, 1]), groups=int(c.groups),
                     bias=bias)
    new.metadata = {**dict(c.metadata or {}), "composed_from": f"{pool},{conv}"}
    return _new(conv, new, pn.in_shape, cn.out_shape, cn.group)


def _after_token_conv(pool: str, pn: Node, flat: str, conv: str, cn: Node) -> tuple[Node, Node]:
    """The Conv2d and the Flatten after it of ``pool -> Flatten -> Conv1d(kernel 1)``."""
    (ky, kx), f = _pool_params(pool, pn)
    c = cn.nir
    w = np.asarray(c.weight, dtype=np.float64)
    pad = c.padding if not isinstance(c.padding, str) else (0 if c.padding == "valid" else (w.shape[2] - 1) // 2)
    if (w.shape[2] != 1 or int(np.asarray(c.stride).reshape(-1)[0]) != 1
            or int(np.asarray(pad).reshape(-1)[0]) != 0):
        raise QuantizationError(conv, "Conv1d", "a pool composes through a Flatten only into a token-wise Conv1d "
                                "(kernel 1, stride 1, no padding)")
    cout = int(w.shape[0])
    _, h, wd = pn.out_shape
    wc = np.broadcast_to(w[:, :, :, None], (cout, w.shape[1], ky, kx)) * f
    bias = np.asarray(c.bias, dtype=np.float64) if c.bias is not None else np.zeros(cout)
    new = nir.Conv2d(input_shape=tuple(pn.in_shape[1:]), weight=np.ascontiguousarray(wc), stride=np.array([ky, kx]),
                     padding=np.array([0, 0]), dilation=np.array([1, 1]), groups=int(c.groups), bias=bias)
    new.metadata = {**dict(c.metadata or {}), "composed_from": f"{pool},{flat},{conv}"}
    grid = (cout, h, wd)
    fl = nir.Flatten(input_type={"input": np.array(grid)}, start_dim=-2, end_dim=-1)
    return (_new(conv, new, pn.in_shape, grid, cn.group),
            _new(f"{conv}.flatten", fl, grid, (cout, h * wd), cn.group))


def _depthwise(pool: str, pn: Node) -> Node:
    """A pool followed by neurons: a depthwise Conv2d of ones (times ``1 / (ky kx)`` for an average)."""
    (ky, kx), f = _pool_params(pool, pn)
    ch = int(pn.in_shape[0])
    new = nir.Conv2d(input_shape=tuple(pn.in_shape[1:]), weight=np.full((ch, 1, ky, kx), f), stride=np.array([ky, kx]),
                     padding=np.array([0, 0]), dilation=np.array([1, 1]), groups=ch, bias=np.zeros(ch))
    new.metadata = {**dict(pn.nir.metadata or {}), "composed_from": pool}
    return _new(pool, new, pn.in_shape, pn.out_shape, pn.group)


def compose_pools(fg: Graph) -> Graph:
    """The flat graph ``fg`` with every pool composed into the synapse it belongs to (see the module docstring).

    Returns ``fg`` itself when it has no pool.

    Raises:
        QuantizationError: a pool that does not tile its input, or is followed by a connection it cannot be
            composed with (the message names the node).
    """
    pools = [n for n, nd in fg.nodes.items() if isinstance(nd.nir, POOLS)]
    if not pools:
        return fg
    nodes = dict(fg.nodes)
    edges = list(fg.edges)

    def succ(n: str) -> list[str]:
        return list(dict.fromkeys(d for s, d in edges if s == n))

    def preds(n: str) -> list[str]:
        return list(dict.fromkeys(s for s, d in edges if d == n))

    def only_from(conn: str, src: str) -> None:
        if preds(conn) != [src]:
            raise QuantizationError(conn, nodes[conn].type.name, f"sums {src!r} with other inputs "
                                    f"({', '.join(p for p in preds(conn) if p != src)}); a pool composes only "
                                    "into a connection it alone feeds")

    def reaches_connection(n: str) -> bool:
        return any(nodes[d].role == "conn" or (nodes[d].role == "reshape" and reaches_connection(d)) for d in succ(n))

    for pool in pools:
        pn = nodes[pool]
        t = pn.type.name
        outs = succ(pool)
        if not reaches_connection(pool):
            nodes[pool] = _depthwise(pool, pn)
            continue
        for d in outs:
            dn = nodes[d]
            if isinstance(dn.nir, nir.Conv2d):
                only_from(d, pool)
                nodes[d] = _after_conv2d(pool, pn, d, dn)
                k = Counter(edges)[(pool, d)]
                edges = [e for e in edges if e != (pool, d)]
                edges += [(s, d) for s in preds(pool) for _ in range(k)]
            elif isinstance(dn.nir, nir.Flatten) and succ(d) and all(isinstance(nodes[c].nir, nir.Conv1d)
                                                                     for c in succ(d)):
                only_from(d, pool)
                if tuple(dn.out_shape) != (pn.out_shape[0], pn.out_shape[1] * pn.out_shape[2]):
                    raise QuantizationError(d, "Flatten", f"flattens {pn.out_shape} into {dn.out_shape}, not into "
                                            "tokens [C, h w]; the pool cannot be composed through it")
                for c in succ(d):
                    only_from(c, d)
                    conv, fl = _after_token_conv(pool, pn, d, c, nodes[c])
                    nodes[c], nodes[fl.path] = conv, fl
                    # conv's destinations now read its Flatten; conv reads the pool's sources
                    outs_c = [e for e in edges if e[0] == c]
                    edges = [e for e in edges if e[0] != c and e != (d, c)]
                    edges += [(fl.path, e[1]) for e in outs_c] + [(c, fl.path)]
                    edges += [(s, c) for s in preds(pool)]
                edges = [e for e in edges if e != (pool, d)]
                del nodes[d]
            else:
                raise QuantizationError(pool, t, f"followed by {d!r} ({dn.type.name}): a pool composes into a "
                                        "Conv2d, or through a Flatten into token-wise Conv1d nodes, or stands "
                                        "before neurons only")
        edges = [e for e in edges if e[1] != pool]
        del nodes[pool]
    order = {n: i for i, n in enumerate(nodes)}
    # graph order: a composed Flatten right after its convolution
    ranked = sorted(nodes, key=lambda n: (order[n.rsplit(".flatten", 1)[0]] if n.endswith(".flatten")
                                          and n.rsplit(".flatten", 1)[0] in nodes else order[n], n.endswith(".flatten")))
    nodes = {n: nodes[n] for n in ranked}
    return Graph(nodes, edges, fg.inputs, fg.outputs, fg.dt, dict(fg.groups), dict(fg.metadata),
                 dict(fg.group_parent), fg.strict)
