"""Workspace paths: names resolve inside the workspace, paths are taken as given."""

from __future__ import annotations

from pathlib import Path

from neuroposter.workspace import Workspace


def test_names_resolve_inside_and_paths_are_taken_as_given(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    assert ws.dataset() == tmp_path / "ws" / "datasets" / "default"
    assert ws.run("sdt") == tmp_path / "ws" / "runs" / "sdt"
    assert ws.features(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    assert ws.encoded("other/set") == Path("other/set")
    assert Workspace.at(None).root == Path("workspace")
