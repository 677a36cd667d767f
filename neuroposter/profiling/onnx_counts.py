"""ANN op counts from ONNX graphs: MACs per node, other arithmetic, parameter and activation bytes.

Shapes come from ``onnx.shape_inference.infer_shapes``. What is counted:

* **MACs** (multiply-accumulates), the unit of torchvision's "GFLOPS" column:
  ``Conv`` = N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w (any spatial rank);
  ``ConvTranspose`` = N * C_in * prod(in spatial) * (C_out / groups) * prod(kernel);
  ``Gemm`` = M * N * K; ``MatMul`` = prod(output shape) * K (batched, broadcast). Biases are not MACs.
* **Other ops** (``other_ops``), one op per output element unless stated: elementwise arithmetic
  (Add, Sub, Mul, Div, Pow, Sqrt, Relu, Sigmoid, Tanh, Erf, Clip, ...), pooling (one compare/add per window
  element), ``Softmax`` (3 per element: exp, sum, divide), ``LayerNormalization`` (8 per element: mean,
  subtract, square, variance sum, divide, scale, shift), ``BatchNormalization`` (2 per element: scale and shift
  after folding the statistics), ``ReduceMean``/``ReduceSum`` (one per input element), ``Gelu`` (8 per element).
  The factors live in :data:`OTHER_OP_FACTORS`.
* **Not counted**: data movement ops (Reshape, Transpose, Concat, Gather, Slice, Shape, ...), which cost
  memory traffic rather than arithmetic, and are reported as activation bytes instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter.profiling.counts import LayerCounts, OpCounts

__all__ = ["OPSET", "trace_to_onnx", "OTHER_OP_FACTORS", "MAC_OPS", "NodeCount", "count_onnx", "onnx_node_counts", "onnx_subgraph",
           "BackboneCut", "backbone_cut"]

MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Ops per output element for non-MAC arithmetic (per *input* element for reductions and pooling windows).
OTHER_OP_FACTORS: Mapping[str, float] = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Pow": 1, "Sqrt": 1, "Reciprocal": 1, "Neg": 1, "Abs": 1,
    "Relu": 1, "LeakyRelu": 1, "PRelu": 1, "Sigmoid": 1, "Tanh": 1, "Erf": 1, "Exp": 1, "Log": 1,
    "Clip": 1, "Max": 1, "Min": 1, "HardSigmoid": 1, "HardSwish": 1, "Where": 1,
    "Softmax": 3, "LogSoftmax": 3, "LayerNormalization": 8, "BatchNormalization": 2,
    "InstanceNormalization": 8, "GroupNormalization": 8, "Gelu": 8,
    "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1,
    "MaxPool": 1, "AveragePool": 1, "GlobalAveragePool": 1, "GlobalMaxPool": 1,
}
_REDUCE_ON_INPUT = {"ReduceMean", "ReduceSum", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool"}
_POOL = {"MaxPool", "AveragePool"}


@dataclass(frozen=True)
class NodeCount:
    """Counts of one ONNX node.

    Attributes:
        name: node name (or ``op_type#index`` when unnamed).
        op_type: ONNX op type.
        macs: multiply-accumulates.
        other_ops: non-MAC arithmetic ops (see :data:`OTHER_OP_FACTORS`).
        param_bytes: bytes of the initializers this node reads (each counted once, at its first user).
        output_bytes: bytes of the node's outputs (activations).
        output_shape: shape of the first output (None when unknown).
        weight_elements: number of weight elements (initializers) the node reads.
    """

    name: str
    op_type: str
    macs: int
    other_ops: int
    param_bytes: int
    output_bytes: int
    output_shape: tuple[int, ...] | None
    weight_elements: int = 0


def _shape_of(vi: Any) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            return None
    return tuple(dims)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model), load_external_data=False)
    return model


def _runtime_shapes(model: Any, batch: int) -> dict[str, tuple[int, ...]]:
    """Shapes of every intermediate tensor from one onnxruntime run on zeros (fallback for symbolic dims)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in m.graph.output}
    inits = {t.name for t in m.graph.initializer}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in known and node.op_type != "Constant":
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
                known.add(o)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        if inp.name in inits:
            continue
        shape = [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(inp.shape)]
        dtype = np.float32 if "float" in inp.type else np.int64
        feeds[inp.name] = np.zeros(shape, dtype=dtype)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(names, outs)}


