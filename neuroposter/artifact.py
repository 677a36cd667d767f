"""Writing an artifact folder safely: safe names, one writer at a time, nothing destroyed by a path.

Every command that writes a dataset, feature store, encoded set, run, bundle or report goes through
:func:`write_artifact`, which

1. takes a lock per artifact (``filelock``; a second writer fails at once with a clear message);
2. refuses a destination that is not an artifact of the same kind (a workspace, a raw poster folder,
   another kind of artifact, a folder inside an artifact, an input of the command), and an existing
   artifact of the same kind unless ``force`` is given;
3. removes temporaries that a killed earlier writer of the same artifact left behind;
4. yields a temporary sibling folder; on success it hashes every file into the manifest
   (:func:`neuroposter.manifest.record_files`) and swaps the folder in atomically — or, when the
   writer called :func:`reject` (a failed verification), keeps it beside the good one as
   ``<name>.failed`` and leaves the good artifact untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from neuroposter._io import _UMASK, atomic_write_json, read_json, swap_dir
from neuroposter.errors import ArtifactBusyError, ResourceError, UsageError

__all__ = [
    "NAME_PATTERN",
    "check_name",
    "artifact_lock",
    "check_destination",
    "check_free_space",
    "write_artifact",
    "reject",
    "failed_path",
    "clean_stale",
]

# One path component: letters, digits, '.', '_', '-', '+'; starts with a letter or digit.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# Suffixes the project gives its own temporaries and siblings: never an artifact name.
_RESERVED_SUFFIXES = (".tmp", ".old", ".lock", ".partial", ".part", ".failed")
_REJECTED = ".rejected"
_MANIFEST = "manifest.json"


def check_name(name: str, what: str = "name") -> str:
    """Returns ``name`` if it is one safe path component, else raises a usage error.

    Raises:
        UsageError: empty, ``.``/``..``, a separator, a leading dot or dash, other characters, or a
            reserved suffix.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name.endswith(_RESERVED_SUFFIXES):
        raise UsageError(
            f"{what} {name!r} is not a valid artifact name: use 1-128 letters, digits, '.', '_', '-' or '+', "
            f"starting with a letter or digit and not ending in {', '.join(_RESERVED_SUFFIXES)} "
            f"(to write elsewhere, give a path containing '/')"
        )
    return name


# Locks held by this process, by lock-file path: re-entrant, so a command that locks an artifact for
# its whole run can write it through write_artifact without deadlocking on itself.
_HELD: dict[str, object] = {}


