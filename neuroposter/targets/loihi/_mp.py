"""Makes Lava importable in a process that already chose a multiprocessing start method.

lava-nc 0.10 calls ``multiprocessing.set_start_method('fork')`` (without ``force``) when its
message infrastructure is first imported. In a long-lived process that already fixed the start
method (e.g. ``neuroposter demo`` after torch or sklearn used multiprocessing) that call raises
``RuntimeError: context has already been set``. :func:`prepare_lava` imports that module once with
the start method already set to ``fork`` and Lava's redundant call made harmless.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import sys

__all__ = ["prepare_lava"]

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def prepare_lava() -> None:
    """Imports Lava's multiprocessing backend so that later Lava imports cannot fail on the start method."""
    if _LAVA_MP in sys.modules:
        return
    current = mp.get_start_method(allow_none=True)
    if current is None:
        importlib.import_module(_LAVA_MP)
        return
    if current != "fork":
        mp.set_start_method("fork", force=True)
    original = mp.set_start_method

    def _already_fork(method: str | None = None, force: bool = False) -> None:
        if method != "fork":
            original(method, force=force)

    mp.set_start_method = _already_fork  # type: ignore[assignment]
    try:
        importlib.import_module(_LAVA_MP)
    finally:
        mp.set_start_method = original  # type: ignore[assignment]
