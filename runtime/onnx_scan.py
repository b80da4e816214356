"""Read what a bundle check needs from an ONNX file without the `onnx` package: I/O specs, external data.

The torch-free runtime has numpy and onnxruntime only, and onnxruntime offers no way to list a model's
external-data references before it opens them. So this module walks the protobuf wire format itself,
following only the messages that can hold tensors (graph initializers, node attributes, nested
graphs, functions, training graphs) and the graph's inputs and outputs, and skipping everything else
(weights included) by length. It never loads tensor data.

Policy (see `bundle.py`): a paumer-edge bundle keeps every weight inside its graph files, so any
external-data reference is refused; the location is reported so the message can say whether it
also points outside the bundle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# ONNX TensorProto.DataType -> numpy-style names (the manifest's spelling)
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
              15: "complex128", 16: "bfloat16"}
MAX_NESTING = 32  # graphs inside node attributes inside graphs ...; ours have none


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX model (truncated, or not protobuf at all)."""


@dataclass(frozen=True)
class IoSpec:
    name: str
    shape: tuple[int | str, ...]  # str: a named dynamic dimension ("" when it has no name)
    dtype: str


@dataclass
class OnnxSummary:
    inputs: list[IoSpec] = field(default_factory=list)
    outputs: list[IoSpec] = field(default_factory=list)
    external: list[tuple[str, str]] = field(default_factory=list)  # (tensor name, location or "")
    initializers: set[str] = field(default_factory=set)  # of the main graph (older models list them as inputs)
    has_graph: bool = False


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) of every field in buf[start:end].

    For length-delimited fields (wire type 2) the third item is the payload's start and the fourth its
    end; for the others the third is the value (raw bits for fixed-width ones) and the fourth unused.
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, 0
        elif wire == 1:
            if pos + 8 > end:
                raise OnnxFormatError("truncated fixed64")
            yield number, wire, int.from_bytes(buf[pos:pos + 8], "little"), 0
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise OnnxFormatError("truncated fixed32")
            yield number, wire, int.from_bytes(buf[pos:pos + 4], "little"), 0
            pos += 4
        else:  # 3/4 (groups) never occur in ONNX; 6/7 do not exist
            raise OnnxFormatError(f"unexpected wire type {wire}")


def _text(buf: memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _messages(buf: memoryview, start: int, end: int, numbers: set[int]) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of the length-delimited fields in `numbers`."""
    for number, wire, a, b in _fields(buf, start, end):
        if number in numbers and wire == 2:
            yield number, a, b


def _tensor(buf: memoryview, start: int, end: int, out: OnnxSummary) -> str:
    """TensorProto: 8 name, 13 external_data (key 1, value 2), 14 data_location (1 = EXTERNAL). Returns the name."""
    name, external, location = "", False, ""
    for number, wire, a, b in _fields(buf, start, end):
        if number == 8 and wire == 2:
            name = _text(buf, a, b)
        elif number == 14 and wire == 0:
            external = external or a == 1
        elif number == 13 and wire == 2:
            external = True
            entry = {k: _text(buf, x, y) for k, x, y in _messages(buf, a, b, {1, 2})}
            if entry.get(1) == "location":
                location = entry.get(2, "")
    if external:
        out.external.append((name, location))
    return name


def _sparse(buf: memoryview, start: int, end: int, out: OnnxSummary) -> None:
    for _, a, b in _messages(buf, start, end, {1, 2}):  # values, indices
        _tensor(buf, a, b, out)


def _graph(buf: memoryview, start: int, end: int, out: OnnxSummary, depth: int) -> None:
    """GraphProto: 1 node, 5 initializer, 15 sparse_initializer (inputs/outputs: see `_io`)."""
    if depth > MAX_NESTING:
        raise OnnxFormatError("graphs nested too deeply")
    for number, a, b in _messages(buf, start, end, {1, 5, 15}):
        if number == 1:
            _node(buf, a, b, out, depth)
        elif number == 5:
            name = _tensor(buf, a, b, out)
            if depth == 0:
                out.initializers.add(name)
        else:
            _sparse(buf, a, b, out)


def _node(buf: memoryview, start: int, end: int, out: OnnxSummary, depth: int) -> None:
    """NodeProto: 5 attribute -> AttributeProto: 5 t, 6 g, 10 tensors, 11 graphs, 22/23 sparse tensor(s)."""
    for _, a, b in _messages(buf, start, end, {5}):
        for number, x, y in _messages(buf, a, b, {5, 6, 10, 11, 22, 23}):
            if number in (5, 10):
                _tensor(buf, x, y, out)
            elif number in (6, 11):
                _graph(buf, x, y, out, depth + 1)
            else:
                _sparse(buf, x, y, out)


def _value_info(buf: memoryview, start: int, end: int) -> IoSpec:
    """ValueInfoProto: 1 name, 2 type -> TypeProto 1 tensor_type -> 1 elem_type, 2 shape -> 1 dim."""
    name, dtype, dims = "", "", []
    for number, a, b in _messages(buf, start, end, {1, 2}):
        if number == 1:
            name = _text(buf, a, b)
            continue
        for _, ta, tb in _messages(buf, a, b, {1}):
            for number2, wire, x, y in _fields(buf, ta, tb):
                if number2 == 1 and wire == 0:
                    dtype = ELEM_TYPES.get(x, f"onnx type {x}")
                elif number2 == 2 and wire == 2:
                    for _, da, db in _messages(buf, x, y, {1}):
                        dim: int | str = ""
                        for n3, w3, v, e in _fields(buf, da, db):
                            if n3 == 1 and w3 == 0:
                                dim = v - (1 << 64) if v >= 1 << 63 else v
                            elif n3 == 2 and w3 == 2:
                                dim = _text(buf, v, e)
                        dims.append(dim)
    return IoSpec(name, tuple(dims), dtype)


def scan_onnx(data: bytes | bytearray | memoryview) -> OnnxSummary:
    """The graph's inputs and outputs and every external-data reference in an ONNX model's bytes."""
    buf = memoryview(data)
    out = OnnxSummary()
    try:
        for number, a, b in _messages(buf, 0, len(buf), {7, 20, 25}):
            if number == 7:  # ModelProto.graph
                out.has_graph = True
                _graph(buf, a, b, out, 0)
                for n, x, y in _messages(buf, a, b, {11, 12}):
                    (out.inputs if n == 11 else out.outputs).append(_value_info(buf, x, y))
            elif number == 20:  # training_info: 1 initialization, 2 algorithm (graphs)
                for _, x, y in _messages(buf, a, b, {1, 2}):
                    _graph(buf, x, y, out, 1)
            else:  # functions: 7 node
                for _, x, y in _messages(buf, a, b, {7}):
                    _node(buf, x, y, out, 1)
    finally:
        buf.release()
    if not out.has_graph:
        raise OnnxFormatError("no graph in the file")
    return out
