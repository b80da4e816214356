"""Which nodes of a bundle graph do what, read from the graph's structure: the groups an INT8 recipe quantizes
or keeps in float.

Groups by role: `linear` (MatMul / Gemm with a weight: qkv, projection, MLP, heads), `attention_scores` (q k^T: a
MatMul of two activations), `attention_values` (softmax(q k^T) v: the one whose input comes from a Softmax),
`patch_embed` (Conv), `norm` (LayerNormalization), `softmax`, `elementwise` (Add, Mul); and by region:
`pausing_head` (the nodes that only feed the entropy output: the head's norm and linear layer and the entropy
itself) and `decoder` (every node of the decoder graph). A node belongs to its role and to its region, so a
recipe can keep e.g. all LayerNorms, or the whole pausing head, in float. Structure, not names, decides, so any
exported model (linear or mask-transformer decoder, any depth) is classified alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from paumer_edge.core.names import DECODER, ENTROPY, TOKENS, TOKENS_OUT

ROLES = ("linear", "attention_scores", "attention_values", "patch_embed", "norm", "softmax", "elementwise")
REGIONS = ("pausing_head", "decoder")
GROUPS = ROLES + REGIONS
_WEIGHTED = ("MatMul", "Gemm")
_MOVES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast", "Identity")
_ROLE_OF_OP = {"Conv": "patch_embed", "LayerNormalization": "norm", "Softmax": "softmax", "Add": "elementwise",
               "Mul": "elementwise"}


def _constants(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _ancestors(graph: onnx.GraphProto, outputs: Iterable[str]) -> set[str]:
    """Names of the nodes some of `outputs` depend on."""
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return seen


def _source(name: str, producer: dict[str, onnx.NodeProto]) -> str:
    """The op that computed a tensor, looking through the ops that only move data."""
    node = producer.get(name)
    while node is not None and node.op_type in _MOVES:
        node = producer.get(node.input[0])
    return node.op_type if node is not None else ""


def role(node: onnx.NodeProto, constants: set[str], producer: dict[str, onnx.NodeProto]) -> str | None:
    """The quantizable role of a node, or None (data movement, shape arithmetic, the rest)."""
    if node.op_type in _WEIGHTED:
        if any(i in constants for i in node.input[:2]):
            return "linear"
        return "attention_values" if "Softmax" in {_source(i, producer) for i in node.input[:2]} \
            else "attention_scores"
    return _ROLE_OF_OP.get(node.op_type)


def node_groups(model: onnx.ModelProto, graph_name: str) -> dict[str, set[str]]:
    """Group name -> names of the graph's nodes in it (every group present, maybe empty)."""
    graph = model.graph
    if len({n.name for n in graph.node}) != len(graph.node) or not all(n.name for n in graph.node):
        raise ValueError(f"graph {graph_name} has unnamed or repeated node names; groups need unique names")
    constants = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    groups: dict[str, set[str]] = {g: set() for g in GROUPS}
    outputs = {o.name for o in graph.output}
    head = _ancestors(graph, [ENTROPY]) - _ancestors(graph, outputs & {TOKENS, TOKENS_OUT}) if ENTROPY in outputs \
        else set()
    for node in graph.node:
        r = role(node, constants, producer)
        if r is not None:
            groups[r].add(node.name)
        if graph_name == DECODER:
            groups["decoder"].add(node.name)
        elif node.name in head:
            groups["pausing_head"].add(node.name)
    return groups


def quantized_nodes(model: onnx.ModelProto, graph_name: str, keep_float: Iterable[str]) -> list[str]:
    """Nodes to quantize: every node with a quantizable role, unless one of its groups is kept in float."""
    groups = node_groups(model, graph_name)
    kept = set().union(*(groups[g] for g in keep_float)) if keep_float else set()
    roles = set().union(*(groups[r] for r in ROLES))
    return [n.name for n in model.graph.node if n.name in roles and n.name not in kept]
