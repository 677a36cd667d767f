"""The connectivity of NIR connection nodes as sparse matrices over flattened shapes.

:data:`SYNAPSE_MATRIX` maps each connection type to a builder ``(node, in_shape, out_shape, weights) ->
scipy.sparse.csr_matrix`` (``out x in``), with the node's weights replaced by ``weights`` (integer or 0/1
values: the Loihi builder passes its integer weights, the chip mapper the non-zero pattern). A weight that
does not fit the node's input shape raises :class:`~neuroposter.ir.graph.GraphError`. One definition
of "which input feeds which output" for every target.
"""

from __future__ import annotations

from typing import Callable

import nir
import numpy as np
import scipy.sparse as sp

from neuroposter.ir.graph import GraphError

__all__ = ["SYNAPSE_MATRIX", "shape_of", "shared_weights"]


def shape_of(node: nir.NIRNode, key: str) -> tuple[int, ...]:
    """The node's ``"input"`` or ``"output"`` shape (its first type entry when the key is absent)."""
    types = node.output_type if key == "output" else node.input_type
    arr = types.get(key, next(iter(types.values())))
    return tuple(int(x) for x in np.asarray(arr).reshape(-1))


def _conv1d_matrix(node: nir.Conv1d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   w: np.ndarray) -> sp.csr_matrix:
    cout, cin_g, k = w.shape
    cin, length = in_shape
    _, lout = out_shape
    stride = int(np.asarray(node.stride).reshape(-1)[0])
    dil = int(np.asarray(node.dilation).reshape(-1)[0])
    groups = int(node.groups)
    pad = node.padding
    if isinstance(pad, str):
        pad = 0 if pad == "valid" else (dil * (k - 1)) // 2
    pad = int(np.asarray(pad).reshape(-1)[0])
    if k == 1 and stride == 1 and pad == 0 and groups == 1 and lout == length:
        # a token-wise (kernel 1) convolution: W applied at every position, i.e. W (x) I_L in this index order
        # (row co * L + l, column ci * L + l); the general construction below gives the same matrix, slower
        return sp.kron(sp.csr_matrix(w[:, :, 0]), sp.identity(length, dtype=w.dtype, format="csr"), format="csr")
    co, cl, kk, lo = np.meshgrid(np.arange(cout), np.arange(cin_g), np.arange(k), np.arange(lout), indexing="ij")
    ci = (co // (cout // groups)) * cin_g + cl
    li = lo * stride - pad + kk * dil
    ok = (li >= 0) & (li < length) & (w[co, cl, kk] != 0)
    rows = (co * lout + lo)[ok]
    cols = (ci * length + li)[ok]
    vals = w[co, cl, kk][ok]
    return sp.csr_matrix((vals, (rows, cols)), shape=(cout * lout, cin * length))


def _conv2d_matrix(node: nir.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   w: np.ndarray) -> sp.csr_matrix:
    cout, cin_g, kh, kw = w.shape
    cin, h, wd = in_shape
    _, ho, wo = out_shape
    st = np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,))
    dl = np.broadcast_to(np.asarray(node.dilation).reshape(-1), (2,))
    pad = node.padding
    if isinstance(pad, str):
        pad = (0, 0) if pad == "valid" else (int(dl[0]) * (kh - 1) // 2, int(dl[1]) * (kw - 1) // 2)
    pd = np.broadcast_to(np.asarray(pad).reshape(-1), (2,))
    groups = int(node.groups)
    co, cl, ky, kx, oy, ox = np.meshgrid(np.arange(cout), np.arange(cin_g), np.arange(kh), np.arange(kw),
                                         np.arange(ho), np.arange(wo), indexing="ij")
    ci = (co // (cout // groups)) * cin_g + cl
    iy = oy * int(st[0]) - int(pd[0]) + ky * int(dl[0])
    ix = ox * int(st[1]) - int(pd[1]) + kx * int(dl[1])
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd) & (w[co, cl, ky, kx] != 0)
    rows = ((co * ho + oy) * wo + ox)[ok]
    cols = ((ci * h + iy) * wd + ix)[ok]
    return sp.csr_matrix((w[co, cl, ky, kx][ok], (rows, cols)), shape=(cout * ho * wo, cin * h * wd))


def _dense_matrix(node: nir.NIRNode, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                  w: np.ndarray) -> sp.csr_matrix:
    """Affine/Linear: ``W (out, in)`` on the flattened input, or a channel-batched ``W (C..., out, in)``
    acting on the last axis of an input ``(C..., in)`` (block-diagonal over the leading axes)."""
    if w.ndim <= 2:
        w2 = w.reshape(w.shape[0], -1) if w.ndim == 2 else w.reshape(1, -1)
        if w2.shape[1] != int(np.prod(in_shape)):
            why = f"weight {w.shape} does not match input shape {in_shape}"
            raise GraphError(why, node_type=type(node).__name__, reason=why)
        return sp.csr_matrix(w2)
    lead = w.shape[:-2]
    n_out, n_in = w.shape[-2:]
    if tuple(in_shape[:-1]) != tuple(lead) or in_shape[-1] != n_in:
        why = f"batched weight {w.shape} does not match input shape {in_shape}"
        raise GraphError(why, node_type=type(node).__name__, reason=why)
    nb = int(np.prod(lead))
    wb = w.reshape(nb, n_out, n_in)
    b, o, i = np.nonzero(wb)
    return sp.csr_matrix((wb[b, o, i], (b * n_out + o, b * n_in + i)), shape=(nb * n_out, nb * n_in))


def _scale_matrix(node: nir.Scale, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                  w: np.ndarray) -> sp.csr_matrix:
    return sp.diags(np.broadcast_to(np.asarray(node.scale), out_shape).reshape(-1).astype(w.dtype)).tocsr()


#: NIR connection type -> function building the (dst, src) integer matrix over flattened shapes.
SYNAPSE_MATRIX: dict[type[nir.NIRNode], Callable[..., sp.csr_matrix]] = {
    nir.Affine: _dense_matrix,
    nir.Linear: _dense_matrix,
    nir.Conv1d: _conv1d_matrix,
    nir.Conv2d: _conv2d_matrix,
    nir.Scale: _scale_matrix,
}



def shared_weights(node: nir.NIRNode) -> int | None:
    """Stored (non-zero) weights of a weight-shared convolution node, which every position reuses; None otherwise."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return int(np.count_nonzero(np.asarray(node.weight)))
    return None
