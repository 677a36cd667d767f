"""The target contract: the registry, and run_export's handling of success, failed verification and refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroposter.profiling.profiles import load_profile
from neuroposter.targets import TARGETS, chip_targets, get_exporter, get_target
from neuroposter.targets.base import ExportRequest, Refusal, Target, Verdict, run_export


def test_registry_names_and_profiles() -> None:
    with pytest.raises(KeyError, match="loihi"):          # an unknown name lists the valid ones
        get_exporter("no-such-chip")
    assert set(chip_targets()) == {"spinnaker", "spinnaker2", "truenorth", "xylo", "speck"}
    for name in TARGETS.names():
        target = get_target(name)
        assert isinstance(target, Target)
        if target.profile == "<target>":
            assert load_profile(name).name == name          # a chip target is driven by the profile of its name
        elif target.profile is not None:
            assert load_profile(target.profile).name == target.profile


class _Fake(Target):
    name = "fake"
    model_kinds = ("snn",)
    defaults = {"samples": 2, "split": "test", "seed": None}
    min_agreement = 0.5

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    def lower(self, ctx):
        return "lowered"

    def run(self, ctx, built):
        if self.outcome == "refuse":
            raise Refusal("the chip has no room", ["  refused: no room"])
        return built

    def verify(self, ctx, outputs):
        assert outputs == "lowered" and ctx.inputs.samples == 2
        ctx.summary["verification"] = {"check": {"prediction_agreement": 1.0 if self.outcome == "ok" else 0.0}}
        return Verdict(True) if self.outcome == "ok" else Verdict(False, "prediction agreement 0.0 < 0.5")

    def bundle(self, ctx, verdict):
        ctx.files["artifact.txt"] = lambda p: p.write_text("deployed")


@pytest.fixture()
def run_stub(stub_run):
    stub_run(torch.nn.Identity(), "sdt", (np.random.default_rng(0).random((3, 4, 2, 5)) < 0.5).astype(np.uint8))


@pytest.mark.parametrize("outcome", ["ok", "fail", "refuse"])
def test_run_export_outcomes(tmp_path, run_stub, outcome) -> None:
    out = tmp_path / "export" / "fake" / "sdt"
    res = run_export(_Fake(outcome), ExportRequest("fake", tmp_path / "runs" / "sdt", out, tmp_path, {}))
    where = out.with_name("sdt.failed") if outcome == "fail" else out
    assert res.out_dir == where and res.ok == (outcome == "ok") and res.failed == (outcome == "fail")
    summary = json.loads((where / "summary.json").read_text())
    manifest = json.loads((where / "manifest.json").read_text())
    assert summary["ok"] == (outcome == "ok") and summary["samples"] == 2 and summary["inputs"]["indices"] == [0, 1]
    assert set(summary["timings"]) >= {"lower_s", "total_s"}
    if outcome == "refuse":                     # a verdict, kept at its name, with no artifacts
        assert summary["reason"] == "the chip has no room" and "artifact.txt" not in manifest["files"]
        assert any("refused: no room" in line for line in res.lines)
    else:
        assert (where / "artifact.txt").read_text() == "deployed"
        assert manifest["files"]["artifact.txt"]["sha256"] and manifest["artifacts"]["artifact.txt"]
    if outcome == "fail":
        assert manifest["status"] == "failed" and not out.exists()
        assert "prediction agreement 0.0" in summary["reason"]


def test_run_export_refuses_a_model_of_another_kind(tmp_path, stub_run) -> None:
    from neuroposter.errors import DataError

    stub_run(torch.nn.Identity(), "cnn", np.zeros((3, 2, 2, 5), np.uint8))
    with pytest.raises(DataError, match="exports sdt, snn-mlp runs"):
        run_export(_Fake("ok"), ExportRequest("fake", tmp_path / "r", tmp_path / "o", tmp_path, {}))
    assert not (tmp_path / "o").exists()
