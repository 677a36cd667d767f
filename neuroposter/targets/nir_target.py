"""The ``nir`` target: lower a trained SNN run to a NIR graph, write it, and verify it.

Bundle (``export/nir/<run>/``): ``graph.nir`` (``nir.write``, re-read with ``nir.read``, type check
on, compared parameter by parameter), ``manifest.json``, ``summary.json``. Verification on real
test inputs (the first ``samples`` test samples of the encoded set named in the run manifest):

* same-step spike agreement: every LIF of the Norse model (float64) vs the NIR graph run by the
  reference simulator in ``same_step`` mode, element by element;
* prediction agreement: per (sample, genre) decision ``mean_t logits > 0``, and top-1 genre;
* per-hop + re-timing agreement: ``per_hop`` with the delays of :func:`~neuroposter.ir.retime`,
  aligned by the reported latency, vs ``same_step`` (spikes and output).

``ok`` is False when any agreement is below ``min_agreement`` (default 0.99): the bundle is then kept
as ``<name>.failed`` beside the requested folder, which is left as it was.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from neuroposter.errors import DataError
from neuroposter.targets._bundle import (bundle_dir, failed_line, fraction_option, load_test_spikes, reject_bundle,
                                         samples_option, write_bundle)
from neuroposter.targets.base import ExportRequest, ExportResult

__all__ = ["export", "verify_graph"]

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 32
DEFAULT_MIN_AGREEMENT = 0.99


def _norse_reference(model: Any, spikes: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits ``[T, B, C]`` and spikes per LIF (graph layout) of the model run in float64."""
    import torch

    from neuroposter.models.lif import LIF

    ref = copy.deepcopy(model).double().eval()
    for m in ref.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    with torch.no_grad():
        logits = ref(spikes.double()).numpy()
    out: dict[str, np.ndarray] = {}
    for name, m in ref.named_modules():
        if isinstance(m, LIF) and m.last_spikes is not None:
            s = m.last_spikes.numpy()
            out[name] = np.swapaxes(s, 2, 3) if s.ndim == 4 else s  # [T, B, N, C] -> [T, B, C, N]
    return logits, out


def _agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    per: dict[str, float] = {}
    same = total = 0
    for name, x in a.items():
        y = b[name]
        eq = int((x.astype(np.uint8) == y.astype(np.uint8)).sum())
        per[name] = eq / x.size
        same += eq
        total += x.size
    return (same / total if total else 1.0), per


def verify_graph(graph: Any, model: Any, spikes: Any) -> dict[str, Any]:
    """Runs the equivalence checks of the nir target.

    Args:
        graph: the lowered (and re-read) NIR graph.
        model: the Norse model.
        spikes: real inputs ``[T, B, N, D]`` (torch).

    Returns:
        The ``equivalence`` section of ``summary.json``.
    """
    from neuroposter.ir import retime, simulate
    from neuroposter.ir.lower import to_graph_input

    logits, ref_spikes = _norse_reference(model, spikes)
    x = to_graph_input(spikes, graph)
    same = simulate(graph, x, mode="same_step")
    missing = sorted(set(ref_spikes) - set(same.records))
    if missing:
        raise DataError(f"the NIR graph has no neuron node for model layers {missing[:4]}")
    spike_agree, per_layer = _agreement(ref_spikes, {k: same.records[k] for k in ref_spikes})
    pred_ref, pred_nir = logits.mean(0), same.output.mean(0)
    decision_agree = float(((pred_ref > 0) == (pred_nir > 0)).mean())
    top1_agree = float((pred_ref.argmax(-1) == pred_nir.argmax(-1)).mean())
    rt = retime(graph)
    hop = simulate(graph, x, mode="per_hop", delays=rt.delays)
    hop_agree, _ = _agreement({k: same.records[k] for k in same.records},
                              {k: hop.aligned(k) for k in same.records})
    hop_out = float(np.abs(hop.aligned_output() - same.output).max())
    return {
        "samples": int(x.shape[1]),
        "same_step_spike_agreement": spike_agree,
        "same_step_spike_agreement_per_layer": per_layer,
        "max_abs_logit_diff": float(np.abs(same.output - logits).max()),
        "prediction_agreement": decision_agree,
        "top1_agreement": top1_agree,
        "per_hop_retimed_spike_agreement": hop_agree,
        "per_hop_retimed_max_abs_output_diff": hop_out,
        "latency": int(rt.latency),
        "delays": {f"{s} -> {d}": int(v) for (s, d), v in sorted(rt.delays.items())},
        "max_delay": int(rt.max_delay),
        "firing_rates": {k: float(v.mean()) for k, v in same.records.items()},
        "reference": "Norse model in float64 vs reference simulator (float64)",
    }


