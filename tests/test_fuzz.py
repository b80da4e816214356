"""Fuzzing: the manifest loader, the ONNX scanner, the pausing policy and the pre-processing, fed random and
mutated input, raise nothing but the toolkit's own errors (UserError subclasses), and what they return holds."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from paumer_edge.core.pausing import CostModel, Pauser, PausingPolicy, PolicyError, plan_budget, select_tokens
from paumer_edge.core.schema import parse_manifest
from paumer_edge.runtime import BundleError, FrameError, load_bundle
from paumer_edge.runtime.onnx_scan import OnnxFormatError, scan_onnx
from paumer_edge.runtime.preprocess import labels_to_frame, preprocess, to_rgb_uint8

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- a valid manifest to mutate ----------------------------------------------------------------------
def make_manifest() -> dict[str, Any]:
    """A consistent manifest (no files): 32x64 input, patch 8, class token, dim 32, 3 classes, 4 stages."""
    h, w, dim, tokens, patches = 32, 64, 32, 33, 32

    def t(name: str, shape: list, dtype: str = "float32") -> dict[str, Any]:
        return {"name": name, "shape": shape, "dtype": dtype}

    tok = t("tokens", ["batch", tokens, dim])
    graphs: dict[str, Any] = {
        "stage0": {"inputs": [t("image", ["batch", 3, h, w])], "outputs": [tok, t("entropy", ["batch", patches])]},
        "decoder": {"inputs": [tok], "outputs": [t("labels", ["batch", h, w], "uint8")]},
        "full": {"inputs": [t("image", ["batch", 3, h, w])], "outputs": [t("labels", ["batch", h, w], "uint8")]},
    }
    for k in (1, 2, 3):
        out = [t("tokens_out", ["batch", tokens, dim])] + ([t("entropy", ["batch", "n"])] if k < 3 else [])
        graphs[f"stage{k}"] = {"inputs": [tok, t("active", ["batch", "n"], "int64")], "outputs": out}
    for name, g in graphs.items():
        g.update(file=f"{name}.onnx", sha256="0" * 64)
    return {
        "format": "paumer-edge-bundle", "format_version": 1,
        "model": {"name": "fuzz", "class_names": ["road", "sky", "car"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_size": [h, w], "patch_size": 8,
                  "grid": [4, 8], "num_patches": patches, "extra_tokens": 1, "tokens": tokens, "embed_dim": dim,
                  "num_classes": 3, "pause_after": [1, 2, 3]},
        "pausing": {"cost_model": {"embed_dim": dim, "mlp_ratio": 4.0, "num_patches": patches, "extra_tokens": 1,
                                   "stage_blocks": [1, 1, 1, 1], "num_classes": 3, "patch_size": 8,
                                   "decoder_macs": 3072.0}},
        "graphs": graphs, "batch": {"min": 1, "opt": 1, "max": 8}, "engines": [],
    }


def test_the_base_manifest_is_valid() -> None:
    m = parse_manifest(make_manifest(), "m")
    assert m.model.tokens == 33 and m.cost.num_stages == 4 and set(m.graphs) >= {"stage0", "stage3", "decoder"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def tweak(value: Any, data: st.DataObject) -> Any:
    """A near miss of the same type: what a hand edit or a bit flip produces."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + data.draw(st.sampled_from([-value - 1, -1, 1, 10**9]))
    if isinstance(value, float):
        return data.draw(st.sampled_from([math.nan, math.inf, -value, 0.0, 1e308]))
    if isinstance(value, str):
        return data.draw(st.sampled_from(["", value + "x", value[:-1], "../" + value, "/" + value, value.upper()]))
    if isinstance(value, list):
        return data.draw(st.sampled_from([[], value[:-1], value + value[-1:] if value else [0], value[::-1]]))
    return data.draw(json_values)


