"""Simulated neuromorphic chips (SpiNNaker, SpiNNaker 2, TrueNorth, Xylo, Speck), driven by their profiles.

``export(request)`` for ``--target spinnaker|spinnaker2|truenorth|xylo|speck``:

1. lowers the run to NIR (as the Loihi target does), then applies only the **exact** lowerings the
   chip's neuron circuit allows (:func:`lower_for_profile`, recorded as ``summary["lowerings"]``):
   a stateless ``Threshold`` (the SDSA ANDs) becomes ``LIF(tau=dt, r=1, v_leak=0, v_reset=0,
   v_threshold=theta)`` on a chip that hosts LIF but not Threshold *and* whose LIF can be set to
   full leak (:data:`FULL_LEAK`). Under the graph's forward Euler ``v <- v + (x - v) dt/tau = x``,
   so ``z = [x > theta]`` and, with the hard reset to 0 or a sub-threshold ``v = x``, nothing
   carries to the next step: the lowered graph spikes exactly as the original (checked in the
   reference simulator and reported). Chips whose neuron cannot empty its state every step keep the
   ``Threshold`` and refuse it with the reason;
2. maps the (lowered) graph onto ``hardware_profiles/<chip>.yaml``
   (:func:`neuroposter.targets.mapping.map_graph`): node types and neuron models, fan-in / fan-out,
   neurons and synapses per core / chip, synapse memory (lower bound), cores, layers, inputs and
   outputs. **Every** violated limit is named with needed vs available (``summary.mapping``); the
   limits that are null in the profile are listed as unchecked (``summary.limits.unknown``);
3. when the graph is expressible on the chip's neurons (no node-type / neuron-model violation),
   applies the chip's precision (:func:`neuroposter.ir.quantize.quantize_nbit` with ``weight_bits``
   and ``state_bits``; unknown precision leaves the graph float and says so), runs it in the
   reference simulator (``same_step``, float) on real test samples and reports the agreement with
   the float graph (prediction agreement, per-layer spike agreement) and with the float Norse model
   (prediction agreement, micro-F1 difference). The precision figures are reported even when a
   capacity limit refuses the export (what the chip's arithmetic would cost if it fitted);
4. ``ok`` is True only when nothing is violated: otherwise ``REFUSED`` with every violation.

Bundle: ``summary.json``, ``mapping.json``, ``manifest.json`` and, when hosted, ``graph_q.nir``.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neuroposter.targets.base import ExportRequest, ExportResult

__all__ = ["export", "check_chip", "lower_for_profile", "FULL_LEAK", "limits_report"]

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 16

# Can the chip's LIF be programmed to *full leak* (membrane and any synaptic state emptied every step,
# the input of the step still reaching the membrane)? That is the condition under which
# Threshold -> LIF(tau=dt) is exact on the chip. (value, reason with source and evidence grade);
# a profile not listed here gets no lowering ("unknown").
FULL_LEAK: dict[str, tuple[bool, str]] = {
    "spinnaker2": (True, "py-spinnaker2 runs LIF in software on the Cortex-M4F PEs; its NIR reader (s2_nir) with "
                         "integrator=FORWARD sets alpha_decay = 1 - dt/tau = 0 and r_factor = r*dt/tau = 1 for tau = dt, "
                         "and reset=ZERO resets to 0 [V: s2_nir.py convert_LIF, public copy; S: nir_lava.md 5]"),
    "spinnaker": (True, "neuron models run in software on the ARM968 cores (sPyNNaker) [S: energy_figures.md 3.2]; "
                        "the membrane decay is a host-computed fixed-point factor, and a factor of 0 (full leak) is "
                        "representable [D; the sPyNNaker LIF source was not re-read: U]"),
    "xylo": (False, "Xylo's neuron passes every input through a bit-shift synaptic state that is decayed after the "
                    "spikes are delivered and before it is added to the membrane (xylosim XyloLayer::evolve: deliver, "
                    "decayState, evolve; decay(v, dash) = max(v >> dash, sign(v))): dash_syn = 0 "
                    "(tau_syn = dt, dash = floor(log2(tau/dt)) = 0) empties the input before it reaches the membrane, "
                    "and dash_syn >= 1 carries at least half of it into the next step. dash_mem = 0 does empty the "
                    "membrane, but no setting gives a stateless neuron, so LIF(tau=dt) is not expressible exactly "
                    "[V: xylosim C++ source, public copy; chip generation of that simulator: U]"),
    "speck": (False, "Speck / DYNAP-CNN cores are IAF only [V: sinabs docs, nir_lava.md 5]: an IF keeps the residual "
                     "of a lone input (1 < 1.5) and breaks the AND on the next step (nir_lava.md 4), and there is no "
                     "LIF to lower to"),
    "truenorth": (False, "TrueNorth runs its own integrate-and-fire neuron (256-axon crossbar per core); full-leak "
                         "programmability not verified [U]; the profile lists Threshold as hosted, so no lowering is "
                         "needed or applied"),
}


def _hosts(profile: Any, node_type: str) -> bool:
    """Whether the profile hosts a neuron node type (neuron_models and, when given, nir_nodes)."""
    limits = getattr(profile, "limits", None)
    models = getattr(limits, "neuron_models", None) if limits is not None else None
    nir_nodes = {str(x) for x in (getattr(profile, "nir_nodes", None) or ())}
    return (not models or node_type in set(models)) and (not nir_nodes or node_type in nir_nodes)


def _threshold_to_lif(node: nir.Threshold, dt: float, path: str, why: str) -> nir.LIF:
    th = np.asarray(node.threshold, dtype=np.float64)
    meta = dict(node.metadata or {})
    meta.update(lowered_from="Threshold", lowering="Threshold -> LIF(tau=dt, r=1, v_leak=0, v_reset=0)")
    return nir.LIF(tau=np.full(th.shape, float(dt)), r=np.ones(th.shape), v_leak=np.zeros(th.shape),
                   v_threshold=th.copy(), v_reset=np.zeros(th.shape), metadata=meta)


def lower_for_profile(graph: nir.NIRGraph, profile: Any) -> tuple[nir.NIRGraph, list[dict[str, Any]],
                                                                  list[dict[str, Any]]]:
    """Applies the lowerings that are exact for the profile's neuron models.

    Only one rule today: a stateless ``Threshold`` becomes ``LIF(tau=dt, r=1, v_leak=0, v_reset=0,
    v_threshold=theta)`` when the chip hosts LIF but not Threshold and its LIF can be set to full
    leak (:data:`FULL_LEAK`). Forward Euler with ``dt/tau = 1`` gives ``v = x`` each step (exact in
    exact arithmetic; in float64 ``s + (x - s)`` equals ``x`` to within one ulp, bitwise for the
    integer spike counts that feed the SDSA ANDs), so the spikes are those of ``[x > theta]``.

    Args:
        graph: the (nested) float NIR graph; not modified.
        profile: a hardware profile.

    Returns:
        ``(lowered graph, applied, refused)``: ``applied`` has one entry per lowered node (path,
        from, to, parameters, why it is exact); ``refused`` one per node the chip cannot host and
        that no exact lowering covers (path, type, reason).
    """
    name = str(getattr(profile, "name", "profile"))
    dt = float(np.asarray((graph.metadata or {}).get("dt", 1.0)).reshape(-1)[0])
    leak_ok, leak_why = FULL_LEAK.get(name, (False, f"whether {name}'s LIF can be set to full leak is unknown "
                                                    "(add the chip to neuroposter.targets.chips.FULL_LEAK with a source)"))
    applied: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []

    def visit(g: nir.NIRGraph, prefix: str) -> nir.NIRGraph:
        nodes: dict[str, nir.NIRNode] = {}
        for n, node in g.nodes.items():
            path = f"{prefix}{n}"
            if isinstance(node, nir.NIRGraph):
                nodes[n] = visit(node, path + ".")
            elif isinstance(node, nir.Threshold) and not _hosts(profile, "Threshold"):
                if _hosts(profile, "LIF") and leak_ok:
                    nodes[n] = _threshold_to_lif(node, dt, path, leak_why)
                    th = np.unique(np.asarray(node.threshold))
                    applied.append({"node": path, "from": "Threshold", "to": "LIF",
                                    "params": {"tau": dt, "r": 1.0, "v_leak": 0.0, "v_reset": 0.0,
                                               "v_threshold": th.tolist() if th.size <= 4 else "as threshold"},
                                    "exact": True, "why": leak_why})
                else:
                    reason = (leak_why if _hosts(profile, "LIF") else
                              f"{name} hosts no LIF to lower to (neuron_models: "
                              f"{', '.join(getattr(profile.limits, 'neuron_models', None) or ())}); {leak_why}")
                    refused.append({"node": path, "type": "Threshold", "reason": reason})
                    nodes[n] = node
            else:
                nodes[n] = node
        out = copy.copy(g)
        out.nodes = nodes
        out.edges = list(g.edges)
        return out

    return visit(graph, ""), applied, refused


def limits_report(profile: Any) -> dict[str, Any]:
    """The profile's limits as checked: value, note and source per limit, and which are unknown (null)."""
    import yaml

    raw: dict[str, Any] = {}
    path = getattr(profile, "path", None)
    if path is not None and Path(path).is_file():
        raw = (yaml.safe_load(Path(path).read_text()) or {}).get("limits", {}) or {}
    checked = ("neurons_per_core", "synapses_per_core", "cores_per_chip", "neurons_per_chip", "synapses_per_chip",
               "fan_in", "fan_out", "weight_bits", "state_bits", "max_delay", "max_layers", "inputs_per_chip",
               "outputs_per_chip", "memory_per_core_kb", "memory_per_chip_mb", "max_kernel_size", "max_channels")
    values: dict[str, Any] = {}
    for k in checked:
        v = getattr(profile.limits, k, None)
        entry: dict[str, Any] = {"value": v}
        r = raw.get(k)
        if isinstance(r, dict):
            entry.update({x: r[x] for x in ("note", "source", "evidence") if r.get(x) is not None})
        values[k] = entry
    return {"values": values, "unknown": [k for k in checked if values[k]["value"] is None],
            "source": list(getattr(profile, "sources", ()) or ())}