def export(req: ExportRequest) -> ExportResult:
    """Lowers ``req.run_dir`` (an ``sdt`` or ``snn-mlp`` run) to ``graph.nir`` and verifies it.

    Options: ``samples`` (default 32), ``min_agreement`` (default 0.99), ``dtype`` (graph parameter
    dtype, ``float64`` default).
    """
    from neuroposter.ir import write_graph
    from neuroposter.ir.graph_io import graph_stats
    from neuroposter.ir.lower import lower_model
    from neuroposter.train import load_run

    opts = dict(req.options)
    samples = samples_option(opts, DEFAULT_SAMPLES)
    min_agree = fraction_option(opts, "min_agreement", DEFAULT_MIN_AGREEMENT)
    loaded = load_run(req.run_dir)
    if loaded.model_name not in ("sdt", "snn-mlp"):
        raise DataError(f"the nir target exports spiking runs (sdt, snn-mlp); {req.run_dir} is a "
                        f"{loaded.model_name!r} run (use --target onnx)")
    spikes, data = load_test_spikes(loaded.manifest, req.run_dir, samples)
    graph = lower_model(loaded.model, T=data["T"], source_run=str(req.run_dir), dtype=str(opts.get("dtype") or "float64"))
    failed = None
    with bundle_dir(req, protect=[data.get("encoded")]) as tmp:
        back = write_graph(tmp / "graph.nir", graph)
        eq = verify_graph(back, loaded.model, spikes)
        stats = graph_stats(back)
        checks = {k: eq[k] for k in ("same_step_spike_agreement", "prediction_agreement",
                                     "per_hop_retimed_spike_agreement")}
        ok = all(v >= min_agree for v in checks.values())
        summary = {
            "target": "nir",
            "model": loaded.model_name,
            "source_run": str(req.run_dir),
            "T": data["T"],
            "encoded": data["encoded"],
            "graph": {"file": "graph.nir", "roundtrip": "nir.read(type_check=True), all parameters equal",
                      **{k: back.metadata[k] for k in ("dt", "reset", "threshold", "layout") if k in back.metadata}},
            **stats,
            "latency_L": eq["latency"],
            "equivalence": eq,
            "min_agreement": min_agree,
            "ok": ok,
        }
        if not ok:
            summary["reason"] = "agreement below --min-agreement {:g}: {}".format(
                min_agree, ", ".join(f"{k} {v:.4f}" for k, v in checks.items() if v < min_agree))
        write_bundle(tmp, target="nir", run_dir=req.run_dir, run_manifest=loaded.manifest, artifacts=["graph.nir"],
                     summary=summary, options={**opts, "samples": samples, "min_agreement": min_agree},
                     inputs={"encoded": {"path": data["encoded"], "key": data.get("key")}})
        if not ok:
            failed = reject_bundle(tmp, req.out_dir, summary["reason"])
    where = failed if failed is not None else req.out_dir
    nodes = ", ".join(f"{v} {k}" for k, v in stats["nodes_by_type"].items() if k not in ("Input", "Output"))
    lines = (
        f"nir: {loaded.model_name} run {req.run_dir} -> {where / 'graph.nir'}",
        f"  nodes: {nodes}; SDSA sub-graphs: {stats['subgraphs'].get('sdsa', 0)}",
        f"  neurons {stats['neurons']:,}; synapses stored {stats['synapses_stored']:,} "
        f"(expanded {stats['synapses_expanded']:,}, identity {stats['synapses_identity']:,})",
        f"  per-hop latency L = {eq['latency']} steps (max delay {eq['max_delay']})",
        f"  on {eq['samples']} test samples: same-step spike agreement {eq['same_step_spike_agreement']:.4%}, "
        f"prediction agreement {eq['prediction_agreement']:.4%}, "
        f"per-hop+retiming agreement {eq['per_hop_retimed_spike_agreement']:.4%}",
        f"  {'OK' if ok else 'FAILED'}: every agreement {'>=' if ok else 'must be >='} {min_agree:g}",
        *((failed_line(req.out_dir, failed),) if failed is not None else ()),
    )
    return ExportResult(out_dir=where, summary=summary, lines=lines, ok=ok, failed=failed is not None)
