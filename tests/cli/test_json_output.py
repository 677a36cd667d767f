"""`--json` on the commands that print results (stdout is exactly one JSON document), and exit code 3 when a chip
refuses a model (a verdict, not a failure)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neuroposter.cli import main


def _one_document(out: str) -> dict:
    """stdout must be one JSON document and nothing else."""
    doc = json.loads(out)            # raises on anything before/after the document
    assert isinstance(doc, dict) and out.strip().startswith("{") and out.strip().endswith("}")
    return doc


def _nir_file(tmp_path: Path) -> Path:
    from neuroposter.ir.graph_io import write_graph
    from neuroposter.testing.graphs import chain_graph

    path = tmp_path / "chain.nir"
    write_graph(path, chain_graph())
    return path


def test_profile_json_is_one_document_with_the_printed_numbers(tmp_path, capsys) -> None:
    graph = _nir_file(tmp_path)
    assert main(["profile", str(graph), "--samples", "2", "--steps", "3"]) == 0
    text = capsys.readouterr().out
    assert main(["profile", str(graph), "--samples", "2", "--steps", "3", "--json"]) == 0
    doc = _one_document(capsys.readouterr().out)
    assert doc["command"] == "profile" and doc["exit_code"] == 0
    assert doc["per_inference"]["T"] == 3 and doc["per_inference"]["samples_averaged"] == 2
    assert f"{doc['per_inference']['spikes']:,.0f}" in text or f"{doc['per_inference']['spikes']:,.1f}" in text
    assert set(doc["energy"]["profiles"]) and doc["energy"]["view"] == "device"


def test_json_keeps_stdout_clean_even_from_writes_to_the_file_descriptor(tmp_path, capfd, monkeypatch) -> None:
    """Anything a library or a child process writes to fd 1 while the command runs goes to stderr."""
    from neuroposter.profiling import foreign

    real = foreign.format_profile

    def noisy(result):
        print("python-level noise")
        os.write(1, b"fd-level noise\n")
        return real(result)

    monkeypatch.setattr(foreign, "format_profile", noisy)
    assert main(["profile", str(_nir_file(tmp_path)), "--samples", "1", "--steps", "2", "--json"]) == 0
    out, err = capfd.readouterr()
    _one_document(out)
    assert "python-level noise" in err and "fd-level noise" in err


def test_report_list_profiles_json(capsys) -> None:
    assert main(["report", "--list-profiles", "--json"]) == 0
    doc = _one_document(capsys.readouterr().out)
    names = {p["name"] for p in doc["profiles"]}
    assert {"loihi2", "xylo", "jetson_agx_orin"} <= names
    assert all(p["source"] for p in doc["profiles"])


# -- exit code 3: a chip refuses the model -------------------------------------------------------------------


@pytest.fixture()
def refused_sdt(monkeypatch):
    """``load_run`` returns a small SDT (whose SDSA AND is a Threshold Xylo cannot host) and the evaluation inputs
    are seeded random spikes, as tests/targets/conftest.py ``stub_run`` does."""
    import torch

    import neuroposter.targets.inputs as inputs
    import neuroposter.train as train
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3)).eval()
    x = (np.random.default_rng(1).random((4, 3, 3, 8)) < 0.4).astype(np.uint8)
    labels = (np.random.default_rng(0).random((3, 3)) < 0.4).astype(np.uint8)
    run = SimpleNamespace(model=model, model_name="sdt", manifest={"key": "k"}, metrics={}, config={})
    monkeypatch.setattr(train, "load_run", lambda run_dir: run)

    def evaluation_inputs(loaded, run_dir, *, samples, split="test", seed=None):
        k = min(int(samples), x.shape[1])
        return inputs.EvalInputs(x[:, :k], labels[:k], np.arange(k), "encoded", "stub", "stub", split, 4)

    monkeypatch.setattr(inputs, "evaluation_inputs", evaluation_inputs)


def test_export_exits_3_when_the_chip_refuses(tmp_path, capsys, refused_sdt) -> None:
    (tmp_path / "ws" / "runs" / "r").mkdir(parents=True)
    argv = ["export", "--target", "xylo", "--run", "r", "-w", str(tmp_path / "ws"), "--export-root",
            str(tmp_path / "export")]
    assert main(argv) == 3
    assert "REFUSED" in capsys.readouterr().out
    summary = json.loads((tmp_path / "export" / "xylo" / "r" / "summary.json").read_text())
    assert summary["ok"] is False and "cannot host" in summary["reason"]
    assert main([*argv, "--force", "--json"]) == 3
    doc = _one_document(capsys.readouterr().out)
    assert doc["exit_code"] == 3 and doc["verdict"] == "refused" and doc["ok"] is False
    assert "cannot host" in doc["reason"] and doc["summary"]["ok"] is False


def test_fit_exits_3_when_its_export_is_refused(tmp_path, capsys, refused_sdt) -> None:
    import argparse

    from neuroposter.cli import fit
    from neuroposter.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws")
    (tmp_path / "ws" / "runs" / "fit-xylo").mkdir(parents=True)
    args = argparse.Namespace(target="xylo", export_root=str(tmp_path / "export"), samples=None,
                              trained_samples=None, force=False, json=False, command="fit")
    assert fit._export(args, ws, ws.run("fit-xylo")) == 3
    assert "fit xylo: refused: " in capsys.readouterr().out


def test_exit_codes_are_documented_in_help() -> None:
    from neuroposter.cli import __doc__ as doc
    from neuroposter.cli import build_parser

    assert "3 ``export`` and ``fit`` only: the chip refuses" in " ".join(doc.split())
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("export", "fit"):
        assert "3 the chip refuses the network" in " ".join(sub[name].format_help().split())


# -- slow: train, export, report, predict on a real (small) workspace --------------------------------------------


@pytest.mark.slow
def test_train_export_report_json_are_one_document_each(built, tmp_path, capsys) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built, root, symlinks=True)
    ws, export = root / "ws", root / "export"
    assert main(["train", "--model", "ann-transformer", "--epochs", "1", "--threads", "1",
                 "-w", str(ws), "--json"]) == 0
    doc = _one_document(capsys.readouterr().out)
    metrics = json.loads((ws / "runs" / "ann-transformer" / "metrics.json").read_text())
    assert doc["command"] == "train" and doc["model"] == "ann-transformer"
    assert doc["test"]["micro_f1"] == pytest.approx(metrics["test"]["micro_f1"])
    assert set(doc["baselines"]) == set(metrics["baselines"])

    assert main(["export", "--target", "nir", "--run", "sdt", "--samples", "2", "--force", "-w", str(ws),
                 "--export-root", str(export), "--json"]) == 0
    doc = _one_document(capsys.readouterr().out)
    assert doc["verdict"] == "ok" and doc["target"] == "nir" and Path(doc["bundle"]) == export / "nir" / "sdt"
    assert doc["summary"]["verification"]["vs_norse"]

    assert main(["report", "--runs", "sdt", "--no-latency", "-w", str(ws), "--json"]) == 0
    doc = _one_document(capsys.readouterr().out)
    assert Path(doc["report"]).is_dir() and doc["summary"] and isinstance(doc["energy"], list)


def test_demo_json_is_one_document_with_stage_times_and_outcomes(tmp_path, capsys, monkeypatch) -> None:
    """The demo's --json: its stages' own output goes to stderr; stdout holds the stage times and outcomes."""
    import neuroposter.cli.demo as demo

    monkeypatch.setattr(demo, "stages", lambda preset=None: [
        demo.Stage("list profiles", "report", lambda a, s: ["report", "--list-profiles"]),
        demo.Stage("never", "report", lambda a, s: ["report", "--list-profiles"], when=lambda o: False)])
    assert main(["demo", "--size", "tiny", "-w", str(tmp_path / "ws"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["command"] == "demo" and doc["exit_code"] == 0
    assert [s["stage"] for s in doc["stages"]] == ["list profiles"] and doc["stages"][0]["seconds"] >= 0
    assert doc["outcomes"] == {"list profiles": "ok", "never": "skipped"}
    assert "loihi" in captured.err                     # the stage's own table went to stderr


@pytest.mark.parametrize("argv, where", [
    (["train", "--epochs", "0", "--json"], "train:"),                # a value out of range
    (["export", "--target", "nowhere", "--json"], "export:"),        # a choice that does not exist
    (["predict", "--json", "--no-such-flag"], "predict:"),           # an unknown flag
])
def test_a_usage_error_still_answers_json_with_one_document(argv, where, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    doc = _one_document(out)
    assert doc["exit_code"] == 2 and doc["command"] == argv[0]
    assert doc["error"].startswith(where) and doc["error"] in err   # the same line as the text error


def test_a_bad_config_file_answers_json(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: [unclosed\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(cfg), "--json"])
    assert exc.value.code == 2
    doc = _one_document(capsys.readouterr().out)
    assert doc["exit_code"] == 2 and str(cfg) in doc["error"]


def test_a_usage_error_without_json_prints_no_document(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0"])
    out, err = capsys.readouterr()
    assert out == "" and "neuroposter: error: train:" in err
