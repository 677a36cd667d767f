"""Artifact manifests: what produced an artifact, from which inputs, with which config and libraries.

Every artifact directory (dataset, feature store, encoded set, run, export bundle, report)
holds a ``manifest.json`` written by :func:`write_manifest`. Commands read their inputs with
:func:`require_manifest`, which refuses a missing, mismatching or changed artifact with a message
that says what to re-run.

Two guarantees live here:

- *Movable*: input paths are stored relative to the artifact's own folder (with the absolute path
  beside them as a fallback), and :func:`input_path` resolves them, so a workspace copied or moved
  elsewhere keeps working.
- *Unchanged*: the manifest lists every file of the artifact with its size and SHA-256
  (:func:`record_files`); :func:`verify_files` checks them on every read — cheaply by default (a file
  whose size and modification time match the last verification is not re-hashed), fully when
  ``NEUROPOSTER_VERIFY=full`` (the CLI's ``--verify``).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

from neuroposter import __version__
from neuroposter._io import atomic_write_json, read_json, sha256_file
from neuroposter.errors import DataError, ManifestError

__all__ = ["MANIFEST_NAME", "library_versions", "write_manifest", "read_manifest", "require_manifest",
           "record_files", "verify_files", "input_path", "verify_mode"]

MANIFEST_NAME = "manifest.json"
# Per-artifact cache of the last successful verification: {relpath: [size, mtime_ns]}.
VERIFIED_NAME = ".verified.json"
_NOT_HASHED = (MANIFEST_NAME, VERIFIED_NAME)

log = logging.getLogger(__name__)

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
    directory = Path(directory)
    manifest: dict[str, Any] = {
        "kind": kind,
        "key": key,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["neuroposter", *sys.argv[1:]]) if sys.argv else None,
        "inputs": {k: _relative_entry(v, directory) for k, v in dict(inputs or {}).items()},
        "config": dict(config or {}),
        "libraries": library_versions(),
    }
    if extra:
        manifest.update(extra)
    manifest["files"] = _hash_tree(directory)
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    _write_verified(directory, manifest["files"])
    return manifest


def _relative_entry(entry: Any, directory: Path) -> Any:
    """An input entry with its ``path`` made relative to ``directory`` (``abs_path`` kept beside it)."""
    if not isinstance(entry, Mapping) or not entry.get("path"):
        return entry
    out = dict(entry)
    absolute = Path(os.path.abspath(str(entry["path"])))
    out["path"] = os.path.relpath(absolute, os.path.abspath(directory))
    out["abs_path"] = str(absolute)
    return out


def input_path(directory: str | os.PathLike[str], manifest: Mapping[str, Any], name: str) -> Path | None:
    """Where input ``name`` of the artifact at ``directory`` is now, or None if the manifest has none.

    A relative path is resolved against ``directory`` (so moved workspaces work); when nothing is
    there, the absolute path recorded at write time is tried (an input outside the moved folder).
    """
    entry = (manifest.get("inputs") or {}).get(name)
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, Mapping) or not entry.get("path"):
        return None
    rel = Path(str(entry["path"]))
    if rel.is_absolute():
        return rel
    here = Path(os.path.normpath(Path(os.path.abspath(directory)) / rel))
    if here.exists() or not entry.get("abs_path"):
        return here
    fallback = Path(str(entry["abs_path"]))
    return fallback if fallback.exists() else here


def _files_of(directory: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(root, f), directory)
            if rel not in _NOT_HASHED:
                out.append(rel)
    return out


def _hash_tree(directory: Path, known: Mapping[str, Any] | None = None,
               stamps: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file; a file in ``known`` whose stamp is unchanged is not re-read."""
    out = {}
    for rel in _files_of(directory):
        st = os.stat(directory / rel)
        prev = (known or {}).get(rel)
        if prev and (stamps or {}).get(rel) == [st.st_size, st.st_mtime_ns]:
            out[rel] = {"size": st.st_size, "sha256": prev["sha256"]}
        else:
            out[rel] = {"size": st.st_size, "sha256": sha256_file(directory / rel)}
    return out


def _write_verified(directory: Path, files: Mapping[str, Any]) -> None:
    stamps = {}
    for rel in files:
        st = os.stat(directory / rel)
        stamps[rel] = [st.st_size, st.st_mtime_ns]
    try:
        atomic_write_json(directory / VERIFIED_NAME, stamps)
    except OSError:  # a read-only artifact is verified in full each time instead
        pass


def record_files(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Re-hashes every file of ``directory`` into its manifest (after files were added or changed)."""
    directory = Path(directory)
    manifest = read_json(directory / MANIFEST_NAME)
    stamps = read_json(directory / VERIFIED_NAME) if (directory / VERIFIED_NAME).is_file() else {}
    manifest["files"] = _hash_tree(directory, manifest.get("files"), stamps)
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    _write_verified(directory, manifest["files"])
    return manifest


def verify_mode() -> str:
    """``"full"`` (re-hash every file on every read) or ``"cheap"`` (default; size + mtime cache)."""
    return "full" if os.environ.get("NEUROPOSTER_VERIFY", "").lower() == "full" else "cheap"


def verify_files(directory: str | os.PathLike[str], manifest: Mapping[str, Any], *, rerun: str,
                 full: bool | None = None) -> None:
    """Checks that every file the manifest lists is there with its recorded content.

    Raises:
        ManifestError: a file is missing, changed, or the manifest lists no files (written by an
            older neuroposter); the message names the file and the command that rebuilds it.
    """
    directory = Path(directory)
    files = manifest.get("files")
    if not isinstance(files, Mapping):
        raise ManifestError(f"{directory}: its manifest records no file hashes (written by an older "
                            f"neuroposter); run `{rerun}` again")
    full = verify_mode() == "full" if full is None else full
    stamps: dict[str, Any] = {}
    if not full and (directory / VERIFIED_NAME).is_file():
        try:
            stamps = read_json(directory / VERIFIED_NAME)
        except DataError:
            stamps = {}
    rehashed = False
    for rel, info in files.items():
        path = directory / rel
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ManifestError(f"{path} is missing from its {manifest.get('kind')}; run `{rerun}` again") from None
        if st.st_size != info.get("size"):
            raise ManifestError(f"{path} has changed since it was written (size {st.st_size} bytes, "
                                f"recorded {info.get('size')}); run `{rerun}` again")
        if not full and stamps.get(rel) == [st.st_size, st.st_mtime_ns]:
            continue
        if sha256_file(path) != info.get("sha256"):
            raise ManifestError(f"{path} has changed since it was written (its content hash differs from the "
                                f"manifest's); run `{rerun}` again")
        rehashed = True
    if rehashed:
        _write_verified(directory, files)


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
    if manifest.get("status") == "failed":
        raise ManifestError(f"{directory} is a failed {kind} (kept for inspection: {manifest.get('failure')}); "
                            f"run `{rerun}` again")
    verify_files(directory, manifest, rerun=rerun)
    return manifest
