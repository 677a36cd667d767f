"""Training runs on small in-memory tasks: outputs, reproducibility, resume, learning, load_run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_spike_task

from neuroposter.models import SpikeDrivenTransformer, SpikingMLPNet
from neuroposter.train import TrainConfig, fit, load_run, predict, train_run
from neuroposter.train.data import SplitData, TaskData

TINY_SDT = dict(d_model=16, depth=1, heads=2, mlp_hidden=16)


class _Interrupt(Exception):
    pass


def _stop_after(n: int):
    def cb(epoch: int, history: dict) -> None:
        if epoch == n:
            raise _Interrupt

    return cb


def test_run_folder_matches_the_contract(tmp_path: Path, spike_task: TaskData) -> None:
    run_dir = tmp_path / "runs" / "sdt"
    res = train_run("sdt", spike_task, run_dir, TrainConfig(epochs=2, batch_size=16), model_kwargs=TINY_SDT)
    assert res is not None
    names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    assert names == {"resolved_config.yaml", "manifest.json", "model.json", "checkpoint.pt", "metrics.json",
                     "curves.png", "predictions_test.npz", "results.json"}
    assert {p.name for p in run_dir.iterdir() if p.name.startswith(".")} <= {".verified.json"}  # hash cache
    assert not (tmp_path / "runs" / ".sdt.partial").exists()
    # beside the run: at most its (released) lock file; no temporaries, no training state
    assert {p.name for p in (tmp_path / "runs").iterdir()} <= {"sdt", ".sdt.lock"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keys = {"micro_f1", "macro_f1", "samples_f1", "map", "hamming", "p_at_1",
            "micro_f1_tuned", "macro_f1_tuned", "samples_f1_tuned"}
    assert metrics["model"] == "sdt" and set(metrics["test"]) == keys
    assert set(metrics["baselines"]) == {"most_frequent", "top2_frequent", "top3_frequent", "predict_nothing"}
    assert all(set(v) == keys for v in metrics["baselines"].values())
    for k in ("micro_f1", "macro_f1", "samples_f1", "map", "hamming", "p_at_1"):
        assert metrics[k] == metrics["test"][k]
    assert len(metrics["thresholds"]) == 4
    assert "blocks.0.attn.kv_sn" in metrics["firing_rates"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "run" and manifest["model"] == "sdt"
    assert set(manifest["files"]) == names - {"manifest.json"}   # every file hashed
    assert manifest["inputs"]["encoded"]["key"] == "fake-0"
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert isinstance(state, dict) and "embed.weight" in state
    preds = np.load(run_dir / "predictions_test.npz")
    assert preds["scores"].shape == preds["labels"].shape == (24, 4)

    loaded = load_run(run_dir)
    assert isinstance(loaded.model, SpikeDrivenTransformer) and not loaded.model.training
    assert loaded.model_name == "sdt" and loaded.metrics["map"] == metrics["map"]
    again = predict(loaded.model, spike_task.test, "spikes")
    np.testing.assert_array_equal(again.scores, preds["scores"])


def test_same_seed_same_result_and_resume_is_exact(tmp_path: Path, spike_task: TaskData) -> None:
    cfg = TrainConfig(epochs=4, batch_size=16, patience=10)
    full = train_run("sdt", spike_task, tmp_path / "a", cfg, model_kwargs=TINY_SDT)
    again = train_run("sdt", spike_task, tmp_path / "b", cfg, model_kwargs=TINY_SDT)
    assert full is not None and again is not None
    assert full.metrics["test"] == again.metrics["test"]

    with pytest.raises(_Interrupt):
        train_run("sdt", spike_task, tmp_path / "c", cfg, model_kwargs=TINY_SDT, on_epoch_end=_stop_after(2))
    assert (tmp_path / ".c.partial" / "train_state.pt").is_file() and not (tmp_path / "c").exists()
    resumed = train_run("sdt", spike_task, tmp_path / "c", cfg, model_kwargs=TINY_SDT, resume=True)
    assert resumed is not None and resumed.fit.resumed_from == 2
    assert resumed.fit.history == full.fit.history
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    c = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert a.keys() == c.keys()
    for k in a:
        assert torch.equal(a[k], c[k]), k
    assert resumed.metrics["test"] == full.metrics["test"]


def test_resume_refuses_other_settings(tmp_path: Path, spike_task: TaskData) -> None:
    from neuroposter.errors import DataError

    with pytest.raises(_Interrupt):
        train_run("sdt", spike_task, tmp_path / "r", TrainConfig(epochs=3, batch_size=16), model_kwargs=TINY_SDT,
                  on_epoch_end=_stop_after(1))
    with pytest.raises(DataError, match="other settings"):
        train_run("sdt", spike_task, tmp_path / "r", TrainConfig(epochs=3, batch_size=16, lr=1e-2),
                  model_kwargs=TINY_SDT, resume=True)


def test_sdt_learns_the_planted_signal_and_beats_baselines(tmp_path: Path) -> None:
    task = make_spike_task(n=192, N=6, D=32, seed=1)
    res = train_run("sdt", task, tmp_path / "sdt", TrainConfig(epochs=12, batch_size=16, lr=5e-3),
                    model_kwargs=dict(d_model=32, depth=1, heads=2, mlp_hidden=32))
    assert res is not None
    m, best_base = res.metrics, max(v["micro_f1"] for v in res.metrics["baselines"].values())
    assert m["map"] > 0.9 > m["baselines"]["most_frequent"]["map"] + 0.3
    assert m["test"]["micro_f1_tuned"] > best_base + 0.3


def test_snn_mlp_trains_on_pooled_spikes(tmp_path: Path) -> None:
    task = make_spike_task(n=192, D=32, pooled=True, seed=2)
    res = train_run("snn-mlp", task, tmp_path / "mlp", TrainConfig(epochs=15, batch_size=16, lr=5e-3),
                    model_kwargs=dict(hidden1=32, hidden2=16))
    assert res is not None and res.metrics["map"] > 0.8
    assert set(res.metrics["firing_rates"]) == {"sn1", "sn2"}
    assert isinstance(load_run(tmp_path / "mlp").model, SpikingMLPNet)


def test_ann_transformer_on_feature_tokens(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(96, 3, generator=g) < 0.4).float()
    x = torch.randn(96, 5, 16, generator=g)
    x[:, :, :3] += 2 * y[:, None, :]          # genre k shifts channel k of every token
    sp = [SplitData(x[a:b], y[a:b]) for a, b in ((0, 48), (48, 72), (72, 96))]
    task = TaskData(*sp, ["a", "b", "c"], "features", meta={"n_tokens": 5, "d_in": 16})
    res = train_run("ann-transformer", task, tmp_path / "ann", TrainConfig(epochs=15, batch_size=16, lr=3e-3),
                    model_kwargs=dict(d_model=16, depth=1, heads=2, mlp_hidden=16))
    assert res is not None and res.metrics["map"] > 0.8 and res.metrics["firing_rates"] == {}


def test_fit_is_independent_of_the_model_output_layout(spike_task: TaskData) -> None:
    torch.manual_seed(0)
    net = SpikeDrivenTransformer(d_in=32, n_tokens=6, n_classes=4, **TINY_SDT)
    res = fit(net, spike_task, TrainConfig(epochs=1, batch_size=32))
    assert res.epochs_run == 1 and len(res.history["val_map"]) == 1


def test_resume_refuses_another_model_or_other_inputs(tmp_path: Path, spike_task: TaskData) -> None:
    from neuroposter.errors import DataError

    cfg = TrainConfig(epochs=3, batch_size=16)
    with pytest.raises(_Interrupt):
        train_run("sdt", spike_task, tmp_path / "r", cfg, model_kwargs=TINY_SDT, on_epoch_end=_stop_after(1))
    with pytest.raises(DataError, match="differs in model_kwargs"):
        train_run("sdt", spike_task, tmp_path / "r", cfg, model_kwargs={**TINY_SDT, "d_model": 32}, resume=True)
    other = make_spike_task(seed=5)  # same shapes, other encoded set (another input key)
    with pytest.raises(DataError, match="differs in inputs"):
        train_run("sdt", other, tmp_path / "r", cfg, model_kwargs=TINY_SDT, resume=True)
    assert (tmp_path / ".r.partial" / "train_state.pt").is_file()  # refused, not discarded
    resumed = train_run("sdt", spike_task, tmp_path / "r", cfg, model_kwargs=TINY_SDT, resume=True)
    assert resumed is not None and resumed.fit.resumed_from == 1


@pytest.mark.parametrize("bad", [[1, 2], torch.zeros(3), {"step": 1}])
def test_load_run_refuses_a_checkpoint_that_is_not_a_state_dict(tmp_path: Path, spike_task: TaskData, bad) -> None:
    from neuroposter.errors import DataError, ManifestError
    from neuroposter.manifest import record_files

    train_run("sdt", spike_task, tmp_path / "r", TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT)
    torch.save(bad, tmp_path / "r" / "checkpoint.pt")
    # a swapped checkpoint no longer matches the manifest's hash: refused before it is even loaded
    with pytest.raises(ManifestError, match=r"checkpoint.pt has changed since it was written.*"
                                            r"run `neuroposter train --model sdt --name .*r --force` again"):
        load_run(tmp_path / "r")
    # one that the manifest vouches for (a broken writer) is still checked for being a state dict
    record_files(tmp_path / "r")
    with pytest.raises(DataError, match="checkpoint.pt is not a state dict"):
        load_run(tmp_path / "r")


def test_load_run_refuses_a_same_size_swapped_checkpoint(tmp_path: Path, spike_task: TaskData) -> None:
    """Another run's state dict of the same shapes (same size) is caught by the content hash."""
    from neuroposter.errors import ManifestError

    cfg = TrainConfig(epochs=1, batch_size=32)
    train_run("sdt", spike_task, tmp_path / "a", cfg, model_kwargs=TINY_SDT)
    train_run("sdt", spike_task, tmp_path / "b", TrainConfig(epochs=1, batch_size=32, seed=1), model_kwargs=TINY_SDT)
    a, b = tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt"
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    a.write_bytes(b.read_bytes())
    with pytest.raises(ManifestError, match="checkpoint.pt has changed since it was written"):
        load_run(tmp_path / "a")


