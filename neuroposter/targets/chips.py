"""Simulated neuromorphic chips (SpiNNaker, SpiNNaker 2, TrueNorth, Xylo, Speck), driven by their profiles.

:class:`ChipTarget` (the target contract of :mod:`neuroposter.targets.base`) for
``--target spinnaker|spinnaker2|truenorth|xylo|speck``:

1. lowers the run to NIR (as the Loihi target does), then applies only the **exact** lowerings the
   chip's neuron circuit allows (:func:`lower_for_profile`, recorded as ``summary["lowerings"]``):
   a stateless ``Threshold`` (the SDSA ANDs) becomes ``LIF(tau=dt, r=1, v_leak=0, v_reset=0,
   v_threshold=theta)`` on a chip that hosts LIF but not Threshold *and* whose LIF can be set to
   full leak (``limits.full_leak`` in its profile, with the reason and sources in its note). Under the
   graph's forward Euler ``v <- v + (x - v) dt/tau = x``, so ``z = [x > theta]`` and, with the hard
   reset to 0 or a sub-threshold ``v = x``, nothing carries to the next step: the lowered graph spikes
   exactly as the original (checked in the reference simulator and reported). Chips whose neuron
   cannot empty its state every step keep the ``Threshold`` and refuse it with the reason;
2. maps the (lowered) graph onto ``hardware_profiles/<chip>.yaml``
   (:func:`neuroposter.targets.mapping.map_graph`): node types and neuron models, fan-in / fan-out,
   neurons and synapses per core / chip, synapse memory (lower bound), cores, layers, inputs and
   outputs. **Every** violated limit is named with needed vs available (``summary.mapping``); the
   limits that are null in the profile are listed as unchecked (``summary.limits.unknown``);
3. when the graph is expressible on the chip's neurons (no node-type / neuron-model violation),
   applies the chip's precision (:func:`neuroposter.ir.quantize.quantize_nbit` with ``weight_bits``
   and ``state_bits``; unknown precision leaves the graph float and says so) -- the deployed network -- and
   runs it in the reference simulator (``same_step``) on the ``--trained-samples`` first samples of the split
   (default: the whole split) beside the trained model: ``verification.deployed_vs_trained`` (top-1,
   genre-set and per-label agreement, micro-F1 and mAP, with bootstrap intervals). On ``--samples`` of them
   (default 16, a seeded subset) it also records every layer's spikes: the quantised vs the float graph
   (``quantization.spikes_quantised_vs_float_graph``) and the exact lowerings vs the float graph
   (``verification.lowering``). The precision figures are reported even when a capacity limit refuses the
   export (what the chip's arithmetic would cost if it fitted);
4. ``ok`` is True only when nothing is violated (otherwise ``REFUSED`` with every violation, a verdict kept at the
   bundle's name) and the deployed network keeps the trained model's genre set on at least
   ``--min-trained-agreement`` (default 0.95) of the samples (otherwise a failed verification, kept as
   ``<name>.failed``: e.g. TrueNorth's 1-bit weights on a network trained in float).

5. where the chip has a vendor simulator (``neuroposter.targets.vendor.VENDOR_SIMULATORS``: xylosim for Xylo,
   sinabs' IAF layers for Speck), runs the deployed graph there on the first ``vendor_samples`` test samples
   beside the project's reference (``verification.vendor``); a bit-accurate simulator that disagrees fails the
   export. Where the chip's arithmetic is not the reference simulator's (``CHIP_ARITHMETIC``: Xylo's integer
   neurons), the deployed-vs-trained comparison runs in the chip's own integer reference.

Bundle: ``summary.json``, ``mapping.json`` (with the placement over the profile's system), ``manifest.json`` and,
when hosted, ``graph_q.nir`` and ``op_counts.json`` (the deployed graph's counts on ``count_samples`` test samples,
chip part and host part, :func:`neuroposter.profiling.stored.chip_counts`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neuroposter.targets.base import ExportContext, Gate, Target, Verdict, gate_verdict, trained_gate

__all__ = ["ChipTarget", "check_chip", "lower_for_profile", "limits_report"]

log = logging.getLogger(__name__)


def _hosts(profile: Any, node_type: str) -> bool:
    """Whether the profile hosts a neuron node type (neuron_models and, when given, nir_nodes)."""
    limits = getattr(profile, "limits", None)
    models = getattr(limits, "neuron_models", None) if limits is not None else None
    nir_nodes = {str(x) for x in (getattr(profile, "nir_nodes", None) or ())}
    return (not models or node_type in set(models)) and (not nir_nodes or node_type in nir_nodes)


def _full_leak(profile: Any) -> tuple[bool, str]:
    """(whether the chip's LIF can be set to full leak, why), from the profile's ``limits.full_leak``.

    Null or absent is unknown: no lowering, and the reason says so.
    """
    name = str(getattr(profile, "name", "profile"))
    limits = getattr(profile, "limits", None)
    value = getattr(limits, "full_leak", None)
    note = (getattr(limits, "notes", None) or {}).get("full_leak")
    if value is None:
        return False, (f"whether {name}'s LIF can be set to full leak is unknown "
                       "(set limits.full_leak in its hardware profile, with a source)")
    return bool(value), note or f"limits.full_leak of {name} is {str(bool(value)).lower()} (no note given)"


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
    leak (the profile's ``limits.full_leak``). Forward Euler with ``dt/tau = 1`` gives ``v = x``
    each step (exact in exact arithmetic; in float64 ``s + (x - s)`` equals ``x`` to within one ulp, bitwise for the
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
    leak_ok, leak_why = _full_leak(profile)
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

    lowered = visit(graph, "")
    return _compose_pools_for(lowered, profile, applied), applied, refused


def _compose_pools_for(graph: nir.NIRGraph, profile: Any, applied: list[dict[str, Any]]) -> nir.NIRGraph:
    """``graph`` with its pools composed into the synapses after them when the profile hosts no pool node
    (:func:`neuroposter.targets.compose.compose_pools`: exact, every composed weight a copy of an original one),
    flat; unchanged when it has no pool or the chip hosts them. One ``applied`` entry per pool."""
    from neuroposter.ir.graph import flatten
    from neuroposter.targets.compose import POOLS, compose_pools

    fg = flatten(graph)
    pools = {n: type(nd.nir).__name__ for n, nd in fg.nodes.items() if isinstance(nd.nir, POOLS)}
    nir_nodes = {str(x) for x in (getattr(profile, "nir_nodes", None) or ())}
    if not pools or not nir_nodes or all(t in nir_nodes for t in pools.values()):
        return graph
    composed = compose_pools(fg)
    into = {p: n for n, nd in composed.nodes.items()
            for p in str((nd.nir.metadata or {}).get("composed_from", "")).split(",") if p}
    for p, t in pools.items():
        applied.append({"node": p, "from": t, "to": f"composed into {into.get(p, 'the next synapse')}",
                        "params": {}, "exact": True,
                        "why": f"{getattr(profile, 'name', 'the chip')} hosts no {t} node; a pool and the connection "
                               "after it are one synapse (each composed weight is a copy of an original one)"})
    return nir.NIRGraph(nodes={n: nd.nir for n, nd in composed.nodes.items()}, edges=composed.unique_edges(),
                        metadata=dict(graph.metadata or {}), type_check=False)


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


def _vendor_line(v: dict[str, Any]) -> str:
    """One line on the vendor-simulator check."""
    if "error" in v:
        return f"  vendor simulator not run: {v['error']}"
    name = v["simulator"].split(" (")[0]
    exact = "spike for spike" if v.get("exact") else f"{v['mismatched_spikes']} mismatched"
    return (f"  {name} {v.get('version', '')} vs the project's reference: {v['spikes_compared']:,} spikes on "
            f"{v['samples']} samples, {exact}")


def _violation_node(v: str) -> str | None:
    if v.startswith("node '"):
        return v[len("node '"):].split("'", 1)[0]
    return None


def _expressible(mapping: dict[str, Any]) -> bool:
    """No node-type / neuron-model violation: the chip's arithmetic can be simulated on this graph."""
    return not ({"nir_nodes", "neuron_models"} & set(mapping.get("violated_limits", {})))


@dataclass
class _Lowered:
    graph: nir.NIRGraph          # the float graph
    graph_l: nir.NIRGraph        # with the chip's exact lowerings
    applied: list[dict[str, Any]]
    refused: list[dict[str, Any]]


@dataclass
class _Quantised:
    lowered: _Lowered
    graph_q: nir.NIRGraph        # the lowered graph on the chip's weight / state grid
    report: Any                  # QuantReport


@dataclass
class _Mapped:
    q: _Quantised
    hostable: bool
    violations: list[str]
    mapping: dict[str, Any]


#: samples per whole-split simulation of the deployed network (bounds the simulator's copy of the inputs)
_SIM_CHUNK = 256


def _mean_output(graph: Any, x: np.ndarray, chunk: int = _SIM_CHUNK) -> np.ndarray:
    """Mean logits ``[B, C]`` of ``graph`` (same step, float arithmetic, no recordings) on ``x``, in chunks."""
    from neuroposter.ir.simulate import simulate
    from neuroposter.targets.verify import mean_logits

    parts = []
    for lo in range(0, int(x.shape[1]), chunk):
        xb = x[:, lo:lo + chunk]
        res = simulate(graph, xb, mode="same_step", arithmetic="float", record=False)
        parts.append(mean_logits(res.aligned_output(), int(xb.shape[1])))
    return np.concatenate(parts, axis=0)


class ChipTarget(Target):
    """``neuroposter export --target spinnaker|spinnaker2|truenorth|xylo|speck`` (see the module docstring).

    Options: ``samples`` (16: the per-layer spike comparisons), ``trained_samples`` (all: the deployed-vs-trained
    comparison), ``min_trained_agreement`` (0.95), ``split`` (``"test"``), ``seed`` (0), ``count_samples`` (32: the
    first test samples the stored op counts are made on), ``vendor_samples`` (16: the first test samples run in
    the chip's vendor simulator, where one is registered), ``profile`` (default: the target name; a path to
    another YAML also works).
    """

    model_kinds = ("snn",)
    defaults = {"samples": 16, "split": "test", "seed": 0, "count_samples": 32, "vendor_samples": 16}
    min_agreement = None
    min_trained_agreement = 0.95
    profile = "<target>"

    def lower(self, ctx: ExportContext) -> _Lowered:
        from neuroposter.ir.lower import lower_model, to_graph_input

        graph = lower_model(ctx.run.model, T=int(ctx.inputs.T), source_run=str(ctx.request.run_dir))
        self.x_all = to_graph_input(ctx.inputs.x, graph)
        self.x = np.ascontiguousarray(self.x_all[:, ctx.simulator_positions()])
        graph_l, applied, refused = lower_for_profile(graph, ctx.profile)
        ctx.summary.update(lowerings=applied, lowerings_refused=refused)
        for e in applied[:4]:
            to = ("LIF(tau=dt, r=1, v_leak=0, v_reset=0)" if e["to"] == "LIF" else e["to"])
            ctx.lines.append(f"  lowered {e['node']}: {e['from']} -> {to} (exact)")
        if len(applied) > 4:
            ctx.lines.append(f"  ... {len(applied) - 4} more lowerings (summary.json)")
        return _Lowered(graph, graph_l, applied, refused)

    def quantise(self, ctx: ExportContext, low: _Lowered) -> _Quantised:
        from neuroposter.ir.quantize import quantize_nbit

        wb, sb = ctx.profile.limits.weight_bits, ctx.profile.limits.state_bits
        ctx.summary["precision"] = {"weight_bits": wb, "state_bits": sb,
                                    "bias": "connection biases treated as neuron offsets: "
                                            + (f"{sb}-bit grid over their own range" if sb
                                               else "state_bits unknown, left float")}
        if wb is None:
            ctx.summary["precision"]["note"] = "weight precision unknown in the profile: weights left in float"
        graph_q, report = quantize_nbit(low.graph_l, weight_bits=wb, state_bits=sb)
        return _Quantised(low, graph_q, report)

    def build(self, ctx: ExportContext, q: _Quantised) -> _Mapped:
        """Maps the lowered graph onto the profile's cores and chips (every violated limit, needed vs available)."""
        hostable, violations, mapping = check_chip(q.lowered.graph_l, ctx.profile, lower=False)
        from neuroposter.targets import conv_cores

        if conv_cores.applies(ctx.profile):   # one layer per core: its kernel / neuron memory and map sides
            per_core = conv_cores.core_usage(q.lowered.graph_l, ctx.profile)
            mapping["cores"] = per_core["cores"]
            mapping.setdefault("checked", []).extend(per_core["checked"])
            if per_core["violations"]:
                hostable = False
                violations = [*violations, *per_core["violations"]]
                mapping["violated_limits"] = {**mapping.get("violated_limits", {}), **per_core["violated_limits"]}
                mapping.update(fits=False, verdict="does not fit: " + "; ".join(per_core["violations"]))
            elif hostable:
                mapping["verdict"] = (f"{mapping['verdict']}; {len(per_core['cores'])} cores, one per layer, within "
                                      f"their kernel and neuron memory")
        why = {r["node"]: r["reason"] for r in q.lowered.refused}
        violations = [v + (f"; not lowered to LIF(tau=dt): {why[n]}" if (n := _violation_node(v)) in why else "")
                      for v in violations]
        mapping.update(violations=violations, lowerings=q.lowered.applied, lowerings_refused=q.lowered.refused)
        lim = limits_report(ctx.profile)
        for k, e in mapping.get("violated_limits", {}).items():   # the profile's own caveat on the limit
            if lim["values"].get(k, {}).get("note"):
                e["note"] = lim["values"][k]["note"]
        ctx.summary["limits"] = {"unknown": lim["unknown"], "unchecked_by_mapping": mapping.get("unchecked", []),
                                 "values": lim["values"]}
        ctx.summary["mapping"] = {k: mapping[k] for k in ("fits", "verdict", "violations", "violated_limits", "totals")}
        if "cores" in mapping:
            ctx.summary["mapping"]["cores"] = mapping["cores"]
        return _Mapped(q, hostable, violations, mapping)

    def run(self, ctx: ExportContext, m: _Mapped) -> dict[str, Any] | None:
        """The chip's arithmetic in the reference simulator (same-step): the n-bit graph and the trained model on
        every evaluation sample; the float, lowered and n-bit graphs with recordings on the simulator's sample.
        None when the graph is not expressible on the chip's neurons (nothing to simulate)."""
        from neuroposter.ir.simulate import simulate
        from neuroposter.targets.verify import float_model_logits, mean_logits

        self.mapped = m
        if not _expressible(m.mapping):
            return None
        low = m.q.lowered
        sims: dict[str, Any] = {"float": simulate(low.graph, self.x, mode="same_step", arithmetic="float"),
                                "quantised": simulate(m.q.graph_q, self.x, mode="same_step", arithmetic="float")}
        if low.applied:
            sims["lowered"] = simulate(low.graph_l, self.x, mode="same_step", arithmetic="float")
        B = int(self.x_all.shape[1])
        sims["deployed_mean"], sims["deployed_by"] = self._deployed_logits(ctx, m.q.graph_q)
        sims["trained_mean"] = mean_logits(float_model_logits(ctx.run.model, ctx.inputs.x), B)
        if m.hostable:
            sims["vendor"] = self._vendor(ctx, m.q.graph_q)
        return sims

    def _deployed_logits(self, ctx: ExportContext, graph_q: nir.NIRGraph) -> tuple[np.ndarray, str]:
        """The deployed network's logits on the whole evaluation split, and what computed them: the chip's own
        integer arithmetic where one is registered (``CHIP_ARITHMETIC``: Xylo's integer reference) and the graph
        maps onto it, else the reference simulator in the chip's precision."""
        from neuroposter.targets.vendor import VendorError, chip_arithmetic

        chip = ctx.request.target
        generic = (f"the network in {chip}'s arithmetic (n-bit weights/states, exact lowerings) in the reference "
                   "simulator")
        arith = chip_arithmetic(str(getattr(ctx.profile, "name", chip)))
        if arith is not None:
            try:
                return np.asarray(arith(graph_q, self.x_all, ctx.profile), dtype=np.float64), (
                    f"the network in {chip}'s integer arithmetic ({arith.__module__}.{arith.__name__})")
            except VendorError as e:
                ctx.lines.append(f"  {chip}'s integer arithmetic does not take this graph ({e}); deployed logits "
                                 "from the reference simulator")
                generic += f" ({chip}'s integer arithmetic does not take this graph: {e})"
        return _mean_output(graph_q, self.x_all), generic

    def _vendor(self, ctx: ExportContext, graph_q: nir.NIRGraph) -> dict[str, Any] | None:
        """The chip's vendor simulator against the project's reference on the first ``vendor_samples`` samples
        (None when none is registered; ``{"error": ...}`` when it cannot run this graph here)."""
        from neuroposter.targets.vendor import VENDOR_SIMULATORS, VendorError, vendor_check

        name = str(getattr(ctx.profile, "name", ctx.request.target))
        if name not in VENDOR_SIMULATORS:
            return None
        n = min(int(ctx.options["vendor_samples"]), int(self.x_all.shape[1]))
        try:
            res = vendor_check(name)(graph_q, np.ascontiguousarray(self.x_all[:, :n]), ctx.profile)
        except VendorError as e:
            return {"error": str(e), "samples": n}
        res.pop("logits", None)      # per-sample read-outs: the deployed-vs-trained comparison holds the accuracy
        res.pop("sinabs_logits", None)
        if isinstance(res.get("vs_float_graph"), dict):
            res["vs_float_graph"].pop("float_logits", None)
        return res

    def verify(self, ctx: ExportContext, sims: dict[str, Any] | None) -> Verdict:
        from neuroposter.targets.verify import RESAMPLES, agreement_line, compare, spike_agreement

        m = self.mapped
        chip = ctx.request.target
        verdict = gate_verdict(ctx, [])
        if sims is not None:
            f, q = sims["float"], sims["quantised"]
            ver: dict[str, Any] = {}
            if "lowered" in sims:
                lo = sims["lowered"]
                mism = {k: int(np.count_nonzero(np.asarray(lo.records[k]) != np.asarray(f.records[k])))
                        for k in f.records if k in lo.records}
                ver["lowering"] = {
                    "samples": int(self.x.shape[1]),
                    "nodes": [e["node"] for e in m.q.lowered.applied],
                    "spikes_compared": int(sum(np.asarray(f.records[k]).size for k in mism)),
                    "mismatched_spikes": int(sum(mism.values())),
                    "output_max_abs_diff": float(np.max(np.abs(np.asarray(lo.output, dtype=np.float64)
                                                               - np.asarray(f.output, dtype=np.float64)))),
                    "exact": not any(mism.values())}
            trained = compare(sims["deployed_mean"], sims["trained_mean"], labels=ctx.inputs.labels,
                              genres=ctx.inputs.genres or None, resamples=RESAMPLES,
                              seed=int(ctx.options.get("seed") or 0))
            trained.update(networks={"deployed": sims["deployed_by"],
                                     "reference": "the trained model (the run's forward)"},
                           split=str(ctx.options["split"]))
            ver = {"deployed_vs_trained": trained, **ver}
            vendor = sims.get("vendor")
            if vendor is not None:
                ver["vendor"] = vendor
            spikes = {"samples": int(self.x.shape[1]), **spike_agreement(q.records, f.records)}
            ctx.summary.update(quantization={**m.q.report.to_dict(), "spikes_quantised_vs_float_graph": spikes},
                               verification=ver)
            gates = [trained_gate(ctx, trained, f"the network in {chip}'s arithmetic",
                                  f"train with its arithmetic in the loop: `neuroposter train --target {chip}`")]
            if vendor is not None and vendor.get("bit_accurate") and "error" not in vendor:
                gates.append(Gate("vendor", "mismatched_spikes", float(vendor["mismatched_spikes"]), 1.0,
                                  "none (a bit-accurate simulator must agree spike for spike)",
                                  f"{vendor['simulator']} differs from the project's integer reference on "
                                  f"{vendor['mismatched_spikes']} of {vendor['spikes_compared']} spikes "
                                  f"({vendor['samples']} samples): see summary.json's verification.vendor",
                                  upper=True))
            verdict = gate_verdict(ctx, gates)
            wb, sb = ctx.summary["precision"]["weight_bits"], ctx.summary["precision"]["state_bits"]
            if "lowering" in ver:
                lo = ver["lowering"]
                ctx.lines.append(f"  lowering check: {lo['mismatched_spikes']} of {lo['spikes_compared']} spikes "
                                 f"differ ({'exact' if lo['exact'] else 'NOT exact'})")
            smin = spikes["spike_agreement_min"]
            prec = (f"{wb}-bit weights" if wb else "float weights (precision unknown)") + " / " + (
                f"{sb}-bit states" if sb else "float states (precision unknown)")
            ctx.lines.append(f"  {prec}: min layer spike agreement with the float graph "
                             f"{smin if smin is not None else 1.0:.4f} ({spikes['samples']} samples)")
            ctx.lines.append(agreement_line(trained, f"deployed ({chip} arithmetic) vs trained model, "
                                                     f"{trained['split']} split"))
            if vendor is not None:
                ctx.lines.append(_vendor_line(vendor))
        if not m.hostable:
            vl = m.mapping.get("violated_limits", {})
            ctx.lines.append(f"  REFUSED: {chip} cannot host this network ({len(vl)} violated limits, "
                             f"{len(m.violations)} violations):")
            ctx.lines.extend(f"    - {k}: needs {e['needed']}, available {e['available']}"
                             + (f" ({len(e['nodes'])} nodes, e.g. {e['nodes'][0]!r})" if e["nodes"] else "")
                             + (f" [profile note: {e['note']}]" if e.get("note") else "")
                             for k, e in vl.items())
            if not verdict.ok:
                ctx.lines.append(f"  and if it fitted: {verdict.reason}")
        else:
            ctx.lines.append(f"  mapping: {m.mapping['verdict']}")
            if m.mapping.get("host"):
                ctx.lines.append(f"  on the host (float, counted as host operations): {', '.join(m.mapping['host'])}")
        unknown = ctx.summary["limits"]["unknown"]
        if unknown:
            ctx.lines.append(f"  unknown in the profile (not checked): {', '.join(unknown)}")
        if not m.hostable:
            # a refusal (the chip cannot host the network) is the export's verdict, not a failed verification
            return Verdict(False, f"{chip} cannot host this network: " + "; ".join(m.violations), refused=True)
        if not verdict.ok:
            ctx.lines.append(f"  FAILED: {verdict.reason}")
        return verdict

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        from neuroposter._io import atomic_write_json
        from neuroposter.ir.graph_io import write_graph
        from neuroposter.targets._bundle import store_chip_counts

        m = self.mapped
        ctx.files["mapping.json"] = lambda p: atomic_write_json(p, m.mapping)
        if verdict.ok:
            ctx.files["graph_q.nir"] = lambda p: write_graph(p, m.q.graph_q, verify=False)
            store_chip_counts(ctx, m.q.graph_q, self.x_all)
