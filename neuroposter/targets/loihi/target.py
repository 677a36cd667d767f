"""The Loihi 2 target: NIR -> Loihi 2 fixed point -> Lava process network, run in Lava's bit-accurate CPU
simulation and verified (the target contract of :mod:`neuroposter.targets.base`).

Stages:

1. lower: the run's model to NIR (:func:`neuroposter.ir.lower.lower_model`);
2. quantise: Loihi 2 fixed point for the ``loihi2`` profile
   (:func:`neuroposter.targets.loihi.fixed_point.quantize_loihi`), the error per layer reported; a node the
   Loihi neuron or synapses cannot express is a refusal verdict (naming what is supported). Pools are composed
   into the synapse after them; a direct-encoded (analog) input, e.g. the pixel SDT's image, travels as 8-bit
   graded spikes whose power-of-two scale covers the largest ``|x|`` of the evaluated samples, and Lava and the
   integer reference consume the same integers (``summary["input_quantization"]``: bits, scale, float -> int
   error);
3. build: the Lava network plan (:mod:`.builder`: stock ``LIFReset``/``Sparse``/``Dense``/``DelaySparse``
   processes, re-timed, delays bounded by the profile's ``max_delay``);
4. run: the trained model and the **integer reference simulation** of the integer graph
   (``simulate(mode="per_hop", arithmetic="int")`` with the re-timing delays; bit-exact to Lava's fixed point) on
   the ``--trained-samples`` first samples of the split (default: the whole split), and Lava (``fixed_pt``;
   ``floating_pt`` with ``--floating-pt`` for debugging) on ``--samples`` of them (default 64, all when the
   split is smaller; a seeded subset) back to back in one run, with the reference (spikes recorded) and the float
   same-step graph on that subset;
5. verify (:mod:`neuroposter.targets.verify` metrics): ``deployed_vs_trained`` -- the deployed network (the
   integer reference) vs the trained model over the whole split: top-1, genre-set, per-label agreement,
   micro-F1 and mAP against the labels, each with a bootstrap interval; ``simulator_vs_reference`` -- Lava vs the
   integer reference on the subset (spikes per layer, read-out bit-exactness, latency); the quantisation's effect
   per layer (``quantization``: weight error, firing rates and spike agreement of the integer vs the float graph
   on the subset); for a chain-shaped ``snn-mlp`` also lava-dl netx HDF5, loaded back and checked (``netx``); the
   network mapped onto the profile (``mapping``). The export fails (``summary["gates"]``) when the deployed
   network keeps the trained model's genre set on fewer than ``--min-trained-agreement`` (default 0.95) of the
   samples, when Lava's prediction agreement with the reference is below ``--min-agreement`` (default 0.99), or
   when the netx check fails;
6. bundle: ``graph_int.nir``, ``graph.nir``, ``inputs.npz`` (the simulator's sample inputs + reference outputs,
   and the whole split's deployed and trained mean logits), ``network.net`` (netx, when applicable),
   ``mapping.json``, ``README.md``. ``python -m neuroposter.targets.loihi.run BUNDLE`` re-runs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter.targets.base import (ExportContext, Gate, Refusal, Target, UnsupportedNodeError, Verdict, gate_verdict,
                                      trained_gate)

__all__ = ["LoihiTarget", "verify_plan", "reference_readout_int", "reference_mean_logits"]

log = logging.getLogger(__name__)


def reference_readout_int(plan: Any, ref: Any) -> np.ndarray:
    """The reference simulator's aligned read-out as integers **with** the host bias, ``[T, B, C]``.

    ``simulate(arithmetic="int")`` returns either the raw integer currents (then the Output's
    ``bias`` is added here) or, when it applies the Output's ``metadata["loihi"]`` read-out itself,
    ``(a + bias) / scale`` as float (then it is multiplied back; exact, ``scale`` is a power of two).
    """
    o = plan.outputs[next(iter(plan.outputs))]
    arr = np.asarray(ref.aligned_output())
    arr = arr.reshape(arr.shape[:2] + (-1,))
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64) + o["bias"][None, None, :]
    return np.rint(arr * o["scale"]).astype(np.int64)


def verify_plan(plan: Any, lava: Any, ref: Any) -> dict[str, Any]:
    """Lava (or the emulator) vs the reference ``SimResult`` (per_hop, int): spikes per layer and read-out.

    Returns:
        :func:`neuroposter.targets.verify.compare` of the mean read-outs and of the spikes, plus ``latency``
        (``{"lava", "reference"}``), ``output_exact`` and ``output_max_abs_diff`` (integer units).
    """
    from neuroposter.targets.verify import compare

    out_name = next(iter(plan.outputs))
    ref_out = reference_readout_int(plan, ref)
    lava_out = lava.output[out_name].reshape(ref_out.shape)
    scale = plan.outputs[out_name]["scale"]
    ref_spikes = {k: np.asarray(ref.aligned(k)) for k in lava.spikes if k in ref.records}
    return {
        **compare(lava_out.mean(axis=0) / scale, ref_out.mean(axis=0) / scale, spikes=(lava.spikes, ref_spikes)),
        "latency": {"lava": int(plan.latency), "reference": int(ref.latency)},
        "output_exact": bool(np.array_equal(lava_out, ref_out)),
        "output_max_abs_diff": float(np.max(np.abs(lava_out - ref_out))) if ref_out.size else 0.0,
    }


@dataclass
class _Quantised:
    graph: Any          # the float NIR graph
    graph_int: Any      # its Loihi 2 integer graph
    report: Any         # QuantReport
    flat: Any           # the float graph flattened (strict), once for the quantiser, simulator and mapper
    flat_int: Any       # the integer graph flattened (strict), once for the builder, re-timing and simulator


@dataclass
class _Outputs:
    plan: Any
    lava: Any
    ref: Any                 # per-hop integer reference SimResult on the simulator's sample (spikes recorded)
    ref_float: Any           # same-step float SimResult on the simulator's sample
    retiming: Any
    float_logits: np.ndarray  # the trained model's read-out [T, B_sim, C] on the simulator's sample
    deployed_mean: np.ndarray  # the integer reference's mean logits [N, C] on every evaluation sample
    trained_mean: np.ndarray   # the trained model's mean logits [N, C] on every evaluation sample


#: samples per integer-reference simulation over the whole split (bounds its int64 copy of the inputs)
_REFERENCE_CHUNK = 256


def reference_mean_logits(plan: Any, flat_int: Any, x: np.ndarray, delays: Mapping[Any, int],
                          chunk: int = _REFERENCE_CHUNK) -> np.ndarray:
    """The deployed network's mean logits ``[B, C]`` on ``x`` ``[T, B, ...]``: the integer reference simulation
    (per hop, int, re-timed; bit-exact to Lava's fixed point) without recordings, ``chunk`` samples at a time."""
    from neuroposter.ir.simulate import simulate

    out_name = next(iter(plan.outputs))
    scale = plan.outputs[out_name]["scale"]
    parts = []
    for lo in range(0, int(x.shape[1]), chunk):
        ref = simulate(flat_int, x[:, lo:lo + chunk], mode="per_hop", arithmetic="int", delays=delays, record=False)
        parts.append(reference_readout_int(plan, ref).mean(axis=0) / scale)
    return np.concatenate(parts, axis=0)


class LoihiTarget(Target):
    """``neuroposter export --target loihi`` (see the module docstring)."""

    name = "loihi"
    model_kinds = ("snn",)
    defaults = {"samples": 64, "split": "test", "seed": 0, "select_tag": "fixed_pt", "record": True,
                "count_samples": 32}
    min_agreement = 0.99
    min_trained_agreement = 0.95
    profile = "loihi2"

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Adds ``select_tag`` (``floating_pt=True`` or ``fixed_pt=False`` select ``"floating_pt"``)."""
        opts = super().options(given)
        if opts.get("floating_pt") or opts.get("fixed_pt") is False:
            opts["select_tag"] = "floating_pt"
        return opts

    def lower(self, ctx: ExportContext) -> Any:
        from neuroposter.ir.lower import lower_model, to_graph_input

        graph = lower_model(ctx.run.model, T=int(ctx.inputs.T), source_run=str(ctx.request.run_dir))
        self.x_all = to_graph_input(ctx.inputs.x, graph)                  # every evaluation sample
        self.sim = ctx.simulator_positions()                              # the simulator's sample among them
        self.x = np.ascontiguousarray(self.x_all[:, self.sim])
        ctx.summary.update(select_tag=str(ctx.options["select_tag"]), T=int(self.x.shape[0]))
        return graph

    def quantise(self, ctx: ExportContext, graph: Any) -> _Quantised:
        from neuroposter.ir.graph import GraphError, flatten
        from neuroposter.targets.loihi.fixed_point import QuantizationError, input_error, quantize_input, quantize_loihi

        # a direct-encoded (analog) input travels as graded spikes; its scale covers the largest |x| of the
        # evaluated samples (the graph's metadata["input_amax"] when the lowering records a range)
        meta = dict(getattr(graph, "metadata", None) or {})
        amax, amax_source = None, None
        if str(meta.get("encoding", "")) == "direct":
            if meta.get("input_amax") is not None:
                amax, amax_source = float(meta["input_amax"]), "graph metadata input_amax"
            else:
                amax = float(np.max(np.abs(self.x_all))) if self.x_all.size else 1.0
                amax, amax_source = (amax if amax > 0 else 1.0), "largest |input| of the evaluated samples"
        try:
            flat = flatten(graph, strict=True)
            graph_int, report = quantize_loihi(flat, ctx.profile, input_amax=amax)
            flat_int = flatten(graph_int, strict=True)
        except (QuantizationError, GraphError) as exc:
            raise Refusal(str(exc), [f"  refused: {exc}"]) from None
        # the integers the deployed network consumes (spikes pass unchanged): the same for Lava and the reference
        self.x_int = quantize_input(self.x, graph_int)
        self.x_all_int = quantize_input(self.x_all, graph_int)
        err = input_error(self.x_all, graph_int)
        if err is not None:
            err["amax_source"] = amax_source
            ctx.summary["input_quantization"] = err
        return _Quantised(graph, graph_int, report, flat, flat_int)

    def build(self, ctx: ExportContext, q: _Quantised) -> Any:
        from neuroposter.artifact import check_free_space
        from neuroposter.targets.loihi.builder import plan_network

        try:
            plan = plan_network(q.flat_int, max_delay=ctx.profile.limits.max_delay)
        except UnsupportedNodeError as exc:
            raise Refusal(str(exc), [f"  refused: {exc}"]) from None
        self.q = q
        # before minutes of simulation: room for the bundle (two graphs, the inputs and three read-outs)
        ctx.needs_bytes = _bundle_estimate(q.graph, self.x)
        check_free_space(Path(ctx.request.out_dir).parent, ctx.needs_bytes, "the Loihi bundle")
        return plan

    def run(self, ctx: ExportContext, plan: Any) -> _Outputs:
        import time

        from neuroposter.ir.retime import retime
        from neuroposter.ir.simulate import simulate
        from neuroposter.targets.loihi.builder import run_lava
        from neuroposter.targets.verify import float_model_logits, mean_logits

        tag = str(ctx.options["select_tag"])
        lava = run_lava(plan, self.x_int, select_tag=tag, record=bool(ctx.options["record"]),
                        chunk=ctx.options.get("chunk"), progress_desc=f"lava {tag}")
        ctx.timings["lava_build_s"], ctx.timings["lava_run_s"] = lava.build_s, lava.run_s
        t0 = time.perf_counter()
        rt = retime(self.q.flat_int)
        deployed = reference_mean_logits(plan, self.q.flat_int, self.x_all_int, rt.delays)
        ctx.timings["reference_int_s"] = time.perf_counter() - t0
        ref = simulate(self.q.flat_int, self.x_int, mode="per_hop", arithmetic="int", delays=rt.delays)
        ref_float = simulate(self.q.flat, self.x, mode="same_step", arithmetic="float")
        t0 = time.perf_counter()
        trained = float_model_logits(ctx.run.model, ctx.inputs.x)
        ctx.timings["trained_model_s"] = time.perf_counter() - t0
        B = int(self.x_all.shape[1])
        return _Outputs(plan, lava, ref, ref_float, rt, trained[:, self.sim], deployed.reshape(B, -1),
                        mean_logits(trained, B))

    def verify(self, ctx: ExportContext, o: _Outputs) -> Verdict:
        from neuroposter.errors import ResourceError
        from neuroposter.targets.compose import compose_pools
        from neuroposter.targets.loihi.netx_export import export_and_check, is_chain
        from neuroposter.targets.mapping import map_graph
        from neuroposter.targets.verify import RESAMPLES, compare, spike_agreement

        min_agree = float(ctx.options["min_agreement"])
        sim = verify_plan(o.plan, o.lava, o.ref)
        sim.update(indices=[int(i) for i in np.asarray(ctx.inputs.indices)[self.sim]],
                   networks={"deployed": f"Lava {o.lava.select_tag} (CPU simulation)",
                             "reference": "integer reference simulation (per hop, re-timed)"})
        trained = compare(o.deployed_mean, o.trained_mean, labels=ctx.inputs.labels, genres=ctx.inputs.genres or None,
                          resamples=RESAMPLES, seed=int(ctx.options.get("seed") or 0))
        trained.update(networks={"deployed": "integer reference simulation of graph_int (bit-exact to Lava fixed_pt)",
                                 "reference": "the trained model (the run's forward)"}, split=str(ctx.options["split"]))
        self.ref_out = reference_readout_int(o.plan, o.ref)
        int_spikes = {k: np.asarray(o.ref.aligned(k)) for k in o.plan.populations
                      if k in o.ref.records and k in o.ref_float.records}
        float_spikes = {k: np.asarray(o.ref_float.records[k])[: int_spikes[k].shape[0]] for k in int_spikes}
        firing = {k: {"int": float(int_spikes[k].mean()), "float": float(float_spikes[k].mean())} for k in int_spikes}
        ctx.summary.update({
            "verification": {"deployed_vs_trained": trained, "simulator_vs_reference": sim},
            "quantization": {**self.q.report.to_dict(), "firing_rates": firing,
                             "spikes_int_vs_float_graph": {"samples": int(self.x.shape[1]),
                                                           **spike_agreement(int_spikes, float_spikes)}},
            "network": o.plan.summary(),
            "lava": {"select_tag": o.lava.select_tag, "steps": o.lava.steps, "build_s": o.lava.build_s,
                     "run_s": o.lava.run_s, "batching": "back-to-back samples in one run, LIFReset per population"},
        })
        verdict = gate_verdict(ctx, [
            trained_gate(ctx, trained, "the deployed network (integer reference of the Loihi 2 graph)",
                         _retrain_hint(ctx.run.model)),
            Gate("simulator_vs_reference", "prediction_agreement", float(sim["prediction_agreement"]), min_agree,
                 "--min-agreement", f"Lava's prediction agreement with the integer reference "
                                    f"{sim['prediction_agreement']:.3f} < --min-agreement {min_agree:g}")])
        ok, reason = verdict.ok, verdict.reason
        try:
            # the deployed synapses: pools composed into the next connection, as in the integer graph
            mapping = map_graph(compose_pools(self.q.flat), ctx.profile, delays=o.retiming.delays).to_dict()
        except Exception as exc:  # noqa: BLE001 - the mapping must not hide the verification result
            mapping = {"error": f"{type(exc).__name__}: {exc}"}
        ctx.summary["mapping"] = ({k: mapping.get(k) for k in ("fits", "violations", "totals")}
                                  if "error" not in mapping else mapping)
        self.mapping, self.netx, self.outputs = mapping, None, o
        if is_chain(self.q.flat):
            try:
                self.netx = export_and_check(self.q.graph, self.x, ctx.profile, select_tag="fixed_pt")
            except ResourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported (a failed verification), not a crash
                self.netx = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            ctx.summary["netx"] = {k: v for k, v in self.netx.items() if k not in ("file_bytes", "graph_int")}
            if not self.netx.get("ok", False):
                ok = False
                why = f"netx check failed: {self.netx.get('error') or self.netx.get('reason')}"
                reason = f"{reason}; {why}" if reason else why
        return Verdict(ok, reason)

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        from neuroposter._io import atomic_write_json, atomic_write_text
        from neuroposter.ir.graph_io import write_graph
        from neuroposter.targets._bundle import store_chip_counts
        from neuroposter.targets.verify import agreement_line

        o, q, x = self.outputs, self.q, self.x_int
        out_name = next(iter(o.plan.outputs))
        ref_out = self.ref_out
        netx_bytes = self.netx.get("file_bytes") if self.netx else None
        ctx.needs_bytes = max(ctx.needs_bytes or 0, int(1.5 * (2 * _graph_nbytes(q.graph) + x.nbytes + ref_out.nbytes
                                                               + o.lava.output[out_name].nbytes
                                                               + o.float_logits.nbytes + 2 * o.trained_mean.nbytes)
                                                          + len(netx_bytes or b"")) + (1 << 20))
        ctx.files["graph_int.nir"] = lambda p: write_graph(p, q.graph_int, verify=False)
        ctx.files["graph.nir"] = lambda p: write_graph(p, q.graph, verify=False)
        sim_rows = np.asarray(self.sim)
        ctx.files["inputs.npz"] = lambda p: np.savez_compressed(
            p, x=x.astype(np.int32 if "input_quantization" in ctx.summary else np.uint8), labels=ctx.inputs.labels[sim_rows],
            indices=np.asarray(ctx.inputs.indices)[sim_rows], reference_output=ref_out,
            lava_output=o.lava.output[out_name], float_model_logits=o.float_logits,
            split_indices=np.asarray(ctx.inputs.indices), split_labels=ctx.inputs.labels,
            deployed_mean_logits=o.deployed_mean, trained_mean_logits=o.trained_mean)
        if netx_bytes:
            ctx.files["network.net"] = lambda p: p.write_bytes(netx_bytes)
        ctx.files["mapping.json"] = lambda p: atomic_write_json(p, self.mapping)
        if verdict.ok:
            store_chip_counts(ctx, q.graph, self.x_all, graph_label="graph.nir, the float graph of graph_int.nir")
        ctx.files["README.md"] = lambda p: atomic_write_text(p, _readme(ctx.run_name, ctx.summary,
                                                                         self.netx is not None))
        ver = ctx.summary["verification"]
        vs, vt = ver["simulator_vs_reference"], ver["deployed_vs_trained"]
        net = o.plan.summary()
        ctx.lines += [
            f"  Lava {o.lava.select_tag}: {net['populations']} populations, {net['synapse_processes']} "
            f"synapse processes, latency {o.plan.latency}; {x.shape[1]} samples in {o.lava.run_s:.1f} s",
            f"  Lava vs integer reference ({vs['samples']} samples): outputs bit-exact: {vs['output_exact']}, "
            f"prediction agreement {vs['prediction_agreement']:.3f}, min layer spike agreement "
            f"{vs['spike_agreement_min'] if vs['spike_agreement_min'] is not None else 'n/a'}",
            agreement_line(vt, f"deployed (integer reference) vs trained model, {vt['split']} split"),
            _mapping_line(self.mapping),
        ]
        iq = ctx.summary.get("input_quantization")
        if iq:
            ctx.lines.insert(len(ctx.lines) - 4, f"  analog input as {iq['message_bits']}-bit graded spikes, scale "
                             f"{iq['scale']:g} ({iq['amax_source']}): max |error| {iq['max_abs_error']:.4f}, relative "
                             f"RMS error {iq['rel_rms_error']:.4f}, clipped {iq['clipped_frac']:.4f}")
        if self.netx is not None:
            ctx.lines.append(f"  netx: ok={self.netx.get('ok')} prediction agreement "
                             f"{self.netx.get('prediction_agreement', 'n/a')}")
        if not verdict.ok:
            ctx.lines.append(f"  FAILED: {verdict.reason}")


def _retrain_hint(model: Any) -> str:
    """What to do when the deployed network drifts from the trained model: quantisation-aware training where
    it covers the model (:func:`neuroposter.ir.qat.connections`), else say that it does not."""
    from neuroposter.ir.qat import QATError, connections

    try:
        connections(model)
    except QATError as exc:
        return (f"quantisation-aware training does not cover this model yet ({exc}); the gap is the float-trained "
                "model's sensitivity to Loihi 2's fixed point")
    return "train with Loihi 2's arithmetic in the loop: `neuroposter train --target loihi`"


def _mapping_line(mapping: Mapping[str, Any]) -> str:
    """One line: does it fit the profile, with what resources, or which limits it violates."""
    t = mapping.get("totals", {})
    head = f"  mapping on {mapping.get('profile', 'loihi2')}: "
    if mapping.get("fits"):
        return (head + f"fits -- {t.get('neurons', 0):,} neurons, {t.get('stored_synapses', 0):,} stored synapses, "
                f"{t.get('cores', '?')} cores, {t.get('chips', '?')} chip(s)"
                + (f"; unchecked (unknown in the profile): {', '.join(mapping['unchecked'])}" if mapping.get("unchecked")
                   else ""))
    return head + "DOES NOT FIT -- " + "; ".join(mapping.get("violations", [])[:3])


def _bundle_estimate(graph: Any, x: np.ndarray) -> int:
    """Bytes a Loihi bundle of ``graph`` on inputs ``x`` will take, generously (for the free-space check)."""
    T, B = int(x.shape[0]), int(x.shape[1])
    classes = 1024                                         # read-outs: [T, B, C] int64 x 3, C unknown yet
    return int(1.5 * (2 * _graph_nbytes(graph) + x.nbytes + 3 * 8 * T * B * classes)) + (1 << 20)


def _graph_nbytes(graph: Any) -> int:
    """Bytes of the parameter arrays of a (nested) NIR graph (an estimate of its file size)."""
    import nir

    total = 0
    for node in getattr(graph, "nodes", {}).values():
        if isinstance(node, nir.NIRGraph):
            total += _graph_nbytes(node)
            continue
        for v in vars(node).values():
            if isinstance(v, np.ndarray):
                total += int(v.nbytes)
    return total


def _readme(run: str, summary: Mapping[str, Any], has_netx: bool) -> str:
    ver = summary["verification"]["simulator_vs_reference"]
    vt = summary["verification"]["deployed_vs_trained"]
    return f"""# Loihi 2 bundle: {run}

Produced by `neuroposter export --target loihi`. Everything needed to rebuild and re-run the Lava
network is in this folder:

| file | content |
|---|---|
| `graph_int.nir` | the integer NIR graph (Loihi 2 fixed point in every node's `metadata["loihi"]`; equations in `neuroposter/targets/loihi/fixed_point.py`) |
| `graph.nir` | the float NIR graph it was quantised from |
| `inputs.npz` | the {ver['samples']} samples run in Lava: `x` (`[T, B, ...]`: spikes, or an analog input's graded-spike payloads, `summary.json` `input_quantization`), `labels`, `indices`, `reference_output` (integer read-out `a + bias` of the reference simulator, per_hop/int, latency removed, `[T, B, C]`; divide by the Output's `scale` for logits), `lava_output`, `float_model_logits`; and the {vt['samples']} samples of the deployed-vs-trained comparison: `split_indices`, `split_labels`, `deployed_mean_logits`, `trained_mean_logits` (`[N, C]`) |
| `mapping.json` | resources on the `loihi2` profile and the fit verdict |
| `summary.json` | verification (`deployed_vs_trained`: the integer network vs the trained model on the whole split; `simulator_vs_reference`: Lava vs the integer reference), quantisation error per layer, timings |
{"| `network.net` | lava-dl netx HDF5 of the spiking chain (hidden layers; read-out on the host) |" if has_netx else ""}

## Re-run (the documented entry point)

```
python -m neuroposter.targets.loihi.run export/loihi/{run}            # fixed_pt, all stored samples
python -m neuroposter.targets.loihi.run export/loihi/{run} --floating-pt
```

It reads `graph_int.nir`, rebuilds the Lava processes (stock `LIFReset`, `Sparse`, `Dense`,
`DelaySparse`, `RingBuffer`), runs the stored inputs back to back in Lava's CPU simulation and
checks the read-out against `reference_output` (exit 0 when identical in fixed point).

Export result: latency {ver['latency']['lava']} steps; Lava's outputs bit-exact to the reference: {ver['output_exact']};
the deployed network keeps the trained model's genre set on {vt['set_agreement']:.3f} and its top-1 genre on
{vt['top1_agreement']:.3f} of {vt['samples']} {vt['split']} samples.
"""