def check_chip(graph: Any, profile: Any, *, delays: dict | None = None, lower: bool = True
               ) -> tuple[bool, list[str], dict[str, Any]]:
    """``(hostable, violations, mapping dict)`` of a NIR graph on a chip profile.

    With ``lower`` (default) the exact lowerings of :func:`lower_for_profile` are applied first; the
    mapping dict then carries ``lowerings`` and a Threshold the chip cannot host names why it was not
    lowered.
    """
    from neuroposter.targets.mapping import map_graph

    applied: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    if lower:
        graph, applied, refused = lower_for_profile(graph, profile)
    m = map_graph(graph, profile, delays=delays)
    why = {r["node"]: r["reason"] for r in refused}
    violations = [v + (f"; not lowered to LIF(tau=dt): {why[n]}" if (n := _violation_node(v)) in why else "")
                  for v in m.violations]
    d = m.to_dict()
    d["violations"] = violations
    d["lowerings"] = applied
    d["lowerings_refused"] = refused
    d["verdict"] = m.verdict
    return m.fits, violations, d


def _violation_node(v: str) -> str | None:
    if v.startswith("node '"):
        return v[len("node '"):].split("'", 1)[0]
    return None


def _expressible(mapping: dict[str, Any]) -> bool:
    """No node-type / neuron-model violation: the chip's arithmetic can be simulated on this graph."""
    return not ({"nir_nodes", "neuron_models"} & set(mapping.get("violated_limits", {})))


