"""Speck (DYNAP-CNN): sinabs' torch IAF layers beside the project's reference simulator -- *not* the chip.

What cannot run here: Speck's vendor simulator is ``samna``'s ``specksim`` (sinabs'
``sinabs/backend/dynapcnn/specksim.py`` imports ``samna.specksim``), and even the chip-mapping code does not
import: ``sinabs.backend.dynapcnn``'s package ``__init__`` imports ``dynapcnn_network`` -> ``config_builder`` ->
``samna``. ``samna`` on the package registry is a 15 kB stub whose import tries to pip-install the real binary
from SynSense's own index, unreachable here. sinabs 3.1.3 itself installs with ``pip --no-deps`` (its metadata
pins ``nir<=1.0.4`` and ``samna``; with nir 1.0.8, torch 2.3.1 and numpy 1.26 ``sinabs.layers`` and
``sinabs.from_nir`` work; it imports ``pbr``). See :func:`speck_support`.

What runs (:func:`check`): the deployed chip part of a Speck graph -- a dense chain (``Affine/Linear -> IF -> ... ->
Affine -> Output``, the fitted ``chip-snn``) or a convolutional one (``Conv2d -> IF [-> SumPool2d] -> ... -> Flatten
-> Affine -> Output``, the fitted ``chip-cnn``); host nodes, ``metadata["placement"] == "host"``, run in the
project's reference simulator and what they send to the chip's first node (the recorded input of that connection)
is fed to sinabs -- is loaded with ``sinabs.from_nir`` (``nn.Conv2d``, ``sinabs.layers.SumPool2d``, ``nn.Flatten``,
``nn.Linear``, ``IAFSqueeze``) and run next to :func:`neuroposter.ir.simulate.simulate` (``same_step``), spike for
spike per IF layer.

Like with like: ``from_nir`` builds IAF layers with sinabs' defaults -- ``MultiSpike`` (several spikes per step)
and ``MembraneSubtract`` reset, ``min_v_mem = -v_threshold`` -- whereas NIR's ``IF`` (and the project's
simulator) fires one spike and resets to ``v_reset``. DYNAP-CNN offers both resets (samna's ``CNNLayerConfig``
has ``return_to_zero``; sinabs' ``DynapcnnLayer`` passes the reset choice to it). :func:`check` therefore
reconfigures every IAF layer to ``SingleSpike`` + ``MembraneReset(0)`` with no lower bound, the project's IF
semantics (graphs whose IF has ``v_reset != 0`` or ``r != 1`` are refused). One difference remains and is
reported: sinabs fires at ``v >= threshold``, the project at ``v > threshold`` (they differ only where a
membrane lands exactly on its threshold).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import nir
import numpy as np
import torch

from neuroposter.ir.graph import Graph, flatten, host_paths
from neuroposter.targets.vendor import VendorError

__all__ = ["speck_support", "check"]


def speck_support() -> dict[str, Any]:
    """What of SynSense's Speck toolchain runs here, and why the rest does not (plain data)."""
    out: dict[str, Any] = {
        "vendor_simulator": None,
        "vendor_simulator_reason": (
            "Speck's simulator is samna.specksim (sinabs.backend.dynapcnn.specksim imports it); samna on the "
            "registry is a stub that tries to pip-install the real binary from SynSense's index (unreachable here), "
            "and sinabs.backend.dynapcnn's package __init__ imports samna via dynapcnn_network -> config_builder, so "
            "neither the chip simulator nor sinabs' DYNAP-CNN mapping can be imported"),
        "runs": "sinabs' torch IAF layers (sinabs.from_nir, IAFSqueeze) -- a software model, not the chip",
        "install": "pip install --no-deps sinabs==3.1.3 pbr (its metadata pins nir<=1.0.4 and samna)",
    }
    try:
        out["sinabs_version"] = importlib.metadata.version("sinabs")
        import sinabs.layers  # noqa: F401

        out["sinabs_importable"] = True
    except Exception as e:  # noqa: BLE001 - any import failure is reported as data
        out["sinabs_importable"] = False
        out["sinabs_error"] = f"{type(e).__name__}: {e}"
    try:
        import sinabs.backend.dynapcnn  # noqa: F401

        out["dynapcnn_importable"] = True
    except Exception as e:  # noqa: BLE001
        out["dynapcnn_importable"] = False
        out["dynapcnn_error"] = f"{type(e).__name__}: {e}"
    return out


