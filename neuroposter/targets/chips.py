"""Simulated neuromorphic chips (SpiNNaker, SpiNNaker 2, TrueNorth, Xylo, Speck), driven by their profiles.

``export(request)`` for ``--target spinnaker|spinnaker2|truenorth|xylo|speck``:

1. lowers the run to NIR (as the Loihi target does) and maps it onto ``hardware_profiles/<chip>.yaml``
   (:func:`neuroposter.targets.mapping.map_graph`): node types the chip cannot host (a ``Threshold``
   on Xylo, an ``LIF`` on Speck's IAF cores), neuron models, fan-in / fan-out (the embedding's
   1664-input fan-in on TrueNorth's 256-axon crossbar, the SDSA token sum), layer, input and output
   counts, neurons and synapses per chip. Any violation **refuses** the export: ``ok=False`` with
   every violated limit, naming node and quantity, in ``summary.json`` and the printed lines;
2. otherwise applies the chip's precision (:func:`neuroposter.ir.quantize.quantize_nbit`:
   ``weight_bits`` and ``state_bits`` of the profile; unknown precision leaves the graph float and
   says so), runs the quantised graph in the reference simulator (``same_step``, float) on real test
   samples, and reports the agreement with the float graph and with the float Norse model
   (prediction agreement, micro-F1 difference), and the quantisation error per layer.

Bundle: ``summary.json``, ``mapping.json``, ``manifest.json`` and, when hosted, ``graph_q.nir``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroposter.targets.base import ExportRequest, ExportResult

__all__ = ["export", "check_chip"]

log = logging.getLogger(__name__)


def check_chip(graph: Any, profile: Any, *, delays: dict | None = None) -> tuple[bool, list[str], dict[str, Any]]:
    """``(hostable, violations, mapping dict)`` of a NIR graph on a chip profile."""
    from neuroposter.targets.mapping import map_graph

    m = map_graph(graph, profile, delays=delays)
    return m.fits, list(m.violations), m.to_dict()


def export(request: ExportRequest) -> ExportResult:
    """Exports a run to a simulated chip (see the module docstring).

    Options: ``samples`` (16), ``split`` (``"test"``), ``seed`` (0), ``profile`` (default: the
    target name; a path to another YAML also works).
    """
    from neuroposter._io import atomic_dir, atomic_write_json
    from neuroposter.ir.graph_io import write_graph
    from neuroposter.ir.lower import lower_model, to_graph_input
    from neuroposter.ir.quantize import quantize_nbit
    from neuroposter.ir.simulate import simulate
    from neuroposter.manifest import write_manifest
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.targets.loihi import _float_model_logits, _load_inputs, _micro_f1, prediction_agreement, predictions
    from neuroposter.train import load_run

    opts = {"samples": 16, "split": "test", "seed": 0, **dict(request.options or {})}
    chip = str(request.target)
    profile = load_profile(opts.get("profile") or chip)
    t0 = time.perf_counter()
    loaded = load_run(request.run_dir)
    run_name = Path(request.run_dir).name
    xs, labels, idx, enc_info = _load_inputs(request, loaded, int(opts["samples"]), str(opts["split"]), opts["seed"])
    graph = lower_model(loaded.model, T=int(enc_info["T"]), source_run=str(request.run_dir))
    x = to_graph_input(xs, graph)
    hostable, violations, mapping = check_chip(graph, profile)
    wb = getattr(profile.limits, "weight_bits", None)
    sb = getattr(profile.limits, "state_bits", None)
    summary: dict[str, Any] = {"target": chip, "run": run_name, "model": loaded.model_name, "profile": profile.name,
                               "samples": int(x.shape[1]), "precision": {"weight_bits": wb, "state_bits": sb},
                               "inputs": {**enc_info, "indices": idx.tolist()},
                               "mapping": {k: mapping[k] for k in ("fits", "violations", "totals")}}
    lines = [f"{chip}: {run_name} ({loaded.model_name}) -> {request.out_dir}"]
    graph_q = None
    if not hostable:
        summary.update(ok=False, reason=f"{chip} cannot host this network: " + "; ".join(violations))
        lines.append(f"  REFUSED: {chip} cannot host this network ({len(violations)} violated limits):")
        lines.extend(f"    - {v}" for v in violations[:8])
        if len(violations) > 8:
            lines.append(f"    ... and {len(violations) - 8} more (summary.json)")
    else:
        graph_q, qrep = quantize_nbit(graph, weight_bits=wb, state_bits=sb)
        sim_q = simulate(graph_q, x, mode="same_step", arithmetic="float")
        sim_f = simulate(graph, x, mode="same_step", arithmetic="float")
        q_mean = np.asarray(sim_q.aligned_output(), dtype=np.float64).mean(axis=0).reshape(x.shape[1], -1)
        f_mean = np.asarray(sim_f.aligned_output(), dtype=np.float64).mean(axis=0).reshape(x.shape[1], -1)
        n_mean = _float_model_logits(loaded.model, xs).mean(axis=0).reshape(x.shape[1], -1)
        layers = {k: float((np.asarray(sim_q.records[k]) == np.asarray(sim_f.records[k])).mean())
                  for k in sim_q.records if k in sim_f.records}
        _, dq = predictions(q_mean)
        _, dn = predictions(n_mean)
        summary.update(ok=True, quantization=qrep.to_dict(), verification={
            "vs_float_graph": {"prediction_agreement": prediction_agreement(q_mean, f_mean), "layers": layers},
            "vs_float_model": {"prediction_agreement": prediction_agreement(q_mean, n_mean),
                               "micro_f1_chip": _micro_f1(dq, labels), "micro_f1_float": _micro_f1(dn, labels),
                               "micro_f1_diff": _micro_f1(dq, labels) - _micro_f1(dn, labels),
                               "max_abs_logit_diff": float(np.max(np.abs(q_mean - n_mean)))}})
        if wb is None:
            summary["precision"]["note"] = "weight precision unknown in the profile: weights left in float"
        v = summary["verification"]["vs_float_model"]
        lines.append(f"  {mapping['totals']['neurons']} neurons, {mapping['totals']['stored_synapses']} stored synapses, "
                     f"{mapping['totals']['cores']} cores: fits")
        lines.append(f"  {wb}-bit weights: prediction agreement with the float model {v['prediction_agreement']:.3f}, "
                     f"micro-F1 diff {v['micro_f1_diff']:+.3f}")
    summary["seconds"] = time.perf_counter() - t0
    with atomic_dir(request.out_dir) as tmp:
        atomic_write_json(tmp / "mapping.json", mapping)
        atomic_write_json(tmp / "summary.json", summary)
        if graph_q is not None:
            write_graph(tmp / "graph_q.nir", graph_q, verify=False)
        write_manifest(tmp, "export", inputs={"run": {"path": str(request.run_dir), "key": loaded.manifest.get("key")}},
                       config={k: v for k, v in opts.items() if isinstance(v, (int, float, str, bool, type(None)))},
                       extra={"target": chip})
    return ExportResult(Path(request.out_dir), summary, tuple(lines), bool(summary["ok"]))