def _lock_file(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def artifact_lock(path: str | os.PathLike[str], *, wait: float = 0.0) -> Iterator[None]:
    """Holds the lock of the artifact at ``path`` (``.<name>.lock`` beside it).

    Args:
        path: the artifact folder (or file).
        wait: seconds to wait for another holder; 0 fails at once.

    Raises:
        ArtifactBusyError: another process holds the lock.
    """
    from filelock import FileLock, Timeout

    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    lf = str(_lock_file(path))
    lock = _HELD.get(lf)
    if lock is None:
        lock = FileLock(lf)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise ArtifactBusyError(
            f"{path} is being written by another neuroposter process (lock {lf}); "
            "wait for it to finish, then run again"
        ) from None
    _HELD[lf] = lock
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked:
            _HELD.pop(lf, None)


def _kind_of(directory: Path) -> str | None:
    """The manifest kind of ``directory`` ('' for an unreadable manifest), None without a manifest."""
    m = directory / _MANIFEST
    if not m.is_file():
        return None
    try:
        data = read_json(m)
    except Exception:  # noqa: BLE001 - an unreadable manifest still marks an artifact
        return ""
    return str(data.get("kind", "")) if isinstance(data, dict) else ""


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def check_destination(
    path: str | os.PathLike[str],
    kind: str,
    *,
    force: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    option: str = "--name",
) -> None:
    """Refuses an output location whose replacement could destroy data.

    Allowed: a path that does not exist, an empty folder, or (with ``force``) a folder holding an
    artifact of the same ``kind``. Refused: a file, a folder of other files (a workspace, a raw
    poster folder, a folder of runs), another kind of artifact, a folder inside an artifact, and any
    location overlapping one of ``protect`` (the command's inputs).

    Raises:
        UsageError: the location is refused; the message says why and what to do.
    """
    path = Path(path)
    real = path.resolve()
    for p in protect:
        if p is not None and _overlaps(real, Path(p).resolve()):
            raise UsageError(f"{path} overlaps {p}, an input of this command; choose another {option}")
    for parent in real.parents:
        pk = _kind_of(parent)
        if pk is not None:
            raise UsageError(f"{path} lies inside the {pk or 'unknown'} artifact {parent}; "
                             f"choose another {option}")
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise UsageError(f"{path} exists and is not an artifact folder; choose another {option}")
    existing = _kind_of(path)
    if existing is None:
        entries = [e for e in path.iterdir()]
        if entries:
            raise UsageError(f"{path} holds files that are not a neuroposter {kind} ({len(entries)} entries); "
                             f"choose another {option} (it is never replaced)")
        return
    if existing != kind:
        raise UsageError(f"{path} holds {_a(existing or 'unreadable')} artifact, not {_a(kind)}; "
                         f"choose another {option} (it is never replaced)")
    if not force:
        raise UsageError(f"{path} already holds {_a(kind)}; pass --force to replace it, or choose another {option}")


def check_free_space(path: str | os.PathLike[str], needed_bytes: int, what: str = "") -> None:
    """Raises :class:`ResourceError` when the filesystem of ``path`` has less than ``needed_bytes`` free."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes > free:
        raise ResourceError(f"no space left on device: {path} (about {needed_bytes / 1e6:,.0f} MB needed"
                            f"{' for ' + what if what else ''}, {free / 1e6:,.0f} MB free)")


def failed_path(path: str | os.PathLike[str]) -> Path:
    """Where a rejected (failed-verification) result of ``path`` is kept: ``<name>.failed`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.failed")


def clean_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Removes temporaries of ``path`` that a killed writer left (call with the artifact's lock held)."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    # exactly this artifact's temporaries (tempfile's 8 random characters), not those of "<name>.x"
    mine = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")
    for p in path.parent.iterdir():
        if mine.match(p.name):
            _remove(p)
            removed.append(p)
    old = path.with_name(f".{path.name}.old")
    if os.path.lexists(old):
        _remove(old)
        removed.append(old)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def reject(tmp: str | os.PathLike[str], reason: str) -> None:
    """Marks the folder being written as a failed result: it is kept as ``<name>.failed``, not swapped in."""
    atomic_write_json(Path(tmp) / _REJECTED, {"reason": str(reason)})


@contextlib.contextmanager
def write_artifact(
    path: str | os.PathLike[str],
    kind: str,
    *,
    force: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    option: str = "--name",
    needs_bytes: int | None = None,
) -> Iterator[Path]:
    """Yields a temporary folder that becomes the artifact ``path`` when the block succeeds.

    The block must write ``manifest.json`` (:func:`neuroposter.manifest.write_manifest`) of ``kind``.
    See the module docstring for the guarantees.

    Args:
        path: the artifact folder.
        kind: the manifest kind the block writes.
        force: replace an existing artifact of the same kind.
        protect: inputs of the command that the destination must not overlap.
        option: the option that names the destination (quoted in errors).
        needs_bytes: an estimate of the size, checked against the free space first.

    Raises:
        UsageError: refused destination. ArtifactBusyError: another writer. ResourceError: disk full.
    """
    from neuroposter.manifest import record_files

    path = Path(path)
    protect = [p for p in protect if p is not None]
    check_destination(path, kind, force=force, protect=protect, option=option)
    with artifact_lock(path):
        clean_stale(path)
        check_destination(path, kind, force=force, protect=protect, option=option)  # again, under the lock
        if needs_bytes:
            check_free_space(path.parent if path.parent.exists() else path, needs_bytes, str(path))
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            os.chmod(tmp, 0o777 & ~_UMASK)
            yield tmp
            if not (tmp / _MANIFEST).is_file():
                raise RuntimeError(f"internal error: {kind} at {path} was written without a manifest")
            if (tmp / _REJECTED).is_file():
                _keep_failed(tmp, path)
            else:
                record_files(tmp)
                swap_dir(tmp, path)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ResourceError(f"no space left on device while writing {path}; nothing was replaced "
                                    "(free some space and run again)") from None
            raise
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)


def _keep_failed(tmp: Path, path: Path) -> None:
    """Moves a rejected temporary folder to ``<name>.failed`` (replacing an older failed one)."""
    from neuroposter.manifest import record_files

    reason = read_json(tmp / _REJECTED).get("reason")
    (tmp / _REJECTED).unlink()
    m = read_json(tmp / _MANIFEST)
    m.update({"status": "failed", "failure": reason})
    atomic_write_json(tmp / _MANIFEST, m)
    record_files(tmp)
    dst = failed_path(path)
    if os.path.lexists(dst):
        _remove(dst)
    os.replace(tmp, dst)
