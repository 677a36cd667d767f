"""Standard architectures priced at the posters' input size from their ONNX graphs: cost only, never trained here.

The project's own ``cnn`` and ``vit`` runs are small models trained on a few posters; a reader comparing an SNN
with "a CNN" or "a ViT" imagines the standard networks. This module counts those standard networks with the
project's ONNX counter (:func:`neuroposter.profiling.onnx_counts.count_onnx`) at the same input the runs see, so
the report can show what the familiar architectures would cost per inference:

======================  =====================================================================================
``densenet169``         torchvision's DenseNet-169, the full ImageNet classifier (1000 classes)
``vit_b_16``            ViT-B/16 (torchvision ``vit_b_16``): patch 16, depth 12, 12 heads, width 768, MLP 3072
``vit_s_16``            ViT-S/16 (DeiT-S): patch 16, depth 12, 6 heads, width 384, MLP 1536
======================  =====================================================================================

Random weights, seeded and distinct in every tensor (:func:`distinct_weights_`: a default initialisation repeats
tensors -- zero biases, BatchNorm ones -- which the ONNX exporter merges, undercounting the weights); MACs do not
depend on the values. The ImageNet head is kept, as published. The ViTs' input must be a multiple of the patch size
in each dimension: they are priced at the nearest size >= the posters' that is (268x182 -> 272x192), and
:attr:`StoredCounts.info` says so. torchvision's ViT takes square images only; ``_RectViT`` is the same network with
a positional embedding for ``H/16 x W/16`` patches (the only part that depends on the grid).

Speed: exporting a 12-block ViT-B/16 takes ~15 s and counting it ~9 s on a 2-core machine (346 MB of ONNX). The
encoder blocks of a ViT are identical (same shapes, same ops), so the ViTs are exported with TWO encoder blocks and
the counts of the second are repeated for the other ``depth - 2`` blocks, renamed ``encoder_layer_<i>`` as the full
export names them (:func:`replicate_blocks`). The result equals the full export's counts layer for layer
(``tests/profiling/test_reference_models.py`` checks it against full exports).

API: :data:`REFERENCE_MODELS` (name -> :class:`ReferenceModel`), :func:`reference_counts` ``(name, image_size) ->
StoredCounts`` (one model), :func:`reference_entries` ``(image_size) -> {"reference:<name>": StoredCounts}`` (all,
with a progress bar; what the ``onnx`` export of the ``cnn`` run stores in ``op_counts.json``),
:func:`priced_size` (the input a model is priced at).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from neuroposter._registry import Registry
from neuroposter.profiling.counts import LayerCounts, OpCounts
from neuroposter.profiling.onnx_counts import OPSET, trace_to_onnx
from neuroposter.profiling.stored import ANN_WEIGHT_BITS, StoredCounts

__all__ = ["REFERENCE_MODELS", "ReferenceModel", "REFERENCE_PREFIX", "NOT_TRAINED", "reference_counts",
           "reference_entries", "priced_size", "build_reference", "replicate_blocks", "distinct_weights_"]

#: the ``op_counts.json`` entry name of reference model ``x`` is ``REFERENCE_PREFIX + x``
REFERENCE_PREFIX = "reference:"
NOT_TRAINED = "random weights, not trained: priced only"


@dataclass(frozen=True)
class ReferenceModel:
    """A standard architecture the report prices (never trains).

    Attributes:
        title: its usual name (``"ViT-B/16"``).
        family: ``"cnn"`` or ``"vit"``.
        hyper: the architecture's hyper-parameters (ViT: ``patch``, ``depth``, ``heads``, ``width``, ``mlp``).
        source: where the architecture is defined.
    """

    title: str
    family: str
    hyper: dict[str, int]
    source: str

    @property
    def multiple(self) -> int:
        """The input side must be a multiple of this (the ViT patch; 1 for a CNN)."""
        return int(self.hyper.get("patch", 1))

    def architecture(self, image_size: Sequence[int]) -> str:
        """The architecture in words, at ``image_size`` ``(H, W)``."""
        h, w = (int(v) for v in image_size)
        if self.family == "vit":
            p = self.hyper
            tokens = (h // p["patch"]) * (w // p["patch"]) + 1
            return (f"{self.title}: patch {p['patch']}, depth {p['depth']}, {p['heads']} heads, width {p['width']}, "
                    f"MLP {p['mlp']}, {tokens} tokens (incl. class token) at {h}x{w}, ImageNet head (1000 classes)")
        return f"{self.title}: full classifier (features + ImageNet head, 1000 classes) at {h}x{w}"


REFERENCE_MODELS: Registry[ReferenceModel] = Registry("reference model")
REFERENCE_MODELS.add("densenet169", ReferenceModel(
    "DenseNet-169", "cnn", {}, "torchvision.models.densenet169 (Huang et al., CVPR 2017)"))
REFERENCE_MODELS.add("vit_b_16", ReferenceModel(
    "ViT-B/16", "vit", {"patch": 16, "depth": 12, "heads": 12, "width": 768, "mlp": 3072},
    "torchvision.models.vit_b_16 (Dosovitskiy et al., ICLR 2021)"))
REFERENCE_MODELS.add("vit_s_16", ReferenceModel(
    "ViT-S/16", "vit", {"patch": 16, "depth": 12, "heads": 6, "width": 384, "mlp": 1536},
    "torchvision.models.VisionTransformer with DeiT-S sizes (Touvron et al., ICML 2021)"))


def _spec(name: str) -> ReferenceModel:
    from neuroposter.errors import UsageError

    try:
        return REFERENCE_MODELS.get(name)
    except KeyError as exc:
        raise UsageError(str(exc).strip("'\"")) from None


def priced_size(name: str, image_size: Sequence[int]) -> tuple[int, int]:
    """The input ``(H, W)`` reference model ``name`` is priced at: ``image_size`` rounded up to the model's
    multiple in each dimension (the ViT patch, 16), unchanged for a CNN.

    Raises:
        UsageError: unknown model (the message lists the valid names), or a size that is not two positive ints.
    """
    from neuroposter.errors import UsageError

    spec = _spec(name)
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"image size must be (H, W) with positive sides, got {tuple(image_size)!r}")
    m = spec.multiple
    return (-(-size[0] // m) * m, -(-size[1] // m) * m)


def _rect_vit_class() -> type:
    from torch import nn
    from torchvision.models.vision_transformer import VisionTransformer

    class _RectViT(VisionTransformer):
        """torchvision's ``VisionTransformer`` on ``H x W`` images (both multiples of the patch): the same
        network, with a positional embedding for ``(H/p) * (W/p) + 1`` tokens."""

        def __init__(self, image_size: tuple[int, int], **kw: Any) -> None:
            h, w = image_size
            super().__init__(image_size=h, **kw)
            seq = (h // self.patch_size) * (w // self.patch_size) + 1
            self.encoder.pos_embedding = nn.Parameter(
                self.encoder.pos_embedding.new_empty(1, seq, self.hidden_dim).normal_(std=0.02))
            self.image_size = (h, w)  # type: ignore[assignment]

        def _process_input(self, x: Any) -> Any:
            n, _, h, w = x.shape
            p = self.patch_size
            x = self.conv_proj(x)                                        # [n, D, h/p, w/p]
            return x.reshape(n, self.hidden_dim, (h // p) * (w // p)).permute(0, 2, 1)

    return _RectViT


def build_reference(name: str, image_size: Sequence[int], *, depth: int | None = None) -> Any:
    """The torch module of reference model ``name`` (random weights, eval mode) for input ``image_size`` (already a
    multiple of the patch for a ViT; see :func:`priced_size`); ``depth`` overrides a ViT's number of encoder blocks.

    Raises:
        UsageError: unknown model, or a ViT size that is not a multiple of its patch.
    """
    import torchvision

    from neuroposter.errors import UsageError

    spec = _spec(name)
    h, w = (int(v) for v in image_size)
    if spec.family == "cnn":
        return getattr(torchvision.models, name)(weights=None).eval()
    p = spec.hyper
    if h % p["patch"] or w % p["patch"]:
        raise UsageError(f"{spec.title} needs an input that is a multiple of {p['patch']}, got {h}x{w}")
    return _rect_vit_class()((h, w), patch_size=p["patch"], num_layers=int(depth or p["depth"]),
                             num_heads=p["heads"], hidden_dim=p["width"], mlp_dim=p["mlp"]).eval()


def _parameters(name: str, image_size: Sequence[int]) -> int:
    """Parameters of the full model, counted on a shape-only (``meta`` device) build: no memory, no init cost."""
    import torch

    with torch.device("meta"):
        model = build_reference(name, image_size)
    return int(sum(p.numel() for p in model.parameters()))


def _export(model: Any, shape: Sequence[int], path: str) -> None:
    """The model at input ``shape`` to ONNX (:func:`~neuroposter.profiling.onnx_counts.trace_to_onnx`, fixed batch),
    torchvision's UserWarnings silenced."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        trace_to_onnx(model, torch.zeros(*shape), path, input_name="images", dynamic_batch=False)


