"""onnxruntime latency measurement on a tiny model."""

from __future__ import annotations

import torch

from neuroposter.profiling.latency import measure_latency


def test_measure_latency(tmp_path):
    p = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(8, 4).eval(), torch.zeros(1, 8), str(p), input_names=["x"],
                      dynamic_axes={"x": {0: "b"}}, opset_version=17)
    res = measure_latency(p, batches=(1, 4), warmup=1, repeats=5)
    assert [r.batch for r in res] == [1, 4]
    for r in res:
        assert r.repeats == 5 and r.q1_ms <= r.median_ms <= r.q3_ms and r.iqr_ms >= 0
        assert r.throughput_per_s > 0 and r.per_sample_ms == r.median_ms / r.batch
