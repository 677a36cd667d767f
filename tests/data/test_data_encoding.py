"""CSV encoding detection, poster-file faults (dangling symlinks, unreadable files) and poster hashes."""

from __future__ import annotations

import codecs
import hashlib
import os
from pathlib import Path

import pytest

from neuroposter.data import import_kaggle, load_dataset, read_kaggle_csv
from neuroposter.data.dataset import verify_poster
from neuroposter.data.kaggle import SKIP_REASONS, decode_csv_bytes
from neuroposter.errors import DataError, ManifestError

FIXTURE_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "kaggle" / "MovieGenre.csv"

HEADER = "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
ROW = '1,http://www.imdb.com/title/tt1,Amélie (2001),7.1,Comedy|Romance,"http://x/1.jpg"\n'


@pytest.mark.parametrize("data, encoding, bom", [
    (codecs.BOM_UTF8 + (HEADER + ROW).encode("utf-8"), "utf-8", True),
    ((HEADER + ROW).encode("utf-8"), "utf-8", False),
    ((HEADER + ROW).encode("latin-1"), "latin-1", False),
    ((HEADER + ROW).encode("utf-16"), "utf-16-le", True),     # Python writes the LE mark first
    (codecs.BOM_UTF16_BE + (HEADER + ROW).encode("utf-16-be"), "utf-16-be", True),
    ((HEADER + ROW).encode("utf-16-le"), "utf-16-le", False),
    ((HEADER + ROW).encode("utf-16-be"), "utf-16-be", False),
    ((HEADER + ROW).encode("utf-32"), "utf-32-le", True),
])
def test_decode_detects_the_encoding(data, encoding, bom):
    text, info = decode_csv_bytes(data)
    assert info == {"encoding": encoding, "bom": bom}
    assert text == HEADER + ROW and not text.startswith("\ufeff")


def test_pure_ascii_is_utf8_and_latin1_fallback_keeps_every_byte():
    assert decode_csv_bytes(HEADER.encode())[1]["encoding"] == "utf-8"
    raw = HEADER.encode() + bytes(range(0x80, 0x100))
    text, info = decode_csv_bytes(raw)
    assert info["encoding"] == "latin-1" and text.encode("latin-1") == raw


@pytest.mark.parametrize("data, needle", [
    (codecs.BOM_UTF8 + b"imdbId,\xff\xfe", "UTF-8 byte-order mark"),
    (codecs.BOM_UTF16_LE + "imdbId".encode("utf-16-le") + b"\x00\xd8\x41", "UTF-16-LE"),
    (b"\x00\x01\x02binary\x00", "binary data"),
])
def test_undecodable_is_a_one_line_data_error_naming_the_encoding(data, needle):
    with pytest.raises(DataError) as exc:
        decode_csv_bytes(data, "x.csv")
    assert needle in str(exc.value) and "x.csv" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-be", "utf-8"])
def test_the_trap_fixture_reads_the_same_in_any_encoding(tmp_path, codec):
    latin = read_kaggle_csv(FIXTURE_CSV)
    assert latin.attrs["encoding"] == {"encoding": "latin-1", "bom": False}
    csv = tmp_path / "MovieGenre.csv"
    csv.write_bytes(FIXTURE_CSV.read_bytes().decode("latin-1").encode(codec))
    other = read_kaggle_csv(csv)
    assert list(other.columns) == list(latin.columns)
    assert other.equals(latin)


def test_bom_before_an_index_column(tmp_path):
    csv = tmp_path / "MovieGenre.csv"
    csv.write_bytes(codecs.BOM_UTF8 + ("," + HEADER + "0," + ROW).encode("utf-8"))
    df = read_kaggle_csv(csv)
    assert df.loc[0, "Title"] == "Amélie (2001)"


def test_csv_that_is_a_directory(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_kaggle_csv(tmp_path / "dir.csv")


def _import(raw, tmp_path: Path, name: str = "ds", **kw):
    kw.setdefault("min_count", 2)
    return import_kaggle(raw.csv, raw.posters, tmp_path / "datasets" / name, **kw)


def test_fixture_report_records_the_encoding(kaggle_raw, tmp_path):
    rep = _import(kaggle_raw, tmp_path).report
    assert rep["csv_encoding"] == "latin-1" and rep["csv_bom"] is False


def test_dangling_and_looping_symlinks_are_counted(kaggle_raw, tmp_path):
    posters = kaggle_raw.posters
    (posters / "114709.jpg").unlink()
    (posters / "114709.jpg").symlink_to(posters / "nothing-here.jpg")
    (posters / "113497.jpg").unlink()
    (posters / "113497.jpg").symlink_to(posters / "113497.jpg")
    assert "poster_dangling_symlink" in SKIP_REASONS
    rep = _import(kaggle_raw, tmp_path).report
    assert rep["skipped"]["poster_dangling_symlink"] == {"count": 2, "examples": [114709, 113497]}
    assert rep["skipped"]["poster_path_escape"]["count"] == 1  # a live symlink out of the folder stays an escape
    assert rep["rows_kept"] == 10


def test_unreadable_poster_is_counted(kaggle_raw, tmp_path, monkeypatch):
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "114709.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    rep = _import(kaggle_raw, tmp_path).report
    assert rep["skipped"]["poster_unreadable"] == {"count": 1, "examples": [114709]}


def test_poster_hashes_are_recorded_and_part_of_the_key(kaggle_raw, tmp_path):
    res = _import(kaggle_raw, tmp_path)
    ds = load_dataset(res.path)
    for i in range(len(ds)):
        assert ds.poster_sha256(i) == hashlib.sha256(ds.poster_path(i).read_bytes()).hexdigest()
    assert ds.manifest["inputs"]["posters"]["content_sha256"]
    # same size, other bytes: the listing (names, sizes) is unchanged but the key is not
    victim = ds.poster_path(0)
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    again = _import(kaggle_raw, tmp_path, name="again")
    assert again.key != res.key


def test_verify_poster(kaggle_raw, tmp_path):
    ds = load_dataset(_import(kaggle_raw, tmp_path).path)
    path, digest = ds.poster_path(2), ds.poster_sha256(2)
    assert verify_poster(path, digest) == path.read_bytes()
    assert verify_poster(path, digest.upper()) == path.read_bytes()
    assert ds.load_image(2, verify=True).size == ds.load_image(2).size
    cases = {
        "changed": lambda: path.write_bytes(path.read_bytes() + b"\0"),
        "missing": lambda: os.remove(path),
    }
    for what, damage in cases.items():
        damage()
        with pytest.raises(ManifestError) as exc:
            ds.verify_poster(2)
        msg = str(exc.value)
        assert "\n" not in msg and str(path) in msg, what
        assert "neuroposter data import" in msg and "neuroposter features" in msg, what
    with pytest.raises(ManifestError, match="records no SHA-256"):
        verify_poster(ds.poster_path(3), None)


def test_dataset_without_hash_column_still_loads(kaggle_raw, tmp_path):
    res = _import(kaggle_raw, tmp_path)
    items = res.path / "items.csv"
    lines = items.read_text(encoding="utf-8").splitlines()
    items.write_text("\n".join(ln.rsplit(",", 1)[0] for ln in lines) + "\n", encoding="utf-8")
    try:
        ds = load_dataset(res.path)
    except ManifestError as exc:  # a manifest that hashes its own files may refuse the edit: also fine
        assert "items.csv" in str(exc)
        return
    assert ds.poster_sha256(0) is None and len(ds) == 12
    with pytest.raises(ManifestError, match="re-run `neuroposter data import`"):
        ds.verify_poster(0)