def test_an_existing_run_needs_force_and_other_destinations_are_refused(tmp_path: Path,
                                                                         spike_task: TaskData) -> None:
    from neuroposter._io import sha256_file
    from neuroposter.errors import UsageError

    cfg = TrainConfig(epochs=1, batch_size=32)
    run = tmp_path / "runs" / "r"
    train_run("sdt", spike_task, run, cfg, model_kwargs=TINY_SDT)
    before = {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()}
    seen: list[int] = []
    with pytest.raises(UsageError, match="already holds a run; pass --force"):
        train_run("sdt", spike_task, run, cfg, model_kwargs=TINY_SDT, on_epoch_end=lambda e, h: seen.append(e))
    assert seen == []                              # refused before any training
    assert {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()} == before
    for bad in (tmp_path / "runs", tmp_path, run / "sub"):   # a folder of runs, a folder of files, inside a run
        with pytest.raises(UsageError):
            train_run("sdt", spike_task, bad, cfg, model_kwargs=TINY_SDT, on_epoch_end=lambda e, h: seen.append(e))
    assert seen == []
    res = train_run("sdt", spike_task, run, TrainConfig(epochs=1, batch_size=32, seed=3), model_kwargs=TINY_SDT,
                    force=True)
    assert res is not None and load_run(run).config["seed"] == 3


