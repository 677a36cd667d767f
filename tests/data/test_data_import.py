"""Importing Kaggle-format CSVs: skip reasons, titles, genre filtering, manifest, atomicity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from neuroposter.data import ImagePolicy, import_kaggle, load_dataset, read_kaggle_csv
from neuroposter.errors import DataError, ManifestError

# What importing the fixture with min_count=2 must report (see tests/fixtures/kaggle/README.md).
FIXTURE_ROWS = 20
FIXTURE_SKIPS = {
    "bad_id": 1, "duplicate_id": 1, "missing_genre": 1, "missing_poster_url": 1,
    "poster_path_escape": 1, "poster_file_missing": 1, "poster_corrupt": 1, "no_kept_genre": 1,
}
FIXTURE_GENRES = ["Drama", "Comedy", "Romance", "Action", "Adventure", "Crime"]
FIXTURE_COUNTS = {"Drama": 7, "Comedy": 6, "Romance": 5, "Action": 3, "Adventure": 2, "Crime": 2}


def _import(raw, tmp_path: Path, name: str = "ds", **kw):
    kw.setdefault("min_count", 2)
    return import_kaggle(raw.csv, raw.posters, tmp_path / "datasets" / name, **kw)


def test_fixture_skip_counts_are_exact(kaggle_raw, tmp_path):
    res = _import(kaggle_raw, tmp_path)
    rep = res.report
    assert rep["rows_read"] == FIXTURE_ROWS
    assert {k: v["count"] for k, v in rep["skipped"].items()} == FIXTURE_SKIPS
    assert rep["rows_skipped"] == sum(FIXTURE_SKIPS.values())
    assert rep["rows_kept"] == FIXTURE_ROWS - sum(FIXTURE_SKIPS.values()) == 12
    assert rep["skipped"]["bad_id"]["examples"] == ["tt0114287"]
    assert rep["skipped"]["duplicate_id"]["examples"] == [11358]
    assert rep["skipped"]["poster_corrupt"]["examples"] == [113189]
    assert rep["skipped"]["poster_file_missing"]["examples"] == [112453]
    assert rep["skipped"]["poster_path_escape"]["examples"] == [113101]
    assert rep["skipped"]["no_kept_genre"]["examples"] == [114214]
    assert rep["duplicate_rows_differing_from_first"] == 0
    assert rep["genres"] == FIXTURE_GENRES
    assert rep["genre_counts"] == FIXTURE_COUNTS
    assert rep["genres_dropped"] == {"Animation": 1, "Family": 1, "Thriller": 1, "Western": 1}
    assert sum(rep["label_count_histogram"].values()) == 12
    assert sum(rep["split_sizes"].values()) == 12
    assert rep["image_policy"]["mode"] == "native"
    on_disk = json.loads((res.path / "data_report.json").read_text())
    assert on_disk["skipped"] == rep["skipped"]


def test_fixture_titles_years_and_encoding(kaggle_raw, tmp_path):
    ds = load_dataset(_import(kaggle_raw, tmp_path).path)
    by_id = ds.items.set_index("imdbId")
    assert by_id.loc[114117, "title"] == "Persuasion" and by_id["year"].isna()[114117]
    assert by_id.loc[114709, "title"] == "Toy Story" and by_id.loc[114709, "year"] == 1995
    assert by_id.loc[211915, "title"] == "Fabuleux destin d'Amélie Poulain, Le"
    assert by_id.loc[1087578, "title"] == "C\u00cc\u00a3o Sem Dono"  # mojibake kept verbatim
    assert 114576 in by_id.index  # NaN score is not a reason to skip
    assert by_id.loc[114709, "genres"] == "Adventure|Comedy"  # Animation dropped by min_count
    assert by_id.loc[11358, "poster"] == "11358.jpg"
    # items.csv is UTF-8
    assert "Amélie".encode() in (ds.root / "items.csv").read_bytes()


def test_top_genres_and_no_kept_genre(kaggle_raw, tmp_path):
    rep = _import(kaggle_raw, tmp_path, top_genres=3).report
    assert rep["genres"] == ["Drama", "Comedy", "Romance"]
    # Jumanji, Sudden Death (no Drama/Comedy/Romance) and the Western
    assert rep["skipped"]["no_kept_genre"]["count"] == 3
    assert rep["rows_kept"] == 10


def test_min_count_one_keeps_every_genre(kaggle_raw, tmp_path):
    rep = _import(kaggle_raw, tmp_path, min_count=1).report
    assert "no_kept_genre" not in rep["skipped"]
    assert len(rep["genres"]) == 10 and rep["rows_kept"] == 13


def test_leading_index_column_is_accepted(kaggle_raw, tmp_path):
    lines = kaggle_raw.csv.read_bytes().split(b"\n")
    with_index = [b"," + lines[0]] + [f"{i},".encode() + ln for i, ln in enumerate(lines[1:]) if ln]
    csv = tmp_path / "indexed.csv"
    csv.write_bytes(b"\n".join(with_index) + b"\n")
    a = _import(kaggle_raw, tmp_path, name="a").report
    b = import_kaggle(csv, kaggle_raw.posters, tmp_path / "datasets" / "b", min_count=2).report
    assert a["skipped"] == b["skipped"] and a["genre_counts"] == b["genre_counts"]
    assert list(read_kaggle_csv(csv).columns) == list(read_kaggle_csv(kaggle_raw.csv).columns)


@pytest.mark.parametrize("content, problem", [
    (None, "not found"),
    (b"", "empty"),
    (b"id,title,genre\n1,x,Drama\n", "header"),
    (b'imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n1,"unterminated\n', "not a readable CSV"),
])
def test_bad_csv_is_a_clear_data_error(tmp_path, content, problem):
    csv = tmp_path / "MovieGenre.csv"
    if content is not None:
        csv.write_bytes(content)
    (tmp_path / "posters").mkdir()
    with pytest.raises(DataError) as exc:
        import_kaggle(csv, tmp_path / "posters", tmp_path / "out")
    assert str(csv) in str(exc.value) and problem in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_empty_result_names_the_reason(kaggle_raw, tmp_path):
    with pytest.raises(DataError, match="no usable rows.*no_kept_genre 13"):
        _import(kaggle_raw, tmp_path, min_count=100)
    empty = tmp_path / "empty_posters"
    empty.mkdir()
    with pytest.raises(DataError, match="poster_file_missing"):
        import_kaggle(kaggle_raw.csv, empty, tmp_path / "x")


def test_missing_posters_folder(kaggle_raw, tmp_path):
    with pytest.raises(DataError, match="posters folder not found"):
        import_kaggle(kaggle_raw.csv, tmp_path / "nope", tmp_path / "x")


@pytest.mark.parametrize("kw", [{"min_count": 0}, {"top_genres": 0}, {"split": (0.5, 0.2, 0.2)},
                                {"split": (0.0, 0.5, 0.5)}, {"seed": -1}])
def test_bad_options_raise_value_error(kaggle_raw, tmp_path, kw):
    with pytest.raises(ValueError):
        import_kaggle(kaggle_raw.csv, kaggle_raw.posters, tmp_path / "x", **kw)


def test_path_escape_via_symlinked_folder_member_is_refused(kaggle_raw, tmp_path):
    # a symlink that stays inside the posters folder is fine
    os.remove(kaggle_raw.posters / "113101.jpg")
    shutil.copy(kaggle_raw.posters / "114709.jpg", kaggle_raw.posters / "real.jpg")
    (kaggle_raw.posters / "113101.jpg").symlink_to(kaggle_raw.posters / "real.jpg")
    rep = _import(kaggle_raw, tmp_path).report
    assert "poster_path_escape" not in rep["skipped"] and rep["rows_kept"] == 13


def test_manifest_key_and_load(kaggle_raw, tmp_path):
    policy = ImagePolicy("crop", 224, 224)
    res = _import(kaggle_raw, tmp_path, image_policy=policy, seed=3)
    ds = load_dataset(res.path)
    assert len(ds) == 12 and ds.labels.dtype == np.uint8 and ds.labels.shape == (12, 6)
    assert ds.genres == FIXTURE_GENRES
    assert list(ds.items.columns) == ["index", "imdbId", "title", "year", "genres", "split", "poster", "sha256"]
    assert ds.key == res.key and ds.manifest["kind"] == "dataset"
    assert ds.manifest["config"]["image_policy"] == policy.to_dict()
    assert ds.manifest["config"]["seed"] == 3
    assert ds.posters_dir.resolve() == kaggle_raw.posters.resolve()
    assert not Path(ds.manifest["inputs"]["posters"]["path"]).is_absolute()   # movable
    assert ds.image_policy == policy
    for i in range(len(ds)):
        assert ds.labels[i].tolist() == [int(g in ds.items["genres"][i].split("|")) for g in ds.genres]
    parts = [ds.indices(s) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(12))
    assert ds.indices("all").tolist() == list(range(12))
    img = ds.load_image(int(parts[0][0]))
    assert img.mode == "RGB" and img.size == (224, 224)
    with pytest.raises(ValueError, match="unknown split"):
        ds.indices("training")
    # same inputs and options -> same key; other options or posters -> other key
    assert _import(kaggle_raw, tmp_path, name="again", image_policy=policy, seed=3).key == res.key
    assert _import(kaggle_raw, tmp_path, name="seed4", image_policy=policy, seed=4).key != res.key
    (kaggle_raw.posters / "112453.jpg").write_bytes((kaggle_raw.posters / "114709.jpg").read_bytes())
    assert _import(kaggle_raw, tmp_path, name="more", image_policy=policy, seed=3).key != res.key


def test_load_dataset_refuses_non_datasets(tmp_path):
    with pytest.raises(ManifestError, match="neuroposter data import"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError):
        load_dataset(tmp_path / "empty")


def test_load_dataset_detects_tampering(kaggle_raw, tmp_path):
    res = _import(kaggle_raw, tmp_path)
    np.save(res.path / "labels.npy", np.zeros((3, 6), dtype=np.uint8))
    with pytest.raises(ManifestError, match="labels.npy has changed"):
        load_dataset(res.path)
    (res.path / "labels.npy").unlink()
    with pytest.raises(ManifestError, match="labels.npy is missing"):
        load_dataset(res.path)


def test_failure_mid_import_leaves_previous_dataset_intact(kaggle_raw, tmp_path, monkeypatch):
    res = _import(kaggle_raw, tmp_path)
    before = {p.name: p.read_bytes() for p in res.path.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("neuroposter.data.kaggle.write_manifest", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        _import(kaggle_raw, tmp_path, seed=7, force=True)
    after = {p.name: p.read_bytes() for p in res.path.iterdir()}
    assert after == before
    # no temp folders left over (the lock file stays: removing a flock file races with its next user)
    assert sorted(p.name for p in res.path.parent.iterdir() if not p.name.endswith(".lock")) == ["ds"]
    assert load_dataset(res.path).key == res.key


def test_synth_import_round_trip(tiny_synth, tmp_path):
    res = import_kaggle(tiny_synth / "MovieGenre.csv", tiny_synth / "posters", tmp_path / "ds")
    assert res.report["rows_kept"] == 48 and res.report["rows_skipped"] == 0
    assert res.report["poster_sizes"] == {"182x268": 48}
    ds = load_dataset(res.path)
    assert ds.load_image(0).size == (182, 268)
    ids = [set(ds.items["imdbId"][ds.indices(s)]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
