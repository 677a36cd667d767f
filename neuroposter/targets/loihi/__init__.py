"""Loihi 2 target: NIR -> Lava process network, run in Lava's bit-accurate CPU simulation, verified.

``export(request)`` (``neuroposter export --target loihi``):

1. loads the run (``neuroposter.train.load_run``) and lowers it (``neuroposter.ir.lower_model``);
2. quantises it to Loihi 2 fixed point (:func:`neuroposter.ir.quantize.quantize_loihi`), reporting the
   error per layer;
3. builds the Lava network (:mod:`.builder`: stock ``LIFReset``/``Sparse``/``Dense``/``DelaySparse``
   processes, re-timed) and runs ``--samples`` real test samples of the run's encoded set back to back
   in **one** Lava run (``fixed_pt``; ``floating_pt`` with ``--floating-pt`` for debugging);
4. verifies: Lava vs the reference simulator ``neuroposter.ir.simulate(mode="per_hop",
   arithmetic="int")`` (spike agreement per layer, prediction agreement) and vs the float Norse model
   (prediction agreement, metric difference), plus the quantisation's effect on spikes (integer vs
   float same-step reference); the export fails (``ok=False``) when the prediction agreement with the
   reference is below ``--min-agreement`` (default 0.99): the new bundle is then kept as
   ``<name>.failed`` and whatever ``<name>`` held is left as it was;
5. for a chain-shaped spiking MLP (``snn-mlp``) also writes lava-dl netx HDF5 and checks it the same
   way (:mod:`.netx_export`);
6. maps the graph onto the ``loihi2`` hardware profile (:mod:`neuroposter.targets.mapping`);
7. writes the bundle: ``graph_int.nir``, ``graph.nir``, ``inputs.npz`` (sample inputs + reference
   outputs), ``network.net`` (netx, when applicable), ``mapping.json``, ``summary.json``,
   ``manifest.json``, ``README.md``. ``python -m neuroposter.targets.loihi.run BUNDLE`` re-runs it.

Prediction (multi-label): the mean read-out over the ``T`` steps; a sample's prediction is its
top-1 class together with the set of classes whose mean logit is positive; two runs *agree* on a
sample when both are identical.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter.targets.base import ExportRequest, ExportResult, UnsupportedNodeError

__all__ = ["export", "verify_plan", "reference_readout_int", "predictions", "prediction_agreement", "DEFAULTS"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"samples": 16, "min_agreement": 0.99, "select_tag": "fixed_pt", "split": "test",
                            "seed": 0, "record": True}


def predictions(mean_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(top1 [B], decisions [B, C] bool)`` from mean logits ``[B, C]``."""
    m = np.asarray(mean_logits, dtype=np.float64).reshape(mean_logits.shape[0], -1)
    return m.argmax(axis=1), m > 0


