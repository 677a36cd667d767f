"""The report's data banner: which posters and which DenseNet-169 weights its numbers rest on.

Read from the artifacts' manifests, never assumed: a run's manifest names its feature store (or dataset), the
feature store's manifest records the DenseNet-169 weights id (``"imagenet"``, ``"random"`` -- what
``--weights auto`` falls back to offline -- or ``"file:<sha>"``) and its dataset, the dataset's manifest names the
``MovieGenre.csv`` it was imported from, and that CSV's folder holds the synthetic generator's manifest
(``generator: synth``) when the posters are synthetic. The test-split size and the genres come from the
dataset's ``data_report.json`` / manifest.

The same facts go on the report's first screen (:func:`banner_text`) and into every CSV the report writes, as
the provenance columns :data:`PROVENANCE_COLUMNS` appended to each table (:func:`with_provenance`), so a CSV
read alone still says what data it describes (plain columns: ``pd.read_csv`` and ``csv.DictReader`` read it
unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

__all__ = ["DataProvenance", "PROVENANCE_COLUMNS", "data_provenance", "banner_text", "with_provenance"]

PROVENANCE_COLUMNS = ["data_posters", "data_frontend_weights", "data_test_posters", "data_genres"]


@dataclass
class DataProvenance:
    """What the report's numbers were measured on.

    Attributes:
        posters: ``"synthetic"`` (the built-in generator), ``"kaggle"`` (a MovieGenre.csv import) or
            ``"unknown"`` (with the reason in ``notes``); several values joined by ``" + "`` when the runs
            disagree.
        weights: the DenseNet-169 weights id of the feature store(s) (``"imagenet"``, ``"random"``, ``"file:..."``;
            ``"unknown"``).
        weights_note: the feature store's own note on its weights (e.g. the offline fallback to random).
        n_test: test posters (None: unknown).
        genres: the genre vocabulary (empty: unknown).
        notes: what could not be read.
    """

    posters: str = "unknown"
    weights: str = "unknown"
    weights_note: str = ""
    n_test: int | None = None
    genres: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def columns(self) -> dict[str, Any]:
        """The provenance columns' values (:data:`PROVENANCE_COLUMNS`)."""
        return {"data_posters": self.posters, "data_frontend_weights": self.weights,
                "data_test_posters": self.n_test if self.n_test is not None else "unknown",
                "data_genres": len(self.genres) if self.genres else "unknown"}


def _manifest(path: Path | None) -> dict[str, Any]:
    """``path``'s manifest, or {} (the banner reports what it cannot read; it never fails the report)."""
    from neuroposter.manifest import MANIFEST_NAME, read_manifest

    if path is None or not (path / MANIFEST_NAME).is_file():
        return {}
    try:
        return dict(read_manifest(path))
    except Exception:  # noqa: BLE001 - an unreadable manifest is reported as unknown, not raised
        return {}


def _get(man: Mapping[str, Any], key: str) -> Any:
    """A manifest field, top level first, then ``extra``."""
    v = man.get(key)
    return v if v is not None else (man.get("extra") or {}).get(key)


def _poster_source(dataset: Path, dman: Mapping[str, Any]) -> tuple[str, str]:
    """``("synthetic" | "kaggle" | "unknown", note)`` from the dataset's CSV input and that folder's manifest."""
    from neuroposter.manifest import input_path

    csv = input_path(dataset, dman, "csv")
    if csv is None:
        return "unknown", f"{dataset}: its manifest names no MovieGenre.csv input"
    raw = _manifest(csv.parent)
    if _get(raw, "generator") == "synth":
        return "synthetic", ""
    if raw or csv.is_file():
        return "kaggle", ""
    return "unknown", f"{csv.parent} (the posters' folder) is gone: synthetic or Kaggle cannot be told"


def _test_size(dataset: Path, dman: Mapping[str, Any]) -> int | None:
    from neuroposter._io import read_json

    p = dataset / "data_report.json"
    try:
        n = ((read_json(p) if p.is_file() else {}).get("split_sizes") or {}).get("test")
    except Exception:  # noqa: BLE001
        n = None
    if n is None:
        n = (_get(dman, "split_sizes") or {}).get("test")
    return int(n) if isinstance(n, (int, float)) else None


