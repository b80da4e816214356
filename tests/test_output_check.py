"""A graph rewritten and re-hashed passes every integrity check at load time; what it returns is checked at run
time: labels of the wrong shape or class ids beyond the model's classes are a BundleError, not stretched labels or
label PNGs with classes the model does not have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paumer_edge.cli import main
from paumer_edge.core.contract import GraphSpec, TensorSpec
from paumer_edge.core.errors import BundleError
from paumer_edge.runtime import Pipeline, load_bundle
from paumer_edge.runtime.bundle import sha256_file
from paumer_edge.runtime.output_check import check_outputs


def rewritten_decoder(tiny_bundle: Path, tmp_path: Path, labels: np.ndarray) -> Path:
    """A copy of the bundle whose decoder ignores the tokens and returns `labels`, declared exactly as the manifest
    says and re-hashed there: sha256, graph inputs and outputs all agree."""
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "rewritten.paumer"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = manifest["graphs"]["decoder"]
    (tok,), (lab,) = spec["inputs"], spec["outputs"]

    def info(t: dict, dtype: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(t["name"], dtype, t["shape"])

    const = helper.make_node("Constant", [], ["labels"], value=helper.make_tensor(
        "v", TensorProto.UINT8, list(labels.shape), labels.astype(np.uint8).ravel().tolist()))
    graph = helper.make_graph([const], "decoder", [info(tok, TensorProto.FLOAT)], [info(lab, TensorProto.UINT8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, bundle / spec["file"])
    spec["sha256"] = sha256_file(bundle / spec["file"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


@pytest.mark.parametrize("labels, message", [
    (np.zeros((1, 16, 16)), r"returned labels of shape \[1, 16, 16\] uint8, but the manifest says \[1, 32, 64\]"),
    (np.full((1, 32, 64), 200), "returned class id 200, but the model has 10 classes"),
])
def test_a_rewritten_decoder_is_refused_at_run_time(tiny_bundle: Path, tmp_path: Path, labels: np.ndarray,
                                                   message: str, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = rewritten_decoder(tiny_bundle, tmp_path, labels)
    pipe = Pipeline(load_bundle(bundle), cost="macs")  # every load-time check passes
    with pytest.raises(BundleError, match=message):
        pipe(np.zeros((48, 80, 3), np.uint8))
    labels_dir = tmp_path / "labels"
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    cv2.imwrite(str(frames / "a.png"), np.zeros((32, 64, 3), np.uint8))
    capsys.readouterr()
    assert main(["run", str(frames), "--model", str(bundle), "--save-labels", str(labels_dir), "--quiet",
                 "--cost", "macs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "returned" in err[0], err
    assert not list(labels_dir.glob("*.png"))  # no label PNG with stretched labels or class 200


def spec(outputs: list[TensorSpec]) -> GraphSpec:
    return GraphSpec("stage1.onnx", "0" * 64, (TensorSpec("tokens", ("batch", 33, 32), "float32"),
                                              TensorSpec("active", ("batch", "n"), "int64")), tuple(outputs))


def test_stage_outputs_are_checked_against_the_named_sizes_their_inputs_set() -> None:
    g = spec([TensorSpec("tokens_out", ("batch", 33, 32), "float32"), TensorSpec("entropy", ("batch", "n"), "float32")])
    inputs = {"tokens": np.zeros((2, 33, 32), np.float32), "active": np.zeros((2, 5), np.int64)}
    good = [np.zeros((2, 33, 32), np.float32), np.zeros((2, 5), np.float32)]
    check_outputs("stage1", g, inputs, good, 10)
    check_outputs("stage1", g, inputs, [good[0], good[1].astype(np.float16)], 10)  # half precision engines
    for bad, what in (([good[0], np.zeros((2, 7), np.float32)], r"entropy of shape \[2, 7\]"),
                      ([np.zeros((1, 33, 32), np.float32), good[1]], r"tokens_out of shape \[1, 33, 32\]"),
                      ([good[0], np.zeros((2, 5), np.int32)], "entropy of shape .* int32"),
                      ([good[0]], "returned 1 outputs, but the manifest lists 2")):
        with pytest.raises(BundleError, match=what):
            check_outputs("stage1", g, inputs, bad, 10)


def test_signed_labels_below_zero_are_refused() -> None:
    g = GraphSpec("decoder.onnx", "0" * 64, (TensorSpec("tokens", ("batch", 33, 32), "float32"),),
                  (TensorSpec("labels", ("batch", 4, 4), "int32"),))
    inputs = {"tokens": np.zeros((1, 33, 32), np.float32)}
    check_outputs("decoder", g, inputs, [np.full((1, 4, 4), 9, np.int32)], 10)
    with pytest.raises(BundleError, match="class id -1"):
        check_outputs("decoder", g, inputs, [np.full((1, 4, 4), -1, np.int32)], 10)


def test_label_tiles_are_checked_as_labels() -> None:
    g = GraphSpec("decoder_tiles.onnx", "0" * 64, (TensorSpec("tokens", (1, 33, 32), "float32"),
                                                  TensorSpec("tiles", (1, "n"), "int64")),
                  (TensorSpec("label_tiles", (1, "n", 8, 8), "uint8"),))
    inputs = {"tokens": np.zeros((1, 33, 32), np.float32), "tiles": np.zeros((1, 3), np.int64)}
    check_outputs("decoder_tiles", g, inputs, [np.zeros((1, 3, 8, 8), np.uint8)], 10)
    with pytest.raises(BundleError, match="returned class id 12, but the model has 10 classes"):
        check_outputs("decoder_tiles", g, inputs, [np.full((1, 3, 8, 8), 12, np.uint8)], 10)
    with pytest.raises(BundleError, match=r"label_tiles of shape \[1, 3, 8, 8\] int64"):
        check_outputs("decoder_tiles", g, inputs, [np.zeros((1, 3, 8, 8), np.int64)], 10)
