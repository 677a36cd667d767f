"""``neuroposter train`` through ``main([...])``: exit codes, run folder, resolved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_spike_task

import neuroposter.train as train_pkg
from neuroposter.cli import main


def test_train_cli_writes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    task = make_spike_task(n=64)
    seen: dict[str, object] = {}

    def fake_loader(model: str, ws: object, **kw: object) -> tuple[object, None]:
        seen.update(model=model, **kw)
        return task, None

    monkeypatch.setattr(train_pkg, "load_task_data", fake_loader)
    code = main(["train", "-w", str(tmp_path), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
                 "--threads", "1", "--name", "mysdt"])
    assert code == 0
    assert seen["model"] == "sdt" and seen["encoded"] == "default"
    run = tmp_path / "runs" / "mysdt"
    assert (run / "metrics.json").is_file() and (run / "checkpoint.pt").is_file()
    cfg = yaml.safe_load((run / "resolved_config.yaml").read_text())
    assert cfg["model"] == "sdt" and cfg["epochs"] == 1 and cfg["seed"] == 0
    out = capsys.readouterr().out
    assert "most_frequent" in out and "predict_nothing" in out


def test_train_cli_missing_inputs_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "-w", str(tmp_path), "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neuroposter encode" in err[0]


def test_train_cli_rejects_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "-w", str(tmp_path), "--model", "resnet"])
    assert exc.value.code == 2
