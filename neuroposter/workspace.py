"""The workspace: where every command finds what the previous one wrote.

Layout (default root ``./workspace``)::

    raw/<name>/            Kaggle-format inputs: MovieGenre.csv + posters/<imdbId>.jpg (synth writes here)
    datasets/<name>/       imported dataset: items.csv, labels, genres.json, manifest.json, data_report.json
    features/<name>/       DenseNet-169 feature store (memory-mapped), manifest.json
    encoded/<name>/        fitted spike encoder, encoded events, encoding report, manifest.json
    runs/<name>/           training runs: config, checkpoint, metrics.json, curves, manifest.json
    reports/<name>/        energy profiling reports
    exports.json           where this workspace's export bundles are (relative to the root)

Wherever a command takes a NAME of one of these artifacts it also takes a path (anything with a
``/`` in it, e.g. ``--dataset /data/kaggle_posters``), so artifacts outside the workspace slot in
without copying. A name is one safe path component (:func:`neuroposter.artifact.check_name`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_WORKSPACE", "DEFAULT_NAME", "EXPORTS_NAME", "Workspace"]

DEFAULT_WORKSPACE = Path("workspace")
DEFAULT_NAME = "default"
EXPORTS_NAME = "exports.json"


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace root."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None) -> "Workspace":
        """The workspace at ``root`` (default ``./workspace``)."""
        return cls(Path(root) if root is not None else DEFAULT_WORKSPACE)

    def _named(self, kind: str, name: str) -> Path:
        """``root/kind/name``, or ``name`` itself when it is a path (absolute or containing a separator).

        Raises:
            UsageError: ``name`` is neither a path nor one safe path component (``.``, ``..``, ``""``).
        """
        if os.path.isabs(name) or os.sep in name or (os.altsep and os.altsep in name):
            return Path(name)
        from neuroposter.artifact import check_name

        return self.root / kind / check_name(name, f"{kind[:-1] if kind.endswith('s') else kind} name")

    def raw(self, name: str = "synth") -> Path:
        """Folder holding a Kaggle-format ``MovieGenre.csv`` and ``posters/``."""
        return self._named("raw", name)

    def dataset(self, name: str = DEFAULT_NAME) -> Path:
        """An imported dataset."""
        return self._named("datasets", name)

    def features(self, name: str = DEFAULT_NAME) -> Path:
        """A feature store."""
        return self._named("features", name)

    def encoded(self, name: str = DEFAULT_NAME) -> Path:
        """An encoded (spike) set."""
        return self._named("encoded", name)

    def run(self, name: str) -> Path:
        """A training run."""
        return self._named("runs", name)

    def runs(self) -> Path:
        """The folder of all runs."""
        return self.root / "runs"

    def report(self, name: str = DEFAULT_NAME) -> Path:
        """An energy profiling report."""
        return self._named("reports", name)

    # -- where this workspace's export bundles are -------------------------------------------------

    def record_export(self, bundle: str | os.PathLike[str]) -> None:
        """Records a bundle folder in ``exports.json`` (relative to the root), so ``report`` finds it
        from any current folder and after the workspace and its exports are moved together."""
        from neuroposter._io import atomic_write_json, read_json
        from neuroposter.artifact import artifact_lock, clean_stale

        reg = self.root / EXPORTS_NAME
        rel = os.path.relpath(os.path.abspath(bundle), os.path.abspath(self.root))
        with artifact_lock(reg, wait=60.0):
            clean_stale(reg)
            entries = read_json(reg).get("bundles", []) if reg.is_file() else []
            entries = [e for e in entries if isinstance(e, str) and e != rel] + [rel]
            atomic_write_json(reg, {"bundles": sorted(entries)})

    def exports(self) -> list[Path]:
        """The recorded bundle folders that still exist (as paths usable from the current folder)."""
        from neuroposter._io import read_json

        reg = self.root / EXPORTS_NAME
        if not reg.is_file():
            return []
        out = []
        for rel in read_json(reg).get("bundles", []):
            p = Path(os.path.normpath(self.root / rel))
            if p.is_dir():
                out.append(p)
        return out
