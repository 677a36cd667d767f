"""The wheel ships the hardware profiles and the console script, and not the test helpers."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_profiles_and_entry_point(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("neuroposter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("neuroposter/_profiles/")}
    expected = {p.name for p in (ROOT / "hardware_profiles").glob("*.yaml")}
    assert expected and expected <= shipped
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "neuroposter = neuroposter.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert not any(n.startswith(("tests/", "workspace/", "export/", "neuroposter/testing/")) for n in names)
    assert "neuroposter/targets/loihi/target.py" in names