def prediction_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose top-1 class and positive-class set agree (mean logits ``[B, C]``)."""
    ta, da = predictions(a)
    tb, db = predictions(b)
    same = (ta == tb) & np.all(da == db, axis=1)
    return float(same.mean()) if same.size else 1.0


def agreement_vs_float(deployed: np.ndarray, float_model: np.ndarray, labels: np.ndarray,
                       name: str) -> dict[str, float]:
    """How a deployed network's predictions compare with the float model's (mean logits ``[B, C]``).

    ``prediction_agreement`` is strict (top-1 class and the whole positive-class set equal); the
    top-1 and per-label (sample x genre decision) agreements say how far apart disagreeing samples are,
    and the micro-F1 of both against the labels says what the disagreement costs.
    """
    ta, da = predictions(deployed)
    tb, db = predictions(float_model)
    f1_dep, f1_float = _micro_f1(da, labels), _micro_f1(db, labels)
    return {"prediction_agreement": prediction_agreement(deployed, float_model),
            "top1_agreement": float((ta == tb).mean()) if ta.size else 1.0,
            "label_agreement": float((da == db).mean()) if da.size else 1.0,
            "max_abs_logit_diff": float(np.max(np.abs(np.asarray(deployed) - np.asarray(float_model)))),
            f"micro_f1_{name}": f1_dep, "micro_f1_float": f1_float, "micro_f1_diff": f1_dep - f1_float}


def _mapping_line(mapping: dict[str, Any]) -> str:
    """One line: does it fit the profile, with what resources, or which limits it violates."""
    t = mapping.get("totals", {})
    head = f"  mapping on {mapping.get('profile', 'loihi2')}: "
    if mapping.get("fits"):
        return (head + f"fits -- {t.get('neurons', 0):,} neurons, {t.get('stored_synapses', 0):,} stored synapses, "
                f"{t.get('cores', '?')} cores, {t.get('chips', '?')} chip(s)"
                + (f"; unchecked (unknown in the profile): {', '.join(mapping['unchecked'])}" if mapping.get("unchecked")
                   else ""))
    return head + "DOES NOT FIT -- " + "; ".join(mapping.get("violations", [])[:3])


def _micro_f1(decisions: np.ndarray, labels: np.ndarray) -> float:
    tp = float(np.sum(decisions & (labels > 0)))
    fp = float(np.sum(decisions & (labels == 0)))
    fn = float(np.sum(~decisions & (labels > 0)))
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0


def reference_readout_int(plan: Any, ref: Any) -> np.ndarray:
    """The reference simulator's aligned read-out as integers **with** the host bias, ``[T, B, C]``.

    ``simulate(arithmetic="int")`` returns either the raw integer currents (then the Output's
    ``bias`` is added here) or, when it applies the Output's ``metadata["loihi"]`` read-out itself,
    ``(a + bias) / scale`` as float (then it is multiplied back; exact, ``scale`` is a power of two).
    """
    out_name = next(iter(plan.outputs))
    o = plan.outputs[out_name]
    arr = np.asarray(ref.aligned_output())
    arr = arr.reshape(arr.shape[:2] + (-1,))
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64) + o["bias"][None, None, :]
    return np.rint(arr * o["scale"]).astype(np.int64)


def verify_plan(plan: Any, lava: Any, ref: Any) -> dict[str, Any]:
    """Lava result vs the reference ``SimResult`` (per_hop, int): per-layer spikes and outputs.

    Args:
        plan: the :class:`~.builder.NetworkPlan`.
        lava: a :class:`~.builder.LavaResult` or :class:`~.builder.EmulationResult`.
        ref: the reference ``SimResult``.

    Returns:
        ``{"latency": {...}, "layers": {name: agreement}, "output_exact", "output_max_abs_diff",
        "prediction_agreement"}``.
    """
    out_name = next(iter(plan.outputs))
    ref_out = reference_readout_int(plan, ref)
    lava_out = lava.output[out_name].reshape(ref_out.shape)
    layers = {}
    for name, spk in lava.spikes.items():
        if name in ref.records:
            r = np.asarray(ref.aligned(name))
            layers[name] = float((r.reshape(spk.shape) == spk).mean())
    scale = plan.outputs[out_name]["scale"]
    return {
        "latency": {"lava": int(plan.latency), "reference": int(ref.latency)},
        "layers": layers,
        "min_layer_agreement": min(layers.values()) if layers else None,
        "output_exact": bool(np.array_equal(lava_out, ref_out)),
        "output_max_abs_diff": float(np.max(np.abs(lava_out - ref_out))) if ref_out.size else 0.0,
        "prediction_agreement": prediction_agreement(lava_out.mean(axis=0) / scale, ref_out.mean(axis=0) / scale),
    }


def _load_inputs(request: ExportRequest, loaded: Any, samples: int, split: str, seed: int | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Test samples ``[T, B, N, D]`` (uint8), labels ``[B, G]`` and indices from the run's encoded set.

    The encoded set is the one the run's manifest names (resolved relative to the run folder).

    Raises:
        ManifestError: it is missing or changed since the run was trained (says what to re-run).
        DataError: the split is empty.
    """
    from neuroposter.encode import load_encoded
    from neuroposter.errors import DataError
    from neuroposter.targets._bundle import check_input_key, run_input

    path = run_input(request.run_dir, loaded.manifest, "encoded")
    enc = load_encoded(path)
    check_input_key(path, getattr(enc, "key", None), request.run_dir, loaded.manifest, "encoded")
    n = enc.size(split)
    if n == 0:
        raise DataError(f"{path} has no {split} samples")
    k = min(int(samples), n)
    idx = np.arange(k) if seed is None else np.sort(np.random.default_rng(int(seed)).permutation(n)[:k])
    xs = np.stack([enc.spikes(split, int(i)) for i in idx], axis=1)          # [T, B, N, D]
    labels = np.asarray(enc.split_labels(split))[idx]
    return xs.astype(np.uint8), labels, idx, {"path": str(path), "key": enc.key, "split": split, "T": enc.T}


