"""Mapper at the Spike-Driven Transformer paper's size: placement on the multi-chip systems, and wall time.

Builds an SDT of the paper's size (8 blocks, 384 or 512 channels, MLP 4x, 196 tokens of 1664-d features; random
init, no training), lowers it to NIR (``neuroposter.ir.lower_model``; the graph is one time step, T is recorded)
and maps it with ``neuroposter.targets.mapping.map_graph`` onto the SpiNNaker (SpiNN-5 board), SpiNNaker 2
(48-chip board) and Loihi 2 (Kapoho Point) profiles. Prints, per width and chip, the verdict, the placement
(chips used, cores, cores per chip, synapse cores of split fan-ins) and the wall time of lowering and mapping
(the chip's exact lowerings, ``neuroposter.targets.chips.lower_for_profile``, are applied first, as an export does).
The mapper counts synapses structurally (no neuron-to-neuron matrix: that would be billions of entries here), so
the target is well under a minute on 2 cores.

Usage: ``python benchmarks/mapper_scale.py [--dims 384 512] [--tokens 196] [--depth 8] [--chips spinnaker ...]``
"""

from __future__ import annotations

import argparse
import time

import torch

from neuroposter.ir import lower_model
from neuroposter.ir.graph import flatten
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.chips import lower_for_profile
from neuroposter.targets.mapping import map_graph


def _short(xs: list[int], n: int = 12) -> str:
    return ", ".join(map(str, xs[:n])) + (f", ... ({len(xs)} chips)" if len(xs) > n else "")


def main() -> None:
    """Runs the benchmark and prints the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 512])
    ap.add_argument("--tokens", type=int, default=196)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--d-in", type=int, default=1664)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chips", nargs="+", default=["spinnaker", "spinnaker2", "loihi2"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for d in args.dims:
        torch.manual_seed(0)
        cfg = SDTConfig(d_in=args.d_in, n_tokens=args.tokens, d_model=d, depth=args.depth, heads=8,
                        mlp_hidden=4 * d, n_classes=10)
        t0 = time.perf_counter()
        graph = lower_model(SpikeDrivenTransformer(cfg).eval(), T=args.T, dtype="float32")
        t_lower = time.perf_counter() - t0
        print(f"SDT {args.depth} blocks x {d} channels, {args.tokens} tokens x {args.d_in} inputs, T={args.T}: "
              f"lowered in {t_lower:.1f} s")
        for chip in args.chips:
            prof = load_profile(chip)
            t0 = time.perf_counter()
            g_chip, _, _ = lower_for_profile(graph, prof)     # the exact Threshold -> LIF(tau=dt) lowering
            m = map_graph(flatten(g_chip), prof)
            dt = time.perf_counter() - t0
            t, pl = m.totals, m.placement
            print(f"  {chip:<11} {dt:6.2f} s  {m.verdict[:160]}")
            print(f"  {'':<11} {t['neurons']:,} neurons, {t['synapses']:,} synapses ({t['stored_synapses']:,} stored), "
                  f"{t['cores']} cores ({t['synapse_cores']} synapse cores), {pl['chips_used']} chips used of "
                  f"{pl['system_chips']} ({pl['system']}); cores per chip: {_short(pl['cores_per_chip'])}")


if __name__ == "__main__":
    main()
