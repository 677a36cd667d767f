"""Op counts stored in an export bundle (``op_counts.json``): written by the export, read by the report.

The counts of a deployment are made once, by the export that produces it, on the bundle's own artifact, and
kept beside it; the report only reads them (it never lowers, simulates or exports anything).

* ``nir`` bundle: the bundle's graph run by the reference simulator (same-step, float, records on) on the
  first test samples of the run's encoded set, counted by :func:`~neuroposter.profiling.counts.count_snn`
  (8-bit weights, 16-bit state) -- entry ``"model"`` (:func:`nir_counts`).
* ``onnx`` bundle: ``model.onnx`` counted by :func:`~neuroposter.profiling.onnx_counts.count_onnx` (32-bit
  weights) -- entry ``"model"``; for an image model holding the DenseNet-169 feature extractor as its
  ``backbone`` (the CNN), also the backbone's sub-graph at the model's image size -- entry ``"frontend"``, the
  feature front end of every model that reads features (:func:`onnx_counts`).

File format (``FORMAT_VERSION`` 1)::

    {"format": "neuroposter.op_counts", "format_version": 1,
     "entries": {"model": {"provenance": "<text>", "info": {...}, "counts": <OpCounts.to_dict()>},
                 "frontend": {...}}}

``info`` holds what the reader checks: ``samples_requested`` (nir: the test samples asked for; fewer are
used when the test split is smaller), ``image_size`` (front end: ``[H, W]``). The file is written before the
bundle's manifest, so it is hashed with the bundle like every other bundle file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from neuroposter.profiling.counts import OpCounts

__all__ = ["OP_COUNTS_NAME", "FORMAT", "FORMAT_VERSION", "SNN_WEIGHT_BITS", "SNN_STATE_BITS", "ANN_WEIGHT_BITS",
           "StoredCounts", "write_op_counts", "read_op_counts", "nir_counts", "onnx_counts"]

OP_COUNTS_NAME = "op_counts.json"
FORMAT = "neuroposter.op_counts"
FORMAT_VERSION = 1
# Deployment precisions of the stored counts' byte terms (the report re-prices them per profile with
# OpCounts.with_precision where a view asks for another precision).
SNN_WEIGHT_BITS, SNN_STATE_BITS = 8, 16
ANN_WEIGHT_BITS = 32
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
    from neuroposter.ir import simulate
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling.counts import count_snn

    run_dir = Path(run_dir)
    T, n = int(spikes.shape[0]), int(spikes.shape[1])
    x = to_graph_input(spikes, graph)
    res = simulate(graph, x, mode="same_step", arithmetic="float", record=True)
    counts = count_snn(graph, res, x=x, weight_bits=SNN_WEIGHT_BITS, state_bits=SNN_STATE_BITS, name=run_dir.name,
                       meta={"run": str(run_dir), "encoded": str(encoded), "samples": n, "T": T,
                             "simulator": _SIMULATOR})
    entry = StoredCounts(counts, f"NIR lowering of {run_dir.name} simulated on {n} test samples of {encoded} "
                                 f"(T={T}, same-step, float)", {"samples_requested": int(samples_requested)})
    return {"model": entry}


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
