"""The Loihi 2 target: NIR -> Loihi 2 fixed point -> Lava process network, run in Lava's bit-accurate CPU
simulation and verified (the target contract of :mod:`neuroposter.targets.base`).

Stages:

1. lower: the run's model to NIR (:func:`neuroposter.ir.lower.lower_model`);
2. quantise: Loihi 2 fixed point for the ``loihi2`` profile
   (:func:`neuroposter.targets.loihi.fixed_point.quantize_loihi`), the error per layer reported; a node the
   Loihi neuron or synapses cannot express is a refusal verdict;
3. build: the Lava network plan (:mod:`.builder`: stock ``LIFReset``/``Sparse``/``Dense``/``DelaySparse``
   processes, re-timed, delays bounded by the profile's ``max_delay``);
4. run: ``--samples`` test samples (seeded subset) back to back in **one** Lava run (``fixed_pt``;
   ``floating_pt`` with ``--floating-pt`` for debugging), the reference simulator
   (``simulate(mode="per_hop", arithmetic="int")``), the float same-step graph and the float model;
5. verify (:mod:`neuroposter.targets.verify` metrics): Lava vs the integer reference (``vs_reference``:
   spikes per layer, prediction agreement, read-out bit-exactness), the deployed network vs the float
   model (``vs_float_model``: the quantisation's effect, micro-F1 difference), the integer vs the float
   reference (``int_vs_float_reference``); for a chain-shaped ``snn-mlp`` also lava-dl netx HDF5, loaded
   back and checked (``netx``); the network mapped onto the profile (``mapping``). The export fails when the
   prediction agreement with the reference is below ``--min-agreement`` (default 0.99) or the netx check fails;
6. bundle: ``graph_int.nir``, ``graph.nir``, ``inputs.npz`` (sample inputs + reference outputs),
   ``network.net`` (netx, when applicable), ``mapping.json``, ``README.md``.
   ``python -m neuroposter.targets.loihi.run BUNDLE`` re-runs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter.targets.base import ExportContext, Refusal, Target, UnsupportedNodeError, Verdict

__all__ = ["LoihiTarget", "verify_plan", "reference_readout_int"]

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
    ref: Any            # per-hop integer reference SimResult
    ref_float: Any      # same-step float SimResult
    retiming: Any
    float_logits: np.ndarray


class LoihiTarget(Target):
    """``neuroposter export --target loihi`` (see the module docstring)."""

    name = "loihi"
    model_kinds = ("snn",)
    defaults = {"samples": 16, "split": "test", "seed": 0, "select_tag": "fixed_pt", "record": True}
    min_agreement = 0.99
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
        self.x = to_graph_input(ctx.inputs.x, graph)
        ctx.summary.update(select_tag=str(ctx.options["select_tag"]), T=int(self.x.shape[0]))
        return graph

    def quantise(self, ctx: ExportContext, graph: Any) -> _Quantised:
        from neuroposter.ir.graph import GraphError, flatten
        from neuroposter.targets.loihi.fixed_point import QuantizationError, quantize_loihi

        try:
            flat = flatten(graph, strict=True)
            graph_int, report = quantize_loihi(flat, ctx.profile)
            flat_int = flatten(graph_int, strict=True)
        except (QuantizationError, GraphError) as exc:
            raise Refusal(str(exc), [f"  refused: {exc}"]) from None
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
        from neuroposter.targets.verify import float_model_logits

        tag = str(ctx.options["select_tag"])
        lava = run_lava(plan, self.x, select_tag=tag, record=bool(ctx.options["record"]),
                        chunk=ctx.options.get("chunk"), progress_desc=f"lava {tag}")
        ctx.timings["lava_build_s"], ctx.timings["lava_run_s"] = lava.build_s, lava.run_s
        t0 = time.perf_counter()
        rt = retime(self.q.flat_int)
        ref = simulate(self.q.flat_int, self.x, mode="per_hop", arithmetic="int", delays=rt.delays)
        ctx.timings["reference_int_s"] = time.perf_counter() - t0
        ref_float = simulate(self.q.flat, self.x, mode="same_step", arithmetic="float")
        return _Outputs(plan, lava, ref, ref_float, rt, float_model_logits(ctx.run.model, ctx.inputs.x))

    def verify(self, ctx: ExportContext, o: _Outputs) -> Verdict:
        from neuroposter.errors import ResourceError
        from neuroposter.targets.loihi.netx_export import export_and_check, is_chain
        from neuroposter.targets.mapping import map_graph
        from neuroposter.targets.verify import compare, mean_logits

        B = int(self.x.shape[1])
        min_agree = float(ctx.options["min_agreement"])
        ver = verify_plan(o.plan, o.lava, o.ref)
        out_name = next(iter(o.plan.outputs))
        lava_mean = mean_logits(o.lava.logits[out_name], B)
        float_mean = mean_logits(o.float_logits, B)
        ref_float_mean = mean_logits(o.ref_float.aligned_output(), B)
        scale = o.plan.outputs[out_name]["scale"]
        self.ref_out = reference_readout_int(o.plan, o.ref)
        ref_int_mean = mean_logits(self.ref_out, B) / scale
        int_spikes = {k: np.asarray(o.ref.aligned(k)) for k in o.plan.populations
                      if k in o.ref.records and k in o.ref_float.records}
        float_spikes = {k: np.asarray(o.ref_float.records[k])[: int_spikes[k].shape[0]] for k in int_spikes}
        verification = {
            "vs_reference": ver,
            "vs_float_model": compare(lava_mean, float_mean, labels=ctx.inputs.labels),
            "int_vs_float_reference": compare(ref_int_mean, ref_float_mean, spikes=(int_spikes, float_spikes)),
            "reference_float_vs_float_model": compare(ref_float_mean, float_mean),
        }
        ok = ver["prediction_agreement"] >= min_agree
        reason = None if ok else (f"prediction agreement with the reference simulator "
                                  f"{ver['prediction_agreement']:.3f} < --min-agreement {min_agree}")
        firing = {k: {"int": float(int_spikes[k].mean()), "float": float(float_spikes[k].mean())} for k in int_spikes}
        ctx.summary.update({
            "verification": verification,
            "quantization": {**self.q.report.to_dict(), "firing_rates": firing},
            "network": o.plan.summary(),
            "lava": {"select_tag": o.lava.select_tag, "steps": o.lava.steps, "build_s": o.lava.build_s,
                     "run_s": o.lava.run_s, "batching": "back-to-back samples in one run, LIFReset per population"},
        })
        try:
            mapping = map_graph(self.q.flat, ctx.profile, delays=o.retiming.delays).to_dict()
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
                reason = reason or f"netx check failed: {self.netx.get('error') or self.netx.get('reason')}"
        return Verdict(ok, reason)

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        from neuroposter._io import atomic_write_json, atomic_write_text
        from neuroposter.ir.graph_io import write_graph

        o, q, x = self.outputs, self.q, self.x
        out_name = next(iter(o.plan.outputs))
        ref_out = self.ref_out
        netx_bytes = self.netx.get("file_bytes") if self.netx else None
        ctx.needs_bytes = max(ctx.needs_bytes or 0, int(1.5 * (2 * _graph_nbytes(q.graph) + x.nbytes + ref_out.nbytes
                                                               + o.lava.output[out_name].nbytes
                                                               + o.float_logits.nbytes)
                                                          + len(netx_bytes or b"")) + (1 << 20))
        ctx.files["graph_int.nir"] = lambda p: write_graph(p, q.graph_int, verify=False)
        ctx.files["graph.nir"] = lambda p: write_graph(p, q.graph, verify=False)
        ctx.files["inputs.npz"] = lambda p: np.savez_compressed(
            p, x=x.astype(np.uint8), labels=ctx.inputs.labels, indices=ctx.inputs.indices, reference_output=ref_out,
            lava_output=o.lava.output[out_name], float_model_logits=o.float_logits)
        if netx_bytes:
            ctx.files["network.net"] = lambda p: p.write_bytes(netx_bytes)
        ctx.files["mapping.json"] = lambda p: atomic_write_json(p, self.mapping)
        ctx.files["README.md"] = lambda p: atomic_write_text(p, _readme(ctx.run_name, ctx.summary,
                                                                         self.netx is not None))
        ver = ctx.summary["verification"]
        vr, vf = ver["vs_reference"], ver["vs_float_model"]
        net = o.plan.summary()
        ctx.lines += [
            f"  Lava {o.lava.select_tag}: {net['populations']} populations, {net['synapse_processes']} "
            f"synapse processes, latency {o.plan.latency}; {x.shape[1]} samples in {o.lava.run_s:.1f} s",
            f"  vs reference (int, per hop): prediction agreement {vr['prediction_agreement']:.3f}, "
            f"min layer spike agreement "
            f"{vr['spike_agreement_min'] if vr['spike_agreement_min'] is not None else 'n/a'}, "
            f"outputs exact: {vr['output_exact']}",
            f"  vs float model (quantisation effect): prediction agreement {vf['prediction_agreement']:.3f} "
            f"(top-1 {vf['top1_agreement']:.3f}, per-label decisions {vf['label_agreement']:.3f}), "
            f"micro-F1 {vf['micro_f1']['deployed']:.3f} vs {vf['micro_f1']['reference']:.3f}",
            _mapping_line(self.mapping),
        ]
        if self.netx is not None:
            ctx.lines.append(f"  netx: ok={self.netx.get('ok')} prediction agreement "
                             f"{self.netx.get('prediction_agreement', 'n/a')}")
        if not verdict.ok:
            ctx.lines.append(f"  FAILED: {verdict.reason}")


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
    ver = summary["verification"]["vs_reference"]
    return f"""# Loihi 2 bundle: {run}

