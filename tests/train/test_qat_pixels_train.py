"""``neuroposter train --model sdt-pixels --target loihi``: a quantisation-aware fine-tune of a float pixel SDT whose
run is the network the Loihi target deploys (graded 8-bit image input over the training split's range)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import neuroposter.train as train_pkg
from neuroposter._io import read_json
from neuroposter.cli import main
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import arithmetic_of
from neuroposter.ir.simulate import simulate
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.loihi.fixed_point import quantize_input, quantize_loihi
from neuroposter.train import load_run
from neuroposter.train.data import SplitData, TaskData

S, G = 8, 3


def _image_task(n: int = 48, seed: int = 0) -> TaskData:
    """Normalised-looking images where genre ``g`` brightens channel ``g`` (a planted signal)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, G)) < 0.3).astype(np.float32)
    labels[np.arange(n), rng.integers(0, G, n)] = 1.0
    x = rng.normal(0.0, 0.6, (n, 3, S, S)) + 1.2 * labels[:, :, None, None]
    x, y = torch.from_numpy(np.clip(x, -2.1, 2.6).astype(np.float32)), torch.from_numpy(labels)
    a, b = n // 2, 3 * n // 4
    return TaskData(SplitData(x[:a], y[:a]), SplitData(x[a:b], y[a:b]), SplitData(x[b:], y[b:]),
                    [f"g{i}" for i in range(G)], "images", meta={"image_size": S},
                    inputs_manifest={"images": {"path": "memory", "key": f"fake-images-{seed}"}})


@pytest.fixture
def image_task(monkeypatch: pytest.MonkeyPatch) -> TaskData:
    task = _image_task()
    monkeypatch.setattr(train_pkg, "load_task_data", lambda model, ws, **kw: (task, None))
    return task


def _train(tmp_path: Path, *extra: str) -> int:
    return main(["train", "-w", str(tmp_path), "--model", "sdt-pixels", "--batch-size", "8",
                 "--device", "cpu", "--threads", "1", *extra])


def test_fine_tune_for_loihi_deploys_what_it_trained(tmp_path: Path, image_task: TaskData) -> None:
    assert _train(tmp_path, "--epochs", "1") == 0
    assert _train(tmp_path, "--target", "loihi", "--init-from", "sdt-pixels", "--qat-epochs", "1") == 0
    run_dir = tmp_path / "runs" / "sdt-pixels-loihi"
    amax = float(image_task.train.inputs.abs().max())
    spec = read_json(run_dir / "model.json")
    assert spec["deploy"] == {"target": "loihi", "profile": "loihi2", "weights": "pow2", "weight_bits": 8,
                              "input_amax": pytest.approx(amax, rel=0, abs=0)}
    assert read_json(run_dir / "metrics.json")["qat"]["init_from"]["run"].endswith("sdt-pixels")
    run = load_run(run_dir)
    assert arithmetic_of(run.model).input_amax == amax
    # the export's path (neuroposter.targets.loihi.target): the lowering records the range, the integer graph's
    # graded input takes its scale from it, the integer reference runs the quantised images
    x = image_task.test.inputs
    graph = lower_model(run.model, T=int(run.model.T))
    assert graph.metadata["input_amax"] == amax
    gi, _ = quantize_loihi(flatten(graph, strict=True), load_profile("loihi2"), input_amax=graph.metadata["input_amax"])
    ref = simulate(flatten(gi, strict=True), quantize_input(to_graph_input(x, graph), gi).astype(np.int64),
                   mode="same_step", arithmetic="int")
    with torch.no_grad():
        trained = run.model(x).numpy()
    deployed = ref.aligned_output()
    np.testing.assert_allclose(trained, deployed, rtol=0, atol=1e-9)
    thr = np.asarray(read_json(run_dir / "metrics.json")["thresholds"])
    agree = np.all((trained.mean(0) > thr) == (deployed.mean(0) > thr), axis=1).mean()
    assert agree == 1.0


def test_a_fine_tune_keeps_its_float_runs_image_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --image-size, `--init-from` of a 16x16 run loads 16x16 images (not the model's default side)."""
    from neuroposter._io import atomic_write_json
    from neuroposter.errors import DataError

    seen: dict = {}

    def fake(model: str, ws: object, **kw: object) -> None:
        seen.update(kw)
        raise DataError("stop here")

    monkeypatch.setattr(train_pkg, "load_task_data", fake)
    (tmp_path / "runs" / "px").mkdir(parents=True)
    atomic_write_json(tmp_path / "runs" / "px" / "model.json", {"model": "sdt-pixels", "kwargs": {"image_size": 16}})
    assert _train(tmp_path, "--target", "loihi", "--init-from", "px") == 1
    assert seen["image_size"] == 16
    seen.clear()
    assert _train(tmp_path, "--target", "loihi", "--init-from", "px", "--image-size", "24") == 1
    assert seen["image_size"] == 24                                     # an explicit side wins
