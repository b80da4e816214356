"""INT8 bundles: Q/DQ graphs made by ONNX Runtime's quantizer from what each stage sees, beside the fp32 graphs;
run by the runtime at precision int8, verified against fp32, scored by eval, timed by bench."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from paumer_edge import UserError
from paumer_edge.core.contract import Manifest, Variant
from paumer_edge.core.errors import BundleError
from paumer_edge.core.pausing import plan_budget
from paumer_edge.export.calibration import CalibrationData, folder_frames, synthetic_frames
from paumer_edge.export.qdq_groups import node_groups, quantized_nodes
from paumer_edge.export.quantize import QuantOptions, add_int8
from paumer_edge.export.verify_int8 import check_int8
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.bundle import Bundle, load_bundle, sha256_file
from paumer_edge.runtime.preprocess import resize_normalise

FAST = QuantOptions(calib_images=3, budgets=(1.0, 0.5))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "tiny.paumer"
    shutil.copytree(tiny_bundle, out)
    add_int8(out, FAST, progress=False)
    return out


def _frames(bundle: Bundle, count: int, seed: int = 5) -> np.ndarray:
    m = bundle.model
    return np.stack([resize_normalise(f, m.input_size, m.mean, m.std)
                     for f in synthetic_frames(count, m.input_size, seed)])


def test_int8_graphs_sit_beside_the_fp32_ones(int8_bundle: Path, tiny_bundle: Path) -> None:
    raw = json.loads((int8_bundle / "manifest.json").read_text())
    assert raw["format_version"] == 5 and Manifest.from_dict(raw, "m").to_dict() == raw  # 5: the reuse graphs
    bundle = load_bundle(int8_bundle)
    assert bundle.manifest.variant_names == ["int8"] and bundle.manifest.precision == "fp32"
    q = bundle.at_precision("int8")
    assert q.manifest.precision == "int8" and q.model.input_size == bundle.model.input_size
    assert sorted(q.graphs) == ["decoder", "stage0", "stage1", "stage2", "stage3"]
    for name, spec in q.graphs.items():
        assert spec.file == f"int8/{name}.onnx"
        assert (spec.inputs, spec.outputs) == (bundle.graphs[name].inputs, bundle.graphs[name].outputs)
        model = onnx.load(str(int8_bundle / spec.file))
        ops = [n.op_type for n in model.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops, name
        assert {o.domain for o in model.opset_import} == {""}  # standard ONNX only: TensorRT reads it
        int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims]
        assert int8_weights, name  # weights stored quantized, with per-channel scales
        zero_points = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")]
        assert zero_points and all(not z.any() for z in zero_points)  # symmetric: what TensorRT requires
    assert sha256_file(int8_bundle / "stage1.onnx") == sha256_file(tiny_bundle / "stage1.onnx")  # fp32 untouched


def test_graph_parts_are_found_by_structure(tiny_bundle: Path) -> None:
    stage1 = onnx.load(str(tiny_bundle / "stage1.onnx"))  # one block of the tiny model, then the pausing head
    groups = node_groups(stage1, "stage1")
    ops = {n.name: n.op_type for n in stage1.graph.node}
    assert len(groups["linear"]) == 5  # qkv, proj, fc1, fc2, the head
    assert len(groups["attention_scores"]) == len(groups["attention_values"]) == 1  # q k^T; softmax(q k^T) v
    assert len(groups["norm"]) == 3 and len(groups["softmax"]) == 1 and not groups["patch_embed"]
    head = groups["pausing_head"]
    assert {ops[n] for n in head} >= {"LayerNormalization", "MatMul", "LogSoftmax", "ReduceSum"}
    assert len(head & groups["linear"]) == 1 and not head & (groups["attention_scores"] | groups["attention_values"])
    assert not groups["decoder"]
    quantized = quantized_nodes(stage1, "stage1", ("norm", "softmax", "elementwise", "pausing_head"))
    assert sorted(ops[n] for n in quantized) == ["MatMul"] * 6
    assert len(quantized_nodes(stage1, "stage1", ("norm", "softmax", "elementwise", "pausing_head",
                                                  "attention_values"))) == 5
    decoder = onnx.load(str(tiny_bundle / "decoder.onnx"))
    assert node_groups(decoder, "decoder")["decoder"] == {n.name for n in decoder.graph.node}
    assert quantized_nodes(decoder, "decoder", ("decoder",)) == []
    assert len(node_groups(onnx.load(str(tiny_bundle / "stage0.onnx")), "stage0")["patch_embed"]) == 1


def test_what_stays_float_stays_float(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, out)
    add_int8(out, dataclasses.replace(FAST, keep_float=("norm", "softmax", "elementwise", "pausing_head",
                                                        "attention_scores", "attention_values", "decoder")),
             progress=False)
    stage1 = onnx.load(str(out / "int8" / "stage1.onnx"))
    producer = {o: n for n in stage1.graph.node for o in n.output}
    matmuls = [n for n in stage1.graph.node if n.op_type == "MatMul"]
    fed = [all(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
           for n in matmuls]
    assert sum(fed) == 4 and len(fed) == 7  # qkv, proj, fc1, fc2 in int8; attention and the head in float
    assert sha256_file(out / "int8" / "decoder.onnx") == sha256_file(out / "decoder.onnx")  # kept as it was


def test_calibration_feeds_are_what_each_stage_sees(tiny_bundle: Path, tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), synthetic_frames(1, (60, 100), seed=i)[0][..., ::-1])
    bundle = load_bundle(tiny_bundle)
    frames = folder_frames(tmp_path, count=8)
    assert len(frames) == 3 and frames[0].shape == (60, 100, 3)
    data = CalibrationData(bundle, frames, budgets=(0.5, 1.0))
    assert data.budgets == (1.0, 0.5)
    assert set(data.inputs) == {"stage0", "stage1", "stage2", "stage3", "decoder"}
    assert len(data.inputs["stage0"]) == 3  # the same image at every budget: recorded once
    assert all(len(data.inputs[g]) == 6 for g in ("stage1", "stage2", "stage3", "decoder"))
    assert data.inputs["stage0"][0]["image"].shape == (1, 3, 32, 64)
    counts = plan_budget(bundle.cost, 0.5).counts
    for k in (1, 2, 3):  # budget 1 runs every token, budget 0.5 the plan's count
        assert [f["active"].shape[1] for f in data.inputs[f"stage{k}"][:2]] == [32, counts[k]]
        assert data.inputs[f"stage{k}"][0]["tokens"].shape == (1, 33, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        folder_frames(tmp_path / "empty", count=1)


def test_the_runtime_runs_int8_at_every_budget(int8_bundle: Path) -> None:
    fp32 = Pipeline(int8_bundle, cost="macs")
    q = Pipeline(int8_bundle, cost="macs", precision="int8")
    assert q.bundle.graphs["stage1"].file == "int8/stage1.onnx"
    for frame in synthetic_frames(3, (48, 80), seed=11):
        for budget in (1.0, 0.5, 0.25):
            a, b = fp32(frame, budget=budget), q(frame, budget=budget)
            assert a.stats.counts == b.stats.counts == list(plan_budget(fp32.cost, budget).counts)
            assert b.labels.shape == (48, 80) and (a.labels == b.labels).mean() > 0.8
    measured = Pipeline(int8_bundle, precision="int8")  # budgets in the int8 graphs' own latency profile
    assert measured.cost.measured and measured(synthetic_frames(1, (48, 80))[0], budget=0.5).stats.counts[0] == 32


def test_precisions_a_bundle_cannot_give_are_refused(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match=f"has no int8 graphs.*paumer-edge build {tiny_bundle} --int8"):
        Pipeline(tiny_bundle, precision="int8")
    with pytest.raises(UserError, match="fp16 runs on TensorRT"):
        Pipeline(tiny_bundle, backend="ort", precision="fp16")
    with pytest.raises(UserError, match="precision 'int4' is not one of fp32, fp16, int8"):
        Pipeline(tiny_bundle, precision="int4")
    for opts, message in [(QuantOptions(method="kl"), "calibration method 'kl' is not one of minmax"),
                          (QuantOptions(keep_float=("gelu",)), "unknown graph part"),
                          (QuantOptions(calib_dir="/nowhere"), "calibration folder '/nowhere' does not exist"),
                          (QuantOptions(calib_images=0), "calibration images 0 is out of range")]:
        with pytest.raises(UserError, match=message):
            opts.validate()


def test_a_failed_quantization_leaves_the_bundle_as_it_was(tiny_bundle: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from paumer_edge.export import quantize

    out = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(quantize, "quantize_graph", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        add_int8(out, FAST, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not (out / "int8").exists() and [p.name for p in tmp_path.iterdir()] == ["b.paumer"]


def test_verify_int8_measures_and_catches_wrong_graphs(int8_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(int8_bundle)
    images = _frames(bundle, 4)
    report = check_int8(bundle, images, budgets=(1.0, 0.5))
    kinds = {(c.graph, c.output, c.kind) for c in report.checks}
    assert ("int8 stage1", "tokens_out", "rel_err") in kinds and ("int8 stage0", "ranking", "kept") in kinds
    assert ("int8 pipeline", "labels", "agreement") in kinds and ("int8 pipeline", "kept", "kept") in kinds
    assert ("int8 decoder", "labels", "agreement") in kinds
    rel = [c for c in report.checks if c.kind == "rel_err"]
    assert all(0 < c.value < 0.5 and c.detail["max_abs_err"] > 0 for c in rel)
    # "int8" graphs from other weights: every check says so
    broken = tmp_path / "broken.paumer"
    shutil.copytree(int8_bundle, broken)
    for name in ("stage1", "stage2"):
        model = onnx.load(str(broken / f"{name}.onnx"))
        for t in model.graph.initializer:
            a = onnx.numpy_helper.to_array(t)
            if a.dtype == np.float32 and a.ndim == 2:
                t.CopyFrom(onnx.numpy_helper.from_array(np.random.default_rng(0).permutation(a), t.name))
        onnx.save(model, str(broken / "int8" / f"{name}.onnx"))
    wrong = load_bundle(broken, check_hashes=False)
    bad = check_int8(wrong, images, budgets=(1.0, 0.5))
    assert not bad.ok
    failed = {(c.graph, c.output) for c in bad.checks if not c.ok}
    assert ("int8 stage1", "tokens_out") in failed and ("int8 pipeline", "labels") in failed


def test_variant_manifest_keeps_an_int8_entry_valid(int8_bundle: Path) -> None:
    raw = json.loads((int8_bundle / "manifest.json").read_text())
    entry = raw["variants"][0]
    assert entry["name"] == "int8" and entry["precision"] == "int8" and entry["input_size"] == [32, 64]
    v = Manifest.from_dict(raw, "m").variants[0]
    assert isinstance(v, Variant) and v.cost.stage_ms is None  # MACs: budgets mean the same tokens as fp32


@pytest.mark.parametrize("args, message", [
    (["export", "--calib", "frames"], "--calib only apply to INT8 graphs: add --int8"),
    (["build", ".", "--calib-method", "entropy"], "--calib-method only apply to INT8 graphs: add --int8"),
    (["export", "--int8", "--calib-method", "kl"], "Invalid value for '--calib-method': 'kl' is not one of"),
    (["export", "--int8", "--calib-images", "0"], "--calib-images 0 is out of range"),
    (["export", "--int8", "--calib", "nowhere"], "calibration folder 'nowhere' does not exist"),
    (["run", "x.mp4", "--precision", "int4"], "Invalid value for '--precision': 'int4' is not one of"),
    (["eval", "--precision", "fp16"], "'fp16' is not a list of fp32 and int8"),
])
def test_int8_option_mistakes_get_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_export_bench_and_eval_int8_from_the_command_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    """export --int8 on a folder of frames, bench --precision int8 (paired against fp32 budget 1), and eval
    --precision fp32,int8 through the runtime."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(synthetic_frames(2, (60, 100), seed=9)):
        cv2.imwrite(str(frames / f"{i}.png"), f[..., ::-1])
    out = tmp_path / "tiny.paumer"
    proc = cli("export", str(tiny_ckpt), "-o", str(out), "--int8", "--calib", str(frames), "--calib-images", "2",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "of them INT8" in proc.stdout and "INT8 vs fp32: min label agreement" in proc.stdout
    assert sorted(p.name for p in (out / "int8").glob("*.onnx")) == ["decoder.onnx",
                                                                    *(f"stage{k}.onnx" for k in range(4))]
    proc = cli("bench", str(out), "--precision", "int8", "--budgets", "1,0.5", "--rounds", "2", "--warmup", "0",
               "--no-torch", "--cost", "macs", "--json", str(tmp_path / "b.json"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "int8 budget 1 vs fp32 budget 1:" in proc.stdout
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["precision"] == "int8" and {"fp32 budget 1", "full.onnx"} <= {r["name"] for r in result["results"]}
    proc = cli("eval", "--model", str(tiny_ckpt), "--precision", "fp32,int8", "--images", "4", "--budgets", "1,0.5",
               "--json", str(tmp_path / "e.json"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((tmp_path / "e.json").read_text())["precisions"]
    assert set(scores) == {"fp32", "int8"} and [r["budget"] for r in scores["int8"]] == [1.0, 0.5]
    assert all(0 <= r["miou"] <= 1 for p in scores.values() for r in p)
    assert "int8 mIoU" in proc.stdout
