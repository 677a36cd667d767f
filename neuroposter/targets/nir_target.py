"""The ``nir`` target: lower a trained SNN run to a NIR graph, write it, and verify it (the target contract of
:mod:`neuroposter.targets.base`).

Bundle (``export/nir/<run>/``): ``graph.nir`` (``nir.write``, re-read with ``nir.read``, type check on, compared
parameter by parameter; the verified file is the shipped file), for a nested graph (the SDT) also
``graph_flat.nir`` (:func:`neuroposter.ir.interop.portable_graph`: flat, only nodes Norse/snnTorch/nirtorch map),
``op_counts.json``, ``README.md`` (the one-line load per NIR consumer), ``manifest.json``, ``summary.json``. Verification on real test inputs (the first ``samples`` test samples of the encoded set named in
the run manifest; for the pixel SDT the test posters of its dataset, each repeated over the ``T`` steps: direct
encoding), in the metrics of :mod:`neuroposter.targets.verify`. A run trained to see its image quantised (the
pixel SDT fine-tuned for Loihi 2: 8-bit graded input) gets that format as the graph's **input contract**
(``metadata["input_quantization"]``, :func:`neuroposter.targets.inputs.trained_input_quantization`; NIR has no
quantiser node), stated in the README and ``summary.json``; the verification feeds the graph as the contract says
(:func:`~neuroposter.ir.lower.to_graph_input`) and the model its own graded input:

* ``vs_norse``: the graph run by the reference simulator (``same_step``, float64) vs every LIF and the read-out of
  the Norse model (float64): spike agreement element by element, per-label and per-sample prediction agreement,
  top-1 agreement; ``max_abs_step_logit_diff`` is the largest difference of the per-step read-outs;
* ``per_hop_vs_same_step``: ``per_hop`` with the delays of :func:`~neuroposter.ir.retime`, aligned by the
  reported latency, vs ``same_step`` (spikes and read-out; ``max_abs_step_output_diff``).

``ok`` is False when ``vs_norse`` ``spike_agreement`` or ``label_agreement`` or ``per_hop_vs_same_step``
``spike_agreement`` is below ``min_agreement`` (default 0.99): the bundle is then kept as ``<name>.failed`` beside
the requested folder, which is left as it was.

``consumers`` (recorded, not a pass/fail check): every NIR consumer of :data:`neuroposter.ir.interop.CONSUMERS` that
is installed and can run the graph (Norse, snnTorch, nirtorch) is run on the verification samples; per consumer
the file, the call, and the prediction agreement with the reference simulator (or why it was not run).

The bundle also stores its op counts (``op_counts.json``, :func:`neuroposter.profiling.stored.nir_counts`):
the graph simulated on the first ``count_samples`` test samples (default 32), which the report reads.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from neuroposter.errors import DataError
from neuroposter.targets.base import ExportContext, Target, Verdict

__all__ = ["NirTarget", "norse_reference"]

log = logging.getLogger(__name__)


def norse_reference(model: Any, spikes: Any, input_quantization: Mapping[str, Any] | None = None
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits ``[T, B, C]`` and spikes per LIF (graph layout) of the model run in float64.

    A quantisation-aware model (:mod:`neuroposter.ir.qat`) runs with its on-grid weights and float neurons: the
    semantics of its NIR graph (NIR's neurons are float; the chip's integer neuron is the chip target's business).
    ``input_quantization`` (a graded input contract, :func:`neuroposter.targets.inputs.trained_input_quantization`):
    the model's input is first put on the graded grid it was trained with, by the model's own
    :func:`neuroposter.ir.qat.graded_input` (what its first connection does to the image with the integer neuron
    on; the float-neuron reference keeps it).
    """
    import torch

    from neuroposter.ir.qat import arithmetic_of, enable, graded_input
    from neuroposter.models.lif import LIF

    ref = copy.deepcopy(model).double().eval()
    if arithmetic_of(ref) is not None:
        enable(ref, arithmetic_of(ref))
    for m in ref.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    x = torch.as_tensor(np.asarray(spikes) if not isinstance(spikes, torch.Tensor) else spikes).double()
    if input_quantization:
        x = graded_input(x, float(input_quantization["scale"]), float(input_quantization["qmax"]))
    with torch.no_grad():
        logits = ref(x).numpy()
    out: dict[str, np.ndarray] = {}
    for name, m in ref.named_modules():
        if isinstance(m, LIF) and m.last_spikes is not None:
            s = m.last_spikes.numpy()
            out[name] = np.swapaxes(s, 2, 3) if s.ndim == 4 else s  # [T, B, N, C] -> [T, B, C, N]
    return logits, out


