"""An fp16 copy of an ONNX graph with fp32 inputs and outputs kept (casts at the edges).

TensorRT 11 builds strongly typed networks: precision comes from the graph, not builder flags, so a
half-precision engine needs a half-precision graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

FP16_MAX = float(np.finfo(np.float16).max)


def to_half(values: np.ndarray) -> np.ndarray:
    """fp32 constants as fp16, finite values beyond fp16's range clipped to its largest (as onnxconverter-common
    does): a mask constant such as float32's lowest must stay a very large finite number, not become -inf * 0 = NaN."""
    finite = np.isfinite(values)
    clipped = np.where(finite, np.clip(values, -FP16_MAX, FP16_MAX), values)
    return clipped.astype(np.float16)


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = gs.import_onnx(model)
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) and t.values.dtype == np.float32:
            t.values = to_half(t.values)
    for node in graph.nodes:
        for key in ("value",):  # Constant nodes carrying float tensors
            v = node.attrs.get(key)
            if isinstance(v, gs.Constant) and v.values.dtype == np.float32:
                v.values = to_half(v.values)
        if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.FLOAT:
            node.attrs["to"] = onnx.TensorProto.FLOAT16
    for i, inp in enumerate(list(graph.inputs)):
        if inp.dtype != np.float32:
            continue
        half = gs.Variable(f"{inp.name}_fp16", dtype=np.float16, shape=inp.shape)
        for consumer in list(inp.outputs):
            for j, t in enumerate(consumer.inputs):
                if t is inp:
                    consumer.inputs[j] = half
        graph.nodes.append(gs.Node("Cast", f"cast_in_{i}", {"to": onnx.TensorProto.FLOAT16}, [inp], [half]))
    for i, out in enumerate(list(graph.outputs)):
        if out.dtype != np.float32:
            continue
        half = gs.Variable(f"{out.name}_fp16", dtype=np.float16, shape=out.shape)
        for consumer in list(out.outputs):  # inner readers of an output stay in fp16
            for j, t in enumerate(consumer.inputs):
                if t is out:
                    consumer.inputs[j] = half
        for producer in list(out.inputs):
            for j, t in enumerate(producer.outputs):
                if t is out:
                    producer.outputs[j] = half
        graph.nodes.append(gs.Node("Cast", f"cast_out_{i}", {"to": onnx.TensorProto.FLOAT}, [half], [out]))
    edges = {id(t) for t in graph.inputs} | {id(t) for t in graph.outputs}
    for t in graph.tensors().values():  # let shape inference recompute every inner type
        if isinstance(t, gs.Variable) and id(t) not in edges:
            t.dtype, t.shape = None, None
    graph.cleanup().toposort()
    out_model = gs.export_onnx(graph)
    out_model.ir_version = model.ir_version
    del out_model.opset_import[:]
    out_model.opset_import.extend(model.opset_import)
    return onnx.shape_inference.infer_shapes(out_model)
