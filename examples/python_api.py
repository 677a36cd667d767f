"""The pipeline's cost from Python: `neuroposter.profile` on a trained SDT, beside the DenseNet-169 front end.

Run after `make demo` (or `neuroposter demo --size tiny`):

    .venv/bin/python examples/python_api.py [--workspace workspace] [--run sdt] [--samples 8]

It profiles the run's model on its first test samples (op counts under NeuroBench's names, energies per view
and profile), shows the first (encoding) layer on its own -- the SDT papers price it as dense MACs, and that is
most of their estimate -- and prices the DenseNet-169 front end that makes the SDT's features from the counts the
cnn's ONNX bundle stores (`op_counts.json`, entry `frontend`), as a share of the whole pipeline.
"""

from __future__ import annotations

import argparse


def _mj(pj: float | None) -> str:
    return "n/a" if pj is None else f"{pj * 1e-9:.5f} mJ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--run", default="sdt")
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()

    import neuroposter
    from neuroposter.profiling.api import from_counts
    from neuroposter.profiling.stored import OP_COUNTS_NAME, read_op_counts
    from neuroposter.targets.inputs import evaluation_inputs
    from neuroposter.train import load_run
    from neuroposter.workspace import Workspace

    ws = Workspace.at(args.workspace)
    run = load_run(ws.run(args.run))                                      # model + manifest + metrics
    inputs = evaluation_inputs(run, run.run_dir, samples=args.samples)     # [T, B, N, D] test spikes
    r = neuroposter.profile(run.model, inputs.x, name=args.run)           # lower -> simulate -> count -> price

    base = max((b for b in run.metrics.get("baselines", {}).values()), key=lambda b: b.get("map", 0.0), default={})
    print(f"{args.run}: test mAP {run.metrics['map']:.3f} (best constant predictor {base.get('map', float('nan')):.3f}), "
          f"micro-F1 {run.metrics['micro_f1']:.3f} (constant {base.get('micro_f1', float('nan')):.3f})")
    m, syn = r.metrics, r.metrics["synaptic_operations"]
    print(f"per inference (T = {r.counts.T}, {r.counts.samples} test samples): {syn['Effective_ACs']:,.0f} synaptic ops "
          f"as ACs + {syn['Effective_MACs']:,.0f} as MACs (non-binary inputs); dense equivalent {syn['Dense']:,.0f}")
    print(f"NeuroBench: activation_sparsity {m['activation_sparsity']:.3f}, connection_sparsity "
          f"{m['connection_sparsity']:.3f}, membrane_updates {m['membrane_updates']:,.0f}, parameter_count "
          f"{m['parameter_count']:,}, footprint {m['footprint']:,} B ({r.counts.weight_bits}-bit weights)")

    fl = r.first_layer
    paper = r.energy_of("sdt_paper", "horowitz_45nm_fp32", "first_layer=once")
    share = fl["share_of_sdt_paper_energy"].get("horowitz_45nm_fp32/first_layer=once")
    print(f"first layer {fl['name']} ({fl['input']} input): measured {fl['effective_macs']:,.0f} MACs + "
          f"{fl['effective_acs']:,.0f} ACs; the SDT-paper convention prices it as {fl['sdt_paper_macs']['once']:,.0f} "
          f"dense MACs = {share:.0%} of that estimate ({_mj(paper.total_pj)})")

    print("energy per inference (view on profile; what each leaves out):")
    for view, prof, variant in (("sdt_paper", "horowitz_45nm_fp32", "first_layer=once"),
                                ("precision", "horowitz_45nm_int8", None), ("memory", "lemaire_45nm", None),
                                ("device", "loihi", None), ("device", "loihi2", None)):
        e = r.energy_of(view, prof, variant)
        total = _mj(e.total_pj) if e.available else f"unavailable ({e.reason})"
        print(f"  {view:<10s} on {prof:<20s} {total}  (excludes: {', '.join(e.excludes)[:70]})")

    # the DenseNet-169 front end that makes the features, from the cnn's onnx bundle (counted at export)
    bundles = [b for b in ws.exports() if (b / OP_COUNTS_NAME).is_file() and "frontend" in read_op_counts(b)]
    if not bundles:
        print("front end: no onnx bundle with a stored front end; run `neuroposter export --target onnx --run cnn`")
        return
    entry = read_op_counts(bundles[0])["frontend"]
    fe = from_counts(entry.counts, profiles={"sdt_paper": ["horowitz_45nm_fp32"]})
    fe_e = fe.energy_of("sdt_paper", "horowitz_45nm_fp32")
    h, w = entry.info.get("image_size", ["?", "?"])
    print(f"DenseNet-169 front end ({h}x{w} images, {bundles[0]}): {entry.counts.macs:,.0f} MACs, "
          f"{_mj(fe_e.total_pj)} (sdt_paper view, horowitz_45nm_fp32) beside the SDT head's {_mj(paper.total_pj)}: "
          f"the front end is {fe_e.total_pj / (fe_e.total_pj + paper.total_pj):.1%} of the pipeline's energy")


if __name__ == "__main__":
    main()