def _float_model_logits(model: Any, spikes: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(spikes, dtype=torch.float32))
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().cpu().numpy().astype(np.float64)     # [T, B, C]


def export(request: ExportRequest) -> ExportResult:
    """Exports a run to a verified Loihi 2 (Lava) bundle; see the module docstring.

    Options (``request.options``): ``samples`` (16), ``min_agreement`` (0.99), ``select_tag``
    (``"fixed_pt"``; ``fixed_pt=False``/``floating_pt=True`` also select ``"floating_pt"``), ``split``
    (``"test"``), ``seed`` (0; None = first samples), ``record`` (per-layer spikes, True),
    ``chunk`` (samples per Lava run, default all).

    Returns:
        The :class:`ExportResult`; ``ok`` is False when the prediction agreement with the reference
        is below ``min_agreement`` or the netx check fails (``failed``: the bundle went to
        ``<name>.failed``), or when the graph cannot be hosted (a refusal verdict at ``<name>``);
        the reason is in ``summary``.

    Raises:
        UsageError: a refused ``--out`` or an option out of range. ManifestError: the run or its
            encoded set is missing or changed. ResourceError: not enough disk space.
    """
    from neuroposter._io import atomic_write_json, atomic_write_text
    from neuroposter.errors import ResourceError
    from neuroposter.ir.lower import lower_model, to_graph_input
    from neuroposter.ir.quantize import QuantizationError, quantize_loihi
    from neuroposter.manifest import write_manifest
    from neuroposter.targets._bundle import (bundle_dir, check_bundle_destination, failed_line, fraction_option,
                                             reject_bundle, run_record, samples_option)
    from neuroposter.targets.loihi.builder import plan_network, run_lava
    from neuroposter.targets.mapping import map_graph
    from neuroposter.train import load_run

    given = dict(request.options or {})
    opts = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    opts["samples"] = samples_option(given, DEFAULTS["samples"])
    opts["min_agreement"] = fraction_option(given, "min_agreement", DEFAULTS["min_agreement"])
    if opts.get("floating_pt") or opts.get("fixed_pt") is False:
        opts["select_tag"] = "floating_pt"
    select_tag = str(opts["select_tag"])
    min_agree = float(opts["min_agreement"])
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    check_bundle_destination(request)        # refuse a bad --out before minutes of simulation
    loaded = load_run(request.run_dir)
    run_name = Path(request.run_dir).name
    xs, labels, idx, enc_info = _load_inputs(request, loaded, int(opts["samples"]), str(opts["split"]), opts["seed"])
    check_bundle_destination(request, [enc_info.get("path")])
    t0 = time.perf_counter()
    graph = lower_model(loaded.model, T=int(enc_info["T"]), source_run=str(request.run_dir))
    timings["lower_s"] = time.perf_counter() - t0
    x = to_graph_input(xs, graph)
    summary: dict[str, Any] = {"target": "loihi", "run": run_name, "model": loaded.model_name,
                               "select_tag": select_tag, "samples": int(x.shape[1]), "T": int(x.shape[0]),
                               "inputs": {**enc_info, "indices": idx.tolist()}, "min_agreement": min_agree}
    lines: list[str] = []
    try:
        t0 = time.perf_counter()
        graph_int, qrep = quantize_loihi(graph)
        plan = plan_network(graph_int)
        timings["quantize_plan_s"] = time.perf_counter() - t0
    except (UnsupportedNodeError, QuantizationError) as exc:
        summary.update(ok=False, reason=str(exc))
        return _write_refusal(request, summary, [f"loihi: refused: {exc}"], enc_info, loaded.manifest)
    # before minutes of simulation: room for the bundle (two graphs, the inputs and three read-outs)
    from neuroposter.artifact import check_free_space

    check_free_space(Path(request.out_dir).parent, _bundle_estimate(graph, x), "the Loihi bundle")

    from neuroposter.ir.retime import retime
    from neuroposter.ir.simulate import simulate

    # Lava run
    lava = run_lava(plan, x, select_tag=select_tag, record=bool(opts["record"]), chunk=opts.get("chunk"),
                    progress_desc=f"lava {select_tag}")
    timings["lava_build_s"], timings["lava_run_s"] = lava.build_s, lava.run_s
    # reference (integer, per hop) and float same-step
    t0 = time.perf_counter()
    rt = retime(graph_int)
    ref = simulate(graph_int, x, mode="per_hop", arithmetic="int", delays=rt.delays)
    timings["reference_int_s"] = time.perf_counter() - t0
    ver = verify_plan(plan, lava, ref)
    ref_float = simulate(graph, x, mode="same_step", arithmetic="float")
    spike_effect = {}
    for name in plan.populations:
        if name in ref_float.records and name in ref.records:
            a = np.asarray(ref.aligned(name))
            b = np.asarray(ref_float.records[name])[: a.shape[0]]
            spike_effect[name] = {"agreement": float((a.reshape(b.shape) == b).mean()),
                                  "rate_int": float(a.mean()), "rate_float": float(b.mean())}
    out_name = next(iter(plan.outputs))
    lava_mean = lava.logits[out_name].mean(axis=0).reshape(x.shape[1], -1)
    float_logits = _float_model_logits(loaded.model, xs)
    float_mean = float_logits.mean(axis=0).reshape(x.shape[1], -1)
    ref_float_mean = np.asarray(ref_float.aligned_output(), dtype=np.float64).mean(axis=0).reshape(x.shape[1], -1)
    vs_float = {**agreement_vs_float(lava_mean, float_mean, labels, "lava"),
                "reference_float_vs_norse_prediction_agreement": prediction_agreement(ref_float_mean, float_mean)}
    ok = ver["prediction_agreement"] >= min_agree
    summary.update({
        "ok": ok,
        "verification": {"vs_reference": ver, "vs_float_model": vs_float},
        "quantization": {**qrep.to_dict(), "spike_effect": spike_effect},
        "network": plan.summary(),
        "lava": {"select_tag": select_tag, "steps": lava.steps, "build_s": lava.build_s, "run_s": lava.run_s,
                 "batching": "back-to-back samples in one run, LIFReset per population"},
    })
    if not ok:
        summary["reason"] = (f"prediction agreement with the reference simulator {ver['prediction_agreement']:.3f} "
                             f"< --min-agreement {min_agree}")
    # mapping
    try:
        from neuroposter.profiling.profiles import load_profile

        mapping = map_graph(graph, load_profile("loihi2"), delays=rt.delays).to_dict()
    except Exception as exc:  # noqa: BLE001 - the mapping must not hide the verification result
        mapping = {"error": f"{type(exc).__name__}: {exc}"}
    summary["mapping"] = {k: mapping.get(k) for k in ("fits", "violations", "totals")} if "error" not in mapping else mapping
    # netx (chain-shaped networks)
    netx_info: dict[str, Any] | None = None
    from neuroposter.targets.loihi import netx_export

    if netx_export.is_chain(graph):
        try:
            netx_info = netx_export.export_and_check(graph, x, select_tag="fixed_pt")
        except ResourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported (a failed verification), not a crash
            netx_info = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        summary["netx"] = {k: v for k, v in netx_info.items() if k != "file_bytes" and k != "graph_int"}
        ok = ok and bool(netx_info.get("ok", False))
        summary["ok"] = ok
        if not netx_info.get("ok", False) and "reason" not in summary:
            summary["reason"] = f"netx check failed: {netx_info.get('error') or netx_info.get('reason')}"
    timings["total_s"] = time.perf_counter() - t_start
    summary["timings"] = timings

    from neuroposter.ir.graph_io import write_graph

    ref_out = reference_readout_int(plan, ref)
    netx_bytes = len(netx_info["file_bytes"]) if netx_info and netx_info.get("file_bytes") else 0
    needs = max(_bundle_estimate(graph, x), int(1.5 * (2 * _graph_nbytes(graph) + x.nbytes + ref_out.nbytes
                                                       + lava.output[out_name].nbytes + float_logits.nbytes)
                                                 + netx_bytes) + (1 << 20))
    failed = None
    with bundle_dir(request, protect=[enc_info.get("path")], needs_bytes=needs) as tmp:
        write_graph(tmp / "graph_int.nir", graph_int, verify=False)
        write_graph(tmp / "graph.nir", graph, verify=False)
        np.savez_compressed(tmp / "inputs.npz", x=x.astype(np.uint8), labels=labels, indices=idx,
                            reference_output=ref_out, lava_output=lava.output[out_name],
                            float_model_logits=float_logits)
        if netx_info and netx_info.get("file_bytes"):
            (tmp / "network.net").write_bytes(netx_info["file_bytes"])
        atomic_write_json(tmp / "mapping.json", mapping)
        atomic_write_json(tmp / "summary.json", summary)
        atomic_write_text(tmp / "README.md", _readme(run_name, summary, netx_info is not None))
        write_manifest(tmp, "export", inputs={"run": run_record(request.run_dir, loaded.manifest),
                                              "encoded": {"path": enc_info["path"], "key": enc_info["key"]}},
                       config={k: v for k, v in opts.items() if isinstance(v, (int, float, str, bool, type(None)))},
                       extra={"target": "loihi", "source_run": run_name})
        if not ok:
            failed = reject_bundle(tmp, request.out_dir, str(summary.get("reason") or "verification failed"))
    where = Path(failed if failed is not None else request.out_dir)
    lines = [
        f"loihi: {run_name} ({loaded.model_name}) -> {where}",
        f"  Lava {select_tag}: {plan.summary()['populations']} populations, {plan.summary()['synapse_processes']} "
        f"synapse processes, latency {plan.latency}; {x.shape[1]} samples in {lava.run_s:.1f} s",
        f"  vs reference (int, per hop): prediction agreement {ver['prediction_agreement']:.3f}, "
        f"min layer spike agreement {ver['min_layer_agreement'] if ver['min_layer_agreement'] is not None else 'n/a'}, "
        f"outputs exact: {ver['output_exact']}",
        f"  vs float model (quantisation effect): prediction agreement {vs_float['prediction_agreement']:.3f} "
        f"(top-1 {vs_float['top1_agreement']:.3f}, per-label decisions {vs_float['label_agreement']:.3f}), "
        f"micro-F1 {vs_float['micro_f1_lava']:.3f} vs {vs_float['micro_f1_float']:.3f}",
        _mapping_line(mapping),
    ]
    if netx_info is not None:
        lines.append(f"  netx: ok={netx_info.get('ok')} prediction agreement "
                     f"{netx_info.get('prediction_agreement', 'n/a')}")
    if not ok:
        lines.append(f"  FAILED: {summary.get('reason')}")
    if failed is not None:
        lines.append(failed_line(request.out_dir, failed))
    return ExportResult(where, summary, tuple(lines), ok, failed=failed is not None)


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


