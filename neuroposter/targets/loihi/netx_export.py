"""lava-dl netx HDF5 export of chain-shaped spiking networks, loaded back and checked.

netx (``lava.lib.dl.netx``) reads its own HDF5 layout (``docs/sources.md#netx``) and supports only
a plain chain of ``input``/``dense``/``conv`` layers, so only chain-shaped graphs are written
(``Input -> (Affine/Linear -> LIF)+ -> Affine -> Output``: the ``snn-mlp`` run). Layout written::

    /layer/0       type "input", shape [1, 1, n_in]          (shape only: no input neuron)
    /layer/i       type "dense", shape [n_i], weight (n_i, n_{i-1}) int (effective integer weights,
                   |w| <= 254), bias (n_i) int (bias_mant; netx applies bias_exp = 6),
                   neuron {type "CUBA", iDecay = du + 1, vDecay = dv, vThMant = vth, refDelay 1,
                   gradedSpike False}
    /simulation    Ts 1, tSample T

The spiking layers are the netx network; the final read-out ``Affine`` (no neuron in NIR; netx
has no current output) is applied on the host in integers from the same integer graph. Weights
come from :func:`neuroposter.targets.loihi.fixed_point.quantize_loihi` with ``netx=True`` (``weight_exp = 0``,
``bias_exp = 6``), so the netx network is bit-exact against that integer graph in the reference
simulator; netx's ``optimize_weight_bits`` re-encodes the integer weights as mantissa + exponent.
Only ``fixed_pt`` exists for netx blocks.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from typing import Any

import nir
import numpy as np

from neuroposter.artifact import check_free_space
from neuroposter.errors import ResourceError
from neuroposter.ir.graph import Graph, flatten
from neuroposter.targets.loihi.fixed_point import loihi_params

__all__ = ["is_chain", "chain_layers", "write_netx", "export_and_check", "netx_size_estimate"]

log = logging.getLogger(__name__)


def _flat(graph: nir.NIRGraph | Graph) -> Graph:
    return graph if isinstance(graph, Graph) else flatten(graph)


def chain_layers(graph: nir.NIRGraph | Graph) -> list[tuple[str, str | None]] | None:
    """``[(connection, neuron or None), ...]`` along a chain graph (a NIR graph or its
    :func:`~neuroposter.ir.graph.flatten`), or None if it is not a chain."""
    fg = _flat(graph)
    ins = fg.inputs
    if len(ins) != 1 or len(fg.outputs) != 1:
        return None
    layers: list[tuple[str, str | None]] = []
    cur = ins[0]
    while True:
        nxt = fg.succs(cur, unique=True)
        if len(nxt) != 1:
            return None
        n = nxt[0]
        while isinstance(fg.nodes[n].nir, nir.Flatten):
            s = fg.succs(n, unique=True)
            if len(s) != 1:
                return None
            n = s[0]
        node = fg.nodes[n].nir
        if isinstance(node, nir.Output):
            return layers if layers and layers[-1][1] is None else None
        if not isinstance(node, (nir.Affine, nir.Linear)) or len(fg.preds(n, unique=True)) != 1:
            return None
        after = fg.succs(n, unique=True)
        if len(after) != 1:
            return None
        neu = after[0]
        if isinstance(fg.nodes[neu].nir, nir.Output):
            layers.append((n, None))
            cur = n
            continue
        if not isinstance(fg.nodes[neu].nir, (nir.LIF, nir.IF, nir.CubaLIF)) or len(fg.preds(neu, unique=True)) != 1:
            return None
        layers.append((n, neu))
        cur = neu


def is_chain(graph: nir.NIRGraph | Graph) -> bool:
    """True when the graph is a plain chain netx can express."""
    return chain_layers(graph) is not None


def write_netx(graph_int: nir.NIRGraph | Graph, path_or_buffer: Any, *, t_sample: int = 1
               ) -> list[tuple[str, str | None]]:
    """Writes the spiking layers of an integer chain graph (``quantize_loihi(netx=True)``, or its
    :func:`~neuroposter.ir.graph.flatten`) as netx HDF5.

    Returns:
        The chain layers written (the last, read-out layer is not written).
    """
    import h5py

    fg = _flat(graph_int)
    layers = chain_layers(fg)
    if layers is None:
        raise ValueError("graph is not a plain chain; netx cannot express it")
    n_in = int(np.prod(np.asarray(fg.nodes[fg.inputs[0]].nir.output_type["output"])))
    with h5py.File(path_or_buffer, "w") as f:
        lay = f.create_group("layer")
        g0 = lay.create_group("0")
        g0.create_dataset("type", data=np.bytes_("input"))
        g0.create_dataset("shape", data=np.array([1, 1, n_in]))
        for i, (conn, neu) in enumerate(layers[:-1], start=1):
            c, n = fg.nodes[conn].nir, fg.nodes[neu].nir
            lc, ln = loihi_params(c), loihi_params(n)
            if int(lc["weight_exp"]) != 0 or int(ln["bias_exp"]) != 6:
                raise ValueError(f"{conn}: quantise with netx=True (weight_exp 0, bias_exp 6)")
            w = np.asarray(c.weight, dtype=np.int64)
            w = w.reshape(w.shape[0], -1)
            g = lay.create_group(str(i))
            g.create_dataset("type", data=np.bytes_("dense"))
            g.create_dataset("shape", data=np.array([w.shape[0]]))
            g.create_dataset("inFeatures", data=w.shape[1])
            g.create_dataset("outFeatures", data=w.shape[0])
            g.create_dataset("weight", data=w.astype(np.float64))
            bias = np.asarray(ln["bias_mant"], dtype=np.int64).reshape(-1)
            if np.any(bias != 0):
                g.create_dataset("bias", data=bias.astype(np.float64))
            ng = g.create_group("neuron")
            ng.create_dataset("type", data=np.bytes_("CUBA"))
            ng.create_dataset("iDecay", data=int(ln["du"]) + 1)
            ng.create_dataset("vDecay", data=int(ln["dv"]))
            ng.create_dataset("vThMant", data=int(ln["vth"]))
            ng.create_dataset("refDelay", data=1)
            ng.create_dataset("gradedSpike", data=False)
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=1)
        sim.create_dataset("tSample", data=int(t_sample))
    return layers


def netx_size_estimate(graph_int: nir.NIRGraph | Graph) -> int:
    """An upper estimate of the netx HDF5 file of a chain graph, in bytes (checked against free space).

    Weights and biases are stored as float64 (8 bytes each); each layer's group, datasets and the
    HDF5 superblock take a few KiB, counted generously.
    """
    fg = _flat(graph_int)
    layers = chain_layers(fg) or []
    values = 0
    for conn, _ in layers:
        w = np.asarray(fg.nodes[conn].nir.weight)
        values += int(w.size) + int(w.shape[0])          # weights + one bias per output
    return 8 * values + 64 * 1024 * (len(layers) + 1)


def _write_netx_file(graph_int: nir.NIRGraph | Graph, path: str, *, t_sample: int) -> None:
    """:func:`write_netx` to a file; a full disk is a one-line :class:`ResourceError` (no partial file)."""
    import errno

    try:
        write_netx(graph_int, path, t_sample=t_sample)
    except OSError as exc:
        if os.path.exists(path):
            os.unlink(path)
        if exc.errno == errno.ENOSPC or "no space left" in str(exc).lower():
            raise ResourceError(f"no space left on device: {path} (writing the netx HDF5 file, about "
                                f"{netx_size_estimate(graph_int) / 1e6:,.1f} MB)") from None
        raise


def export_and_check(graph: nir.NIRGraph, x: np.ndarray, profile: Any, *, select_tag: str = "fixed_pt",
                     path: str | None = None) -> dict[str, Any]:
    """Quantises for netx, writes the HDF5, loads it with ``netx.hdf5.Network``, runs ``x``, checks.

    Args:
        graph: the float chain graph.
        x: ``[T, B, n_in]`` spikes.
        profile: the Loihi 2 hardware profile (its fixed-point formats).
        select_tag: must be ``"fixed_pt"`` (netx blocks have no floating-point models).
        path: where to write the file (a temporary file when None).

    Returns:
        ``{"ok", the :func:`neuroposter.targets.verify.compare` metrics vs the reference simulator (per-layer
        spikes, prediction agreement), "output_exact", "file_bytes", ...}``.
    """
    from neuroposter.targets.loihi._mp import prepare_lava

    prepare_lava()
    import contextlib

    # lava-dl prints an unrelated dataset-toolbox warning to stdout (and torch a CUDA note) on import
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lava.lib.dl.netx import hdf5 as netx_hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from neuroposter.targets.loihi.fixed_point import quantize_loihi, shift
    from neuroposter.ir.retime import retime
    from neuroposter.ir.simulate import simulate
    from neuroposter.targets.verify import compare

    if select_tag != "fixed_pt":
        raise ValueError("netx blocks only have fixed_pt models")
    gi, qrep = quantize_loihi(graph, profile, netx=True)
    fg = flatten(gi, strict=True)          # flattened once: chain, file writer, re-timing and simulator
    layers = chain_layers(fg)
    assert layers is not None
    tmpdir = None
    if path is None:
        # the file is read back into memory below; the temporary folder goes whatever happens
        check_free_space(tempfile.gettempdir(), netx_size_estimate(fg), "the netx HDF5 file (temporary)")
        tmpdir = tempfile.mkdtemp(prefix="neuroposter-netx-")
        path = os.path.join(tmpdir, "network.net")
    else:
        check_free_space(os.path.dirname(os.path.abspath(path)), netx_size_estimate(fg), "the netx HDF5 file")
    try:
        _write_netx_file(fg, path, t_sample=int(x.shape[0]))
        t_in, batch = x.shape[:2]
        n_in = int(np.prod(x.shape[2:]))
        depth = len(layers) - 1
        steps = batch * t_in + depth
        net = netx_hdf5.Network(net_config=path, reset_interval=t_in if batch > 1 else steps + 1)
        # per-layer reset phase: layer i (depth i + 1) starts a sample i + 1 steps later than the input
        interval = t_in if batch > 1 else steps + 1
        for i, layer in enumerate(net.layers):
            layer.neuron.proc_params.overwrite("reset_offset", (i + 2) % interval)
        data = np.zeros((n_in, steps), dtype=np.int32)
        flat = x.reshape(t_in, batch, n_in)
        for b in range(batch):
            data[:, b * t_in:(b + 1) * t_in] = flat[:, b, :].T
        src = Source(data=data)
        sinks = []
        src.s_out.connect(net.inp)
        for layer in net.layers:
            s = Sink(shape=layer.out.shape, buffer=steps)
            layer.out.connect(s.a_in)
            sinks.append(s)
        try:
            net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            streams = [s.data.get() for s in sinks]
        finally:
            net.stop()
        with open(path, "rb") as fh:
            file_bytes = fh.read()
    finally:
        if tmpdir:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    rt = retime(fg)
    ref = simulate(fg, x, mode="per_hop", arithmetic="int", delays=rt.delays)
    netx_spikes: dict[str, np.ndarray] = {}
    ref_spikes: dict[str, np.ndarray] = {}
    last = None
    for i, ((conn, neu), stream) in enumerate(zip(layers[:-1], streams)):
        d = i + 1
        spk = np.stack([stream[:, b * t_in + d:b * t_in + d + t_in] for b in range(batch)], axis=0)  # B,n,T
        spk = (spk.transpose(2, 0, 1) != 0).astype(np.uint8)
        netx_spikes[neu], ref_spikes[neu] = spk, np.asarray(ref.aligned(neu)).reshape(spk.shape)
        last = spk
    # host read-out from the last spiking layer (integers, same equations as the graph)
    rconn = fg.nodes[layers[-1][0]].nir
    lc = loihi_params(rconn)
    w = np.asarray(rconn.weight, dtype=np.int64).reshape(np.asarray(rconn.weight).shape[0], -1)
    cur = shift(np.einsum("oi,tbi->tbo", w, last.astype(np.int64)), int(lc["weight_exp"]))
    out_meta = loihi_params(fg.nodes[fg.outputs[0]].nir)
    scale = float(out_meta.get("scale", 1.0))
    bias = np.asarray(out_meta.get("bias", 0), dtype=np.int64).reshape(-1)
    cur = cur + bias[None, None, :]
    raw = np.asarray(ref.aligned_output())
    ref_out = (raw.astype(np.int64).reshape(cur.shape) + bias[None, None, :] if np.issubdtype(raw.dtype, np.integer)
               else np.rint(raw * scale).astype(np.int64).reshape(cur.shape))
    check = compare(cur.mean(axis=0) / scale, ref_out.mean(axis=0) / scale, spikes=(netx_spikes, ref_spikes))
    exact = bool(np.array_equal(cur, ref_out))
    return {"ok": bool(check["spike_agreement"] == 1.0 and exact), **check, "output_exact": exact,
            "layers_written": [c for c, _ in layers[:-1]], "readout": "host (integer, from graph_int)",
            "quantization": qrep.to_dict(), "file_bytes": file_bytes}
