"""Each graph's outputs against the manifest, every run: shape, dtype and class range (numpy only).

A sha256 proves that a graph file is the one the manifest names, not that the graph is sane: a decoder
rewritten and re-hashed could return labels of another shape (which post-processing would stretch over
the frame) or class ids beyond the model's classes (which would end up in label PNGs). So the runner
checks what every graph returns before using it:
- every output's rank and fixed sizes as the manifest lists them, and each named size ("batch", "n") the
  same as the input that set it;
- host outputs' dtypes: floating point where the manifest says float, the label dtype it says for labels;
- labels within [0, classes).
A failure is a `BundleError` naming the graph, the output, what it is and what the manifest says. The cost
is a few comparisons per output and one max over the labels (microseconds at model resolution).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from paumer_edge.core.contract import REEXPORT, GraphSpec, TensorSpec
from paumer_edge.core.errors import BundleError
from paumer_edge.core.names import LABEL_TILES, LABELS

from .backends.base import GraphSession
from .bundle import Bundle

__all__ = ["CheckedSession", "check_outputs", "checked"]

LABEL_OUTPUTS = (LABELS, LABEL_TILES)  # class ids: their dtype exactly, their range checked


def _shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a host array or a device handle (an ONNX Runtime OrtValue, a TensorRT DeviceTensor)."""
    if isinstance(value, np.ndarray):  # the common case, every run of every graph: nothing to convert
        return value.shape
    shape = getattr(value, "shape", None)
    if callable(shape):  # OrtValue.shape()
        shape = shape()
    try:
        return tuple(int(d) for d in shape) if shape is not None else None
    except (TypeError, ValueError):
        return None


Plan = tuple[tuple[tuple[str, int, int, str], ...], tuple[tuple[TensorSpec, np.dtype], ...]]


def plan_checks(g: GraphSpec) -> Plan:
    """What checking graph `g`'s outputs takes, worked out once per graph (a `CheckedSession` keeps it): where
    each named size ("batch", "n") is read from the inputs (input, its rank, axis, name), and each output with the
    dtype its manifest names."""
    binds = tuple((spec.name, len(spec.shape), axis, want) for spec in g.inputs
                  for axis, want in enumerate(spec.shape) if isinstance(want, str))
    return binds, tuple((spec, np.dtype(spec.dtype)) for spec in g.outputs)


def _bind(binds: tuple[tuple[str, int, int, str], ...], values: dict[str, Any]) -> dict[str, int]:
    """Named sizes ("batch", "n") as the inputs set them (the first input that has one sets it)."""
    dims: dict[str, int] = {}
    for name, rank, axis, want in binds:
        shape = _shape(values.get(name))
        if shape is not None and len(shape) == rank and want not in dims:
            dims[want] = shape[axis]
    return dims


def _dtype_ok(spec: TensorSpec, want: np.dtype, value: Any) -> bool:
    if not isinstance(value, np.ndarray):  # device handles: their dtype is the engine's, checked at load
        return True
    if spec.name in LABEL_OUTPUTS:
        return value.dtype == want
    return value.dtype.kind == want.kind if want.kind == "f" else value.dtype == want


def check_outputs(name: str, g: GraphSpec, inputs: dict[str, Any], outputs: list[Any], classes: int,
                  plan: Plan | None = None) -> None:
    """Refuse, as a `BundleError`, outputs of graph `name` that differ from what its manifest entry `g` says
    (`plan`: `plan_checks(g)`, when the caller keeps it)."""
    if len(outputs) != len(g.outputs):
        raise BundleError(f"graph '{name}' ({g.file}) returned {len(outputs)} outputs, but the manifest lists "
                          f"{len(g.outputs)}; {REEXPORT}")
    binds, specs = plan or plan_checks(g)
    dims = _bind(binds, inputs)
    for (spec, want_dtype), value in zip(specs, outputs):
        shape = _shape(value)
        want = [dims.get(d, d) if isinstance(d, str) else d for d in spec.shape]
        fits = shape is not None and len(shape) == len(want) and all(
            (isinstance(w, str) or w == s) for w, s in zip(want, shape))
        if not fits or not _dtype_ok(spec, want_dtype, value):
            dtype = getattr(value, "dtype", "")
            raise BundleError(f"graph '{name}' ({g.file}) returned {spec.name} of shape "
                              f"{list(shape) if shape is not None else '?'} {dtype}, but the manifest says {want} "
                              f"{spec.dtype}: the graph does not compute what its manifest describes (edited, or "
                              f"from another export); {REEXPORT}")
        if spec.name in LABEL_OUTPUTS and isinstance(value, np.ndarray) and value.size:
            low, high = (int(value.min()) if value.dtype.kind == "i" else 0), int(value.max())
            if low < 0 or high >= classes:
                bad = high if high >= classes else low
                raise BundleError(f"graph '{name}' ({g.file}) returned class id {bad}, but the model has {classes} "
                                  f"classes (0 to {classes - 1}): the graph does not compute what its manifest "
                                  f"describes; {REEXPORT}")


class CheckedSession:
    """A graph session whose every run is checked against the manifest (`check_outputs`)."""

    def __init__(self, session: GraphSession, name: str, spec: GraphSpec, classes: int):
        self.session, self.name, self.spec, self.classes = session, name, spec, classes
        self.input_names, self.output_names = session.input_names, session.output_names
        self.plan = plan_checks(spec)

    def run(self, inputs: dict[str, Any], keep: Collection[str] = ()) -> list[Any]:
        outputs = self.session.run(inputs, keep)
        check_outputs(self.name, self.spec, inputs, outputs, self.classes, self.plan)
        return outputs


def checked(session: GraphSession, bundle: Bundle, name: str) -> CheckedSession:
    """`session` (the bundle's graph `name`) with its outputs checked on every run."""
    return CheckedSession(session, name, bundle.graphs[name], bundle.model.num_classes)
