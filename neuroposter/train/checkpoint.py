"""Checkpoints: atomic writes, ``weights_only`` loads, RNG states stored as tensors (no pickled objects).

A full disk while saving is one :class:`~neuroposter.errors.ResourceError` line ("no space left on
device: PATH ..."), never torch's ``[enforce fail at inline_container.cc]``, and leaves no temporary file.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroposter._io import atomic_path
from neuroposter.errors import DataError, ResourceError

__all__ = ["save_torch", "load_torch", "tensor_bytes", "rng_state", "set_rng_state"]

# What torch.save's C++ writer says when a write fails (ENOSPC included): "[enforce fail at
# inline_container.cc:595] . unexpected pos 448 vs 342" or "PytorchStreamWriter failed writing file ...".
_WRITE_FAILED = ("enforce fail", "inline_container", "PytorchStreamWriter failed", "file write failed",
                 "No space left")


def tensor_bytes(obj: Any) -> int:
    """Bytes of tensor data inside ``obj`` (nested dicts, lists and tuples): a checkpoint's size, roughly."""
    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _free_bytes(path: Path) -> int | None:
    import shutil

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return int(shutil.disk_usage(probe).free)
    except OSError:
        return None


def save_torch(obj: Any, path: str | os.PathLike[str], *, shown: str | os.PathLike[str] | None = None,
               hint: str = "free some space and run again") -> None:
    """``torch.save`` to ``path`` atomically (temporary file, then rename).

    Args:
        obj: what to save.
        path: the file.
        shown: the path named in error messages (default ``path``), e.g. the final artifact folder when
            ``path`` lies in its temporary folder.
        hint: what to do, appended to a full-disk message.

    Raises:
        ResourceError: the disk filled up (one line naming the path); the temporary file is removed.
    """
    path = Path(path)
    where = Path(shown) if shown is not None else path
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except RuntimeError as exc:
        text = str(exc)
        if not any(marker in text for marker in _WRITE_FAILED):
            raise
        free = _free_bytes(path.parent)
        need = tensor_bytes(obj)
        detail = " ".join(text.split())[:120]
        if "No space" in text or free is None or free < max(need, 1) * 2 + (1 << 20):
            raise ResourceError(f"no space left on device: {where} (about {need / 1e6:,.1f} MB to write, "
                                f"{(free or 0) / 1e6:,.1f} MB free); {hint}") from None
        raise ResourceError(f"cannot write {where} ({detail}); check the disk and run again") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceError(f"no space left on device: {where} (about {tensor_bytes(obj) / 1e6:,.1f} MB "
                                f"to write); {hint}") from None
        raise


def load_torch(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with a clear error when unusable.

    Raises:
        DataError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt file or disallowed object
        raise DataError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None


def rng_state() -> dict[str, Any]:
    """Every RNG state (torch CPU/CUDA, numpy, Python ``random``) as tensors and plain values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python_version": int(py_version),
        "python_internal": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_internal"].tolist()),
                     state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
