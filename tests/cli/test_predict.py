"""`neuroposter predict`: the front end the run was trained with, the run's forward, a bundle's deployed network.

The references are computed independently of :mod:`neuroposter.predict`: the feature store's row and the encoded
set's stored spikes of a poster that is in the dataset, and the run's model on those stored spikes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from neuroposter.cli import main


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("neuroposter: error: "), err
    return lines[0]


# -- fast: bad inputs, no workspace needed ------------------------------------------------------------------


def test_a_missing_poster_is_a_one_line_usage_error(tmp_path, capsys) -> None:
    code, out, err = _cli(capsys, "predict", str(tmp_path / "none.jpg"), "-w", str(tmp_path / "ws"))
    assert code == 2 and out == ""
    assert "none.jpg: no such file" in _one_error(err)


def test_an_unreadable_poster_is_a_one_line_data_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    code, _, err = _cli(capsys, "predict", str(bad), "-w", str(tmp_path / "ws"))
    assert code == 1 and "not a readable image" in _one_error(err)


def test_a_poster_that_is_not_an_image_file_is_refused(tmp_path, capsys) -> None:
    txt = tmp_path / "poster.txt"
    txt.write_text("x")
    code, _, err = _cli(capsys, "predict", str(txt), "-w", str(tmp_path / "ws"))
    assert code == 2 and ".jpg/.jpeg/.png" in _one_error(err)


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (40, 60), (200, 30, 30)).save(path)
    return path


def test_a_run_that_does_not_exist_is_a_usage_error(tmp_path, capsys) -> None:
    code, _, err = _cli(capsys, "predict", str(_png(tmp_path / "p.png")), "--run", "nope", "-w", str(tmp_path / "ws"))
    assert code == 2 and "no run at" in _one_error(err)


def test_a_bundle_that_does_not_exist_is_a_usage_error(tmp_path, capsys) -> None:
    code, _, err = _cli(capsys, "predict", str(_png(tmp_path / "p.png")), "--bundle", str(tmp_path / "nope"))
    assert code == 2 and "no such folder" in _one_error(err)


def test_run_and_bundle_are_exclusive(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path / "p.png"), "--run", "a", "--bundle", "b"])
    assert exc.value.code == 2


def test_json_on_an_error_prints_one_document_with_the_exit_code(tmp_path, capsys) -> None:
    code, out, err = _cli(capsys, "predict", str(tmp_path / "none.jpg"), "--json", "-w", str(tmp_path / "ws"))
    doc = json.loads(out)
    assert code == 2 and doc["exit_code"] == 2 and "no such file" in doc["error"] and doc["command"] == "predict"
    assert "no such file" in _one_error(err)


def test_decisions_use_the_tuned_thresholds_and_sort_by_probability() -> None:
    from neuroposter.predict import Poster, decide

    p = Poster(Path("x.png"), None, "0" * 64)
    logits = np.array([[0.0, 2.0, -1.0]])            # sigmoid: 0.5, 0.881, 0.269
    out = decide([p], logits, ["a", "b", "c"], np.array([0.6, 0.5, 0.2]))[0]
    assert [s.genre for s in out.scores] == ["b", "a", "c"]
    assert out.predicted == ["b", "c"]              # a: 0.5 < 0.6; c: 0.269 >= 0.2
    assert out.scores[0].probability == pytest.approx(1 / (1 + np.exp(-2.0)))


# -- slow: a real (small) workspace built with the CLI ----------------------------------------------------------


def _posters(ws: Path, k: int = 3) -> tuple[list[Path], list[int]]:
    """The first ``k`` test posters of the dataset: their files and dataset indices."""
    from neuroposter.data import load_dataset

    ds = load_dataset(ws / "datasets" / "default")
    idx = [int(i) for i in ds.indices("test")[:k]]
    return [ds.poster_path(i) for i in idx], idx


@pytest.mark.slow
def test_front_end_from_the_image_file_equals_the_stored_features_and_spikes(built) -> None:
    from neuroposter.encode import load_encoded
    from neuroposter.features import open_store
    from neuroposter.predict import _identify, front_end, read_posters
    from neuroposter.train import load_run

    ws = built / "ws"
    files, idx = _posters(ws)
    run = load_run(ws / "runs" / "sdt")
    fe = front_end(run, ws / "runs" / "sdt")
    posters = _identify(read_posters(files), fe.dataset)
    assert [p.dataset_index for p in posters] == idx
    store = open_store(ws / "features" / "default")
    rows = [int(np.flatnonzero(store.rows == i)[0]) for i in idx]
    pooled, tokens = fe.features(posters)
    np.testing.assert_allclose(tokens, np.asarray(store.tokens[rows], dtype=np.float32), rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(pooled, np.asarray(store.pooled[rows], dtype=np.float32), rtol=2e-3, atol=1e-3)
    enc = load_encoded(ws / "encoded" / "default")
    test_rows = list(enc.rows("test"))
    stored = np.stack([enc.spikes("test", test_rows.index(r)) for r in rows], axis=1)   # [T, B, N, D]
    mine = fe.spikes(posters)
    assert mine.shape == stored.shape
    assert np.mean(mine == stored) > 0.9999      # float16 features: a value on a level boundary may flip


@pytest.mark.slow
def test_run_probabilities_equal_the_runs_forward_on_the_stored_spikes(built, capsys) -> None:
    import torch

    from neuroposter.encode import load_encoded
    from neuroposter.train import load_run

    ws = built / "ws"
    files, idx = _posters(ws)
    code, out, _ = _cli(capsys, "predict", *map(str, files), "--json", "-w", str(ws))
    assert code == 0
    doc = json.loads(out)
    enc = load_encoded(ws / "encoded" / "default")
    from neuroposter.features import open_store

    store = open_store(ws / "features" / "default")
    test_rows = list(enc.rows("test"))
    x = np.stack([enc.spikes("test", test_rows.index(int(np.flatnonzero(store.rows == i)[0]))) for i in idx], axis=1)
    model = load_run(ws / "runs" / "sdt").model
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(x).float()).mean(0)).numpy()
    genres = enc.genres
    for b, poster in enumerate(doc["posters"]):
        assert poster["dataset_index"] == idx[b]
        got = {g["genre"]: g["probability"] for g in poster["genres"]}
        np.testing.assert_allclose([got[g] for g in genres], ref[b], atol=2e-3)
        probs = [g["probability"] for g in poster["genres"]]
        assert probs == sorted(probs, reverse=True)
        assert poster["predicted"] == [g["genre"] for g in poster["genres"] if g["probability"] >= g["threshold"]]


@pytest.mark.slow
def test_text_and_json_hold_the_same_numbers_and_top_limits_the_list(built, capsys) -> None:
    ws = built / "ws"
    files, _ = _posters(ws, 1)
    code, text, _ = _cli(capsys, "predict", str(files[0]), "--top", "3", "-w", str(ws))
    assert code == 0
    code, out, _ = _cli(capsys, "predict", str(files[0]), "--top", "3", "--json", "-w", str(ws))
    doc = json.loads(out)
    genres = doc["posters"][0]["genres"]
    assert len(genres) == 3
    for g in genres:
        assert f"{g['genre']}" in text and f"{g['probability']:6.3f}" in text
    assert f"predicted: {', '.join(doc['posters'][0]['predicted'])}" in text or not doc["posters"][0]["predicted"]


@pytest.mark.slow
def test_nir_bundle_gives_the_runs_genres_and_a_per_poster_energy(built, capsys) -> None:
    ws, bundle = built / "ws", built / "export" / "nir" / "sdt"
    files, _ = _posters(ws)
    _, out, _ = _cli(capsys, "predict", *map(str, files), "--json", "-w", str(ws))
    run_doc = json.loads(out)
    code, out, _ = _cli(capsys, "predict", *map(str, files), "--bundle", str(bundle), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["target"] == "nir" and "front end" in doc["energy_note"] and "excluded" in doc["energy_note"]
    for a, b in zip(run_doc["posters"], doc["posters"]):
        assert a["predicted"] == b["predicted"]
        priced = [e for e in b["energy"] if e["status"] == "priced"]
        assert priced and all(e["energy_pj"] > 0 and e["view"] == "device" for e in priced)


@pytest.mark.slow
def test_a_stale_bundle_is_refused_in_one_line(built, tmp_path, capsys) -> None:
    from neuroposter._io import atomic_write_json, read_json

    root = tmp_path / "copy"
    shutil.copytree(built, root, symlinks=True)
    bundle = root / "export" / "nir" / "sdt"
    m = read_json(bundle / "manifest.json")
    m["inputs"]["run"]["key"] = "0" * 64                 # exported from another version of the run
    atomic_write_json(bundle / "manifest.json", m)
    files, _ = _posters(root / "ws", 1)
    code, out, err = _cli(capsys, "predict", str(files[0]), "--bundle", str(bundle))
    assert code == 1 and out == ""
    line = _one_error(err)
    assert "stale" in line and "neuroposter export" in line


@pytest.mark.slow
def test_a_poster_outside_the_dataset_is_classified(built, tmp_path, capsys) -> None:
    from PIL import Image

    ws = built / "ws"
    files, _ = _posters(ws, 1)
    with Image.open(files[0]) as im:
        im.rotate(90, expand=True).save(tmp_path / "new.png")
    code, out, _ = _cli(capsys, "predict", str(tmp_path / "new.png"), "--json", "-w", str(ws))
    assert code == 0
    p = json.loads(out)["posters"][0]
    assert p["dataset_index"] is None and len(p["genres"]) == len(json.loads(
        (ws / "datasets" / "default" / "genres.json").read_text()))
    assert os.path.basename(p["poster"]) == "new.png"
