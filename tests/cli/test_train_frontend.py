"""``neuroposter train --model sdt-frontend --init-from sdt`` on the CLI tests' small workspace: the data path pairs
each poster's image with its encoded spikes (same split, same order), the run records where its head came from and
keeps it frozen, and ``export --target nir`` verifies the whole graph and counts the front end's first convolution as
MACs on the analog image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroposter.cli import main


@pytest.fixture(scope="module")
def ws(built: Path, tmp_path_factory) -> Path:
    """A private copy of the built workspace (the runs written here stay out of the shared one)."""
    dst = tmp_path_factory.mktemp("frontend") / "ws"
    shutil.copytree(built / "ws", dst)
    return dst


def test_task_pairs_each_poster_image_with_its_encoded_spikes(ws: Path) -> None:
    from neuroposter.data import load_dataset
    from neuroposter.encode import load_encoded
    from neuroposter.models.vit import image_to_tensor
    from neuroposter.train.data import load_task_data
    from neuroposter.workspace import Workspace

    task, _ = load_task_data("sdt-frontend", Workspace(ws), stages=3)
    enc = load_encoded(ws / "encoded" / "default")
    ds = load_dataset(ws / "datasets" / "default")
    assert task.meta["image_size"] == [64, 40] and task.meta["grid"] == [8, 5]
    for s in ("train", "val", "test"):
        sp = task.split(s)
        # the reference pairing: the dataset's own split order (every poster has features in this workspace)
        rows = np.asarray(ds.indices(s))
        assert len(sp) == len(rows) == enc.size(s) > 0
        want = torch.stack([image_to_tensor(ds.load_image(int(i)), (64, 40)) for i in rows])
        assert torch.equal(sp.inputs, want)
        assert np.array_equal(sp.labels.numpy(), np.asarray(ds.labels, dtype=np.float32)[rows])
        spikes = np.stack([enc.spikes(s, i) for i in range(len(rows))], axis=1)     # [T, n, N, D]
        assert np.array_equal(sp.aux.numpy(), np.swapaxes(spikes, 0, 1))


def test_train_freezes_the_sdt_head_records_it_and_exports(ws: Path, tmp_path: Path) -> None:
    from neuroposter.train import load_run

    export = tmp_path / "export"
    for argv in (["train", "--model", "sdt-frontend", "--init-from", "sdt", "--epochs", "2", "--threads", "1",
                  "--distill-weight", "0.5", "--frontend-widths", "4,4,8", "-w", str(ws)],
                 ["export", "--target", "nir", "--samples", "3", "--run", "sdt-frontend", "-w", str(ws),
                  "--export-root", str(export)]):
        assert main(argv) == 0, argv
    run = ws / "runs" / "sdt-frontend"
    spec = json.loads((run / "model.json").read_text())
    sdt_manifest = json.loads((ws / "runs" / "sdt" / "manifest.json").read_text())
    kw = spec["kwargs"]
    assert spec["model"] == "sdt-frontend" and spec["inputs"] == "images"
    assert kw["image_size"] == [64, 40] and kw["widths"] == [4, 4, 8] and kw["distill_weight"] == 0.5
    assert kw["head_run"] == "sdt" and kw["head_key"] == sdt_manifest["key"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and "most_frequent" in metrics["baselines"]
    assert metrics["frontend"]["head_key"] == sdt_manifest["key"]
    head = load_run(ws / "runs" / "sdt").model.state_dict()
    mine = load_run(run).model.state_dict()
    for k, v in head.items():
        assert torch.equal(mine[k], v), k
    summary = json.loads((export / "nir" / "sdt-frontend" / "summary.json").read_text())
    assert summary["verification"]["vs_norse"]["spike_agreement"] == 1.0
    counts = json.loads((export / "nir" / "sdt-frontend" / "op_counts.json").read_text())["entries"]["model"]["counts"]
    layers = {lc["name"]: lc for lc in counts["layers"]}
    assert {"stem.conv1", "stem.conv2", "stem.conv3", "stem.proj", "embed"} <= set(layers)
    assert layers["stem.conv1"]["effective_macs"] > 0 and layers["stem.conv1"]["effective_acs"] == 0
    for name in ("stem.conv2", "stem.conv3", "stem.proj"):   # every front-end layer is counted, event-driven
        assert 0 < layers[name]["effective_macs"] + layers[name]["effective_acs"] < layers[name]["dense_ops"], name
    # the SDT reads the front end's binary spikes: accumulates only, as on the encoder's spikes
    assert layers["embed"]["effective_macs"] == 0 and layers["embed"]["effective_acs"] > 0


def test_init_from_is_required_and_must_be_an_sdt_run(ws: Path, capsys) -> None:
    assert main(["train", "--model", "sdt-frontend", "--epochs", "1", "-w", str(ws), "--name", "fe-x"]) == 2
    assert "--init-from" in capsys.readouterr().err
    assert main(["train", "--model", "sdt-frontend", "--init-from", "sdt-frontend", "--epochs", "1", "-w", str(ws),
                 "--name", "fe-y"]) == 2
    assert "needs an sdt run" in capsys.readouterr().err
