"""Every example config parses against the commands it configures (each value passes the same checks as its flag)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neuroposter.cli import build_parser
from neuroposter.cli._common import apply_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.yaml"))


def _argv(command: str, section: dict) -> list[str]:
    """The command line a section configures: the required choices as flags, the rest from the config."""
    if command == "train":
        return ["train", "--model", str(section.get("model", "sdt"))]
    if command == "export":
        return ["export", "--target", str(section.get("target", "nir"))]
    return [command]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_parses(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    parser = build_parser()
    checked = 0
    for command in ("train", "export", "encode", "features", "report"):
        if isinstance(data.get(command), dict):
            argv = [*_argv(command, data[command]), "--config", str(path)]
            args = apply_config(parser, parser.parse_args(argv), argv)
            for k, v in data[command].items():
                assert getattr(args, k) == v, (command, k)
            checked += 1
    if not checked:   # a top-level config of `data import` (kaggle_import.yaml)
        argv = ["data", "import", "--config", str(path)]
        args = apply_config(parser, parser.parse_args(argv), argv)
        for k, v in data.items():
            got = getattr(args, k)
            assert (list(got) if isinstance(got, tuple) else got) == v, k
            checked += 1
    assert checked


def test_the_larger_pixel_config_is_larger_than_the_demo() -> None:
    from neuroposter.train import IMAGE_SIZE_DEFAULTS

    data = yaml.safe_load((CONFIGS[0].parent / "sdt_pixels_64.yaml").read_text(encoding="utf-8"))
    assert data["train"]["model"] == "sdt-pixels"
    assert data["train"]["image_size"] > IMAGE_SIZE_DEFAULTS["sdt-pixels"]
