"""The `features` and `encode` commands end to end on a tiny synthetic workspace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroposter.cli import build_parser, main
from neuroposter.cli.encode import ENCODER_NAMES
from neuroposter.encode import ENCODERS, load_encoded
from neuroposter.features import open_store
from neuroposter.manifest import read_manifest


def test_cli_defaults_and_encoder_choices_match_the_registry():
    assert tuple(ENCODERS.names()) == ENCODER_NAMES
    p = build_parser()
    f = p.parse_args(["features"])
    assert (f.dataset, f.name, f.weights, f.batch_size, f.limit, f.force) == ("default", "default", "auto", 16,
                                                                              None, False)
    e = p.parse_args(["encode"])
    assert (e.features, e.name, e.encoder, e.T, e.form, e.seed) == ("default", "default", "multilevel", 4,
                                                                    "tokens", 0)
    with pytest.raises(SystemExit):
        p.parse_args(["encode", "--encoder", "poisson"])


@pytest.mark.slow
def test_features_then_encode_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEUROPOSTER_OFFLINE", "1")
    ws = str(tmp_path / "ws")
    assert main(["data", "synth", "-w", ws, "--n", "15", "--width", "64", "--height", "96"]) == 0
    assert main(["data", "import", "-w", ws, "--image-size", "96", "64"]) == 0
    capsys.readouterr()

    assert main(["features", "-w", ws, "--weights", "random", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "grid 3x2" in out and "weights random" in out
    store = open_store(tmp_path / "ws" / "features" / "default")
    assert store.tokens.shape == (15, 6, 1664) and store.weights == "random"
    assert (tmp_path / "ws" / "features" / "default" / "resolved_config.yaml").is_file()
    assert main(["features", "-w", ws, "--weights", "random"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["features", "-w", ws, "--weights", "random:3"]) == 2  # a usage error: --force or --name
    assert "--force" in capsys.readouterr().err

    assert main(["encode", "-w", ws, "--T", "2", "--encoder", "multilevel"]) == 0
    out = capsys.readouterr().out
    assert "linear probe test micro-F1" in out and "firing rate" in out
    es = load_encoded(tmp_path / "ws" / "encoded" / "default")
    assert (es.T, es.n_tokens, es.dim) == (2, 6, 1664)
    x, y = es.dataset("train")[0]
    assert tuple(x.shape) == (2, 6, 1664) and tuple(y.shape) == (len(es.genres),)
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    rep = json.loads((es.path / "encoding_report.json").read_text())
    assert rep["probe"]["constant"]["micro_f1"] >= 0
    assert read_manifest(es.path)["weights"] == "random"
    assert main(["encode", "-w", ws, "--T", "2"]) == 0
    assert "up to date" in capsys.readouterr().out