def check_result(m: Any) -> None:
    """A manifest that passes is consistent enough to drive the policy and the runtime's shapes."""
    info, cost = m.model, m.cost
    assert info.tokens == info.extra_tokens + info.grid[0] * info.grid[1]
    assert info.grid == (info.input_size[0] // info.patch_size, info.input_size[1] // info.patch_size)
    assert cost.num_patches == info.num_patches and cost.num_stages == info.num_stages
    assert len(info.palette) == info.num_classes and all(s > 0 for s in info.std)
    for b in (1.0, 0.5, 0.1):
        plan = plan_budget(cost, b)
        assert plan.counts[0] == info.num_patches and min(plan.counts) >= 1


@FUZZ
@given(data=st.data())
def test_mutated_manifests_are_loaded_or_refused_clearly(data: st.DataObject) -> None:
    m = make_manifest()
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(m)[1:]))
        *parents, last = where
        node = m
        for p in parents:
            node = node[p]
        action = data.draw(st.sampled_from(["delete", "replace", "tweak"]))
        if action == "delete":
            del node[last]
        else:
            node[last] = data.draw(json_values) if action == "replace" else tweak(node[last], data)
        if not isinstance(m, dict):
            break
    try:
        check_result(parse_manifest(copy.deepcopy(m), "fuzz.json"))
    except BundleError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.json") or "bundle format" in str(e)


@FUZZ
@given(value=json_values)
def test_random_json_is_refused_clearly(value: Any) -> None:
    with pytest.raises(BundleError):
        parse_manifest(value, "random.json")


@SOME
@given(content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_manifest_files_are_refused_clearly(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "manifest.json").write_bytes(content)
        with pytest.raises(BundleError):
            load_bundle(d)


# ---- the ONNX scanner ------------------------------------------------------------------------------------
def small_model() -> bytes:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    return helper.make_model(graph).SerializeToString()


SMALL = small_model()


def test_the_scanner_reads_a_model_like_onnx_does() -> None:
    s = scan_onnx(SMALL)
    assert [(i.name, i.shape, i.dtype) for i in s.inputs] == [("x", ("batch", 4), "float32")]
    assert [(o.name, o.shape) for o in s.outputs] == [("y", ("batch", 4))] and s.initializers == {"w"}
    assert not s.external
    assert onnx.load_from_string(SMALL).graph.input[0].name == "x"


@FUZZ
@given(data=st.data())
def test_the_scanner_survives_corrupt_models(data: st.DataObject) -> None:
    raw = bytearray(SMALL)
    kind = data.draw(st.sampled_from(["flip", "truncate", "random", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif kind == "random":
        raw = bytearray(data.draw(st.binary(max_size=300)))
    else:
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + bytearray(data.draw(st.binary(max_size=20))) + raw[at:]
    try:
        s = scan_onnx(bytes(raw))
    except OnnxFormatError:
        return
    assert all(isinstance(i.name, str) and isinstance(i.shape, tuple) for i in s.inputs + s.outputs)


# ---- the pausing policy ------------------------------------------------------------------------------------
cost_models = st.builds(
    CostModel, embed_dim=st.integers(1, 1024), mlp_ratio=st.floats(0.25, 8), num_patches=st.integers(1, 4096),
    extra_tokens=st.integers(0, 2), stage_blocks=st.lists(st.integers(1, 6), min_size=1, max_size=6).map(tuple),
    num_classes=st.integers(1, 300), patch_size=st.integers(1, 32))
knobs = st.one_of(st.floats(), st.integers(-3, 3), st.text(max_size=4), st.none(), st.booleans(),
                  st.sampled_from([0.0, 1.0, 1e-300, 0.5, 1 + 1e-12, -0.0]))


@FUZZ
@given(cost=cost_models, budget=knobs)
def test_any_budget_is_planned_or_refused(cost: CostModel, budget: Any) -> None:
    try:
        plan = plan_budget(cost, budget)
    except PolicyError as e:
        assert "budget" in str(e)
        return
    b = float(budget)
    assert 0 < b <= 1
    counts = plan.counts
    assert len(counts) == cost.num_stages and counts[0] == cost.num_patches and min(counts) >= 1
    assert all(x >= y for x, y in zip(counts, counts[1:]))
    assert 0.0 <= plan.keep_ratio <= 1.0 and 0.0 < plan.cost_fraction <= 1.0 + 1e-9
    assert plan.clamped or plan.cost_fraction <= b + 1e-9


entropy_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.bool_]),
    shape=st.tuples(st.integers(1, 3), st.integers(0, 40)),
    elements=None)


@FUZZ
@given(cost=cost_models, budget=knobs, threshold=knobs, entropy=entropy_arrays, point=st.integers(0, 5))
def test_any_entropy_selects_valid_tokens(cost: CostModel, budget: Any, threshold: Any, entropy: np.ndarray,
                                          point: int) -> None:
    try:
        policy = PausingPolicy(budget, threshold)
    except PolicyError:
        return
    if cost.num_stages < 2:
        return
    pauser = Pauser(cost, policy)
    point = point % (cost.num_stages - 1)
    keep = pauser.count(point, entropy)
    n = entropy.shape[1]
    assert 1 <= keep or n == 0
    chosen = pauser.select(point, entropy)
    if chosen is None:
        assert keep >= n
        return
    assert chosen.dtype == np.int64 and chosen.shape == (entropy.shape[0], keep) and keep < n
    assert ((chosen >= 0) & (chosen < n)).all()
    assert (np.diff(chosen, axis=1) > 0).all()  # ascending, no repeats


@FUZZ
@given(entropy=hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)),
       count=st.integers(-5, 50))
