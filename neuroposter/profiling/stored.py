"""Op counts stored in an export bundle (``op_counts.json``): written by the export, read by the report.

The counts of a deployment are made once, by the export that produces it, on the bundle's own artifact, and
kept beside it; the report only reads them (it never lowers, simulates or exports anything).

* ``nir`` bundle: the bundle's graph run by the reference simulator (same-step, float, records on) on the
  first test samples of the run's encoded set, counted by :func:`~neuroposter.profiling.counts.count_snn`
  (8-bit weights, 16-bit state) -- entry ``"model"`` (:func:`nir_counts`).
* chip bundle (``export/<chip>/<run>/``): the DEPLOYED chip graph (``graph_q.nir``: the chip's weight grid and
  lowerings) run the same way on the first test samples and counted by the same code, split by placement
  (:func:`chip_counts`): entry ``"model"`` holds the layers that run on the chip, entry ``"host"`` (only when
  the graph has any) the layers of nodes whose metadata says ``"placement": "host"`` (a fitted model's host-side
  projection), priced as host operations on a host profile, never on the chip's.
* ``onnx`` bundle: ``model.onnx`` counted by :func:`~neuroposter.profiling.onnx_counts.count_onnx` (32-bit
  weights) -- entry ``"model"``; for an image model holding the DenseNet-169 feature extractor as its
  ``backbone`` (the CNN), also the backbone's sub-graph at the model's image size -- entry ``"frontend"``, the
  feature front end of every model that reads features (:func:`onnx_counts`). The ``onnx`` export of such a model
  also stores ``"reference:<name>"`` entries: standard architectures (DenseNet-169, ViT-B/16, ViT-S/16) with random
  weights priced at the same image size (:mod:`neuroposter.profiling.reference_models`; cost only, never trained).

File format (``FORMAT_VERSION`` 1)::

    {"format": "neuroposter.op_counts", "format_version": 1,
     "entries": {"model": {"provenance": "<text>", "info": {...}, "counts": <OpCounts.to_dict()>},
                 "frontend": {...} | "host": {...}}}

``info`` holds what the reader checks: ``samples_requested`` (nir, chip: the test samples asked for; fewer are
used when the test split is smaller), ``image_size`` (front end, reference: ``[H, W]``), ``requested_size``
(reference: the posters' ``[H, W]``), ``placement`` (chip bundle:
``"chip"`` or ``"host"``), ``chip`` (the chip target) and ``layers`` (the node paths counted in the entry). The
file is written before the bundle's manifest, so it is hashed with the bundle like every other bundle file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from neuroposter.ir.graph import HOST_PLACEMENT
from neuroposter.profiling.counts import OpCounts

__all__ = ["OP_COUNTS_NAME", "FORMAT", "FORMAT_VERSION", "SNN_WEIGHT_BITS", "SNN_STATE_BITS", "ANN_WEIGHT_BITS",
           "StoredCounts", "write_op_counts", "read_op_counts", "nir_counts", "chip_counts",
           "HOST_PLACEMENT", "HOST_WEIGHT_BITS", "HOST_STATE_BITS", "onnx_counts"]

OP_COUNTS_NAME = "op_counts.json"
FORMAT = "neuroposter.op_counts"
FORMAT_VERSION = 1
# Deployment precisions of the stored counts' byte terms (the report re-prices them per profile with
# OpCounts.with_precision where a view asks for another precision).
SNN_WEIGHT_BITS, SNN_STATE_BITS = 8, 16
ANN_WEIGHT_BITS = 32
# The host part of a chip bundle runs in float on the host CPU (preamble contract: host nodes stay float).
HOST_WEIGHT_BITS, HOST_STATE_BITS = 32, 32
_SIMULATOR = "neuroposter.ir.simulate(mode='same_step', arithmetic='float')"


@dataclass(frozen=True)
class StoredCounts:
    """One entry of ``op_counts.json``.

    Attributes:
        counts: the op counts (per inference).
        provenance: what was counted, on which inputs (shown in the report's provenance table).
        info: facts the reader checks (``samples_requested``, ``image_size``).
    """

    counts: OpCounts
    provenance: str
    info: Mapping[str, Any] = field(default_factory=dict)


def write_op_counts(directory: str | os.PathLike[str], entries: Mapping[str, StoredCounts]) -> Path:
    """Writes ``directory/op_counts.json`` (call it before the bundle's manifest is written).

    Returns:
        The file written.
    """
    from neuroposter._io import atomic_write_json

    path = Path(directory) / OP_COUNTS_NAME
    atomic_write_json(path, {"format": FORMAT, "format_version": FORMAT_VERSION,
                             "entries": {k: {"provenance": e.provenance, "info": dict(e.info),
                                             "counts": e.counts.to_dict()} for k, e in entries.items()}})
    return path


def read_op_counts(directory: str | os.PathLike[str]) -> dict[str, StoredCounts]:
    """The entries of ``directory/op_counts.json``.

    Raises:
        DataError: no such file, not valid JSON, another format or format version, or a malformed entry
            (the message names the file).
    """
    from neuroposter._io import read_json
    from neuroposter.errors import DataError

    path = Path(directory) / OP_COUNTS_NAME
    if not path.is_file():
        raise DataError(f"{path}: no stored op counts")
    data = read_json(path)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a neuroposter op-counts file")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: op-counts format version {data.get('format_version')!r}, this neuroposter reads "
                        f"{FORMAT_VERSION}; export the bundle again")
    out: dict[str, StoredCounts] = {}
    for key, e in (data.get("entries") or {}).items():
        try:
            out[str(key)] = StoredCounts(OpCounts.from_dict(e["counts"]), str(e["provenance"]),
                                         dict(e.get("info") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: entry {key!r} is malformed ({type(exc).__name__}: {exc})") from None
    return out


def _simulate_and_count(graph: Any, x: Any, *, name: str, meta: Mapping[str, Any], weight_bits: int,
                        state_bits: int, result: Any | None = None) -> OpCounts:
    """The one counting path of a NIR bundle and a chip bundle: ``graph`` run by the reference simulator
    (same-step, float, records on) on graph-layout inputs ``x`` ``[T, B, ...]``, its records counted by
    :func:`~neuroposter.profiling.counts.count_snn`. ``result``: a recorded run of ``graph`` on ``x`` to reuse."""
    from neuroposter.ir import simulate
    from neuroposter.profiling.counts import count_snn

    res = result if result is not None else simulate(graph, x, mode="same_step", arithmetic="float", record=True)
    return count_snn(graph, res, x=x, weight_bits=weight_bits, state_bits=state_bits, name=name, meta=meta)


def nir_counts(graph: Any, spikes: Any, *, run_dir: str | os.PathLike[str], encoded: str,
               samples_requested: int) -> dict[str, StoredCounts]:
    """The op counts of a NIR graph on test spikes (entry ``"model"``), for :func:`write_op_counts`.

    The graph runs in the reference simulator (same-step, float, records on) and the records are counted by
    :func:`~neuroposter.profiling.counts.count_snn` at :data:`SNN_WEIGHT_BITS` / :data:`SNN_STATE_BITS`.

    Args:
        graph: the bundle's NIR graph.
        spikes: the first test samples ``[T, B, N, D]`` (torch) of the run's encoded set.
        run_dir: the exported run.
        encoded: the encoded set the spikes come from.
        samples_requested: the test samples asked for (``B`` is fewer when the test split is smaller).

    Returns:
        ``{"model": entry}``.
    """
    from neuroposter.ir.lower import to_graph_input

    run_dir = Path(run_dir)
    T, n = int(spikes.shape[0]), int(spikes.shape[1])
    x = to_graph_input(spikes, graph)
    counts = _simulate_and_count(graph, x, name=run_dir.name, weight_bits=SNN_WEIGHT_BITS,
                                 state_bits=SNN_STATE_BITS,
                                 meta={"run": str(run_dir), "encoded": str(encoded), "samples": n, "T": T,
                                       "simulator": _SIMULATOR})
    entry = StoredCounts(counts, f"NIR lowering of {run_dir.name} simulated on {n} test samples of {encoded} "
                                 f"(T={T}, same-step, float)", {"samples_requested": int(samples_requested)})
    return {"model": entry}


def chip_counts(graph_q: Any, x: Any, *, run_dir: str | os.PathLike[str], encoded: str, chip: str,
                samples_requested: int, weight_bits: int | None = None, state_bits: int | None = None,
                result: Any | None = None, graph_label: str = "graph_q") -> dict[str, StoredCounts]:
    """The op counts of a chip bundle's DEPLOYED graph on test inputs, split into the chip part and the host
    part, for :func:`write_op_counts`.

    The deployed graph (the chip's weight grid and exact lowerings, as in ``graph_q.nir``) runs in the reference
    simulator (same-step, float, records on) and is counted by the code that counts a NIR bundle
    (:func:`nir_counts`). The layers are then split by placement (:func:`neuroposter.ir.graph.host_paths`): a host node's
    connection and neuron layers are host operations (a fitted model's host-side projection: its synops are
    the host's, its spikes are the chip's input events); every other layer runs on the chip. The chip's first
    layer is fed by the host neurons' spikes, so its synaptic ops are the chip's input events x fan-out.

    Args:
        graph_q: the deployed chip graph (nested ``nir.NIRGraph``).
        x: the first test samples in the graph's input layout ``[T, B, ...]`` (numpy;
            :func:`~neuroposter.ir.lower.to_graph_input` of the encoded spikes).
        run_dir: the exported run.
        encoded: the encoded set the inputs come from.
        chip: the chip target (``xylo``, ``spinnaker``, ...): the counts' label and provenance.
        samples_requested: the test samples asked for (``B`` is fewer when the test split is smaller).
        weight_bits: the chip's weight precision (byte terms of the chip part; default :data:`SNN_WEIGHT_BITS`).
        state_bits: the chip's state precision (default :data:`SNN_STATE_BITS`).
        result: a recorded simulation of ``graph_q`` on ``x`` (``simulate(..., record=True)``) to reuse instead of
            simulating again.
        graph_label: what the counted graph is, for the provenance (``graph_q``: the chip's weight grid; Loihi
            counts its float graph ``graph.nir``, whose integer version it runs).

    Returns:
        ``{"model": chip entry}``, plus ``{"host": host entry}`` when the graph has host nodes; each entry's
        ``info`` holds ``samples_requested``, ``placement``, ``chip`` and ``layers`` (the node paths counted).
    """
    import numpy as np

    from neuroposter.ir.graph import flatten, host_paths

    run_dir = Path(run_dir)
    xs = np.asarray(x)
    T, n = int(xs.shape[0]), int(xs.shape[1])
    wb = int(weight_bits) if weight_bits else SNN_WEIGHT_BITS
    sb = int(state_bits) if state_bits else SNN_STATE_BITS
    g = flatten(graph_q)
    host = host_paths(g)
    meta = {"run": str(run_dir), "encoded": str(encoded), "samples": n, "T": T, "chip": str(chip),
            "simulator": _SIMULATOR}
    counts = _simulate_and_count(graph_q, xs, name=f"{run_dir.name}@{chip}", meta=meta, weight_bits=wb,
                                 state_bits=sb, result=result)
    what = f"deployed {chip} graph of {run_dir.name} ({graph_label}) simulated on {n} test samples of {encoded} " \
           f"(T={T}, same-step, float)"
    chip_layers = tuple(lc for lc in counts.layers if lc.name not in host)
    out = {"model": StoredCounts(replace(counts, layers=chip_layers, meta={**meta, "placement": "chip"}),
                                 f"{what}: the layers on the chip",
                                 {"samples_requested": int(samples_requested), "placement": "chip",
                                  "chip": str(chip), "layers": [lc.name for lc in chip_layers]})}
    host_layers = tuple(lc for lc in counts.layers if lc.name in host)
    if host_layers:
        # the host runs in float: its byte terms at the host's precision, not the chip's
        hc = replace(counts, name=f"{run_dir.name}@host", layers=host_layers,
                     meta={**meta, "placement": HOST_PLACEMENT}).with_precision(HOST_WEIGHT_BITS, HOST_STATE_BITS)
        out["host"] = StoredCounts(hc, f"{what}: the host-side layers (placement=host, float on the host CPU)",
                                   {"samples_requested": int(samples_requested), "placement": HOST_PLACEMENT,
                                    "chip": str(chip), "layers": [lc.name for lc in host_layers]})
    return out


def onnx_counts(onnx_file: str | os.PathLike[str], *, name: str,
                location: str | os.PathLike[str]) -> dict[str, StoredCounts]:
    """The op counts of an ONNX model (and of the image backbone it holds, if any), for :func:`write_op_counts`.

    Args:
        onnx_file: the ONNX file (the bundle's ``model.onnx``, byte for byte).
        name: the run's name (the counts' label).
        location: where the file will be once the bundle is in place (the provenance names it).

    Returns:
        The entries: ``"model"``, and ``"frontend"`` when the model holds a ``backbone`` on images
        (:func:`~neuroposter.profiling.onnx_counts.backbone_cut`).
    """
    from neuroposter._io import sha256_file
    from neuroposter.profiling.onnx_counts import backbone_cut, count_onnx

    digest = sha256_file(onnx_file)[:12]
    where = f"{location} (sha256 {digest})"
    entries = {"model": StoredCounts(count_onnx(onnx_file, name=name, weight_bits=ANN_WEIGHT_BITS, source=where),
                                     f"ONNX bundle {where}")}
    cut = backbone_cut(onnx_file)
    if cut is not None:
        h, w = cut.image_size
        how = f"backbone sub-graph ({cut.input_name} -> {cut.output_name}) of the {name} bundle {where}"
        entries["frontend"] = StoredCounts(
            count_onnx(cut.model, name="densenet169-frontend", source=f"{how}, {h}x{w} input"),
            f"DenseNet-169 front end: {how}; {h}x{w} input; counted without re-exporting", {"image_size": [h, w]})
    return entries
