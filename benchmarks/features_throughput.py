"""Throughput of the feature-extraction pipeline vs the raw DenseNet-169 forward pass.

Both run in the same process on the same images with the same batch size:

* raw: ``torchvision.models.densenet169().features`` forward under ``torch.inference_mode`` on
  batches that are already decoded, resized and normalised in memory (the ceiling);
* pipeline: :func:`neuroposter.features.extract_features` end to end (decode + image policy +
  normalisation in a prefetch thread, forward + ReLU, pooled and token outputs, float16 memmap writes,
  per-batch flush and resume bookkeeping).

Each is run ``--repeats`` times, alternating, and the best run of each is kept (the machine may be
shared). The ratio pipeline / raw should be >= 0.9. Not a test: run it by hand::

    .venv/bin/python benchmarks/features_throughput.py                 # synthetic 268x182 posters
    .venv/bin/python benchmarks/features_throughput.py --dataset workspace/datasets/default --n 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NEUROPOSTER_NO_PROGRESS", "1")


class _SynthPosters:
    """Random-noise posters decoded from JPEG files, like real ones (no dataset needed)."""

    def __init__(self, root: Path, n: int, height: int, width: int) -> None:
        from PIL import Image

        from neuroposter.data.policy import ImagePolicy

        self.root = root
        self.key = f"bench-{n}-{height}x{width}"
        self.image_policy = ImagePolicy(mode="native", height=height, width=width)
        rng = np.random.default_rng(0)
        self.paths = []
        root.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = root / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(p, quality=90)
            self.paths.append(p)

    def __len__(self) -> int:
        return len(self.paths)

    def indices(self, split: str) -> np.ndarray:
        return np.arange(len(self)) if split == "train" else np.zeros(0, np.int64)

    def load_image(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im.load()
            return self.image_policy.apply(im)


class _Subset:
    """The first ``n`` items of a real dataset."""

    def __init__(self, ds, n: int) -> None:
        self.ds, self.n = ds, min(n, len(ds))
        self.key, self.image_policy, self.root = f"{ds.key}-first{self.n}", ds.image_policy, ds.root

    def __len__(self) -> int:
        return self.n

    def indices(self, split: str) -> np.ndarray:
        return np.arange(self.n) if split == "train" else np.zeros(0, np.int64)

    def load_image(self, i: int):
        return self.ds.load_image(i)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints images/s of both paths and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="an imported dataset folder (default: synthetic posters)")
    ap.add_argument("--n", type=int, default=64, help="images per run (default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, nargs=2, default=(268, 182), metavar=("H", "W"),
                    help="synthetic poster size (default 268 182)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--weights", default="random", help="weights id for the pipeline (default random)")
    args = ap.parse_args(argv)

    import torch
    from torchvision.models import densenet169

    from neuroposter.features import extract_features, preprocess_batch

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="np-bench-"))
    try:
        if args.dataset:
            from neuroposter.data import load_dataset

            ds = _Subset(load_dataset(args.dataset), args.n)
        else:
            ds = _SynthPosters(tmp / "posters", args.n, *args.size)
        n, bs = len(ds), args.batch_size
        h, w = ds.image_policy.output_size
        batches = [preprocess_batch([ds.load_image(i) for i in range(s, min(s + bs, n))]) for s in range(0, n, bs)]
        torch.manual_seed(0)
        raw_net = densenet169(weights=None).features.eval()
        with torch.inference_mode():
            raw_net(batches[0][:2])  # warm-up

        raw_best = pipe_best = raw_cpu = pipe_cpu = float("inf")
        for r in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                for b in batches:
                    raw_net(b)
            raw_best = min(raw_best, time.perf_counter() - t0)
            raw_cpu = min(raw_cpu, time.process_time() - c0)
            res = extract_features(ds, tmp / f"store{r}", weights=args.weights, batch_size=bs, force=True,
                                   show_progress=False)
            pipe_best = min(pipe_best, res.seconds)
            pipe_cpu = min(pipe_cpu, res.cpu_seconds)
            shutil.rmtree(tmp / f"store{r}", ignore_errors=True)
        raw_ips, pipe_ips = n / raw_best, n / pipe_best
        print(f"images {n} at {h}x{w}, batch {bs}, torch threads {torch.get_num_threads()}, "
              f"best of {args.repeats}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"raw densenet169().features forward: {raw_ips:8.2f} img/s ({raw_best:.2f} s wall, {raw_cpu:.2f} s CPU)")
        print(f"extraction pipeline (end to end):   {pipe_ips:8.2f} img/s ({pipe_best:.2f} s wall, "
              f"{pipe_cpu:.2f} s CPU)")
        print(f"ratio pipeline / raw: {pipe_ips / raw_ips:.3f} wall-clock (target >= 0.9); "
              f"{raw_cpu / pipe_cpu:.3f} by CPU time (robust to a busy machine)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