def _chain(g: Graph) -> tuple[str | None, list[str]]:
    hosted = host_paths(g)
    path, host_last, chip = g.input, None, []
    while not isinstance(g.nodes[path].nir, nir.Output):
        succ = g.succs(path, unique=True)
        if len(succ) != 1:
            raise VendorError(f"Speck check: node {path!r} has {len(succ)} successors; only a chain "
                              "Input -> [host nodes] -> (Affine|Conv2d -> IF [-> SumPool2d])* [-> Flatten] -> Affine "
                              "-> Output is supported")
        path = succ[0]
        if path in hosted and not isinstance(g.nodes[path].nir, nir.Output):
            if chip:
                raise VendorError(f"Speck check: host node {path!r} after chip nodes")
            host_last = path
        else:
            chip.append(path)
    return host_last, chip


def _chip_graph(g: Graph, chip: list[str], in_shape: tuple[int, ...]) -> nir.NIRGraph:
    """The chip part as its own NIR graph (Linear as Affine with zero bias, for sinabs' importer)."""
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array(list(in_shape)))}
    for p in chip[:-1]:
        node = g.nodes[p].nir
        if isinstance(node, nir.Conv2d):   # plain ints for torch's Conv2d (sinabs passes them through)
            w = np.asarray(node.weight, dtype=np.float64)
            pad = node.padding
            if isinstance(pad, str):
                raise VendorError(f"Speck check: Conv2d {p!r} has padding {pad!r}; give it as integers")
            b = np.zeros(w.shape[0]) if node.bias is None else np.asarray(node.bias, dtype=np.float64)
            node = nir.Conv2d(input_shape=np.asarray(node.input_shape), weight=w,
                              stride=tuple(int(v) for v in np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,))),
                              padding=tuple(int(v) for v in np.broadcast_to(np.asarray(pad).reshape(-1), (2,))),
                              dilation=tuple(int(v) for v in np.broadcast_to(np.asarray(node.dilation).reshape(-1),
                                                                            (2,))),
                              groups=int(node.groups), bias=b)
        elif isinstance(node, (nir.SumPool2d, nir.Flatten)):
            pass
        elif isinstance(node, nir.Linear):
            w = np.asarray(node.weight, dtype=np.float64)
            node = nir.Affine(w, np.zeros(w.shape[0]))
        elif isinstance(node, nir.IF):
            if np.any(np.asarray(node.r) != 1):
                raise VendorError(f"Speck check: IF {p!r} has r != 1 (sinabs' importer ignores r)")
            if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
                raise VendorError(f"Speck check: IF {p!r} resets to v_reset != 0")
        elif not isinstance(node, nir.Affine):
            raise VendorError(f"Speck check: {type(node).__name__} {p!r} is not supported (Affine/Linear, Conv2d, "
                              "SumPool2d, Flatten and IF only)")
        nodes[p.replace(".", "_")] = node
    out_dim = np.asarray(g.nodes[chip[-2]].nir.weight).shape[0]
    nodes["output"] = nir.Output(np.array([out_dim]))
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=False)


