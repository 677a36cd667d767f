"""The pipeline's pieces from Python: a trained SDT -> NIR -> reference simulation -> op counts -> energy.

Run after `make demo` (or `neuroposter demo --size tiny`):

    .venv/bin/python examples/python_api.py [--workspace workspace] [--samples 8]
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--run", default="sdt")
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()

    from neuroposter.ir import lower_model, simulate
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling import load_profile
    from neuroposter.profiling.counts import count_snn
    from neuroposter.profiling.energy import estimate_energy
    from neuroposter.targets.inputs import evaluation_inputs
    from neuroposter.train import load_run
    from neuroposter.workspace import Workspace

    ws = Workspace.at(args.workspace)
    run = load_run(ws.run(args.run))                                  # model + manifest + metrics
    inputs = evaluation_inputs(run, run.run_dir, samples=args.samples)  # [T, B, N, D] test spikes
    graph = lower_model(run.model, T=int(inputs.T))                   # NIR graph, one time step
    x = to_graph_input(inputs.x, graph)                               # channels-first [T, B, D, N]
    sim = simulate(graph, x, mode="same_step", record=True)           # reference simulator
    counts = count_snn(graph, sim, x=x, name=args.run)                # per-inference op counts

    print(f"{args.run}: test mAP {run.metrics['map']:.3f}, micro-F1 {run.metrics['micro_f1']:.3f}")
    print(f"per inference: {counts.synops:,.0f} synaptic ops, {counts.macs:,.0f} MACs, "
          f"{counts.mask_ops_effective:,.0f} SDSA mask ops")
    for profile, view in (("horowitz_45nm_fp32", "sdt_paper"), ("horowitz_45nm_int8", "precision"),
                          ("lemaire_45nm", "memory"), ("loihi", "device")):
        e = estimate_energy(counts, load_profile(profile), view=view)
        total = f"{e.total_pj / 1e9:.5f} mJ" if e.available else f"unavailable ({e.reason})"
        print(f"  {view:<10s} on {profile:<20s} {total}  (excludes: {', '.join(e.excludes)[:70]})")


if __name__ == "__main__":
    main()
