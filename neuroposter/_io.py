"""Atomic writes, content hashes and safe path joins: the only way the project writes artifacts."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from neuroposter.errors import DataError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_path",
    "atomic_dir",
    "swap_dir",
    "read_json",
    "sha256_file",
    "sha256_bytes",
    "sha256_json",
    "safe_join",
    "to_jsonable",
]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; artifacts get the usual permissions instead.
_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary name, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Converts numpy scalars/arrays, paths, tuples and sets to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not valid JSON
        return None
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (numpy values converted)."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Reads a JSON file, with a clear error when it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary directory that replaces ``path`` as a whole on success.

    The previous directory (if any) is only removed after the new one is complete, so an
    interrupted run leaves the old artifact intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        swap_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchanges two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    global _RENAMEAT2
    if _RENAMEAT2 is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _RENAMEAT2 = libc.renameat2 if hasattr(libc, "renameat2") else False
        except OSError:
            _RENAMEAT2 = False
    if _RENAMEAT2 is False:
        return False
    import ctypes

    at_fdcwd, rename_exchange = -100, 2
    if _RENAMEAT2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


_RENAMEAT2: Any = None


def swap_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Replaces folder ``dst`` by the finished folder ``src`` (same filesystem).

    Where the kernel allows it the two are exchanged in one atomic step, so a reader always finds
    ``dst`` complete (old or new); elsewhere the old ``dst`` is moved aside first and removed only
    after ``src`` is in place, so ``dst`` is never half-written (but briefly absent).
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        if _exchange(src, dst):
            shutil.rmtree(src, ignore_errors=True)   # src now holds the old folder
            return
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of a canonical JSON rendering of ``obj`` (sorted keys)."""
    return sha256_bytes(json.dumps(to_jsonable(obj), sort_keys=True).encode("utf-8"))


def safe_join(base: str | os.PathLike[str], rel: str) -> Path:
    """Joins ``rel`` under ``base`` and refuses any result outside ``base``.

    Absolute paths, ``..`` components and symlinks that escape ``base`` are rejected, so a
    path read from a data file can never reach outside its folder.

    Raises:
        DataError: the path escapes ``base``.
    """
    base_resolved = Path(base).resolve()
    if not rel or os.path.isabs(rel) or "\x00" in rel:
        raise DataError(f"path {rel!r} is not a relative path inside {base}")
    candidate = (base_resolved / rel).resolve()
    if candidate != base_resolved and base_resolved not in candidate.parents:
        raise DataError(f"path {rel!r} escapes its folder {base}")
    return candidate
