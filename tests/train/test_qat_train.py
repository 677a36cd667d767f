"""``neuroposter train --target``: quantisation-aware training, fine-tuning from a float run, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_spike_task

import neuroposter.train as train_pkg
from neuroposter._io import read_json
from neuroposter.cli import main
from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import arithmetic_of
from neuroposter.ir.simulate import simulate
from neuroposter.train import load_run
from neuroposter.train.loop import logits_of


@pytest.fixture
def pooled_task(monkeypatch: pytest.MonkeyPatch) -> object:
    task = make_spike_task(n=64, pooled=True)
    monkeypatch.setattr(train_pkg, "load_task_data", lambda model, ws, **kw: (task, None))
    return task


def _train(tmp_path: Path, *extra: str) -> int:
    return main(["train", "-w", str(tmp_path), "--model", "snn-mlp", "--batch-size", "16", "--device", "cpu",
                 "--threads", "1", *extra])


def test_float_then_quantisation_aware_phase_and_the_run_deploys_what_it_trained(
        tmp_path: Path, pooled_task: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path, "--target", "loihi", "--epochs", "2", "--qat-epochs", "2") == 0
    run_dir = tmp_path / "runs" / "snn-mlp-loihi"                   # default name: MODEL-TARGET
    spec = read_json(run_dir / "model.json")
    assert spec["deploy"] == {"target": "loihi", "profile": "loihi2", "weights": "pow2", "weight_bits": 8}
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["qat"]["float_phase"]["epochs_run"] == 2 and metrics["qat"]["init_from"] is None
    assert len(metrics["test"]) and "8-bit mantissa" in capsys.readouterr().out
    run = load_run(run_dir)
    assert arithmetic_of(run.model).target == "loihi"
    # the loaded run's forward is the deployed integer network: the reference simulator on its integer graph
    from neuroposter.targets import training_quantiser

    x = pooled_task.test.inputs.permute(1, 0, 2, 3).float()         # [T, B, 1, D]
    with torch.no_grad():
        trained = run.model(x).numpy()
    graph = lower_model(run.model, T=4)
    ref = simulate(training_quantiser(arithmetic_of(run.model))(run.model), to_graph_input(x, graph).astype(np.int64),
                   arithmetic="int")
    np.testing.assert_allclose(trained, ref.aligned_output(), rtol=0, atol=1e-9)


def test_fine_tune_from_a_float_run(tmp_path: Path, pooled_task: object) -> None:
    assert _train(tmp_path, "--epochs", "1") == 0
    assert _train(tmp_path, "--target", "xylo", "--init-from", "snn-mlp", "--qat-epochs", "1", "--name", "ft") == 0
    metrics = read_json(tmp_path / "runs" / "ft" / "metrics.json")
    assert metrics["qat"]["float_phase"] is None
    assert metrics["qat"]["init_from"]["run"].endswith("snn-mlp")
    assert metrics["qat"]["arithmetic"]["weights"] == "grid"
    manifest = read_json(tmp_path / "runs" / "ft" / "manifest.json")
    assert manifest["config"]["qat"]["init_from"]["key"] == read_json(tmp_path / "runs" / "snn-mlp" / "manifest.json")["key"]
    # the chip's weights are on its 8-bit grid in the trained forward: at most 255 distinct levels per connection
    run = load_run(tmp_path / "runs" / "ft")
    from neuroposter.ir.qat import deployed_weights

    for path, w in deployed_weights(run.model, arithmetic_of(run.model)).items():
        assert len(np.unique(w)) <= 255, path
    x = pooled_task.test.inputs.permute(1, 0, 2, 3).float()
    assert torch.isfinite(logits_of(run.model, x)).all()


@pytest.mark.parametrize("argv, needle", [
    (["--init-from", "x"], "only apply with --target"),
    (["--qat-epochs", "3"], "only apply with --target"),
    (["--model", "ann-transformer", "--target", "loihi"], "not one (spiking models: sdt, snn-mlp, chip-snn, sdt-pixels, chip-cnn, sdt-frontend)"),
    (["--target", "loihi", "--init-from", "nope"], "nope"),
])
def test_refusals_are_one_line(tmp_path: Path, pooled_task: object, capsys: pytest.CaptureFixture[str],
                               argv: list[str], needle: str) -> None:
    code = main(["train", "-w", str(tmp_path), "--model", "snn-mlp", "--device", "cpu", *argv])
    assert code in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.endswith(".lock")]   # no run written


def test_unknown_target_lists_the_trainable_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "-w", str(tmp_path), "--target", "onnx"])
    assert exc.value.code == 2 and "loihi" in capsys.readouterr().err


def test_init_from_another_model_is_refused(tmp_path: Path, pooled_task: object,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    code = main(["train", "-w", str(tmp_path), "--model", "sdt", "--target", "loihi", "--init-from", "snn-mlp",
                 "--device", "cpu"])
    assert code == 2 and "trained snn-mlp, not sdt" in capsys.readouterr().err