def test_a_run_may_not_overlap_its_inputs(tmp_path: Path) -> None:
    from neuroposter.errors import UsageError

    enc = tmp_path / "encoded" / "default"
    enc.mkdir(parents=True)
    task = make_spike_task()
    task.inputs_manifest = {"encoded": {"path": str(enc), "key": "k"}}
    for bad in (enc, tmp_path / "encoded", tmp_path):
        with pytest.raises(UsageError):
            train_run("sdt", task, bad, TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT)
    with pytest.raises(UsageError, match="an input of this command"):
        train_run("sdt", make_spike_task(), tmp_path / "x", TrainConfig(epochs=1, batch_size=32),
                  model_kwargs=TINY_SDT, protect=[tmp_path / "x" / "inner"])


def test_a_second_writer_of_the_same_run_fails_at_once(tmp_path: Path, spike_task: TaskData) -> None:
    import subprocess
    import sys
    import textwrap

    from neuroposter.errors import ArtifactBusyError

    run = tmp_path / "runs" / "r"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from neuroposter.artifact import artifact_lock
        with artifact_lock({str(run)!r}):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        seen: list[int] = []
        with pytest.raises(ArtifactBusyError, match="being written by another neuroposter process"):
            train_run("sdt", spike_task, run, TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT,
                      on_epoch_end=lambda e, h: seen.append(e))
        assert seen == [] and not run.exists() and not (tmp_path / "runs" / ".r.partial").exists()
    finally:
        holder.communicate("", timeout=30)
    assert train_run("sdt", spike_task, run, TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT)