def _precision_run(graph: nir.NIRGraph, graph_l: nir.NIRGraph, x: np.ndarray, wb: int | None, sb: int | None,
                   lowered: list[dict[str, Any]]) -> tuple[nir.NIRGraph, Any, dict[str, Any], np.ndarray, np.ndarray]:
    """Quantises the lowered graph, simulates float / lowered / quantised graphs, compares them."""
    from neuroposter.ir.quantize import quantize_nbit
    from neuroposter.ir.simulate import simulate
    from neuroposter.targets.loihi import prediction_agreement

    B = x.shape[1]
    sim_f = simulate(graph, x, mode="same_step", arithmetic="float")
    f_mean = np.asarray(sim_f.aligned_output(), dtype=np.float64).mean(axis=0).reshape(B, -1)
    out: dict[str, Any] = {}
    if lowered:
        sim_l = simulate(graph_l, x, mode="same_step", arithmetic="float")
        mism = {k: int(np.count_nonzero(np.asarray(sim_l.records[k]) != np.asarray(sim_f.records[k])))
                for k in sim_f.records if k in sim_l.records}
        out["lowering"] = {"nodes": [e["node"] for e in lowered], "spikes_compared": int(sum(
            np.asarray(sim_f.records[k]).size for k in mism)), "mismatched_spikes": int(sum(mism.values())),
            "output_max_abs_diff": float(np.max(np.abs(np.asarray(sim_l.output, dtype=np.float64)
                                                       - np.asarray(sim_f.output, dtype=np.float64)))),
            "exact": not any(mism.values())}
    graph_q, qrep = quantize_nbit(graph_l, weight_bits=wb, state_bits=sb)
    out["bias_precision"] = ("connection biases treated as neuron offsets: "
                             + (f"{sb}-bit grid over their own range" if sb else "state_bits unknown, left float"))
    sim_q = simulate(graph_q, x, mode="same_step", arithmetic="float")
    q_mean = np.asarray(sim_q.aligned_output(), dtype=np.float64).mean(axis=0).reshape(B, -1)
    layers = {k: float((np.asarray(sim_q.records[k]) == np.asarray(sim_f.records[k])).mean())
              for k in sim_q.records if k in sim_f.records}
    out["vs_float_graph"] = {"prediction_agreement": prediction_agreement(q_mean, f_mean),
                             "spike_agreement_min": min(layers.values()) if layers else 1.0,
                             "layers": layers}
    return graph_q, qrep, out, q_mean, f_mean


