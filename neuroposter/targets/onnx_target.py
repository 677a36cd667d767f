"""The ``onnx`` target: the ANN baselines as ONNX graphs, verified in onnxruntime.

* ``cnn`` and ``vit``: ``images [B, 3, H, W] -> logits [B, C]`` (input ``images``);
* ``ann-transformer``: ``tokens [B, N, D] -> logits [B, C]`` (input ``tokens``, normalised features).

Exported with ``torch.onnx.export`` at opset :data:`OPSET` (17: the first opset with
``LayerNormalization``, supported by onnxruntime >= 1.14) with a dynamic batch axis, checked with
``onnx.checker.check_model`` and ``onnx.shape_inference.infer_shapes(strict_mode=True)``, then run
in onnxruntime (CPU) -- the deployed network -- on the ``--trained-samples`` first samples of the split (default:
the whole split) and compared with the trained model in PyTorch. The maximum absolute logit
difference (and the same relative to the largest logit magnitude) goes into ``summary.json``.
The bundle also stores the graph's op counts (``op_counts.json``, with the DenseNet-169 front end for the
CNN; :func:`neuroposter.profiling.stored.onnx_counts`), which the report reads. Beside the CNN's front end it stores
the standard architectures priced at the same image size (entries ``reference:densenet169``, ``reference:vit_b_16``,
``reference:vit_s_16``; :mod:`neuroposter.profiling.reference_models`: random weights, cost only; ~10 s on 2 cores;
``--opt references=false`` leaves them out). :class:`OnnxTarget` is the target
contract of :mod:`neuroposter.targets.base`; the comparison is ``verification.deployed_vs_trained`` in the
metrics of :mod:`neuroposter.targets.verify` (on the logits, with bootstrap intervals), plus ``max_rel_diff``: the
export fails when ``max_rel_diff`` is not below its bound (``--opt max_rel_diff``, 1e-4) or the genre sets agree on
fewer than ``--min-trained-agreement`` (0.95) of the samples.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from neuroposter.errors import UsageError
from neuroposter.profiling.onnx_counts import OPSET, trace_to_onnx
from neuroposter.targets.base import ExportContext, Gate, Target, Verdict, gate_verdict, trained_gate

__all__ = ["OPSET", "OnnxTarget", "export_onnx", "verify_onnx"]

log = logging.getLogger(__name__)

MAX_REL_DIFF = 1e-4  # onnxruntime vs PyTorch, relative to the logit scale
#: samples per forward (bounds the memory of a whole split of posters)
_BATCH = 32
#: the ONNX input name of each model input kind (``ModelSpec.inputs``)
INPUT_NAMES = {"images": "images", "feature_tokens": "tokens"}


def export_onnx(model: Any, example: Any, path: str | Path, *, input_name: str) -> dict[str, Any]:
    """Exports ``model`` to ``path`` and validates the file.

    Args:
        model: an eval-mode ``nn.Module`` mapping ``[B, ...] -> logits [B, C]``.
        example: an example input batch (torch).
        path: the ``.onnx`` file to write.
        input_name: ``"images"`` or ``"tokens"``.

    Returns:
        Facts about the graph: opset, inputs/outputs with symbolic shapes, node counts by op type,
        parameter count.
    """
    import onnx

    path = Path(path)
    model = model.eval()
    # the dynamic batch axis is verified against onnxruntime below
    trace_to_onnx(model, example, path, input_name=input_name)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)

    def dims(vi: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    params = int(sum(np.prod(t.dims) for t in proto.graph.initializer))
    return {
        "opset": OPSET,
        "inputs": {vi.name: dims(vi) for vi in inferred.graph.input},
        "outputs": {vi.name: dims(vi) for vi in inferred.graph.output},
        "nodes_by_op": dict(sorted(Counter(n.op_type for n in proto.graph.node).items())),
        "parameters": params,
        "value_infos": len(inferred.graph.value_info),
    }


def verify_onnx(path: str | Path, model: Any, inputs: Any, *, labels: np.ndarray | None = None,
                genres: Any = None, resamples: int = 0, seed: int = 0) -> dict[str, Any]:
    """Runs the ONNX file in onnxruntime and compares it with PyTorch on ``inputs`` (``_BATCH`` samples at a time).

    Args:
        path: the ``.onnx`` file.
        model: the trained model.
        inputs: the batch-first inputs (torch).
        labels, genres, resamples, seed: as :func:`neuroposter.targets.verify.compare` (labels add micro-F1 and
            mAP, resamples the bootstrap intervals).

    Returns:
        :func:`neuroposter.targets.verify.compare` of the logits (onnxruntime vs PyTorch), plus ``max_rel_diff``
        (the largest difference relative to the logit scale), ``logit_scale``, ``single_sample_max_abs_diff`` and
        ``batch_sizes``: the first sample is also run alone to exercise the dynamic axis.
    """
    import onnxruntime as ort
    import torch

    from neuroposter.targets.verify import compare

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())   # torch and onnxruntime take turns, never both
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = inputs.detach().cpu().float()
    refs, gots = [], []
    model = model.eval()
    with torch.no_grad():
        for lo in range(0, int(x.shape[0]), _BATCH):
            xb = x[lo:lo + _BATCH]
            refs.append(model(xb).numpy())
            gots.append(sess.run(["logits"], {name: xb.numpy()})[0])
    ref, got = np.concatenate(refs), np.concatenate(gots)
    single = sess.run(["logits"], {name: x[:1].numpy()})[0]
    out = compare(got, ref, labels=labels, genres=genres, resamples=resamples, seed=seed)
    scale = float(max(1.0, np.abs(ref).max()))
    out.update(max_rel_diff=out["max_abs_logit_diff"] / scale, logit_scale=scale,
               single_sample_max_abs_diff=float(np.abs(single - ref[:1]).max()),
               batch_sizes=sorted({int(min(_BATCH, x.shape[0])), 1}, reverse=True))
    return out


def _flag(value: Any, name: str) -> bool:
    """A yes/no option (``--opt NAME=true|false``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"--opt {name} must be true or false, got {value!r}")