def check(graph_q: nir.NIRGraph, x: np.ndarray, profile: Any) -> dict[str, Any]:
    """sinabs' IAF layers vs the project's reference simulator on a deployed Speck graph, spike for spike.

    Args:
        graph_q: the deployed graph (host part marked ``placement: host``).
        x: the graph's inputs ``[T, B, ...]``.
        profile: the Speck hardware profile (recorded by name only).

    Returns:
        The ``VENDOR_SIMULATORS`` dict (``simulator``, ``version``, ``samples``, ``spikes_compared``,
        ``mismatched_spikes``, ``exact``, ``layers``, ``logits`` (the reference simulator's mean output
        ``[B, C]``), ``sinabs_logits``, ``semantics``, ``support``).

    Raises:
        VendorError: sinabs is missing or the graph is not a supported chain.
    """
    try:
        import sinabs
        from sinabs.activation import MembraneReset, SingleSpike
    except ImportError as e:
        raise VendorError(f"sinabs is not installed ({e}); scripts/bootstrap.sh installs it (--no-deps)") from e
    from neuroposter.ir.simulate import simulate

    g = flatten(graph_q)
    host_last, chip = _chain(g)
    ref = simulate(graph_q, x, mode="same_step", record=True)
    T = int(np.asarray(x).shape[0])
    B = int(np.asarray(x).shape[1])
    conv = isinstance(g.nodes[chip[0]].nir, nir.Conv2d)
    if host_last is None:
        ev = np.asarray(x, dtype=np.float64)
    elif chip[0] in ref.inputs:   # what the host sends the chip's first connection (e.g. a host pool's sums)
        ev = np.asarray(ref.inputs[chip[0]], dtype=np.float64)
    else:
        ev = np.asarray(ref.records[host_last], dtype=np.float64)
    ev = ev.reshape(T, B, *ev.shape[2:]) if conv else ev.reshape(T, B, -1)
    sub = _chip_graph(g, chip, tuple(int(v) for v in ev.shape[2:]))
    model = sinabs.from_nir(sub, batch_size=B)
    spiking = {}
    for name, mod in model.named_modules():
        if isinstance(mod, sinabs.layers.IAF):
            mod.spike_fn = SingleSpike
            mod.reset_fn = MembraneReset(reset_value=0.0)
            mod.min_v_mem = None
            spiking[name.split(".")[-1]] = mod
    recorded: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, key=k: recorded.__setitem__(key, o.detach()))
             for k, m in spiking.items()]
    with torch.no_grad():
        xin = torch.as_tensor(np.swapaxes(ev, 0, 1).copy(), dtype=torch.float32).reshape(B * T, *ev.shape[2:])
        out = model(xin)
        out = out[0] if isinstance(out, tuple) else out  # nirtorch's executor returns (output, state)
    for h in hooks:
        h.remove()
    layers, compared, mismatched = {}, 0, 0
    for p in chip:
        if not isinstance(g.nodes[p].nir, nir.IF):
            continue
        key = p.replace(".", "_")
        if key not in recorded:
            raise VendorError(f"Speck check: sinabs did not build an IAF layer for {p!r}")
        zs = recorded[key].reshape(B, T, -1).permute(1, 0, 2).numpy()
        zr = np.asarray(ref.records[p], dtype=np.float64).reshape(T, B, -1)
        mis = int(np.sum(zs != zr))
        layers[p] = {"neurons": int(zr.shape[-1]), "spikes_compared": int(zr.size), "mismatched_spikes": mis,
                     "spike_count_reference": int(zr.sum()), "spike_count_sinabs": int(zs.sum())}
        compared += int(zr.size)
        mismatched += mis
    logits = np.asarray(ref.output, dtype=np.float64).reshape(T, B, -1).mean(axis=0)
    s_logits = out.detach().double().reshape(B, T, -1).mean(axis=1).numpy()
    return {"simulator": "sinabs (SynSense's torch SNN library: IAFSqueeze layers via sinabs.from_nir; a software "
                         "model of IAF neurons, not Speck's chip simulator)",
            "version": importlib.metadata.version("sinabs"), "reference": "neuroposter.ir.simulate (same_step, float)",
            "bit_accurate": False,
            "chip": str(getattr(profile, "name", "speck")), "samples": B, "steps": T,
            "spikes_compared": compared, "mismatched_spikes": mismatched, "exact": mismatched == 0, "layers": layers,
            "logits": logits.tolist(), "sinabs_logits": s_logits.tolist(),
            "logits_max_abs_diff": float(np.max(np.abs(s_logits - logits))),
            "semantics": "IAF reconfigured to SingleSpike + MembraneReset(0), no min_v_mem (the project's IF); "
                         "sinabs fires at v >= threshold, the reference at v > threshold; sinabs runs float32",
            "support": speck_support()}
