"""Shared helpers of the export targets: bundle folders, manifests, summaries, run inputs.

A bundle is ``export/<target>/<run>/`` (or ``--out``) holding the artifacts, ``manifest.json``
(kind ``"export"``: source run, hashes of the artifacts and of the run checkpoint, library
versions, options) and ``summary.json`` (what the target measured and checked).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from neuroposter._io import atomic_dir, atomic_write_json, sha256_file
from neuroposter.errors import DataError, ManifestError
from neuroposter.manifest import write_manifest

__all__ = [
    "DEFAULT_RUNS",
    "default_run",
    "bundle_dir",
    "write_bundle",
    "run_inputs",
    "load_test_spikes",
]

# Default run per target: the SDT for the neuromorphic targets; onnx picks by --model.
DEFAULT_RUNS = {"onnx": "cnn"}


def default_run(target: str, model: str | None = None) -> str:
    """The run a target exports when ``--run`` is not given (``sdt``; onnx: ``--model``, default cnn)."""
    if target == "onnx":
        return model or DEFAULT_RUNS["onnx"]
    return "sdt"


@contextlib.contextmanager
def bundle_dir(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder that atomically replaces ``out_dir`` when the block succeeds."""
    with atomic_dir(out_dir) as tmp:
        yield tmp


def write_bundle(
    directory: str | os.PathLike[str],
    *,
    target: str,
    run_dir: str | os.PathLike[str],
    run_manifest: Mapping[str, Any] | None,
    artifacts: list[str],
    summary: Mapping[str, Any],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Writes ``summary.json`` and ``manifest.json`` of a bundle.

    Args:
        directory: the bundle folder (usually the temporary one of :func:`bundle_dir`).
        target: target name.
        run_dir: the exported run.
        run_manifest: the run's manifest (its key is recorded).
        artifacts: file names inside ``directory`` to hash.
        summary: the summary to write.
        options: the export options (the manifest's config).

    Returns:
        The manifest.
    """
    directory, run_dir = Path(directory), Path(run_dir)
    hashes = {name: sha256_file(directory / name) for name in artifacts}
    ckpt = run_dir / "checkpoint.pt"
    run_info = {
        "path": str(run_dir.resolve()),
        "key": (run_manifest or {}).get("key"),
        "checkpoint_sha256": sha256_file(ckpt) if ckpt.is_file() else None,
    }
    atomic_write_json(directory / "summary.json", summary)
    return write_manifest(directory, "export", inputs={"run": run_info}, config=dict(options),
                          extra={"target": target, "source_run": run_dir.name, "artifacts": hashes})


def run_inputs(run_manifest: Mapping[str, Any], name: str) -> Path | None:
    """Path of the input artifact ``name`` (``"encoded"``, ``"features"``, ``"dataset"``) of a run."""
    entry = (run_manifest.get("inputs") or {}).get(name)
    if isinstance(entry, Mapping) and entry.get("path"):
        return Path(str(entry["path"]))
    if isinstance(entry, str):
        return Path(entry)
    return None


def load_test_spikes(run_manifest: Mapping[str, Any], workspace: str | os.PathLike[str], n: int
                     ) -> tuple[Any, dict[str, Any]]:
    """The first ``n`` test samples of the encoded set a run was trained on.

    Returns:
        ``(spikes float32 [T, B, N, D] torch tensor, info)`` with ``info = {"encoded": path, "T", "samples"}``.

    Raises:
        ManifestError: the encoded set is missing (says what to re-run).
    """
    import numpy as np
    import torch

    from neuroposter.encode import load_encoded

    path = run_inputs(run_manifest, "encoded")
    if path is None or not path.exists():
        from neuroposter.workspace import Workspace

        fallback = Workspace.at(workspace).encoded()
        if path is not None and not path.exists() and not fallback.exists():
            raise ManifestError(f"the encoded set {path} of the run is missing; run `neuroposter encode` again")
        path = fallback
    if not path.exists():
        raise ManifestError(f"no encoded set at {path}; run `neuroposter encode` first")
    enc = load_encoded(path)
    size = enc.size("test")
    if size == 0:
        raise DataError(f"{path} has no test samples")
    k = min(int(n), size)
    spikes = np.stack([enc.spikes("test", i) for i in range(k)], axis=1)  # [T, B, N, D]
    return torch.from_numpy(spikes.astype(np.float32)), {"encoded": str(path), "T": int(enc.T), "samples": k}