@dataclass
class _Runs:
    x: np.ndarray
    logits: np.ndarray                  # Norse read-out [T, B, C]
    norse_spikes: dict[str, np.ndarray]
    same: Any                           # same-step SimResult
    hop: Any                            # per-hop SimResult with the re-timing delays
    retiming: Any
    counts: dict[str, Any]              # op counts for op_counts.json
    consumers: dict[str, Any]           # summary["consumers"]


def run_consumers(graph: Any, x: np.ndarray, reference: np.ndarray, *, portable: Any = None) -> dict[str, Any]:
    """Runs every NIR consumer of :data:`neuroposter.ir.interop.CONSUMERS` that is installed and can run the
    graph, on the graph inputs ``x``, and compares its read-out with the reference simulator's (``reference``,
    ``[T, B, C]``): the ``consumers`` section of ``summary.json``.

    Returns:
        Per consumer: ``run`` (bool), ``file`` it loads, ``call`` (the one-line load), and either the agreement
        (``samples``, ``prediction_agreement``, ``label_agreement``, ``top1_agreement``, ``max_abs_logit_diff``
        of the T-mean read-outs, ``max_abs_step_logit_diff``) or ``reason`` (not installed / cannot run it).
    """
    import importlib.util

    from neuroposter.ir.interop import CONSUMERS, InteropError, consumer_support
    from neuroposter.targets.verify import compare

    out: dict[str, Any] = {}
    for name, c in CONSUMERS.items():
        file = "graph.nir" if c.nested or portable is None else "graph_flat.nir"
        entry: dict[str, Any] = {"file": file, "call": c.call.format(file=file)}
        if importlib.util.find_spec(c.package) is None:
            out[name] = {"run": False, **entry, "reason": f"{c.package} is not installed"}
            continue
        why = consumer_support(graph, name)
        if why:
            out[name] = {"run": False, **entry, "reason": why}
            continue
        try:
            logits = c.run(graph if c.nested or portable is None else portable, x)
        except (InteropError, RuntimeError, ValueError, KeyError, AssertionError) as exc:
            out[name] = {"run": False, **entry, "reason": f"{type(exc).__name__}: {exc}"}
            continue
        cmp = compare(logits.mean(0), np.asarray(reference).mean(0))
        cmp["max_abs_step_logit_diff"] = float(np.abs(logits - reference).max())
        out[name] = {"run": True, **entry, **cmp}
    return out