def onnx_node_counts(model: Any, *, batch: int | None = None) -> list[NodeCount]:
    """Per-node counts of an ONNX model.

    Args:
        model: an ``onnx.ModelProto`` or a path to a ``.onnx`` file.
        batch: value for a symbolic (dynamic) first input dimension; default 1.

    Returns:
        One :class:`NodeCount` per node that computes or holds data, in graph order.

    Raises:
        ValueError: a MAC node whose shapes cannot be inferred.
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = _load(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # do not mutate the caller's model
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    # Fix symbolic input dims so shapes propagate.
    for inp in graph.input:
        if inp.name in init_names:
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = (batch or 1) if i == 0 else 1
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    elem_size: dict[str, int] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = _shape_of(vi)
        try:
            elem_size[vi.name] = int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).itemsize)
        except Exception:  # noqa: BLE001 - unknown dtype: assume 4 bytes
            elem_size[vi.name] = 4
    mac_unknown = [n for n in g.node if n.op_type in MAC_OPS and (
        shapes.get(n.output[0]) is None or any(shapes.get(i) is None for i in n.input[:2] if i))]
    init_names_all = {t.name for t in graph.initializer}
    if mac_unknown:  # symbolic shapes that static inference could not resolve: run once to read them
        for name_, shp in _runtime_shapes(model, batch or 1).items():
            if name_ not in init_names_all and shapes.get(name_) is None:
                shapes[name_] = shp
    init_bytes: dict[str, int] = {}
    init_elems: dict[str, int] = {}
    for t in graph.initializer:
        arr_shape = tuple(int(d) for d in t.dims)
        shapes[t.name] = arr_shape
        n = int(np.prod(arr_shape)) if arr_shape else 1
        size = int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize)
        init_bytes[t.name] = n * size
        init_elems[t.name] = n
    for node in g.node:  # Constant nodes: their tensors are parameters too
        if node.op_type == "Constant":
            val = _attr(node, "value")
            if val is not None:
                arr = numpy_helper.to_array(val)
                shapes[node.output[0]] = tuple(arr.shape)
                init_bytes[node.output[0]] = int(arr.nbytes)
                init_elems[node.output[0]] = int(arr.size)

    seen_params: set[str] = set()
    out: list[NodeCount] = []
    for idx, node in enumerate(g.node):
        op = node.op_type
        name = node.name or f"{op}#{idx}"
        if op == "Constant":
            continue
        ins = [shapes.get(i) if i else None for i in node.input]
        o_shape = shapes.get(node.output[0]) if node.output else None
        macs = 0
        if op == "Conv":
            w = ins[1]
            if o_shape is None or w is None:
                raise ValueError(f"ONNX node {name} (Conv): shapes unknown after shape inference")
            groups = int(_attr(node, "group", 1))
            c_out = o_shape[1]
            macs = int(o_shape[0] * c_out * int(np.prod(o_shape[2:])) * w[1] * int(np.prod(w[2:])))
            del groups  # weight already holds C_in / groups
        elif op == "ConvTranspose":
            x, w = ins[0], ins[1]
            if x is None or w is None:
                raise ValueError(f"ONNX node {name} (ConvTranspose): shapes unknown")
            macs = int(x[0] * x[1] * int(np.prod(x[2:])) * w[1] * int(np.prod(w[2:])))
        elif op == "Gemm":
            a, b = ins[0], ins[1]
            if a is None or b is None:
                raise ValueError(f"ONNX node {name} (Gemm): shapes unknown")
            m = a[1] if _attr(node, "transA", 0) else a[0]
            k = a[0] if _attr(node, "transA", 0) else a[1]
            n = b[0] if _attr(node, "transB", 0) else b[1]
            macs = int(m * n * k)
        elif op == "MatMul":
            a = ins[0]
            if a is None or o_shape is None:
                raise ValueError(f"ONNX node {name} (MatMul): shapes unknown")
            k = a[-1]
            macs = int(np.prod(o_shape)) * int(k)
        other = 0
        if op in OTHER_OP_FACTORS:
            if op in _REDUCE_ON_INPUT and ins and ins[0] is not None:
                base = int(np.prod(ins[0]))
            elif op in _POOL and o_shape is not None:
                k = _attr(node, "kernel_shape", [1])
                base = int(np.prod(o_shape)) * int(np.prod(k))
            elif o_shape is not None:
                base = int(np.prod(o_shape))
            else:
                base = 0
            other = int(round(base * OTHER_OP_FACTORS[op]))
        pbytes = 0
        welems = 0
        for i in node.input:
            if i in init_bytes and i not in seen_params:
                seen_params.add(i)
                pbytes += init_bytes[i]
                welems += init_elems[i]
        obytes = 0
        for o in node.output:
            s = shapes.get(o)
            if s is not None:
                obytes += int(np.prod(s)) * elem_size.get(o, 4)
        out.append(NodeCount(name, op, macs, other, pbytes, obytes, o_shape, welems))
    return out


def count_onnx(model: Any, *, batch: int | None = None, name: str | None = None,
               weight_bits: int = 32, activation_bits: int = 32, source: str | None = None) -> OpCounts:
    """Op counts of an ONNX model for one sample (the per-node counts divided by the batch size).

    Args:
        model: an ``onnx.ModelProto`` or a path.
        batch: value for a symbolic batch dimension (default 1).
        name: a label (default: the file stem or the graph name).
        weight_bits: deployment precision of weights (for the memory terms).
        activation_bits: deployment precision of activations.
        source: provenance text (e.g. the ONNX file path and hash).

    Returns:
        :class:`OpCounts` of kind ``"ann"`` with one :class:`LayerCounts` per MAC or arithmetic node.
    """
    path = Path(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else None
    proto = _load(model)
    nodes = onnx_node_counts(proto, batch=batch)
    b = float(batch or 1)
    layers: list[LayerCounts] = []
    for n in nodes:
        if n.macs == 0 and n.other_ops == 0 and n.param_bytes == 0:
            continue
        layers.append(LayerCounts(
            name=n.name, op_type=n.op_type, kind="mac" if n.macs else "other",
            dense_ops=n.macs / b, effective_macs=n.macs / b, effective_acs=0.0,
            other_ops=n.other_ops / b, n_weights=n.weight_elements,
            weight_bytes=n.weight_elements * weight_bits / 8,
            out_shape=n.output_shape[1:] if n.output_shape else None,
            activation_bytes=n.output_bytes / b * activation_bits / 32,
            weight_fetches=float(n.weight_elements),
        ))
    label = name or (path.stem if path is not None else (proto.graph.name or "onnx"))
    if path is not None and label == "model":
        label = path.parent.name
    total_param_bytes = float(sum(n.param_bytes for n in nodes))
    return OpCounts(
        name=label, kind="ann", T=1, samples=1, layers=tuple(layers),
        weight_bits=weight_bits, state_bits=activation_bits,
        meta={"source": source or (str(path) if path is not None else "onnx model"),
              "param_bytes_fp32_file": total_param_bytes,
              "ops_counted": "MACs of Conv/ConvTranspose/Gemm/MatMul; other ops per OTHER_OP_FACTORS; "
                             "data-movement ops not counted"},
    )


def onnx_subgraph(model: Any, graph_input: Any, output: str) -> Any:
    """The nodes of ``model`` that ``output`` depends on (original order), as a model with that one output.

    Args:
        model: an ``onnx.ModelProto``.
        graph_input: the ``ValueInfoProto`` of the input the sub-graph starts from.
        output: the name of the tensor the sub-graph ends at.

    Returns:
        An ``onnx.ModelProto`` (same opset and IR version) holding only the nodes, initializers and value
        infos that ``output`` needs.
    """
    import onnx

    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[int] = set()
    todo = [output]
    while todo:
        n = producer.get(todo.pop())
        if n is None or id(n) in keep:
            continue
        keep.add(id(n))
        todo += [i for i in n.input if i]
    nodes = [n for n in model.graph.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    graph = onnx.helper.make_graph(
        nodes, f"{model.graph.name}-sub", [graph_input],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializer=[t for t in model.graph.initializer if t.name in used],
        value_info=[v for v in model.graph.value_info if v.name in used])
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


@dataclass(frozen=True)
class BackboneCut:
    """The image backbone cut out of an image model's ONNX graph.

    Attributes:
        model: the sub-graph (``onnx.ModelProto``) from the image input to the backbone's last output.
        input_name: its input tensor.
        output_name: its output tensor.
        image_size: ``(H, W)`` of the image input.
    """

    model: Any
    input_name: str
    output_name: str
    image_size: tuple[int, int]


def backbone_cut(model: Any, *, prefix: str = "/backbone/") -> BackboneCut | None:
    """The sub-graph of an image model from its one image input ``[B, 3, H, W]`` to the output of the last node
    whose name starts with ``prefix`` (the exporter names nodes after the module path, so ``/backbone/`` is the
    model's ``backbone`` module); None when the model has no such nodes or not one 4-D input.

    Args:
        model: an ``onnx.ModelProto`` or a path.
        prefix: node-name prefix of the backbone's nodes.
    """
    proto = _load(model)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    backbone = [n for n in proto.graph.node if n.name.startswith(prefix)]
    if len(dims) != 4 or not backbone:
        return None
    out = backbone[-1].output[0]
    return BackboneCut(onnx_subgraph(proto, inputs[0], out), inputs[0].name, out, (int(dims[2]), int(dims[3])))


#: the ONNX opset of every export (17: the first with LayerNormalization)
OPSET = 17


def trace_to_onnx(model: Any, example: Any, path: str | os.PathLike[str], *, input_name: str,
                  dynamic_batch: bool = True) -> None:
    """``torch.onnx.export`` of ``model`` on ``example`` at :data:`OPSET` (output ``logits``; a dynamic batch axis
    unless ``dynamic_batch`` is False), traced with autograd on and the parameters requiring grad: that disables
    ``nn.MultiheadAttention``'s eval "fast path" (``aten::_native_multi_head_attention`` has no ONNX export), so the
    graph holds the plain MatMul/Softmax composition. The tracer's notes (shape checks that become constants) are
    silenced; the parameters' ``requires_grad`` flags are restored."""
    import warnings

    import torch

    axes = {input_name: {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, (example,), str(path), opset_version=OPSET, input_names=[input_name],
                              output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
