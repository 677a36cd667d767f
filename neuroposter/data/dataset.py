"""The imported dataset as later stages see it (contract section 2)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuroposter._io import read_json, safe_join
from neuroposter.data.policy import ImagePolicy
from neuroposter.data.split import SPLITS
from neuroposter.errors import DataError, ManifestError
from neuroposter.manifest import input_path, require_manifest

__all__ = ["ITEM_COLUMNS", "PosterDataset", "load_dataset", "verify_poster"]

ITEM_COLUMNS: tuple[str, ...] = ("index", "imdbId", "title", "year", "genres", "split", "poster", "sha256")
# items.csv written before poster hashes were recorded (the sha256 column is then empty).
_LEGACY_COLUMNS = ITEM_COLUMNS[:-1]
_RERUN = "neuroposter data import"
_RERUN_BOTH = "re-run `neuroposter data import` (and `neuroposter features`)"


def verify_poster(path: str | os.PathLike[str], sha256: str | None) -> bytes:
    """Reads a poster file and checks its bytes against the SHA-256 recorded at import.

    Returns the verified bytes, so the caller decodes exactly what was checked
    (``PIL.Image.open(io.BytesIO(data))``).

    Args:
        path: the poster file.
        sha256: the hex digest recorded by ``neuroposter data import`` (``items.csv``, column
            ``sha256``); None or empty when the dataset predates poster hashes.

    Raises:
        ManifestError: the file is missing or unreadable, no hash was recorded, or the bytes differ
            from the recorded hash; one line naming the file and saying to re-run
            ``neuroposter data import`` (and ``neuroposter features``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"poster {path} is missing (moved or deleted since the import); {_RERUN_BOTH}") from None
    except OSError as exc:
        raise ManifestError(f"poster {path} cannot be read ({exc.strerror or type(exc).__name__}); "
                            f"fix it or {_RERUN_BOTH}") from None
    expected = str(sha256 or "").strip().lower()
    if not expected:
        raise ManifestError(f"poster {path}: the dataset records no SHA-256 for it (imported by an older "
                            f"version); {_RERUN_BOTH}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ManifestError(f"poster {path} has changed since the import (sha256 {actual[:12]}..., recorded "
                            f"{expected[:12]}...); {_RERUN_BOTH}")
    return data


class PosterDataset:
    """An imported poster dataset: items, multi-hot labels, genre vocabulary and image policy.

    Attributes:
        root: the dataset folder.
        items: one row per poster (``index, imdbId, title, year, genres, split, poster, sha256``;
            ``sha256`` is the poster file's hash at import, empty for datasets imported before it).
        genres: the genre vocabulary (column order of ``labels``).
        labels: ``uint8 [N, G]`` multi-hot labels.
        posters_dir: folder the ``poster`` paths are relative to.
        image_policy: the resize policy :meth:`load_image` applies.
        key: the manifest key (changes when the CSV, posters or import options change).
        manifest: the full manifest.
    """

    def __init__(self, root: Path, items: Any, genres: list[str], labels: np.ndarray, posters_dir: Path,
                 image_policy: ImagePolicy, key: str, manifest: dict[str, Any]) -> None:
        self.root = root
        self.items = items
        self.genres = genres
        self.labels = labels
        self.posters_dir = posters_dir
        self.image_policy = image_policy
        self.key = key
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        sizes = {s: int((self.items["split"] == s).sum()) for s in SPLITS}
        return (f"PosterDataset({str(self.root)!r}, n={len(self)}, genres={len(self.genres)}, "
                f"splits={sizes}, policy={self.image_policy.mode})")

    def indices(self, split: str) -> np.ndarray:
        """Row positions of one split (``"train"``, ``"val"``, ``"test"``) or ``"all"``, ascending."""
        if split == "all":
            return np.arange(len(self), dtype=np.int64)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}, all")
        return np.flatnonzero(self.items["split"].to_numpy() == split).astype(np.int64)

    def poster_path(self, i: int) -> Path:
        """The poster file of row ``i`` (checked to stay inside :attr:`posters_dir`)."""
        return safe_join(self.posters_dir, str(self.items["poster"].iat[i]))

    def poster_sha256(self, i: int) -> str | None:
        """The SHA-256 recorded at import for row ``i``'s poster (None for older datasets)."""
        value = str(self.items["sha256"].iat[i] or "").strip()
        return value or None

    def verify_poster(self, i: int) -> bytes:
        """Row ``i``'s poster bytes, checked against the hash recorded at import.

        Raises:
            ManifestError: missing, unreadable or changed poster (see :func:`verify_poster`).
        """
        return verify_poster(self.poster_path(i), self.poster_sha256(i))

    def load_image(self, i: int, *, verify: bool = False):  # -> PIL.Image.Image
        """Row ``i``'s poster as an RGB PIL image with the image policy applied.

        Args:
            i: row position.
            verify: decode the bytes checked by :meth:`verify_poster` (raises ManifestError when
                the poster is not the one imported).

        Raises:
            DataError: the poster file is missing or unreadable.
            ManifestError: with ``verify``, the poster's bytes differ from the import's hash.
        """
        from PIL import Image

        path = self.poster_path(i)
        try:
            with Image.open(io.BytesIO(self.verify_poster(i)) if verify else path) as im:
                im.load()
                return self.image_policy.apply(im)
        except FileNotFoundError:
            raise DataError(f"{path}: poster file not found (posters moved? re-run `{_RERUN}`)") from None
        except OSError as exc:
            raise DataError(f"{path}: unreadable poster ({exc})") from None

    @property
    def report(self) -> dict[str, Any]:
        """The import's ``data_report.json``."""
        return read_json(self.root / "data_report.json")