class OnnxTarget(Target):
    """``neuroposter export --target onnx`` (see the module docstring).

    Options: ``trained_samples`` (all: the first samples of the split compared), ``min_trained_agreement`` (0.95),
    ``max_rel_diff`` (1e-4), ``references`` (true: an image model holding the DenseNet-169 backbone also stores the
    reference architectures' counts at its image size). ``samples`` is not used: onnxruntime is the deployed network itself, there is no
    separate simulator to sample.
    """

    name = "onnx"
    model_kinds = ("ann",)
    defaults = {"samples": 8, "split": "test", "seed": None, "max_rel_diff": MAX_REL_DIFF, "references": True}
    min_agreement = None
    min_trained_agreement = 0.95
    profile = None

    def options(self, given: Any) -> dict[str, Any]:
        """Adds ``max_rel_diff`` (a number > 0)."""
        opts = super().options(given)
        try:
            bound = float(opts["max_rel_diff"])
        except (TypeError, ValueError):
            bound = float("nan")
        if not bound > 0 or bound == float("inf"):
            raise UsageError(f"--opt max_rel_diff must be a number > 0, got {given.get('max_rel_diff')!r}")
        opts.update(max_rel_diff=bound, opset=OPSET, references=_flag(opts["references"], "references"))
        return opts

    def lower(self, ctx: ExportContext) -> Path:
        """``model.onnx`` (checked by onnx's checker and strict shape inference)."""
        from neuroposter.models import MODELS

        self.input_name = INPUT_NAMES[MODELS.get(ctx.run.model_name).inputs]
        path = ctx.scratch / "model.onnx"
        self.facts = export_onnx(ctx.run.model, ctx.inputs.x[:1], path, input_name=self.input_name)
        ctx.copy_file("model.onnx")
        return path

    def run(self, ctx: ExportContext, path: Path) -> dict[str, Any]:
        """onnxruntime vs PyTorch on the evaluation inputs."""
        from neuroposter.targets.verify import RESAMPLES

        self.path = path
        return verify_onnx(path, ctx.run.model, ctx.inputs.x, labels=ctx.inputs.labels,
                           genres=ctx.inputs.genres or None, resamples=RESAMPLES)

    def verify(self, ctx: ExportContext, check: dict[str, Any]) -> Verdict:
        bound = float(ctx.options["max_rel_diff"])
        check.update(networks={"deployed": "onnxruntime (CPU) running model.onnx",
                               "reference": "the trained model in PyTorch"}, split=str(ctx.options["split"]))
        ctx.summary["verification"] = {"deployed_vs_trained": check}
        self.check = check
        return gate_verdict(ctx, [
            trained_gate(ctx, check, "onnxruntime"),
            Gate("deployed_vs_trained", "max_rel_diff", float(check["max_rel_diff"]), bound, "--opt max_rel_diff",
                 f"onnxruntime differs from PyTorch by {check['max_rel_diff']:.2e} of the logit scale "
                 f"(must be < {bound:g})", upper=True)])

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        from neuroposter.profiling.stored import onnx_counts, write_op_counts

        name = self.input_name
        stored = onnx_counts(self.path, name=ctx.run_name, location=Path(ctx.request.out_dir) / "model.onnx")
        refs = {}
        if "frontend" in stored and ctx.options.get("references", True):
            from neuroposter.profiling.reference_models import reference_entries

            refs = reference_entries(stored["frontend"].info["image_size"])
            stored.update(refs)
        ctx.files["op_counts.json"] = lambda p: write_op_counts(p.parent, stored)
        facts, check, bound = self.facts, self.check, float(ctx.options["max_rel_diff"])
        ctx.summary.update({
            "file": "model.onnx",
            **{k: v for k, v in facts.items() if k not in ("inputs", "outputs")},
            "graph_inputs": facts["inputs"], "graph_outputs": facts["outputs"],
            "dynamic_axes": {name: {"0": "batch"}, "logits": {"0": "batch"}},
            "checks": ["onnx.checker.check_model(full_check=True)", "onnx.shape_inference.infer_shapes(strict_mode=True)"],
            "inputs_source": ctx.inputs.description,
            "max_rel_diff_bound": bound,
        })
        if refs:
            ctx.summary["references"] = {k: dict(e.info) for k, e in refs.items()}
        in_shape = "x".join(str(d) for d in facts["inputs"][name])
        ctx.lines += [
            f"  model.onnx (opset {OPSET}, {name} {in_shape} -> logits): {sum(facts['nodes_by_op'].values())} nodes, "
            f"{facts['parameters']:,} parameters; checker and shape inference clean",
            f"  onnxruntime vs PyTorch on {check['samples']} inputs ({ctx.inputs.description}): max |diff| "
            f"{check['max_abs_logit_diff']:.2e} ({check['max_rel_diff']:.1e} of the logit scale), top-1 agreement "
            f"{check['top1_agreement']:.0%}, identical genre set {check['set_agreement']:.0%}",
            f"  op counts stored in op_counts.json: {stored['model'].counts.macs:,.0f} MACs"
            + (f" (DenseNet-169 front end: {stored['frontend'].counts.macs:,.0f} MACs)" if "frontend" in stored else ""),
            *(["  standard architectures priced (random weights, not trained): " + ", ".join(
                f"{e.info['title']} {e.counts.macs / 1e9:.2f} GMAC at {'x'.join(map(str, e.info['image_size']))}"
                for e in refs.values())] if refs else []),
            f"  OK: relative difference < {bound:g}, identical genre set >= {ctx.options['min_trained_agreement']:g}"
            if verdict.ok else f"  FAILED: {verdict.reason}",
        ]
