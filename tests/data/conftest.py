"""Fixtures for the data tests: the Kaggle trap fixture with generated posters, a tiny synth set."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURE_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "kaggle" / "MovieGenre.csv"

# The rows whose poster file the fixture breaks (see tests/fixtures/kaggle/README.md).
MISSING_ID, TRUNCATED_ID, ESCAPE_ID = 112453, 113189, 113101


def jpeg_bytes(seed: int, size: tuple[int, int] = (46, 67)) -> bytes:
    """A small valid JPEG of random colour blocks (W x H = ``size``)."""
    rng = np.random.default_rng(seed)
    arr = np.kron(rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3)), np.ones((8, 8, 1)))
    buf = io.BytesIO()
    Image.fromarray(arr[: size[1], : size[0]].astype(np.uint8), "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@dataclass
class KaggleRaw:
    csv: Path
    posters: Path
    outside: Path


@pytest.fixture
def kaggle_raw(tmp_path: Path) -> KaggleRaw:
    """The committed trap CSV plus a posters folder: one missing, one truncated, one escaping symlink."""
    posters = tmp_path / "posters"
    posters.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    import pandas as pd

    ids = pd.read_csv(FIXTURE_CSV, encoding="latin-1", dtype=str)["imdbId"]
    for k, raw in enumerate(ids):
        if not raw.isdigit() or int(raw) in (MISSING_ID, ESCAPE_ID):
            continue
        data = jpeg_bytes(k)
        if int(raw) == TRUNCATED_ID:
            data = data[: len(data) // 2]
        (posters / f"{raw}.jpg").write_bytes(data)
    (outside / "secret.jpg").write_bytes(jpeg_bytes(999))
    (posters / f"{ESCAPE_ID}.jpg").symlink_to(outside / "secret.jpg")
    return KaggleRaw(csv=FIXTURE_CSV, posters=posters, outside=outside)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-poster synthetic raw folder (read-only for tests: copy before changing it)."""
    from neuroposter.data import generate_synth

    out = tmp_path_factory.mktemp("synth") / "raw"
    generate_synth(out, n=48, seed=0)
    return out
