"""Fixtures of the CLI tests: a small workspace built with the CLI (session-wide, slow to build: about 40 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroposter.cli import main


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """ws/ (24 synthetic posters, random-weight features, the default encoded set, a 1-epoch SDT) and
    export/nir/sdt, built with the CLI."""
    import torch

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("predict")
    ws, export = base / "ws", base / "export"
    for argv in (["data", "synth", "--n", "24", "-w", str(ws)], ["data", "import", "-w", str(ws)],
                 ["features", "--weights", "random", "-w", str(ws)], ["encode", "-w", str(ws)],
                 ["train", "--model", "sdt", "--epochs", "1", "--threads", "1", "-w", str(ws)],
                 ["export", "--target", "nir", "--samples", "2", "-w", str(ws), "--export-root", str(export)]):
        assert main(argv) == 0, argv
    return base