def load_dataset(path: str | os.PathLike[str], *, posters_dir: str | os.PathLike[str] | None = None
                 ) -> PosterDataset:
    """Opens a dataset folder written by ``neuroposter data import``.

    Args:
        path: the dataset folder (e.g. ``WORKSPACE/datasets/default``).
        posters_dir: override the posters folder recorded in the manifest (moved posters).

    Raises:
        ManifestError: not a dataset folder (says to re-run ``neuroposter data import``).
        DataError: its files are missing or inconsistent.
    """
    import pandas as pd

    root = Path(path)
    manifest = require_manifest(root, "dataset", rerun=_RERUN)
    try:
        items = pd.read_csv(root / "items.csv", encoding="utf-8", keep_default_na=False,
                            na_values={"year": [""]},
                            dtype={"index": np.int64, "imdbId": np.int64, "title": str, "year": "Int64",
                                   "genres": str, "split": str, "poster": str, "sha256": str})
        labels = np.load(root / "labels.npy", allow_pickle=False)
        genres = json.loads((root / "genres.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{root}: incomplete dataset ({Path(exc.filename).name} missing); "
                            f"run `{_RERUN}` again") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{root}: corrupt dataset files ({exc}); run `{_RERUN}` again") from None
    if tuple(items.columns) == _LEGACY_COLUMNS:
        items["sha256"] = ""
    if tuple(items.columns) != ITEM_COLUMNS:
        raise DataError(f"{root}/items.csv: columns {list(items.columns)}, expected {list(ITEM_COLUMNS)}")
    if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
        raise DataError(f"{root}/genres.json: expected a list of genre names")
    if labels.dtype != np.uint8 or labels.shape != (len(items), len(genres)):
        raise DataError(f"{root}: labels.npy is {labels.dtype} {labels.shape}, expected uint8 "
                        f"({len(items)}, {len(genres)}); run `{_RERUN}` again")
    bad = sorted(set(items["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{root}/items.csv: unknown split names {bad}")
    cfg = manifest.get("config", {})
    try:
        policy = ImagePolicy.from_dict(cfg.get("image_policy") or {})
    except ValueError as exc:
        raise DataError(f"{root}/manifest.json: {exc}") from None
    # the posters folder is an input of the dataset: relative to it (a moved workspace keeps working);
    # datasets imported before that recorded it as extra.posters_dir
    pdir = posters_dir if posters_dir is not None else (input_path(root, manifest, "posters")
                                                         or manifest.get("posters_dir")
                                                         or manifest.get("extra", {}).get("posters_dir"))
    if not pdir:
        raise ManifestError(f"{root}/manifest.json has no posters_dir; run `{_RERUN}` again")
    return PosterDataset(root=root, items=items, genres=list(genres), labels=labels, posters_dir=Path(pdir),
                         image_policy=policy, key=str(manifest.get("key")), manifest=manifest)