def export(request: ExportRequest) -> ExportResult:
    """Exports a run to a simulated chip (see the module docstring).

    Options: ``samples`` (16), ``split`` (``"test"``), ``seed`` (0), ``profile`` (default: the
    target name; a path to another YAML also works).
    """
    from neuroposter._io import atomic_write_json
    from neuroposter.ir.graph_io import write_graph
    from neuroposter.ir.lower import lower_model, to_graph_input
    from neuroposter.manifest import write_manifest
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.targets._bundle import bundle_dir, check_bundle_destination, run_record, samples_option
    from neuroposter.targets.loihi import _float_model_logits, _load_inputs, agreement_vs_float
    from neuroposter.train import load_run

    given = dict(request.options or {})
    opts = {"split": "test", "seed": 0, **{k: v for k, v in given.items() if v is not None}}
    opts["samples"] = samples_option(given, DEFAULT_SAMPLES)
    chip = str(request.target)
    profile = load_profile(opts.get("profile") or chip)
    check_bundle_destination(request)
    t0 = time.perf_counter()
    loaded = load_run(request.run_dir)
    run_name = Path(request.run_dir).name
    xs, labels, idx, enc_info = _load_inputs(request, loaded, int(opts["samples"]), str(opts["split"]), opts["seed"])
    graph = lower_model(loaded.model, T=int(enc_info["T"]), source_run=str(request.run_dir))
    x = to_graph_input(xs, graph)
    graph_l, lowered, not_lowered = lower_for_profile(graph, profile)
    hostable, violations, mapping = check_chip(graph_l, profile, lower=False)
    why = {r["node"]: r["reason"] for r in not_lowered}
    violations = [v + (f"; not lowered to LIF(tau=dt): {why[n]}" if (n := _violation_node(v)) in why else "")
                  for v in violations]
    mapping.update(violations=violations, lowerings=lowered, lowerings_refused=not_lowered)
    wb = getattr(profile.limits, "weight_bits", None)
    sb = getattr(profile.limits, "state_bits", None)
    lim = limits_report(profile)
    for k, e in mapping.get("violated_limits", {}).items():   # the profile's own caveat on the limit
        if lim["values"].get(k, {}).get("note"):
            e["note"] = lim["values"][k]["note"]
    summary: dict[str, Any] = {
        "target": chip, "run": run_name, "model": loaded.model_name, "profile": profile.name,
        "samples": int(x.shape[1]), "precision": {"weight_bits": wb, "state_bits": sb},
        "inputs": {**enc_info, "indices": idx.tolist()},
        "lowerings": lowered, "lowerings_refused": not_lowered,
        "limits": {"unknown": lim["unknown"], "unchecked_by_mapping": mapping.get("unchecked", []),
                   "values": lim["values"]},
        "mapping": {k: mapping[k] for k in ("fits", "verdict", "violations", "violated_limits", "totals")}}
    lines = [f"{chip}: {run_name} ({loaded.model_name}) -> {request.out_dir}"]
    for e in lowered[:4]:
        lines.append(f"  lowered {e['node']}: Threshold -> LIF(tau=dt, r=1, v_leak=0, v_reset=0) (exact)")
    if len(lowered) > 4:
        lines.append(f"  ... {len(lowered) - 4} more lowerings (summary.json)")
    graph_q = None
    if _expressible(mapping):
        graph_q, qrep, ver, q_mean, _ = _precision_run(graph, graph_l, x, wb, sb, lowered)
        n_mean = _float_model_logits(loaded.model, xs).mean(axis=0).reshape(x.shape[1], -1)
        ver["vs_float_model"] = agreement_vs_float(q_mean, n_mean, labels, "chip")
        summary.update(quantization=qrep.to_dict(), verification=ver)
        if wb is None:
            summary["precision"]["note"] = "weight precision unknown in the profile: weights left in float"
        v = ver["vs_float_model"]
        if "lowering" in ver:
            lo = ver["lowering"]
            lines.append(f"  lowering check: {lo['mismatched_spikes']} of {lo['spikes_compared']} spikes differ "
                         f"({'exact' if lo['exact'] else 'NOT exact'})")
        lines.append(f"  {wb}-bit weights / {sb}-bit states: prediction agreement with the float graph "
                     f"{ver['vs_float_graph']['prediction_agreement']:.3f} (min layer spike agreement "
                     f"{ver['vs_float_graph']['spike_agreement_min']:.4f}), with the float model "
                     f"{v['prediction_agreement']:.3f}, micro-F1 diff {v['micro_f1_diff']:+.3f}")
    if not hostable:
        summary.update(ok=False, reason=f"{chip} cannot host this network: " + "; ".join(violations))
        vl = mapping.get("violated_limits", {})
        lines.append(f"  REFUSED: {chip} cannot host this network ({len(vl)} violated limits, "
                     f"{len(violations)} violations):")
        lines.extend(f"    - {k}: needs {e['needed']}, available {e['available']}"
                     + (f" ({len(e['nodes'])} nodes, e.g. {e['nodes'][0]!r})" if e["nodes"] else "")
                     + (f" [profile note: {e['note']}]" if e.get("note") else "")
                     for k, e in vl.items())
        graph_q = None
    else:
        summary.update(ok=True)
        t = mapping["totals"]
        lines.append(f"  {t['neurons']} neurons, {t['stored_synapses']} stored synapses, {t['cores']} cores: fits")
    if lim["unknown"]:
        lines.append(f"  unknown in the profile (not checked): {', '.join(lim['unknown'])}")
    summary["seconds"] = time.perf_counter() - t0
    # A refusal (the chip cannot host the network) is the export's verdict, not a failed verification:
    # the bundle keeps its name and says why (summary.json ok: false, reason).
    with bundle_dir(request, protect=[enc_info.get("path")]) as tmp:
        atomic_write_json(tmp / "mapping.json", mapping)
        atomic_write_json(tmp / "summary.json", summary)
        if graph_q is not None:
            write_graph(tmp / "graph_q.nir", graph_q, verify=False)
        write_manifest(tmp, "export", inputs={"run": run_record(request.run_dir, loaded.manifest),
                                              "encoded": {"path": enc_info.get("path"), "key": enc_info.get("key")}},
                       config={k: v for k, v in opts.items() if isinstance(v, (int, float, str, bool, type(None)))},
                       extra={"target": chip, "source_run": run_name})
    return ExportResult(Path(request.out_dir), summary, tuple(lines), bool(summary["ok"]))