def data_provenance(runs: Sequence[Any]) -> DataProvenance:
    """The data banner's facts for ``runs`` (``.path``, ``.manifest``, ``.metrics``), from their inputs'
    manifests; what cannot be read is ``"unknown"`` with a note."""
    from neuroposter.manifest import input_path

    posters: dict[str, None] = {}
    weights: dict[str, None] = {}
    notes: list[str] = []
    wnote, n_test, genres = "", None, []
    seen: set[str] = set()
    for r in runs:
        feats = input_path(r.path, r.manifest, "features")
        fman = _manifest(feats)
        dataset = input_path(feats, fman, "dataset") if fman else None
        if dataset is None:
            dataset = input_path(r.path, r.manifest, "dataset")
        if fman:
            w = str(_get(fman, "weights") or (fman.get("config") or {}).get("weights") or "unknown")
            weights[w] = None
            wnote = wnote or str(_get(fman, "weights_note") or "")
        if dataset is None or str(dataset) in seen:
            continue
        seen.add(str(dataset))
        dman = _manifest(dataset)
        if not dman:
            notes.append(f"{dataset}: no readable dataset manifest")
            continue
        src, why = _poster_source(dataset, dman)
        posters[src] = None
        if why:
            notes.append(why)
        n_test = n_test if n_test is not None else _test_size(dataset, dman)
        genres = genres or [str(g) for g in (_get(dman, "genres") or [])]
    if n_test is None:   # fall back to the runs' own record of their split
        n = next((((r.metrics or {}).get("split_sizes") or {}).get("test") for r in runs
                  if ((r.metrics or {}).get("split_sizes") or {}).get("test") is not None), None)
        n_test = int(n) if isinstance(n, (int, float)) else None
    if not genres:
        genres = next((list(g) for g in ((r.metrics or {}).get("genres") for r in runs) if g), [])
    if not weights:
        notes.append("no run records a feature store: the DenseNet-169 weights are unknown")
    return DataProvenance(posters=" + ".join(posters) or "unknown", weights=" + ".join(weights) or "unknown",
                          weights_note=wnote, n_test=n_test, genres=genres, notes=notes)


_POSTERS = {"synthetic": "SYNTHETIC posters (the built-in generator, not real movie posters)",
            "kaggle": "Kaggle movie posters (MovieGenre.csv import)"}


def _weights_text(w: str) -> str:
    if w == "random":
        return ("RANDOM DenseNet-169 weights (no ImageNet knowledge in the features; `--weights auto` fell back to "
                "them)")
    if w == "imagenet":
        return "ImageNet DenseNet-169 weights"
    if w.startswith("file:"):
        return f"DenseNet-169 weights from a file ({w})"
    return f"DenseNet-169 weights: {w}"


def banner_text(p: DataProvenance) -> str:
    """One line for the report's first screen: posters, front-end weights, test posters and genres."""
    parts = [_POSTERS.get(p.posters, f"posters: {p.posters}"),
             " + ".join(_weights_text(w) for w in p.weights.split(" + ")),
             f"{p.n_test if p.n_test is not None else 'an unknown number of'} test posters, "
             f"{len(p.genres) if p.genres else 'unknown'} genres"]
    text = "Data: " + "; ".join(parts) + "."
    if p.n_test is not None and p.n_test < 30:
        text += f" With {p.n_test} test posters every accuracy number here is very noisy."
    if p.notes:
        text += " (" + "; ".join(p.notes) + ")"
    return text


def with_provenance(df: pd.DataFrame, p: DataProvenance) -> pd.DataFrame:
    """``df`` with the provenance columns appended (same value in every row; an empty table keeps its header)."""
    out = df.copy()
    for k, v in p.columns().items():
        out[k] = pd.Series([v] * len(out), index=out.index, dtype=object)
    return out