def _write_refusal(request: ExportRequest, summary: Mapping[str, Any], lines: list[str],
                   enc_info: Mapping[str, Any] | None = None,
                   run_manifest: Mapping[str, Any] | None = None) -> ExportResult:
    """Writes the bundle of a deliberate refusal (the network cannot be hosted): a verdict, not a failure.

    The bundle goes to its final name with ``summary.json`` (``ok: false`` and the ``reason``).
    """
    from neuroposter._io import atomic_write_json
    from neuroposter.manifest import write_manifest
    from neuroposter.targets._bundle import bundle_dir, run_record

    path = (enc_info or {}).get("path")
    with bundle_dir(request, protect=[path]) as tmp:
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, "export", inputs={"run": run_record(request.run_dir, run_manifest)},
                       extra={"target": "loihi", "source_run": Path(request.run_dir).name})
    return ExportResult(Path(request.out_dir), dict(summary), tuple(lines), False)


def _readme(run: str, summary: Mapping[str, Any], has_netx: bool) -> str:
    ver = summary["verification"]["vs_reference"]
    return f"""# Loihi 2 bundle: {run}

Produced by `neuroposter export --target loihi`. Everything needed to rebuild and re-run the Lava
network is in this folder:

| file | content |
|---|---|
| `graph_int.nir` | the integer NIR graph (Loihi 2 fixed point in every node's `metadata["loihi"]`; equations in `neuroposter/ir/quantize.py`) |
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
