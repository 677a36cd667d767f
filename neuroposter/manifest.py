"""Artifact manifests: what produced an artifact, from which inputs, with which config and libraries.

Every artifact directory (dataset, feature store, encoded set, run, export bundle, report)
holds a ``manifest.json`` written by :func:`write_manifest`. Commands read their inputs with
:func:`require_manifest`, which refuses a missing or mismatching artifact with a message that
says what to re-run.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

from neuroposter import __version__
from neuroposter._io import atomic_write_json, read_json
from neuroposter.errors import DataError, ManifestError

__all__ = ["MANIFEST_NAME", "library_versions", "write_manifest", "read_manifest", "require_manifest"]

MANIFEST_NAME = "manifest.json"

# Libraries whose versions matter for reproducing an artifact.
_TRACKED = (
    "numpy", "torch", "torchvision", "norse", "nir", "nirtorch", "lava-nc", "lava-dl", "tonic",
    "onnx", "onnxruntime", "pandas", "pillow",
)


def library_versions(names: tuple[str, ...] = _TRACKED) -> dict[str, str | None]:
    """Installed versions of the tracked libraries (None when a library is absent)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "neuroposter": __version__}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(
    directory: str | os.PathLike[str],
    kind: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    key: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``directory/manifest.json`` atomically and returns its content.

    Args:
        directory: the artifact directory.
        kind: artifact kind, e.g. ``"dataset"``, ``"features"``, ``"run"``, ``"export"``.
        inputs: what it was made from, e.g. ``{"dataset": {"path": ..., "key": ...}}``.
        config: the resolved configuration that produced it.
        key: a content key (hash of inputs + config) that later commands compare against.
        extra: any other kind-specific fields.
    """
    manifest: dict[str, Any] = {
        "kind": kind,
        "key": key,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["neuroposter", *sys.argv[1:]]) if sys.argv else None,
        "inputs": dict(inputs or {}),
        "config": dict(config or {}),
        "libraries": library_versions(),
    }
    if extra:
        manifest.update(extra)
    atomic_write_json(Path(directory) / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads ``directory/manifest.json``.

    Raises:
        ManifestError: the manifest is missing or unreadable.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{directory}: no {MANIFEST_NAME} (not a neuroposter artifact, or an interrupted run)")
    try:
        data = read_json(path)
    except DataError as exc:
        raise ManifestError(str(exc)) from None
    if not isinstance(data, dict) or "kind" not in data:
        raise ManifestError(f"{path}: not a neuroposter manifest")
    return data


def require_manifest(
    directory: str | os.PathLike[str], kind: str, *, rerun: str, key: str | None = None
) -> dict[str, Any]:
    """Reads a manifest and checks its kind (and key, when given).

    Args:
        directory: the artifact directory.
        kind: the expected artifact kind.
        rerun: the command that (re)creates the artifact, quoted in the error message.
        key: the expected content key, if the caller knows it.

    Raises:
        ManifestError: missing, wrong kind or stale; the message says what to re-run.
    """
    directory = Path(directory)
    if not directory.exists():
        raise ManifestError(f"{directory} does not exist; run `{rerun}` first")
    manifest = read_manifest(directory)
    if manifest.get("kind") != kind:
        raise ManifestError(
            f"{directory} holds a {manifest.get('kind')!r} artifact, expected {kind!r}; run `{rerun}`"
        )
    if key is not None and manifest.get("key") != key:
        raise ManifestError(f"{directory} is stale (its inputs or config changed); run `{rerun}` again")
    return manifest