def test_select_tokens_takes_any_shape_or_refuses(entropy: np.ndarray, count: int) -> None:
    try:
        chosen = select_tokens(entropy, count)
    except PolicyError:
        assert entropy.ndim != 2
        return
    assert chosen.shape == (entropy.shape[0], min(max(count, 1), entropy.shape[1]))


# ---- pre-processing --------------------------------------------------------------------------------------
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float16,
          np.float32, np.float64, np.complex64, np.complex128]
frame_shapes = st.one_of(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7),
                         st.tuples(st.integers(0, 9), st.integers(0, 9), st.sampled_from([1, 3, 4])))
objects = st.one_of(st.integers(), st.text(max_size=2), st.none(), st.floats())
frames = st.one_of(
    st.tuples(st.sampled_from(DTYPES), frame_shapes).flatmap(lambda ds: hnp.arrays(ds[0], ds[1])),
    frame_shapes.flatmap(lambda s: hnp.arrays(object, s, elements=objects)),
)


@FUZZ
@given(frame=frames, bgr=st.booleans())
def test_any_frame_becomes_rgb_uint8_or_a_frame_error(frame: np.ndarray, bgr: bool) -> None:
    try:
        rgb = to_rgb_uint8(frame, bgr=bgr)
    except FrameError as e:
        assert "\n" not in str(e)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape == (*frame.shape[:2], 3)
    assert rgb.flags.c_contiguous


@FUZZ
@given(frame=frames, size=st.tuples(st.integers(1, 48), st.integers(1, 48)), letterbox=st.booleans(),
       bgr=st.booleans())
def test_any_frame_preprocesses_to_a_finite_model_input(frame: np.ndarray, size: tuple[int, int], letterbox: bool,
                                                        bgr: bool) -> None:
    try:
        x, p = preprocess(frame, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), letterbox, bgr)
    except FrameError:
        return
    assert x.dtype == np.float32 and x.shape == (3, *size) and np.isfinite(x).all()
    y0, x0, y1, x1 = p.content
    assert 0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]
    assert labels_to_frame(np.zeros(size, np.uint8), p).shape == frame.shape[:2]


@SOME
@given(h=st.integers(1, 400), w=st.integers(1, 400), size=st.tuples(st.integers(1, 64), st.integers(1, 64)),
       letterbox=st.booleans(), seed=st.integers(0, 2**16))
def test_extreme_aspect_ratios_round_trip(h: int, w: int, size: tuple[int, int], letterbox: bool, seed: int) -> None:
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, p = preprocess(frame, size, (0.5,) * 3, (0.5,) * 3, letterbox)
    assert x.shape == (3, *size) and np.abs(x).max() <= 1.0 + 1e-5
    assert labels_to_frame(np.ones(size, np.uint8), p).shape == (h, w)