def _readme(consumers: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    lines = [
        "# NIR bundle", "",
        f"`graph.nir`: the network as one NIR graph (sub-graphs allowed), discrete time: dt = {meta.get('dt', 1.0):g} "
        f"({meta.get('time_unit', 'step')}), forward Euler, threshold `{meta.get('threshold', 'strict')}` (v > v_th), "
        f"reset `{meta.get('reset', 'zero')}`. NIR neurons are continuous-time: give every reader dt = "
        f"{meta.get('dt', 1.0):g}.",
    ]
    iq = meta.get("input_quantization")
    if iq:
        rule = f"clip(rint(x * {iq['scale']:g}), -{iq['qmax']}, {iq['qmax']}) / {iq['scale']:g}"
        lines += ["", f"**Input contract: quantise the image before the graph.** The run was trained to see its "
                  f"image as {iq['bits']}-bit graded values: feed `x_graph = {rule}` (step {iq['step']:g}, range "
                  f"+-{iq['range']:g}; chosen for |x| <= {iq['amax']:g}), not the float image (that would be "
                  "another network than the one trained and verified). Recorded in "
                  "`metadata['input_quantization']` of the graph (and of `graph_flat.nir` when written); "
                  "`neuroposter.ir.lower.to_graph_input(images, graph)` applies it."]
    if any(c.get("file") == "graph_flat.nir" for c in consumers.values()):
        lines.append("`graph_flat.nir`: the same network flattened into the nodes Norse, snnTorch and nirtorch map "
                     "(see `metadata['rewrites']`); its input is `[B, D_in, N, 1]`.")
    lines += ["", "Load it elsewhere (what was run at export, and the agreement with neuroposter's reference simulator, "
              "is in `summary.json` under `consumers`):", ""]
    for name, c in consumers.items():
        note = "" if c.get("run") else f"  (not run at export: {c.get('reason', '')})"
        lines.append(f"- {name}: `{c['call']}`{note}")
    lines += ["", "Each loaded module is called once per time step, `out, state = module(x_t, state)` (snnTorch keeps "
              "its state inside the module: `out, _ = module(x_t)` after `snntorch.utils.reset(module)`); the "
              "prediction is the mean of the per-step outputs.", ""]
    return "\n".join(lines)


class NirTarget(Target):
    """``neuroposter export --target nir`` (see the module docstring).

    Options: ``samples`` (32), ``min_agreement`` (0.99), ``dtype`` (graph parameter dtype, ``float64``),
    ``count_samples`` (test samples the stored op counts are made on, 32).
    """

    name = "nir"
    model_kinds = ("snn",)
    # consumer_samples: how many of the verification samples each NIR consumer runs (the flat SDT takes the
    # consumers about a second per sample on 2 cores; the interop tests cover the rest)
    defaults = {"samples": 32, "split": "test", "seed": None, "dtype": "float64", "count_samples": 32,
                "consumer_samples": 8}
    min_agreement = 0.99
    profile = None

    def lower(self, ctx: ExportContext) -> Any:
        """The NIR graph, written to ``graph.nir`` and read back (type-checked, every parameter compared)."""
        from neuroposter.ir import write_graph
        from neuroposter.ir.interop import InteropError, is_nested, portable_graph
        from neuroposter.ir.lower import lower_model

        from neuroposter.ir.quantize import INPUT_QUANTIZATION
        from neuroposter.targets.inputs import trained_input_quantization

        graph = lower_model(ctx.run.model, T=int(ctx.inputs.T), source_run=str(ctx.request.run_dir),
                            dtype=str(ctx.options.get("dtype") or "float64"))
        # an analog input the run was trained to see quantised (a pixel SDT fine-tuned for Loihi 2): NIR has no
        # quantiser node, so the graph states it as its input contract, which to_graph_input (and any reader) applies
        contract = trained_input_quantization(ctx.run.model)
        if contract is not None:
            graph.metadata = {**dict(graph.metadata or {}), INPUT_QUANTIZATION: contract}
            ctx.summary["input_quantization"] = contract
        back = write_graph(ctx.scratch / "graph.nir", graph)
        ctx.copy_file("graph.nir")
        self.portable = None
        if is_nested(back):   # readers that take no sub-graphs (Norse, snnTorch) get the portable flat variant
            try:
                flat = portable_graph(back)
            except InteropError as exc:   # recorded: those readers are then "not run" with the reason
                log.warning("no graph_flat.nir: %s", exc)
                ctx.summary["graph_flat"] = f"not written: {exc}"
            else:
                self.portable = write_graph(ctx.scratch / "graph_flat.nir", flat)
                ctx.copy_file("graph_flat.nir")
        return back

    def run(self, ctx: ExportContext, graph: Any) -> _Runs:
        import torch

        from neuroposter.ir import retime, simulate
        from neuroposter.ir.graph import flatten
        from neuroposter.ir.lower import to_graph_input
        from neuroposter.profiling.stored import nir_counts
        from neuroposter.targets.inputs import evaluation_inputs

        from neuroposter.ir.quantize import INPUT_QUANTIZATION

        spikes = torch.from_numpy(ctx.inputs.x.astype(np.float32))
        logits, norse = norse_reference(ctx.run.model, spikes, (graph.metadata or {}).get(INPUT_QUANTIZATION))
        flat = flatten(graph, strict=True)
        x = to_graph_input(spikes, graph)      # as the bundle documents it: the input contract applied
        same = simulate(flat, x, mode="same_step")
        missing = sorted(set(norse) - set(same.records))
        if missing:
            raise DataError(f"the NIR graph has no neuron node for model layers {missing[:4]}")
        rt = retime(flat)
        hop = simulate(flat, x, mode="per_hop", delays=rt.delays)
        n_count = int(ctx.options["count_samples"])
        counted = spikes
        if n_count != ctx.inputs.samples:
            more = evaluation_inputs(ctx.run, ctx.request.run_dir, samples=n_count, split=str(ctx.options["split"]))
            counted = torch.from_numpy(more.x.astype(np.float32))
        counts = nir_counts(graph, counted, run_dir=ctx.request.run_dir, encoded=str(ctx.inputs.path),
                            samples_requested=n_count)
        self.graph = graph
        nc = min(int(ctx.options["consumer_samples"]), int(x.shape[1]))
        consumers = run_consumers(graph, x[:, :nc], same.output[:, :nc], portable=self.portable)
        return _Runs(x, logits, norse, same, hop, rt, counts, consumers)

    def verify(self, ctx: ExportContext, r: _Runs) -> Verdict:
        from neuroposter.targets.verify import compare

        layers = list(r.norse_spikes)
        vs_norse = compare(r.same.output.mean(0), r.logits.mean(0), spikes=(r.same.records, r.norse_spikes),
                           layers=layers)
        vs_norse["max_abs_step_logit_diff"] = float(np.abs(r.same.output - r.logits).max())
        hop_spikes = {k: r.hop.aligned(k) for k in r.same.records}
        per_hop = compare(np.asarray(r.hop.aligned_output()).mean(0), r.same.output.mean(0),
                          spikes=(hop_spikes, r.same.records))
        per_hop["max_abs_step_output_diff"] = float(np.abs(r.hop.aligned_output() - r.same.output).max())
        ctx.summary["verification"] = {"vs_norse": vs_norse, "per_hop_vs_same_step": per_hop,
                                       "reference": "Norse model in float64 vs reference simulator (float64)"}
        ctx.summary["retiming"] = {"latency": int(r.retiming.latency), "max_delay": int(r.retiming.max_delay),
                                   "delays": {f"{s} -> {d}": int(v) for (s, d), v in sorted(r.retiming.delays.items())}}
        ctx.summary["firing_rates"] = {k: float(v.mean()) for k, v in r.same.records.items()}
        min_agree = float(ctx.options["min_agreement"])
        checks = {"vs_norse.spike_agreement": vs_norse["spike_agreement"],
                  "vs_norse.label_agreement": vs_norse["label_agreement"],
                  "per_hop_vs_same_step.spike_agreement": per_hop["spike_agreement"]}
        self.checks, self.runs = checks, r
        low = {k: v for k, v in checks.items() if v < min_agree}
        if low:
            return Verdict(False, "agreement below --min-agreement {:g}: {}".format(
                min_agree, ", ".join(f"{k} {v:.4f}" for k, v in low.items())))
        return Verdict(True)

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        from neuroposter.ir.graph_io import graph_stats
        from neuroposter.profiling.stored import write_op_counts

        r, back = self.runs, self.graph
        ctx.files["op_counts.json"] = lambda p: write_op_counts(p.parent, r.counts)
        readme = _readme(r.consumers, back.metadata)
        ctx.files["README.md"] = lambda p: p.write_text(readme)
        ctx.summary["consumers"] = r.consumers
        stats = graph_stats(back)
        ctx.summary.update({
            "T": int(ctx.inputs.T),
            "graph": {"file": "graph.nir", "roundtrip": "nir.read(type_check=True), all parameters equal",
                      **({"flat_file": "graph_flat.nir"} if self.portable is not None else {}),
                      **{k: back.metadata[k] for k in ("dt", "reset", "threshold", "integration", "layout")
                         if k in back.metadata}},
            **stats,
            "latency_L": int(r.retiming.latency),
        })
        v = ctx.summary["verification"]
        min_agree = float(ctx.options["min_agreement"])
        nodes = ", ".join(f"{n} {k}" for k, n in stats["nodes_by_type"].items() if k not in ("Input", "Output"))
        ctx.lines += [
            f"  nodes: {nodes}; SDSA sub-graphs: {stats['subgraphs'].get('sdsa', 0)}",
            f"  neurons {stats['neurons']:,}; synapses stored {stats['synapses_stored']:,} "
            f"(expanded {stats['synapses_expanded']:,}, identity {stats['synapses_identity']:,})",
            f"  per-hop latency L = {r.retiming.latency} steps (max delay {r.retiming.max_delay})",
            f"  on {ctx.inputs.samples} test samples: same-step spike agreement "
            f"{v['vs_norse']['spike_agreement']:.4%}, per-label prediction agreement "
            f"{v['vs_norse']['label_agreement']:.4%}, per-hop+retiming agreement "
            f"{v['per_hop_vs_same_step']['spike_agreement']:.4%}",
            *([f"  input contract: images quantised to {iq['bits']}-bit graded values, scale {iq['scale']:g} "
               f"(metadata input_quantization; the graded input the run was trained with)"]
              if (iq := back.metadata.get("input_quantization")) else []),
            f"  op counts (same-step, float) on {r.counts['model'].counts.samples} test samples stored in op_counts.json",
            "  NIR consumers (prediction agreement with the reference simulator): " + ", ".join(
                f"{k} {c['prediction_agreement']:.2%}" if c["run"] else f"{k} not run" for k, c in r.consumers.items()),
            f"  {'OK' if verdict.ok else 'FAILED'}: every agreement {'>=' if verdict.ok else 'must be >='} {min_agree:g}",
        ]
