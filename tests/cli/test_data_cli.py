"""`neuroposter data synth|import|download` end to end through neuroposter.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neuroposter.cli import main


@pytest.fixture(scope="module")
def synth_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding `data synth --size tiny` output (shared; tests must not change raw/)."""
    ws = tmp_path_factory.mktemp("ws")
    assert main(["data", "synth", "--size", "tiny", "-w", str(ws)]) == 0
    return ws


def test_synth_then_import_with_defaults(synth_ws, capsys):
    raw = synth_ws / "raw" / "synth"
    assert len(list((raw / "posters").glob("*.jpg"))) == 48
    assert (raw / "MovieGenre.csv").is_file() and (raw / "resolved_config.yaml").is_file()
    capsys.readouterr()
    assert main(["data", "import", "-w", str(synth_ws)]) == 0
    out = capsys.readouterr().out
    assert "rows read 48, kept 48, skipped 0" in out and "Drama" in out and "train" in out
    ds = synth_ws / "datasets" / "default"
    for name in ("items.csv", "labels.npy", "genres.json", "manifest.json", "data_report.json",
                 "resolved_config.yaml"):
        assert (ds / name).is_file(), name
    cfg = yaml.safe_load((ds / "resolved_config.yaml").read_text())
    assert cfg["csv"] == str(raw / "MovieGenre.csv") and cfg["split"] == [0.7, 0.15, 0.15]
    from neuroposter.data import load_dataset

    assert len(load_dataset(ds)) == 48


def test_import_options_reach_the_manifest(synth_ws, tmp_path):
    ws = tmp_path / "ws"
    csv = synth_ws / "raw" / "synth" / "MovieGenre.csv"
    rc = main(["data", "import", "-w", str(ws), "--csv", str(csv), "--name", "small", "--top-genres", "4",
               "--split", "0.6", "0.2", "0.2", "--seed", "2", "--image-policy", "crop", "--image-size", "224", "224"])
    assert rc == 0
    m = json.loads((ws / "datasets" / "small" / "manifest.json").read_text())
    assert m["config"]["top_genres"] == 4 and m["config"]["split"] == [0.6, 0.2, 0.2] and m["config"]["seed"] == 2
    assert m["config"]["image_policy"]["mode"] == "crop" and m["config"]["image_policy"]["height"] == 224
    assert len(m["genres"]) == 4


def test_missing_csv_is_exit_1_with_one_line(tmp_path, capsys):
    rc = main(["data", "import", "-w", str(tmp_path), "--csv", str(tmp_path / "nope.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith("neuroposter: error:") and "nope.csv" in err and "not found" in err
    assert main(["data", "download", "-w", str(tmp_path), "--csv", str(tmp_path / "nope.csv")]) == 1


def test_offline_download_is_exit_1(tmp_path, capsys):
    csv = tmp_path / "MovieGenre.csv"
    csv.write_bytes(b"imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
                    b"1,http://www.imdb.com/title/tt1,A (2000),6,Drama,http://127.0.0.1:9/1.jpg\n")
    assert main(["data", "download", "--csv", str(csv), "-w", str(tmp_path)]) == 1
    assert "offline" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["data"],
    ["data", "shuffle"],
    ["data", "import", "--image-policy", "stretch"],
    ["data", "import", "--split", "0.7", "0.3"],
    ["data", "import", "--min-count", "0"],
    ["data", "synth", "--n", "-3"],
    ["data", "download"],  # --csv is required
])
def test_usage_errors_exit_2(argv, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "-w", str(tmp_path)] if len(argv) > 2 else argv)
    assert exc.value.code == 2


def test_semantic_usage_errors_return_2(tmp_path, capsys):
    assert main(["data", "import", "-w", str(tmp_path), "--split", "0.5", "0.2", "0.2"]) == 2
    assert "sum to 1" in capsys.readouterr().err
    assert main(["data", "import", "-w", str(tmp_path), "--name", "../escape"]) == 2
    assert not (tmp_path / "escape").exists()


def test_config_overrides_defaults_and_flags_override_config(synth_ws, tmp_path):
    csv = synth_ws / "raw" / "synth" / "MovieGenre.csv"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"seed": 3, "data": {"top_genres": 3},
                                   "import": {"name": "fromcfg", "split": [0.5, 0.25, 0.25]}}))
    ws = tmp_path / "ws"
    assert main(["data", "import", "-w", str(ws), "--csv", str(csv), "-c", str(cfg)]) == 0
    m = json.loads((ws / "datasets" / "fromcfg" / "manifest.json").read_text())
    assert m["config"]["seed"] == 3 and m["config"]["split"] == [0.5, 0.25, 0.25] and m["config"]["top_genres"] == 3
    assert main(["data", "import", "-w", str(ws), "--csv", str(csv), "-c", str(cfg), "--seed", "5",
                 "--name", "flag"]) == 0
    m = json.loads((ws / "datasets" / "flag" / "manifest.json").read_text())
    assert m["config"]["seed"] == 5 and m["config"]["top_genres"] == 3


def test_bad_config_values_are_usage_errors(synth_ws, tmp_path, capsys):
    csv = synth_ws / "raw" / "synth" / "MovieGenre.csv"
    bad = tmp_path / "bad.yaml"
    for cfg, flag in (({"min_count": 0}, "--min-count"), ({"split": [0.5, 0.5]}, "split")):
        bad.write_text(yaml.safe_dump(cfg))
        with pytest.raises(SystemExit) as exc:  # the same usage error as the flag: argparse's exit 2
            main(["data", "import", "-w", str(tmp_path), "--csv", str(csv), "-c", str(bad)])
        assert exc.value.code == 2 and flag in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"no_such_option": 1}))
    with pytest.raises(SystemExit) as exc:
        main(["data", "import", "-w", str(tmp_path), "-c", str(bad)])
    assert exc.value.code == 2


def test_synth_out_and_seed(tmp_path):
    out = tmp_path / "mine"
    assert main(["data", "synth", "--n", "5", "--seed", "3", "--out", str(out), "-w", str(tmp_path)]) == 0
    assert len(list((out / "posters").glob("*.jpg"))) == 5
    assert yaml.safe_load((out / "resolved_config.yaml").read_text())["n"] == 5


def test_cli_choices_match_the_library():
    from neuroposter.cli import data as cli_data
    from neuroposter.data import POLICY_MODES, SYNTH_SIZES

    assert cli_data._SYNTH_SIZES == SYNTH_SIZES and tuple(cli_data._POLICY_MODES) == POLICY_MODES


@pytest.mark.parametrize("command, section, flag", [
    ("features", "features:\n  batch_size: 0\n", "--batch-size"),
    ("encode", "encode:\n  T: -3\n", "--T"),
    ("train", "train:\n  epochs: 2.5\n", "--epochs"),
])
def test_bad_typed_config_values_are_usage_errors(tmp_path, capsys, command, section, flag):
    """A config value passes the option's own type/range check, like the same flag (usage error, exit 2)."""
    from neuroposter.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(section)
    with pytest.raises(SystemExit) as exc:
        main([command, "--workspace", str(tmp_path / "ws"), "--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("argv", [["--epochs", "-1"], ["--batch-size", "0"], ["--lr", "0"], ["--patience", "0"]])
def test_train_rejects_out_of_range_flags_as_usage_errors(tmp_path, capsys, argv):
    from neuroposter.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--workspace", str(tmp_path / "ws"), *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err