def _block(i: int) -> str:
    """The node-name prefix the exporter gives encoder block ``i`` of torchvision's ViT."""
    return f"/encoder/layers/encoder_layer_{i}/"


def distinct_weights_(model: Any, seed: int = 0) -> Any:
    """Fills every floating parameter and buffer of ``model`` with seeded random values, in place (BatchNorm
    running variances in [0.5, 1.5]): no two tensors are equal, as in a trained network. Default initialisations
    repeat tensors (zero biases, BatchNorm ones and zeros), which the ONNX exporter merges into one initializer,
    so the export would count fewer weights than the architecture has. MACs do not depend on the values."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5, generator=g)
            else:
                t.normal_(0.0, 0.02, generator=g)
    return model


def replicate_blocks(counts: OpCounts, depth: int) -> OpCounts:
    """The counts of a ``depth``-block ViT from those of its 2-block export: the layers of block 1
    (``/encoder/layers/encoder_layer_1/...``) repeated for blocks ``2 .. depth-1`` (renamed), in graph order.

    Exact because the blocks of a ViT are identical: same ops on tensors of the same shapes. Block 1 (not block 0)
    is the one repeated because it already is what every later block is in a full export: the constants the
    exporter shares between blocks (the attention's ``Gather`` indices) are counted at block 0 only
    (``tests/profiling/test_reference_models.py`` compares the result with full exports, layer for layer).

    Raises:
        ValueError: ``depth < 2``, or ``counts`` is not of a 2-block export.
    """
    depth = int(depth)
    if depth < 2:
        raise ValueError(f"depth must be >= 2 to replicate block 1, got {depth}")
    layers = list(counts.layers)
    b1, b2 = _block(1), _block(2)
    idx = [i for i, lc in enumerate(layers) if lc.name.startswith(b1)]
    if not idx or not any(lc.name.startswith(_block(0)) for lc in layers):
        raise ValueError(f"{counts.name}: not a 2-block ViT export (no {_block(0)}... and {b1}... layers)")
    if any(lc.name.startswith(b2) for lc in layers):
        raise ValueError(f"{counts.name}: holds more than two encoder blocks")
    block = [layers[i] for i in idx]
    extra = [replace(lc, name=_block(k) + lc.name[len(b1):]) for k in range(2, depth) for lc in block]
    out = layers[:idx[-1] + 1] + extra + layers[idx[-1] + 1:]
    # the exported file's byte size is not the full model's: dropped (the layers' byte terms are exact)
    meta = {k: v for k, v in counts.meta.items() if k != "param_bytes_fp32_file"}
    meta["blocks"] = f"{depth} encoder blocks: 2 exported, block 2's counts repeated {depth - 2} times"
    return replace(counts, layers=tuple(out), meta=meta)


def _count(name: str, size: tuple[int, int], depth: int | None) -> OpCounts:
    from neuroposter.profiling.onnx_counts import count_onnx

    model = distinct_weights_(build_reference(name, size, depth=depth))
    fd, path = tempfile.mkstemp(prefix=f"neuroposter-{name}-", suffix=".onnx")
    os.close(fd)
    try:
        _export(model, (1, 3, *size), path)
        del model
        return count_onnx(path, name=name, weight_bits=ANN_WEIGHT_BITS,
                          source=f"{name} exported to a temporary ONNX file (deleted), {size[0]}x{size[1]} input")
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def reference_counts(name: str, image_size: Sequence[int], *, replicate: bool = True) -> StoredCounts:
    """The op counts of reference model ``name`` priced at the posters' ``image_size`` ``(H, W)``.

    The model (random weights) is exported to a temporary ONNX file, counted with
    :func:`~neuroposter.profiling.onnx_counts.count_onnx` (32-bit weights), and the file deleted. A ViT is exported
    with two encoder blocks and block 2's counts repeated (:func:`replicate_blocks`; ``replicate=False``
    exports all blocks: the same counts, slower).

    Returns:
        A :class:`StoredCounts` whose ``info`` holds ``reference`` (the registry name), ``title``, ``architecture``
        (words), ``parameters`` (of the full model), ``image_size`` (priced ``[H, W]``), ``requested_size`` (the
        posters' ``[H, W]``), ``size_note`` (why they differ, or ``""``), ``weights`` (:data:`NOT_TRAINED`),
        ``source`` (where the architecture is defined), ``counted`` (how) and ``seconds`` (export + count).

    Raises:
        UsageError: unknown name (the message lists the valid names) or a bad size.
    """
    spec = _spec(name)
    asked = tuple(int(v) for v in image_size)
    size = priced_size(name, asked)
    t0 = time.perf_counter()
    if spec.family == "vit" and replicate:
        depth = int(spec.hyper["depth"])
        counts = replicate_blocks(_count(name, size, 2), depth)
        how = (f"exported with 2 of its {depth} identical encoder blocks, block 2's counts repeated for the "
               f"other {depth - 2} (exact: same ops, same shapes)")
    else:
        counts = _count(name, size, None)
        how = "exported whole"
    seconds = time.perf_counter() - t0
    note = "" if size == asked else (
        f"priced at {size[0]}x{size[1]}: the nearest size >= the posters' {asked[0]}x{asked[1]} that is a multiple "
        f"of the {spec.multiple}-pixel patch")
    counts = replace(counts, name=f"{REFERENCE_PREFIX}{name}",
                     meta={**counts.meta, "reference": name, "weights": NOT_TRAINED,
                           "source": f"{spec.title} ({spec.source}), {how}; temporary ONNX file deleted"})
    info = {"reference": name, "title": spec.title, "architecture": spec.architecture(size),
            "parameters": _parameters(name, size), "image_size": list(size), "requested_size": list(asked),
            "size_note": note, "weights": NOT_TRAINED, "source": spec.source, "counted": how,
            "seconds": round(seconds, 2)}
    prov = (f"{spec.title}, standard architecture with {NOT_TRAINED}; torch -> ONNX (opset {OPSET}) at "
            f"{size[0]}x{size[1]}, counted by count_onnx; {how}")
    return StoredCounts(counts, prov, info)


def reference_entries(image_size: Sequence[int], names: Sequence[str] | None = None,
                      on_done: Callable[[str, StoredCounts], None] | None = None) -> dict[str, StoredCounts]:
    """Every reference model (or ``names``) at ``image_size``, keyed ``"reference:<name>"`` (a progress bar).

    Args:
        image_size: the posters' ``(H, W)`` as the feature store records it.
        names: the reference models (default: all of :data:`REFERENCE_MODELS`).
        on_done: called with ``(name, entry)`` after each model.
    """
    from neuroposter._progress import progress

    out: dict[str, StoredCounts] = {}
    todo = list(names) if names is not None else REFERENCE_MODELS.names()
    for name in progress(todo, desc="reference models (ONNX counts)", unit="model"):
        out[REFERENCE_PREFIX + name] = entry = reference_counts(name, image_size)
        if on_done is not None:
            on_done(name, entry)
    return out

