"""Measured onnxruntime latency and throughput of an ONNX model on this machine (CPU provider by default)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["LatencyResult", "measure_latency"]


@dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of one batch size.

    Attributes:
        batch: batch size.
        median_ms: median wall time of one run of the batch, milliseconds.
        q1_ms: first quartile.
        q3_ms: third quartile.
        iqr_ms: interquartile range (q3 - q1).
        per_sample_ms: median_ms / batch.
        throughput_per_s: samples per second at the median.
        warmup: untimed warm-up runs.
        repeats: timed runs.
        provider: onnxruntime execution provider.
        threads: intra-op threads (0 = onnxruntime's default).
        machine: processor / platform description.
    """

    batch: int
    median_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    per_sample_ms: float
    throughput_per_s: float
    warmup: int
    repeats: int
    provider: str
    threads: int
    machine: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def _feeds(sess: Any, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(inp.shape)]
        if isinstance(inp.shape[0], int) and inp.shape[0] > 0 and inp.shape[0] != batch:
            raise ValueError(f"the model's input {inp.name} has a fixed batch of {inp.shape[0]}; "
                             f"cannot run batch {batch} (export with a dynamic batch axis)")
        if "float16" in inp.type:
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float16)
        elif "float" in inp.type:
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            feeds[inp.name] = np.zeros(shape, dtype=np.int64)
    return feeds


def measure_latency(
    model: str | os.PathLike[str] | bytes,
    *,
    batches: Sequence[int] = (1, 8),
    warmup: int = 3,
    repeats: int = 10,
    threads: int = 0,
    provider: str = "CPUExecutionProvider",
    max_seconds: float | None = None,
) -> list[LatencyResult]:
    """Times ``session.run`` for each batch size: warm-up runs, then timed repeats; median and IQR.

    Args:
        model: path to a ``.onnx`` file (or its bytes).
        batches: batch sizes to time (the model needs a dynamic batch axis for sizes other than its own).
        warmup: untimed runs per batch size.
        repeats: timed runs per batch size.
        threads: intra-op threads (0: onnxruntime's default).
        provider: execution provider.
        max_seconds: stop repeating a batch size once this much time was spent on it (at least 3 repeats).

    Returns:
        One :class:`LatencyResult` per batch size that could be run.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else os.fspath(model)
    sess = ort.InferenceSession(src, sess_options=opts, providers=[provider])
    rng = np.random.default_rng(0)
    machine = f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs), {platform.system()}"
    out: list[LatencyResult] = []
    for b in batches:
        feeds = _feeds(sess, int(b), rng)
        for _ in range(max(warmup, 0)):
            sess.run(None, feeds)
        times: list[float] = []
        start = time.perf_counter()
        for i in range(max(repeats, 1)):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
            if max_seconds is not None and i >= 2 and time.perf_counter() - start > max_seconds:
                break
        arr = np.asarray(times)
        q1, med, q3 = (float(v) for v in np.percentile(arr, [25, 50, 75]))
        out.append(LatencyResult(batch=int(b), median_ms=med, q1_ms=q1, q3_ms=q3, iqr_ms=q3 - q1,
                                 per_sample_ms=med / b, throughput_per_s=1e3 * b / med if med > 0 else float("inf"),
                                 warmup=warmup, repeats=len(times), provider=provider, threads=threads,
                                 machine=machine))
    return out