Produced by `neuroposter export --target loihi`. Everything needed to rebuild and re-run the Lava
network is in this folder:

| file | content |
|---|---|
| `graph_int.nir` | the integer NIR graph (Loihi 2 fixed point in every node's `metadata["loihi"]`; equations in `neuroposter/targets/loihi/fixed_point.py`) |
| `graph.nir` | the float NIR graph it was quantised from |
| `inputs.npz` | `x` (the {summary['samples']} sample inputs `[T, B, ...]`), `labels`, `indices`, `reference_output` (integer read-out `a + bias` of the reference simulator, per_hop/int, latency removed, `[T, B, C]`; divide by the Output's `scale` for logits), `lava_output`, `float_model_logits` |
| `mapping.json` | resources on the `loihi2` profile and the fit verdict |
| `summary.json` | verification (Lava vs reference and vs the float model), quantisation error per layer, timings |
{"| `network.net` | lava-dl netx HDF5 of the spiking chain (hidden layers; read-out on the host) |" if has_netx else ""}

## Re-run (the documented entry point)

```
python -m neuroposter.targets.loihi.run export/loihi/{run}            # fixed_pt, all stored samples
python -m neuroposter.targets.loihi.run export/loihi/{run} --floating-pt
```

It reads `graph_int.nir`, rebuilds the Lava processes (stock `LIFReset`, `Sparse`, `Dense`,
`DelaySparse`, `RingBuffer`), runs the stored inputs back to back in Lava's CPU simulation and
checks the read-out against `reference_output` (exit 0 when identical in fixed point).

Export result: latency {ver['latency']['lava']} steps; prediction agreement with the reference
{ver['prediction_agreement']:.3f}; outputs bit-exact: {ver['output_exact']}.
"""
