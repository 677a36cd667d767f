"""The feature store: shapes, no-op reruns, resume after interruption, keys, limits."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from neuroposter.errors import ManifestError, NeuroposterError
from neuroposter.features import (
    FEATURE_DIM,
    build_backbone,
    extract_features,
    open_store,
    partial_dir,
    preprocess_batch,
    run_backbone,
    store_key,
)
from neuroposter.features import extract as extract_mod
from neuroposter.manifest import read_manifest

_cached_build = functools.lru_cache(maxsize=4)(build_backbone)


@pytest.fixture(autouse=True)
def _reuse_backbones(monkeypatch):
    """Building DenseNet-169 costs ~1 s; the weights are deterministic, so reuse them."""
    monkeypatch.setattr(extract_mod, "build_backbone", _cached_build)


class Interrupt(Exception):
    pass


def _stop_after(k: int):
    def hook(batch: int) -> None:
        if batch + 1 >= k:
            raise Interrupt(f"stopped after batch {batch}")
    return hook


def test_extract_writes_pooled_and_tokens(tiny_posters, tmp_path):
    out = tmp_path / "features" / "default"
    res = extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert res.status == "built" and res.computed == 10 and res.grid == (1, 2)
    store = open_store(out, dataset=tiny_posters)
    assert len(store) == 10 and store.grid == (1, 2) and store.weights == "random"
    assert store.pooled.shape == (10, FEATURE_DIM) and store.pooled.dtype == np.float16
    assert store.tokens.shape == (10, 2, FEATURE_DIM) and store.tokens.dtype == np.float16
    assert not store.pooled.flags.writeable
    assert np.load(out / "done.npy").all()
    # pooled is the spatial mean of the token map; both match a direct forward pass
    np.testing.assert_allclose(store.pooled.astype(np.float32), store.tokens.astype(np.float32).mean(1),
                               rtol=2e-3, atol=2e-3)
    p, tk = run_backbone(_cached_build("random"), preprocess_batch([tiny_posters.load_image(i) for i in (0, 1)]))
    np.testing.assert_allclose(store.tokens[:2].astype(np.float32), tk, rtol=2e-3, atol=2e-3)
    m = read_manifest(out)
    assert m["kind"] == "features" and m["complete"] and m["key"] == store.key == res.key
    assert m["grid"] == [1, 2] and m["extra"]["weights"] == "random" and m["inputs"]["dataset"]["key"] == "tiny-v1"
    assert not partial_dir(out).exists()
    np.testing.assert_array_equal(store.split_rows("train"), np.arange(6))
    np.testing.assert_array_equal(store.labels, tiny_posters.labels)


def test_second_run_is_a_noop(tiny_posters, tmp_path):
    out = tmp_path / "f"
    extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    loads = tiny_posters.loads
    mtime = (out / "tokens.npy").stat().st_mtime_ns
    res = extract_features(tiny_posters, out, weights="random", batch_size=8, show_progress=False)
    assert res.status == "up-to-date" and res.computed == 0
    assert tiny_posters.loads == loads and (out / "tokens.npy").stat().st_mtime_ns == mtime


def test_interrupted_run_resumes_to_identical_result(tiny_posters, tmp_path):
    ref = tmp_path / "ref"
    extract_features(tiny_posters, ref, weights="random", batch_size=4, show_progress=False)
    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False,
                         on_batch=_stop_after(2))
    assert not out.exists() and partial_dir(out).exists()
    assert np.load(partial_dir(out) / "done.npy").sum() == 8
    with pytest.raises(ManifestError, match="interrupted"):
        open_store(out)
    res = extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert res.status == "resumed" and res.computed == 2
    a, b = open_store(ref, dataset=tiny_posters), open_store(out, dataset=tiny_posters)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.pooled, b.pooled)
    assert a.key == b.key


def test_interrupted_run_with_other_inputs_is_refused(tiny_posters, tmp_path):
    out = tmp_path / "f"
    with pytest.raises(Interrupt):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False,
                         on_batch=_stop_after(1))
    with pytest.raises(NeuroposterError, match="interrupted extraction with different inputs"):
        extract_features(tiny_posters, out, weights="random:1", batch_size=4, show_progress=False)
    res = extract_features(tiny_posters, out, weights="random:1", batch_size=4, show_progress=False, force=True)
    assert res.status == "built" and res.computed == 10


def test_key_changes_with_weights_and_rebuild_needs_force(tiny_posters, tmp_path):
    policy = tiny_posters.image_policy.to_dict()
    keys = {store_key("k", w, policy) for w in ("random", "random:1", "imagenet", "file:0123456789abcdef")}
    assert len(keys) == 4
    assert store_key("k", "random", policy) != store_key("k2", "random", policy)
    assert store_key("k", "random", policy) != store_key("k", "random", {**policy, "height": 49})

    out = tmp_path / "f"
    first = extract_features(tiny_posters, out, weights="random", batch_size=5, show_progress=False)
    with pytest.raises(NeuroposterError, match=r"different inputs \(weights \('random' -> 'random:1'\)\).*--force"):
        extract_features(tiny_posters, out, weights="random:1", batch_size=5, show_progress=False)
    assert open_store(out, dataset=tiny_posters).weights == "random"  # untouched
    second = extract_features(tiny_posters, out, weights="random:1", batch_size=5, show_progress=False, force=True)
    assert second.key != first.key
    store = open_store(out, dataset=tiny_posters)
    assert store.weights == "random:1" and store.key == second.key


def test_file_weights_recorded_by_hash(tiny_posters, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_cached_build("random").state_dict(), path)
    res = extract_features(tiny_posters, tmp_path / "f", weights=str(path), batch_size=10, limit=3,
                           show_progress=False)
    store = open_store(tmp_path / "f", dataset=tiny_posters)
    assert store.weights.startswith("file:") and res.weights == store.weights
    assert store.weights_path == str(path.resolve())
    assert store.build_backbone() is not None


def test_limit_spreads_rows_over_splits(tiny_posters, tmp_path):
    res = extract_features(tiny_posters, tmp_path / "f", weights="random", batch_size=4, limit=5,
                           show_progress=False)
    store = open_store(tmp_path / "f", dataset=tiny_posters)
    assert len(store) == res.rows == 5
    for split in ("train", "val", "test"):
        assert len(store.split_rows(split)) >= 1
    np.testing.assert_array_equal(store.labels, tiny_posters.labels[store.rows])
    full = store_key("tiny-v1", "random", tiny_posters.image_policy.to_dict())
    assert store.key != full


def test_open_store_errors(tmp_path):
    with pytest.raises(ManifestError, match="neuroposter features"):
        open_store(tmp_path / "nothing")


def test_unusable_weights_leave_no_partial_store(tiny_posters, tmp_path):
    bad = tmp_path / "not_a_state_dict.pt"
    torch.save([1, 2, 3], bad)
    out = tmp_path / "f"
    with pytest.raises(NeuroposterError, match="does not hold a state dict"):
        extract_features(tiny_posters, out, weights=str(bad), batch_size=4, show_progress=False)
    assert not out.exists() and not partial_dir(out).exists()
    # so other weights start cleanly instead of meeting an "interrupted extraction with different inputs"
    res = extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert res.status == "built" and res.computed == 10


def test_resume_keeps_the_interrupted_runs_batch_boundaries(tiny_posters, tmp_path):
    out = tmp_path / "f"
    with pytest.raises(Interrupt):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False,
                         on_batch=_stop_after(1))
    seen: list[int] = []
    res = extract_features(tiny_posters, out, weights="random", batch_size=3, show_progress=False,
                           on_batch=seen.append)
    assert res.status == "resumed" and res.computed == 6
    assert seen == [1, 2]  # batches 4..7 and 8..9 of size 4, not re-cut into batches of 3
    assert read_manifest(out)["config"]["batch_size"] == 4


def test_manifest_hashes_exactly_the_final_files(tiny_posters, tmp_path):
    from neuroposter.manifest import require_manifest

    out = tmp_path / "f"
    extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False,
                     before_commit=lambda d: (d / "resolved_config.yaml").write_text("weights: random\n"))
    files = {p.name for p in out.iterdir() if p.is_file()}
    assert "progress.json" not in files
    m = require_manifest(out, "features", rerun="x")
    assert set(m["files"]) == files - {"manifest.json", ".verified.json"}
    assert "resolved_config.yaml" in m["files"]


def test_destination_that_is_not_a_feature_store_is_refused_even_with_force(tiny_posters, tmp_path):
    from neuroposter.errors import UsageError
    from neuroposter.manifest import write_manifest

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    other = tmp_path / "enc"
    other.mkdir()
    write_manifest(other, "encoded")
    for dest, needle in ((mine, "not a neuroposter features"), (other, "holds an encoded artifact"),
                         (tiny_posters.root, "an input of this command"), (tmp_path, "an input of this command")):
        with pytest.raises(UsageError, match=needle):
            extract_features(tiny_posters, dest, weights="random", batch_size=4, show_progress=False, force=True)
    assert (mine / "a.txt").read_text() == "keep" and not partial_dir(mine).exists()


def test_changed_store_is_not_up_to_date(tiny_posters, tmp_path):
    out = tmp_path / "f"
    extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    arr = np.load(out / "pooled.npy", mmap_mode="r+")
    arr[0, 0] += 1
    arr.flush()
    del arr
    with pytest.raises(ManifestError, match=r"pooled\.npy has changed.*neuroposter features --force"):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    res = extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False, force=True)
    assert res.status == "built" and open_store(out, dataset=tiny_posters).key == res.key


def test_no_space_is_refused_before_anything_is_written(tiny_posters, tmp_path, monkeypatch):
    import shutil

    from neuroposter.errors import ResourceError

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type(real(p))(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "f"
    with pytest.raises(ResourceError, match=r"no space left on device: .*/f \(about \d+ MB needed"):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert not out.exists() and not partial_dir(out).exists()


def test_partial_whose_progress_was_already_removed_still_finishes(tiny_posters, tmp_path, monkeypatch):
    """A crash between removing progress.json and the swap: the partial's manifest says what it was."""
    ref = tmp_path / "ref"
    extract_features(tiny_posters, ref, weights="random", batch_size=4, show_progress=False)
    out = tmp_path / "f"

    def crash(src, dst):
        raise Interrupt("killed before the swap")

    monkeypatch.setattr(extract_mod, "swap_dir", crash)
    with pytest.raises(Interrupt):
        extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert not (partial_dir(out) / "progress.json").exists() and (partial_dir(out) / "manifest.json").exists()
    monkeypatch.undo()
    monkeypatch.setattr(extract_mod, "build_backbone", _cached_build)
    res = extract_features(tiny_posters, out, weights="random", batch_size=4, show_progress=False)
    assert res.status == "resumed" and res.computed == 0
    np.testing.assert_array_equal(np.load(ref / "tokens.npy"), np.load(out / "tokens.npy"))
