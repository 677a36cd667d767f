"""The ``onnx`` target: the ANN baselines as ONNX graphs, verified in onnxruntime.

* ``cnn`` and ``vit``: ``images [B, 3, H, W] -> logits [B, C]`` (input ``images``);
* ``ann-transformer``: ``tokens [B, N, D] -> logits [B, C]`` (input ``tokens``, normalised features).

Exported with ``torch.onnx.export`` at opset :data:`OPSET` (17: the first opset with
``LayerNormalization``, supported by onnxruntime >= 1.14) with a dynamic batch axis, checked with
``onnx.checker.check_model`` and ``onnx.shape_inference.infer_shapes(strict_mode=True)``, then run
in onnxruntime (CPU) on real test inputs and compared with PyTorch. The maximum absolute logit
difference (and the same relative to the largest logit magnitude) goes into ``summary.json``.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from neuroposter.errors import DataError
from neuroposter.targets._bundle import (bundle_dir, check_input_key, failed_line, reject_bundle, run_input,
                                         samples_option, write_bundle)
from neuroposter.targets.base import ExportRequest, ExportResult

__all__ = ["OPSET", "ONNX_MODELS", "export", "export_onnx", "verify_onnx"]

log = logging.getLogger(__name__)

OPSET = 17
ONNX_MODELS = ("cnn", "vit", "ann-transformer")
DEFAULT_SAMPLES = 8
MAX_REL_DIFF = 1e-4  # onnxruntime vs PyTorch, relative to the logit scale


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
    import torch

    path = Path(path)
    model = model.eval()
    # Trace with autograd on and parameters requiring grad: that disables nn.MultiheadAttention's
    # eval "fast path" (aten::_native_multi_head_attention has no ONNX export) so the exported graph
    # is the plain MatMul/Softmax composition.
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        with torch.enable_grad(), warnings.catch_warnings():
            # shape checks in the models' forward become constants in the trace; the dynamic batch
            # axis is verified against onnxruntime below, so the tracer's notes are noise here
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, (example,), str(path), opset_version=OPSET, input_names=[input_name],
                              output_names=["logits"], dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
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


def verify_onnx(path: str | Path, model: Any, inputs: Any) -> dict[str, Any]:
    """Runs the ONNX file in onnxruntime and compares it with PyTorch on ``inputs``.

    Returns:
        ``{"max_abs_diff", "max_rel_diff", "logit_scale", "samples", "top1_agreement", "batch_sizes"}``;
        the batch is also run one sample at a time to exercise the dynamic axis.
    """
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = inputs.detach().cpu().float()
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = sess.run(["logits"], {name: x.numpy()})[0]
    single = sess.run(["logits"], {name: x[:1].numpy()})[0]
    diff = float(np.abs(got - ref).max())
    scale = float(max(1.0, np.abs(ref).max()))
    return {
        "samples": int(x.shape[0]),
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
        "logit_scale": scale,
        "single_sample_max_abs_diff": float(np.abs(single - ref[:1]).max()),
        "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
        "batch_sizes": [int(x.shape[0]), 1],
    }


def _first_test_indices(dataset: Any, n: int) -> list[int]:
    idx = list(np.asarray(dataset.indices("test")).tolist())
    return idx[:n]


def real_inputs(loaded: Any, run_dir: Path, n: int) -> tuple[Any, str, dict[str, Any]]:
    """Real test inputs of a run (images or feature tokens), where they came from, and that input.

    The inputs are the ones the run's manifest names: the encoded set (``ann-transformer``: its
    normalised feature tokens), the dataset (``vit``: posters at the run's image size) or the feature
    store (``cnn``: its dataset's posters under the store's image policy).

    Returns:
        ``(inputs [B, ...], description, {"name": {"path", "key"}})``.

    Raises:
        ManifestError: the input is missing or changed (never replaced by random inputs).
    """
    import torch

    name, model, manifest = loaded.model_name, loaded.model, loaded.manifest
    if name == "ann-transformer":
        from neuroposter.encode import load_encoded

        path = run_input(run_dir, manifest, "encoded")
        enc = load_encoded(path)
        check_input_key(path, getattr(enc, "key", None), run_dir, manifest, "encoded")
        ds = enc.features_dataset("test")
        k = min(n, len(ds))
        if k == 0:
            raise DataError(f"{path} has no test samples")
        x = torch.stack([torch.as_tensor(np.asarray(ds[i][0]), dtype=torch.float32) for i in range(k)])
        used = {"encoded": {"path": str(path), "key": getattr(enc, "key", None)}}
        return x, f"test feature tokens of {path}", used
    if name == "vit":
        from neuroposter.data import load_dataset
        from neuroposter.models.vit import image_to_tensor

        path = run_input(run_dir, manifest, "dataset")
        ds = load_dataset(path)
        check_input_key(path, getattr(ds, "key", None), run_dir, manifest, "dataset")
        idx = _first_test_indices(ds, n)
        if not idx:
            raise DataError(f"{path} has no test posters")
        imgs = [image_to_tensor(ds.load_image(i), int(model.image_size)) for i in idx]
        used = {"dataset": {"path": str(path), "key": getattr(ds, "key", None)}}
        return torch.stack(imgs), f"test posters of {path}", used
    if name == "cnn":
        from neuroposter.features import open_store, preprocess

        path = run_input(run_dir, manifest, "features")
        store = open_store(path)
        check_input_key(path, getattr(store, "key", None), run_dir, manifest, "features")
        ds = store.dataset
        idx = _first_test_indices(ds, n)
        if not idx:
            raise DataError(f"the dataset of {path} has no test posters")
        imgs = [preprocess(ds.load_image(i)) for i in idx]
        used = {"features": {"path": str(path), "key": getattr(store, "key", None)}}
        return torch.stack(imgs), f"test posters of {path}", used
    raise DataError(f"the onnx target has no inputs for a {name!r} run")


def export(req: ExportRequest) -> ExportResult:
    """Exports an ANN run (``cnn``, ``vit``, ``ann-transformer``) to ``model.onnx`` and verifies it.

    Options: ``samples`` (default 8), ``max_rel_diff`` (default 1e-4).
    """
    from neuroposter.train import load_run

    opts = dict(req.options)
    samples = samples_option(opts, DEFAULT_SAMPLES)
    bound = opts.get("max_rel_diff")
    try:
        bound = MAX_REL_DIFF if bound is None else float(bound)
    except (TypeError, ValueError):
        bound = float("nan")
    if not bound > 0 or bound == float("inf"):
        from neuroposter.errors import UsageError

        raise UsageError(f"--opt max_rel_diff must be a number > 0, got {opts.get('max_rel_diff')!r}")
    loaded = load_run(req.run_dir)
    if loaded.model_name not in ONNX_MODELS:
        raise DataError(f"the onnx target exports {', '.join(ONNX_MODELS)} runs; {req.run_dir} is a "
                        f"{loaded.model_name!r} run (use --target nir or loihi)")
    x, source, used = real_inputs(loaded, Path(req.run_dir), samples)
    input_name = "tokens" if loaded.model_name == "ann-transformer" else "images"
    failed = None
    with bundle_dir(req, protect=[v["path"] for v in used.values()]) as tmp:
        facts = export_onnx(loaded.model, x[:1], tmp / "model.onnx", input_name=input_name)
        check = verify_onnx(tmp / "model.onnx", loaded.model, x)
        ok = check["max_rel_diff"] < bound
        summary = {
            "target": "onnx",
            "model": loaded.model_name,
            "source_run": str(req.run_dir),
            "file": "model.onnx",
            **facts,
            "dynamic_axes": {input_name: {"0": "batch"}, "logits": {"0": "batch"}},
            "checks": ["onnx.checker.check_model(full_check=True)", "onnx.shape_inference.infer_shapes(strict_mode=True)"],
            "inputs_source": source,
            "onnxruntime": check,
            "max_abs_diff": check["max_abs_diff"],
            "max_rel_diff_bound": bound,
            "ok": ok,
        }
        if not ok:
            summary["reason"] = (f"onnxruntime differs from PyTorch by {check['max_rel_diff']:.2e} of the logit "
                                 f"scale (must be < {bound:g})")
        write_bundle(tmp, target="onnx", run_dir=req.run_dir, run_manifest=loaded.manifest, artifacts=["model.onnx"],
                     summary=summary, options={**opts, "samples": samples, "opset": OPSET}, inputs=used)
        if not ok:
            failed = reject_bundle(tmp, req.out_dir, summary["reason"])
    where = failed if failed is not None else req.out_dir
    in_shape = "x".join(str(d) for d in facts["inputs"][input_name])
    lines = (
        f"onnx: {loaded.model_name} run {req.run_dir} -> {where / 'model.onnx'} (opset {OPSET}, "
        f"{input_name} {in_shape} -> logits)",
        f"  {sum(facts['nodes_by_op'].values())} nodes, {facts['parameters']:,} parameters; checker and shape inference clean",
        f"  onnxruntime vs PyTorch on {check['samples']} inputs ({source}): max |diff| {check['max_abs_diff']:.2e} "
        f"({check['max_rel_diff']:.1e} of the logit scale), top-1 agreement {check['top1_agreement']:.0%}",
        f"  {'OK' if ok else 'FAILED'}: relative difference {'<' if ok else 'must be <'} {bound:g}",
        *((failed_line(req.out_dir, failed),) if failed is not None else ()),
    )
    return ExportResult(out_dir=where, summary=summary, lines=lines, ok=ok, failed=failed is not None)
