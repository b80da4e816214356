"""One nn.Module -> one checked, cleaned ONNX file with named, dynamic batch and token dimensions."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import torch

from paumer_edge import UserError
from paumer_edge.core.contract import TensorSpec
from paumer_edge.core.names import DIM_BATCH, DIM_CONTEXT, DIM_TOKENS


def export_module(module: torch.nn.Module, args: tuple[torch.Tensor | list[torch.Tensor], ...], path: Path,
                  input_names: list[str], output_names: list[str], dynamic: dict[str, dict[int, str]], opset: int,
                  max_batch: int, max_tokens: int) -> None:
    """Export with the dynamo exporter; `dynamic` maps input name -> {axis: dim name}. An argument may be a list
    of tensors: each becomes one graph input, named in order by `input_names`."""
    dims = {DIM_BATCH: torch.export.Dim(DIM_BATCH, min=1, max=max(2, max_batch)),
            DIM_TOKENS: torch.export.Dim(DIM_TOKENS, min=1, max=max_tokens),
            DIM_CONTEXT: torch.export.Dim(DIM_CONTEXT, min=0, max=max_tokens)}
    names = iter(input_names)

    def spec(name: str) -> dict[int, torch.export.Dim] | None:
        return {axis: dims[d] for axis, d in dynamic.get(name, {}).items()} or None

    shapes = tuple([spec(next(names)) for _ in a] if isinstance(a, list) else spec(next(names)) for a in args)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, input_names=input_names,
                output_names=output_names, dynamic_shapes=shapes, external_data=False, verbose=False,
            )
        except Exception as e:  # the exporter's errors are long; keep the first line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"ONNX export of {path.name} failed: {first}") from e
    assert program is not None
    model = program.model_proto
    model = clean(model, input_names, output_names)
    check(model, path.name)
    onnx.save(model, path)


def clean(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """Fold constants, drop dead nodes, sort, and give every tensor a stable readable name."""
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup(remove_unused_graph_inputs=False).toposort()
    keep = set(inputs) | set(outputs)
    # constants first, found through the nodes: a folded constant may carry a name a node output is renamed to
    # below, and graph.tensors() (a map by name) would then see only one of the two
    constants = {id(t): t for node in graph.nodes for t in node.inputs if isinstance(t, gs.Constant)}
    for i, t in enumerate((t for t in constants.values() if t.name not in keep), start=1):
        t.name = f"const_{i}"
    counts: dict[str, int] = {}
    for node in graph.nodes:
        op = node.op.lower()
        counts[op] = counts.get(op, 0) + 1
        node.name = f"{op}_{counts[op]}"
        for j, t in enumerate(node.outputs):
            if t.name not in keep:
                t.name = node.name if len(node.outputs) == 1 else f"{node.name}_{j}"
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    out.producer_name, out.producer_version = "paumer-edge", model.producer_version
    del out.opset_import[:]
    out.opset_import.extend(model.opset_import)
    return out


def check(model: onnx.ModelProto, name: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise UserError(f"exported graph {name} failed the ONNX checks: {str(e).splitlines()[0]}") from e


def tensor_specs(model: onnx.ModelProto, which: str) -> tuple[TensorSpec, ...]:
    """Name, shape (ints or dim names) and dtype of the graph's inputs or outputs, for the manifest."""
    values = model.graph.input if which == "inputs" else model.graph.output
    specs = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim)
        specs.append(TensorSpec(v.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name))
    return tuple(specs)
