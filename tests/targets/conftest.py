"""Fixtures of the target tests: a run and its evaluation inputs stubbed in memory."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest


@pytest.fixture()
def stub_run(monkeypatch) -> Callable[..., None]:
    """``stub_run(model, name, x, n_classes=3)``: ``load_run`` returns the model as a run, and the evaluation
    inputs are ``x`` (``[T, B, ...]`` spikes, the first ``samples`` of them) with seeded random labels."""

    def stub(model: Any, name: str, x: np.ndarray, n_classes: int = 3) -> None:
        import neuroposter.targets.inputs as inputs
        import neuroposter.train as train

        labels = (np.random.default_rng(0).random((x.shape[1], n_classes)) < 0.4).astype(np.uint8)
        run = SimpleNamespace(model=model.eval(), model_name=name, manifest={"key": "k"}, metrics={}, config={})
        monkeypatch.setattr(train, "load_run", lambda run_dir: run)

        def evaluation_inputs(loaded, run_dir, *, samples, split="test", seed=None):
            k = min(int(samples), x.shape[1])
            return inputs.EvalInputs(x[:, :k], labels[:k], np.arange(k), "encoded", "stub", "stub", split,
                                     int(x.shape[0]))

        monkeypatch.setattr(inputs, "evaluation_inputs", evaluation_inputs)

    return stub
