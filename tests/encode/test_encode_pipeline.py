"""encode_store -> load_encoded: events on disk, torch datasets, collation, report, reruns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroposter.encode import collate_time_first, encode_store, load_encoded
from neuroposter.encode.build import sample_seed
from neuroposter.errors import ManifestError, UsageError
from neuroposter.manifest import read_manifest


@pytest.mark.parametrize("form", ["tokens", "pooled"])
def test_encode_store_and_load(fake_store, tmp_path, form):
    out = tmp_path / "encoded" / "default"
    res = encode_store(fake_store, out, encoder="multilevel", T=4, form=form, probe=False, show_progress=False)
    assert res.status == "built"
    es = load_encoded(out)
    n_tok = 4 if form == "tokens" else 1
    assert (es.T, es.form, es.n_tokens, es.dim) == (4, form, n_tok, 16)
    assert es.genres == ["g0", "g1", "g2", "g3"] and es.key == res.key
    assert {s: es.size(s) for s in es.splits} == {"train": 12, "val": 4, "test": 4}
    ds = es.dataset("train")
    spikes, labels = ds[0]
    assert spikes.dtype == torch.float32 and tuple(spikes.shape) == (4, n_tok, 16)
    assert labels.dtype == torch.float32 and tuple(labels.shape) == (4,)
    # the stored events decode to exactly what the fitted encoder gives
    row = int(es.rows("train")[0])
    raw = np.asarray(fake_store.tokens[row] if form == "tokens" else fake_store.pooled[row][None], np.float32)
    np.testing.assert_array_equal(spikes.numpy(), es.encoder.encode(raw))
    np.testing.assert_array_equal(labels.numpy(), fake_store.labels[row])
    # the tonic decoder path gives the same tensors
    np.testing.assert_array_equal(es.dataset("train", via_tonic=True)[3][0].numpy(), ds[3][0].numpy())
    ev = es.events("train", 3, token=n_tok - 1)
    assert set(ev.dtype.names) == {"t", "x", "p"}
    # time-first batches
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate_time_first)
    xb, yb = next(iter(loader))
    assert tuple(xb.shape) == (4, 5, n_tok, 16) and tuple(yb.shape) == (5, 4)
    # the ANN twin sees the normalised features that were encoded
    fx, fy = es.features_dataset("test")[1]
    assert tuple(fx.shape) == (n_tok, 16) and float(fx.min()) >= 0 and float(fx.max()) <= 1
    np.testing.assert_array_equal(fy.numpy(), es.split_labels("test")[1])
    np.testing.assert_array_equal(es.labels, fake_store.labels)


def test_report_manifest_and_figure(fake_store, tmp_path):
    out = tmp_path / "enc"
    encode_store(fake_store, out, encoder="multilevel", T=4, show_progress=False)
    rep = json.loads((out / "encoding_report.json").read_text())
    assert len(rep["splits"]["train"]["firing_rate_per_step"]) == 4
    assert 0 < rep["firing_rate"] < 1
    assert rep["bits_per_feature"]["capacity"] == pytest.approx(np.log2(5))
    assert 0 < rep["bits_per_feature"]["measured_train"] <= np.log2(5) + 1e-9
    assert rep["reconstruction"]["r2"] > 0.5  # lookup decoding keeps most of the signal
    for k in ("spikes", "features", "constant"):
        assert 0 <= rep["probe"][k]["micro_f1"] <= 1
    assert (out / "encoding_report.png").stat().st_size > 1000
    m = read_manifest(out)
    assert m["kind"] == "encoded" and m["inputs"]["features"]["key"] == fake_store.key
    assert m["config"]["T"] == 4 and m["n_tokens"] == 4


def test_rerun_is_noop_and_options_change_rebuilds_only_with_force(fake_store, tmp_path):
    out = tmp_path / "enc"
    first = encode_store(fake_store, out, encoder="threshold", T=2, probe=False, show_progress=False)
    assert encode_store(fake_store, out, encoder="threshold", T=2, probe=False,
                        show_progress=False).status == "up-to-date"
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=r"other features or options \(T 2 -> 3\).*--force"):
        encode_store(fake_store, out, encoder="threshold", T=3, probe=False, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    second = encode_store(fake_store, out, encoder="threshold", T=3, probe=False, show_progress=False, force=True)
    assert second.status == "rebuilt" and second.key != first.key and load_encoded(out).T == 3


def test_up_to_date_set_with_a_changed_file_is_refused(fake_store, tmp_path):
    out = tmp_path / "enc"
    encode_store(fake_store, out, encoder="threshold", T=2, probe=False, show_progress=False)
    labels = out / "events_train" / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x07")
    with pytest.raises(ManifestError, match=r"labels\.npy has changed.*neuroposter encode --force"):
        encode_store(fake_store, out, encoder="threshold", T=2, probe=False, show_progress=False)
    assert encode_store(fake_store, out, encoder="threshold", T=2, probe=False, show_progress=False,
                        force=True).status == "rebuilt"
    load_encoded(out)


def test_destination_must_be_an_encoded_set(fake_store, tmp_path):
    with pytest.raises(UsageError, match="an input of this command"):
        encode_store(fake_store, fake_store.path, probe=False, show_progress=False, force=True)
    with pytest.raises(UsageError, match="an input of this command"):
        encode_store(fake_store, fake_store.path.parent.parent, probe=False, show_progress=False, force=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    with pytest.raises(UsageError, match="not a neuroposter encoded"):
        encode_store(fake_store, other, probe=False, show_progress=False, force=True)
    assert (other / "a.txt").read_text() == "keep"


def test_rate_encoding_is_seeded_per_sample(fake_store, tmp_path):
    a = encode_store(fake_store, tmp_path / "a", encoder="rate", T=4, seed=1, probe=False, show_progress=False)
    b = encode_store(fake_store, tmp_path / "b", encoder="rate", T=4, seed=1, chunk=3, probe=False,
                     show_progress=False)
    c = encode_store(fake_store, tmp_path / "c", encoder="rate", T=4, seed=2, probe=False, show_progress=False)
    ea, eb, ec = (load_encoded(r.path) for r in (a, b, c))
    np.testing.assert_array_equal(ea.spikes("test", 2), eb.spikes("test", 2))  # independent of chunking
    assert not np.array_equal(ea.spikes("train", 0), ec.spikes("train", 0))
    row = int(ea.rows("test")[2])
    u = ea.encoder.normalize(np.asarray(fake_store.tokens[row], np.float32))
    np.testing.assert_array_equal(ea.spikes("test", 2), ea.encoder.encode(u, seed=sample_seed(1, row), normalized=True))


def test_load_encoded_missing(tmp_path):
    with pytest.raises(ManifestError, match="neuroposter encode"):
        load_encoded(tmp_path / "nope")
