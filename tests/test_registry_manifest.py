"""The explicit registry and artifact manifests."""

from __future__ import annotations

import pytest

from neuroposter._registry import Registry
from neuroposter.errors import ManifestError
from neuroposter.manifest import read_manifest, require_manifest, write_manifest


def test_registry_lists_valid_names_on_error():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.register("b")(2)
    assert reg.get("b") == 2 and reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(KeyError, match="unknown widget 'c'; available: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)


def test_manifest_round_trip_and_checks(tmp_path):
    write_manifest(tmp_path, "dataset", inputs={"csv": {"sha256": "x"}}, config={"seed": 0}, key="k1")
    m = read_manifest(tmp_path)
    assert m["kind"] == "dataset" and m["key"] == "k1" and m["config"] == {"seed": 0}
    assert m["libraries"]["python"].startswith("3.10")
    assert require_manifest(tmp_path, "dataset", rerun="neuroposter data import")["key"] == "k1"
    with pytest.raises(ManifestError, match="expected 'features'.*neuroposter features"):
        require_manifest(tmp_path, "features", rerun="neuroposter features")
    with pytest.raises(ManifestError, match="stale.*neuroposter data import"):
        require_manifest(tmp_path, "dataset", rerun="neuroposter data import", key="k2")
    with pytest.raises(ManifestError, match="does not exist; run `neuroposter data synth`"):
        require_manifest(tmp_path / "nope", "dataset", rerun="neuroposter data synth")