def test_full_disk_while_saving_the_checkpoint_is_one_line(tmp_path: Path, spike_task: TaskData,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save onto a full disk (the real ENOSPC, through /dev/full) -> ResourceError, no temporaries."""
    import collections
    import shutil

    from neuroposter.errors import ResourceError

    real_save, real_usage = torch.save, shutil.disk_usage
    full = {"on": False}

    def save(obj, f, *a, **kw):
        if full["on"] and "checkpoint.pt" in str(f):
            return real_save(obj, "/dev/full", *a, **kw)
        return real_save(obj, f, *a, **kw)

    def usage(path):  # the disk reports what a full disk reports, once it is full
        u = real_usage(path)
        return collections.namedtuple("usage", "total used free")(u.total, u.total, 0) if full["on"] else u

    def fill(epoch: int, history: dict) -> None:
        full["on"] = True

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    monkeypatch.setattr("neuroposter.artifact.check_free_space", lambda *a, **k: None)  # reach torch.save
    run = tmp_path / "runs" / "r"
    with pytest.raises(ResourceError) as exc:
        train_run("sdt", spike_task, run, TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT,
                  on_epoch_end=fill)
    msg = str(exc.value)
    assert msg.startswith(f"no space left on device: {run / 'checkpoint.pt'}") and "\n" not in msg
    assert "inline_container" not in msg and "--resume" in msg
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".r.lock", ".r.partial"]
    assert not list((tmp_path / "runs").rglob("*.tmp"))
    # space freed: --resume finishes from the kept training state
    full["on"] = False
    res = train_run("sdt", spike_task, run, TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT, resume=True)
    assert res is not None and res.fit.resumed_from == 1 and load_run(run)


def test_too_little_free_space_is_refused_before_training(tmp_path: Path, spike_task: TaskData,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import collections
    import shutil

    from neuroposter.errors import ResourceError

    monkeypatch.setattr(shutil, "disk_usage", lambda p: collections.namedtuple("u", "total used free")(10, 10, 0))
    seen: list[int] = []
    with pytest.raises(ResourceError, match=r"^no space left on device: .*\.r\.partial \(about"):
        train_run("sdt", spike_task, tmp_path / "r", TrainConfig(epochs=1, batch_size=32), model_kwargs=TINY_SDT,
                  on_epoch_end=lambda e, h: seen.append(e))
    assert seen == [] and not (tmp_path / "r").exists()


def test_resume_refuses_a_file_that_is_not_a_training_state(tmp_path: Path, spike_task: TaskData) -> None:
    from neuroposter.errors import DataError

    cfg = TrainConfig(epochs=3, batch_size=16)
    with pytest.raises(_Interrupt):
        train_run("sdt", spike_task, tmp_path / "r", cfg, model_kwargs=TINY_SDT, on_epoch_end=_stop_after(1))
    torch.save([1, 2, 3], tmp_path / ".r.partial" / "train_state.pt")
    with pytest.raises(DataError, match="not a training state"):
        train_run("sdt", spike_task, tmp_path / "r", cfg, model_kwargs=TINY_SDT, resume=True)
