"""Progress bars (tqdm) with one switch to silence them (``NEUROPOSTER_NO_PROGRESS=1``)."""

from __future__ import annotations

import os
from typing import Any, Iterable, TypeVar

T = TypeVar("T")

__all__ = ["progress"]


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None,
             unit: str = "it", **kwargs: Any) -> Any:
    """A tqdm progress bar on stderr; disabled when ``NEUROPOSTER_NO_PROGRESS`` is set."""
    from tqdm.auto import tqdm

    disable = os.environ.get("NEUROPOSTER_NO_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False,
                dynamic_ncols=True, **kwargs)
