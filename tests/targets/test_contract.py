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
    with pytest.raises(DataError, match="exports sdt, snn-mlp, chip-snn, sdt-pixels, chip-cnn, sdt-frontend runs"):
        run_export(_Fake("ok"), ExportRequest("fake", tmp_path / "r", tmp_path / "o", tmp_path, {}))
    assert not (tmp_path / "o").exists()


class _Deployed(Target):
    """A target with a deployed-vs-trained bound whose deployed network flips the trained model's decisions on the
    samples listed in ``flip``."""

    name = "deployed"
    model_kinds = ("snn",)
    defaults = {"samples": 2, "split": "test", "seed": 0}
    min_agreement = None
    min_trained_agreement = 0.95

    def __init__(self, flip: tuple[int, ...] = ()) -> None:
        self.flip = flip

    def lower(self, ctx):
        return None

    def run(self, ctx, built):
        trained = np.where(ctx.inputs.labels > 0, 1.0, -1.0)          # a trained model that decides the labels
        deployed = trained.copy()
        deployed[list(self.flip)] *= -1
        return deployed, trained

    def verify(self, ctx, outputs):
        from neuroposter.targets.base import gate_verdict, trained_gate
        from neuroposter.targets.verify import compare

        self.sim = ctx.simulator_positions()
        entry = compare(*outputs, labels=ctx.inputs.labels, resamples=100)
        ctx.summary["verification"] = {"deployed_vs_trained": entry}
        return gate_verdict(ctx, [trained_gate(ctx, entry, "the fake chip")])


@pytest.fixture()
def run_of_20(stub_run):
    stub_run(torch.nn.Identity(), "sdt", (np.random.default_rng(0).random((3, 20, 2, 5)) < 0.5).astype(np.uint8))


def test_the_deployed_vs_trained_bound_takes_the_whole_split(tmp_path, run_of_20) -> None:
    target = _Deployed()
    res = run_export(target, ExportRequest("deployed", tmp_path / "r", tmp_path / "o", tmp_path, {}))
    assert res.ok and res.summary["samples"] == 20                       # the whole split, not --samples
    assert res.summary["verification"]["deployed_vs_trained"]["samples"] == 20
    assert len(target.sim) == 2 and list(target.sim) == sorted(target.sim)   # the simulator's seeded subset
    assert res.summary["gates"][0]["ok"] and res.summary["min_trained_agreement"] == 0.95
    part = run_export(_Deployed(), ExportRequest("deployed", tmp_path / "r", tmp_path / "p", tmp_path,
                                                  {"trained_samples": 5}))
    assert part.summary["samples"] == 5


@pytest.mark.parametrize("flips, ok", [((), True), ((3,), True), ((3, 7), False)])
def test_the_export_fails_below_the_trained_agreement(tmp_path, run_of_20, flips, ok) -> None:
    """19 of 20 genre sets kept is 0.95 (passes the default bound), 18 of 20 is 0.90 (fails); only samples whose
    labels are not all 0 change their set when negated, so the flipped ones are chosen among those."""
    import neuroposter.targets.inputs as inputs

    labels = inputs.evaluation_inputs(None, None, samples=20).labels
    flips = tuple(int(i) for i in np.flatnonzero(labels.any(axis=1))[: len(flips)])
    res = run_export(_Deployed(flips), ExportRequest("deployed", tmp_path / "r", tmp_path / "o", tmp_path, {}))
    entry = res.summary["verification"]["deployed_vs_trained"]
    assert entry["set_agreement"] == pytest.approx(1 - len(flips) / 20) and res.ok == ok
    assert entry["micro_f1"]["reference"] == 1.0                          # the trained model decides the labels
    if not ok:
        assert res.failed and res.out_dir == tmp_path / "o.failed"
        assert res.summary["reason"].startswith("the fake chip keeps the trained model's genre set on 0.900 of 20 "
                                                "test samples (95 % interval")
        assert "below --min-trained-agreement 0.95" in res.summary["reason"]
        assert res.summary["gates"] == [{"check": "deployed_vs_trained", "metric": "set_agreement", "value": 0.9,
                                         "min": 0.95, "flag": "--min-trained-agreement", "ok": False}]
    lower = run_export(_Deployed(flips), ExportRequest("deployed", tmp_path / "r", tmp_path / "l", tmp_path,
                                                        {"min_trained_agreement": 0.9}))
    assert lower.ok
