"""Atomic writes, hashing and path containment."""

from __future__ import annotations

import os

import pytest

from neuroposter._io import (atomic_dir, atomic_write_json, atomic_write_text, read_json, safe_join,
                             sha256_file, sha256_json)
from neuroposter.errors import DataError


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in tmp_path.iterdir()] == ["a.txt"]  # no temp files left


def test_atomic_write_failure_keeps_old_content(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(p, {"x": Boom()})
    assert read_json(p) == {"x": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json"]


def test_atomic_dir_keeps_previous_on_failure(tmp_path):
    d = tmp_path / "ds"
    with atomic_dir(d) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(ValueError):
        with atomic_dir(d) as tmp:
            (tmp / "f").write_text("v2-partial")
            raise ValueError("interrupted")
    assert (d / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with atomic_dir(d) as tmp:
        (tmp / "f").write_text("v2")
    assert (d / "f").read_text() == "v2"


@pytest.mark.parametrize("rel", ["../x.jpg", "/etc/passwd", "a/../../x", "", "sub/../../../y"])
def test_safe_join_rejects_escapes(tmp_path, rel):
    with pytest.raises(DataError):
        safe_join(tmp_path, rel)


def test_safe_join_rejects_symlink_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(DataError):
        safe_join(base, "link/x.jpg")


def test_safe_join_accepts_inside(tmp_path):
    assert safe_join(tmp_path, "sub/x.jpg") == (tmp_path / "sub" / "x.jpg").resolve()


def test_hashes_are_content_based(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert sha256_file(a) == sha256_file(b)
    assert sha256_json({"x": 1, "y": 2}) == sha256_json({"y": 2, "x": 1})
    assert sha256_json({"x": 1}) != sha256_json({"x": 2})


def test_read_json_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        read_json(p)
    with pytest.raises(DataError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_artifacts_get_normal_permissions_not_temp_file_ones(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
