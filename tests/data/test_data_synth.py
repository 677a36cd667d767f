"""The synthetic poster generator: Kaggle format, determinism, label statistics, learnable cues."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from neuroposter.data import SYNTH_GENRES, generate_synth, read_kaggle_csv
from neuroposter.data.synth import synth_labels
from neuroposter.errors import UsageError


def _files(root):
    # the manifest (creation time) and its verification cache (modification times) differ between runs
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("manifest.json", ".verified.json")}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_synth(tmp_path / "a", n=10, seed=7)
    generate_synth(tmp_path / "b", n=10, seed=7)
    generate_synth(tmp_path / "c", n=10, seed=8)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 11 and fa == fb
    assert fa["MovieGenre.csv"] != fc["MovieGenre.csv"]
    assert not set(fa.values()) & set(fc.values())
    assert a.n == 10 and a.csv_path == tmp_path / "a" / "MovieGenre.csv"


def test_kaggle_on_disk_format(tiny_synth):
    raw = (tiny_synth / "MovieGenre.csv").read_bytes()
    assert raw.startswith(b"imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n")
    raw.decode("latin-1")
    df = read_kaggle_csv(tiny_synth / "MovieGenre.csv")
    assert len(df) == 48 and df["imdbId"].str.fullmatch(r"\d+").all() and df["imdbId"].is_unique
    assert (df["Imdb Link"] == "http://www.imdb.com/title/tt" + df["imdbId"]).all()
    assert df["Title"].str.fullmatch(r".+ \(\d{4}\)").all()
    assert df["IMDB Score"].astype(float).between(1, 10).all()
    assert df["Poster"].str.fullmatch(r"https://images-na\.ssl-images-amazon\.com/images/M/MV5B\w+"
                                      r"@\._V1_UX182_CR0,0,182,268_AL_\.jpg").all()
    genres = df["Genre"].str.split("|")
    assert genres.map(len).between(1, 3).all()
    assert set(g for gs in genres for g in gs) <= set(SYNTH_GENRES)
    for ident in df["imdbId"]:
        with Image.open(tiny_synth / "posters" / f"{ident}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (182, 268)


def test_label_statistics_are_realistic():
    y = synth_labels(6000, np.random.default_rng(0))
    prev = dict(zip(SYNTH_GENRES, y.mean(0)))
    assert abs(prev["Drama"] - 0.50) < 0.03 and abs(prev["Comedy"] - 0.32) < 0.03
    assert min(prev.values()) > 0.12 and max(v for g, v in prev.items() if g not in ("Drama", "Comedy")) < 0.27
    card = y.sum(1)
    assert card.min() == 1 and card.max() == 3 and abs(card.mean() - 2.0) < 0.1
    # realistic co-occurrence: Crime goes with Thriller far more than Comedy does with Horror
    i = {g: k for k, g in enumerate(SYNTH_GENRES)}
    lift = lambda a, b: (y[:, i[a]] & y[:, i[b]]).mean() / (y[:, i[a]].mean() * y[:, i[b]].mean())  # noqa: E731
    assert lift("Crime", "Thriller") > 1.3 > 0.7 > lift("Comedy", "Horror")


def test_refuses_foreign_folder_and_replaces_its_own_only_with_force(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    for force in (False, True):
        with pytest.raises(UsageError, match="not a neuroposter raw.*never replaced"):
            generate_synth(foreign, n=2, force=force)
    assert (foreign / "thesis.tex").read_text() == "precious" and len(list(foreign.iterdir())) == 1
    out = tmp_path / "synth"
    generate_synth(out, n=3, seed=1)
    before = _files(out)
    with pytest.raises(UsageError, match="already holds a raw; pass --force"):
        generate_synth(out, n=2, seed=1)
    assert _files(out) == before
    generate_synth(out, n=2, seed=1, force=True)
    assert len(list((out / "posters").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".synth.lock", "mine", "synth"]  # no temporaries left


def test_manifest_covers_every_file(tmp_path):
    from neuroposter.manifest import require_manifest

    out = tmp_path / "s"
    generate_synth(out, n=3, seed=0, before_commit=lambda d: (d / "resolved_config.yaml").write_text("n: 3\n"))
    m = require_manifest(out, "raw", rerun="neuroposter data synth --force")
    assert set(m["files"]) == set(_files(out))
    assert "resolved_config.yaml" in m["files"] and "MovieGenre.csv" in m["files"]


@pytest.mark.parametrize("kw", [{"n": 0}, {"seed": -1}, {"width": 8}, {"height": 10_000}])
def test_bad_arguments(tmp_path, kw):
    with pytest.raises(ValueError):
        generate_synth(tmp_path / "x", **kw)


def _colour_histogram(path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")) // 64
    idx = a[..., 0] * 16 + a[..., 1] * 4 + a[..., 2]
    return np.bincount(idx.ravel(), minlength=64) / idx.size


@pytest.mark.slow
def test_cues_are_learnable_but_not_trivial(tmp_path):
    """A linear probe on 64-bin colour histograms beats the best constant predictor, far from perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    res = generate_synth(tmp_path / "s", n=240, seed=0, width=91, height=134)
    df = read_kaggle_csv(res.csv_path)
    y = np.array([[g in s.split("|") for g in SYNTH_GENRES] for s in df["Genre"]], dtype=int)
    x = np.array([_colour_histogram(res.posters_dir / f"{i}.jpg") for i in df["imdbId"]])
    tr, te = np.arange(len(y)) < 168, np.arange(len(y)) >= 168
    clf = OneVsRestClassifier(LogisticRegression(C=10, max_iter=2000)).fit(x[tr], y[tr])
    probe = f1_score(y[te], (clf.predict_proba(x[te]) >= 0.3).astype(int), average="micro")
    order = np.argsort(-y[tr].mean(0))
    const = max(f1_score(y[te], np.isin(np.arange(y.shape[1]), order[:k])[None].repeat(te.sum(), 0).astype(int),
                         average="micro") for k in (1, 2, 3))
    assert probe > const + 0.1, (probe, const)
    assert probe < 0.9, probe
