"""Export: manifest schema, dynamic n in ONNX Runtime, parity with PyTorch, atomic writes, clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.checkpoint import load_model
from paumer_edge.core.contract import BatchRange
from paumer_edge.core.pausing import CostModel, Pauser, PausingPolicy, plan_budget
from paumer_edge.export.exporter import ExportOptions, export_bundle
from paumer_edge.export.fp16 import convert_to_fp16
from paumer_edge.export.graphs import StageK
from paumer_edge.export.quantize import QuantOptions
from paumer_edge.export.tensorrt_build import EngineOptions, engine_key
from paumer_edge.export.verify import STAGE_TOL, verify_bundle
from paumer_edge.runtime.bundle import BundleError, load_bundle
from paumer_edge.runtime.gpu import GpuInfo
from paumer_edge.runtime.profiles import profile_shapes


def test_manifest_schema(tiny_bundle: Path, tiny_ckpt: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    model = load_model(tiny_ckpt)
    cfg = model.cfg
    assert manifest["format"] == "paumer-edge-bundle" and manifest["format_version"] == 5  # with the reuse graphs
    m = manifest["model"]
    assert m["class_names"] == list(cfg.class_names) and m["palette"] == [list(c) for c in cfg.palette]
    assert m["mean"] == list(cfg.mean) and m["std"] == list(cfg.std)
    assert m["input_size"] == [32, 64] and m["grid"] == [4, 8] and m["tokens"] == 33 and m["extra_tokens"] == 1
    assert m["pause_after"] == [1, 2, 3] and set(manifest["pausing"]) == {"cost_model"}
    assert CostModel.from_dict(manifest["pausing"]["cost_model"]) == CostModel.from_config(cfg)
    assert set(manifest["graphs"]) == {"stage0", "stage1", "stage2", "stage3", "decoder", "full",
                                       "stage0_reuse", "stage1_reuse", "stage2_reuse", "stage3_reuse", "decoder_tiles"}
    assert m["num_heads"] == cfg.num_heads
    assert {"torch", "onnx", "opset"} <= set(manifest["exporter"]) and manifest["exporter"]["opset"] == 18
    g = manifest["graphs"]
    assert g["stage0"]["inputs"] == [{"name": "image", "shape": ["batch", 3, 32, 64], "dtype": "float32"}]
    assert g["stage0"]["outputs"][1] == {"name": "entropy", "shape": ["batch", 32], "dtype": "float32"}
    assert g["stage2"]["inputs"] == [{"name": "tokens", "shape": ["batch", 33, 32], "dtype": "float32"},
                                     {"name": "active", "shape": ["batch", "n"], "dtype": "int64"}]
    assert g["stage2"]["outputs"][1] == {"name": "entropy", "shape": ["batch", "n"], "dtype": "float32"}
    assert [o["name"] for o in g["stage3"]["outputs"]] == ["tokens_out"]  # the last stage emits no entropy
    assert g["decoder"]["outputs"] == [{"name": "labels", "shape": ["batch", 32, 64], "dtype": "uint8"}]
    assert g["decoder_tiles"]["inputs"] == [{"name": "tokens", "shape": [1, 33, 32], "dtype": "float32"},
                                            {"name": "tiles", "shape": [1, "n"], "dtype": "int64"}]
    assert g["decoder_tiles"]["outputs"] == [{"name": "label_tiles", "shape": [1, "n", 8, 8], "dtype": "uint8"}]
    bundle = load_bundle(tiny_bundle)  # every sha256 checks out
    assert bundle.model.num_stages == 4


def test_graphs_are_clean_and_tensorrt_friendly(tiny_bundle: Path) -> None:
    for path in tiny_bundle.glob("*.onnx"):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"NonZero", "Loop", "If", "TopK", "Where"}, (path.name, ops)  # no data-dependent shapes
        assert all(n.name and "::" not in n.name for n in model.graph.node)
        assert model.opset_import[0].version == 18


def test_stage_graphs_hold_no_shape_arithmetic_per_block(tiny_bundle: Path, tiny_ckpt: Path) -> None:
    """Attention exported written-out: a dynamic token count costs a few shape ops per graph, not per block
    (the fused kernel's decomposition added ~10% to every stage call on a CPU)."""
    for k, (start, end) in enumerate(load_model(tiny_ckpt).cfg.stage_bounds):
        model = onnx.load(str(tiny_bundle / f"stage{k}.onnx"))
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("Shape") <= 2, (k, end - start, ops.count("Shape"))
        assert ops.count("Softmax") == end - start


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 13, 32])
def test_dynamic_token_count_in_onnxruntime(tiny_bundle: Path, tiny_ckpt: Path, stage: int, n: int) -> None:
    sess = ort.InferenceSession(str(tiny_bundle / f"stage{stage}.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(n)
    tokens = rng.normal(size=(3, 33, 32)).astype(np.float32)
    active = np.stack([np.sort(rng.permutation(32)[:n]) for _ in range(3)]).astype(np.int64)
    outs = sess.run(None, {"tokens": tokens, "active": active})
    assert outs[0].shape == (3, 33, 32)
    untouched = np.setdiff1d(np.arange(32), active[0])
    assert np.array_equal(outs[0][0, 1 + untouched], tokens[0, 1 + untouched])  # paused tokens pass through
    with torch.no_grad():
        ref = StageK(load_model(tiny_ckpt), stage)(torch.from_numpy(tokens), torch.from_numpy(active))
    for got, want in zip(outs, ref):
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    if stage < 3:
        assert outs[1].shape == (3, n)


def test_verify_passes_within_tolerance(tiny_bundle: Path, tiny_ckpt: Path) -> None:
    report = verify_bundle(tiny_bundle, load_model(tiny_ckpt), frames=4)
    assert report.ok, report.table()
    cases = {c.case for c in report.checks if c.graph == "stage2"}
    assert {"street tokens, n=1", "random tokens, n=32"} <= cases
    budgets = {c.case.split(",")[0] for c in report.checks if c.graph == "pipeline"}
    assert budgets == {"budget 1", "budget 0.5", "budget 0.25"}
    worst = max(c.value for c in report.checks if c.kind == "max_abs_err")
    assert worst < 1e-4


def test_verify_catches_a_wrong_model(tiny_bundle: Path) -> None:
    torch.manual_seed(123)
    from paumer_edge.config import preset
    from paumer_edge.model import PausingSegmenter

    other = PausingSegmenter(preset("tiny")).eval()
    report = verify_bundle(tiny_bundle, other, frames=2, budgets=(1.0,))
    assert not report.ok
    assert any(not c.ok and c.graph == "stage0" for c in report.checks)


def plant_error(graph: Path, factor: float = 1.01) -> str:
    """Scale the largest weight matrix of an ONNX graph by `factor` (a 1% error in one layer); returns the new file's
    sha256. (One single weight 1% off moves the tiny model's tokens by ~5e-5, inside the 1e-4 tolerance of float
    noise: an error that small is not one verify can tell from noise.)"""
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    init = max((t for t in model.graph.initializer if len(t.dims) == 2), key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(init) * np.float32(factor)
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(graph))
    return hashlib.sha256(graph.read_bytes()).hexdigest()


def test_verify_finds_one_layer_one_percent_off_in_one_graph(tiny_bundle: Path, tiny_ckpt: Path,
                                                               tmp_path: Path) -> None:
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["graphs"]["stage2"]["sha256"] = plant_error(b / "stage2.onnx")  # as if exported so
    (b / "manifest.json").write_text(json.dumps(manifest))
    report = verify_bundle(b, load_model(tiny_ckpt), frames=4)
    failed = {c.graph for c in report.checks if not c.ok}
    assert not report.ok and "stage2" in failed
    assert failed <= {"stage2", "pipeline"}, report.table()  # every other graph is checked on its own inputs
    worst = max(c.value for c in report.checks if c.graph == "stage2" and c.kind == "max_abs_err")
    assert worst > 10 * STAGE_TOL  # far beyond the tolerance, not at its edge


def test_export_that_fails_verification_exits_1_and_writes_nothing(tiny_ckpt: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from paumer_edge.cli import main
    from paumer_edge.export import exporter

    export_graphs = exporter.export_graphs

    def faulty(model: Any, bundle: Path, *args: Any, **kwargs: Any) -> Any:  # one layer of stage1 1% off
        graphs = export_graphs(model, bundle, *args, **kwargs)
        sha = plant_error(bundle / graphs["stage1"].file)
        return {**graphs, "stage1": dataclasses.replace(graphs["stage1"], sha256=sha)}

    monkeypatch.setattr(exporter, "export_graphs", faulty)
    out = tmp_path / "mine.paumer"
    assert main(["export", str(tiny_ckpt), "-o", str(out), "--quiet", "--report", str(tmp_path / "r.json")]) == 1
    printed = capsys.readouterr()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no bundle, no leftovers
    rows = [line for line in printed.out.splitlines() if line.rstrip().endswith(" NO")]
    assert rows and all(line.startswith(("stage1", "pipeline")) for line in rows)
    assert "not exported" in printed.out and "BEYOND TOLERANCE" in printed.out and printed.err == ""
    assert any(not c["ok"] and c["graph"] == "stage1" for c in json.loads((tmp_path / "r.json").read_text()))


def test_export_at_another_image_size(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = export_bundle(load_model(tiny_ckpt), tmp_path / "b", ExportOptions(image_size=(16, 32), reuse=False),
                        progress=False)
    bundle = load_bundle(out)
    assert not bundle.manifest.has_reuse and "stage0_reuse" not in bundle.graphs
    assert bundle.model.input_size == (16, 32) and bundle.model.grid == (2, 4)
    assert bundle.cost.num_patches == 8
    assert verify_bundle(bundle, load_model(tiny_ckpt), frames=2, budgets=(1.0, 0.5)).ok


def test_failed_export_keeps_the_previous_bundle_and_leaves_nothing(tiny_bundle: Path, tiny_ckpt: Path,
                                                                      tmp_path: Path) -> None:
    target = tmp_path / "model.paumer"
    shutil.copytree(tiny_bundle, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def explode(graph: str) -> None:
        if graph == "stage2":
            raise KeyboardInterrupt  # the user hits Ctrl-C half-way

    with pytest.raises(KeyboardInterrupt):
        export_bundle(load_model(tiny_ckpt), target, ExportOptions(image_size=(16, 32)), progress=False,
                      after_graph=explode)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.paumer"]
    load_bundle(target)


def test_export_refuses_to_replace_a_foreign_directory(tiny_ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(UserError, match="not a paumer-edge bundle; refusing to replace it"):
        export_bundle(load_model(tiny_ckpt), tmp_path / "photos", ExportOptions(), progress=False)
    assert (tmp_path / "photos" / "cat.jpg").exists()


def test_bad_bundles_say_what_is_wrong(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "none.paumer")
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    with open(b / "stage1.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="stage1.onnx' does not match its sha256"):
        load_bundle(b)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["graphs"]["stage1"]["file"] = "../../etc/passwd"
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(b)
    manifest["format_version"] = 99
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this runtime reads"):
        load_bundle(b)
    (b / "manifest.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(b)


def test_options_are_checked() -> None:
    with pytest.raises(UserError, match="opset 13 is not supported"):
        ExportOptions(opset=13).validate()
    with pytest.raises(UserError, match="1 <= min <= opt <= max"):
        ExportOptions(batch=(2, 1, 4)).validate()
    with pytest.raises(UserError, match="calibration method 'kl' is not one of"):
        EngineOptions(precision="int8", quant=QuantOptions(method="kl")).validate()
    EngineOptions(precision="int8").validate()  # INT8 needs no frames of the user's: rendered scenes calibrate


def test_fp16_graphs_for_strongly_typed_tensorrt(tiny_bundle: Path) -> None:
    """TensorRT 11 takes precision from the graph: the fp16 copy keeps fp32 I/O and stays close."""
    model = onnx.load(str(tiny_bundle / "stage1.onnx"))
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64]
    rng = np.random.default_rng(0)
    feeds = {"tokens": rng.normal(size=(2, 33, 32)).astype(np.float32),
             "active": np.stack([np.sort(rng.permutation(32)[:9]) for _ in range(2)]).astype(np.int64)}
    a = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    b = ort.InferenceSession(half.SerializeToString()).run(None, feeds)
    assert b[0].dtype == np.float32
    np.testing.assert_allclose(a[0], b[0], atol=2e-2)


def test_fp16_copy_clips_out_of_range_constants_instead_of_making_inf() -> None:
    from onnx import helper

    lowest = np.array([np.finfo(np.float32).min, 1e6, -3.0, -np.inf], dtype=np.float32)  # a mask fill, a big scale
    node = helper.make_node("Add", ["x", "c"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])],
                              [onnx.numpy_helper.from_array(lowest, "c")])
    half = convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    c = onnx.numpy_helper.to_array(next(i for i in half.graph.initializer if i.name == "c"))
    assert c.dtype == np.float16 and c.tolist() == [-65504.0, 65504.0, -3.0, -np.inf]  # a true -inf stays


def test_engine_profiles_follow_the_budget_plan(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    bundle = dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, batch=BatchRange(1, 2, 8)))
    profiles = profile_shapes(bundle, "stage2", [0.5, 0.25])
    counts = [plan_budget(bundle.cost, b).counts[2] for b in (0.5, 0.25)]
    assert [p["active"] for p in profiles] == [((1, 1), (2, c), (8, 32)) for c in counts]
    assert profiles[0]["tokens"] == ((1, 33, 32), (2, 33, 32), (8, 33, 32))
    small = dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, batch=BatchRange(1, 1, 4)))
    assert profile_shapes(small, "stage0", [0.5])[0]["image"] == ((1, 3, 32, 64), (1, 3, 32, 64), (4, 3, 32, 64))
    gpu = GpuInfo(0, "NVIDIA Orin", "8.7", 30.0)
    k1 = engine_key("abc", "10.3.0", gpu, "fp16", profiles, None)
    assert k1 == engine_key("abc", "10.3.0", gpu, "fp16", profiles, None)
    assert k1 != engine_key("abc", "10.3.0", gpu, "fp32", profiles, None)
    assert k1 != engine_key("abc", "10.4.0", gpu, "fp16", profiles, None)
    assert k1.startswith("fp16-sm87-trt10.3.0-")


def _has_tensorrt_gpu() -> bool:
    try:
        from paumer_edge.runtime.gpu import cuda_runtime, gpu_info, tensorrt_module

        tensorrt_module()
        gpu_info(cuda_runtime())
        return True
    except UserError:
        return False


def test_cli_without_tensorrt_says_what_to_install(tiny_bundle: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    if _has_tensorrt_gpu():
        pytest.skip("TensorRT and a GPU are present here")
    for args in (["export", str(tiny_ckpt), "-o", str(tmp_path / "x.paumer"), "--trt"], ["build", str(tiny_bundle)]):
        proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line
        assert ("TensorRT is not installed" in line or "cuda-python is not installed" in line
                or "CUDA error" in line), line
        assert "pip install 'paumer-edge[gpu]'" in line or "nvidia-smi" in line
    assert not (tmp_path / "x.paumer").exists()  # nothing half-written


@pytest.mark.gpu
def test_tensorrt_engines_build_and_match_onnxruntime(tiny_bundle: Path, tmp_path: Path) -> None:
    if not _has_tensorrt_gpu():
        pytest.skip("needs TensorRT and an NVIDIA GPU")
    from paumer_edge.export.tensorrt_build import build_engines
    from paumer_edge.runtime.backends import OrtBackend
    from paumer_edge.runtime.backends.trt import TrtBackend
    from paumer_edge.runtime.staged import StagedRunner

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    entries = build_engines(b, EngineOptions(precision="fp32", budgets=(0.5, 0.25)), progress=False)
    assert {e.graph for e in entries} == {"stage0", "stage1", "stage2", "stage3", "decoder", "full"}
    bundle = load_bundle(b)
    assert len(bundle.engines) == 6 and all((b / e.file).exists() for e in entries)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 64)).astype(np.float32)
    trt_runner, ort_runner = StagedRunner(bundle, TrtBackend("fp32")), StagedRunner(bundle, OrtBackend())
    for budget in (1.0, 0.5, 0.25):
        ta = trt_runner.forward(x, Pauser(bundle.cost, PausingPolicy(budget)))
        tc = ort_runner.forward(x, Pauser(bundle.cost, PausingPolicy(budget)))
        assert ta.stats.counts == tc.stats.counts
        assert (ta.labels == tc.labels).mean() > 0.99
    again = build_engines(b, EngineOptions(precision="fp32", budgets=(0.5, 0.25)), progress=False)
    assert [e.key for e in again] == [e.key for e in entries]  # keyed: reused, not rebuilt


def test_cli_export_and_verify(tiny_ckpt: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.pt"
    shutil.copy(tiny_ckpt, ckpt)
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", "export", str(ckpt), "--quiet",
                           "--report", str(tmp_path / "report.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mine.paumer" / "manifest.json").exists()  # default: next to the checkpoint
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"exported {tmp_path / 'mine.paumer'} (11 graphs") and "min label agreement" in last
    assert all(c["ok"] for c in json.loads((tmp_path / "report.json").read_text()))
    # verify against another model: beyond tolerance, exit 1
    from paumer_edge.checkpoint import save_checkpoint
    from paumer_edge.config import preset
    from paumer_edge.model import PausingSegmenter

    torch.manual_seed(99)
    save_checkpoint(tmp_path / "other.pt", PausingSegmenter(preset("tiny")))
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", "verify", str(tmp_path / "mine.paumer"),
                           "--ckpt", str(tmp_path / "other.pt"), "--frames", "2"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    failed = [line for line in proc.stdout.splitlines() if line.rstrip().endswith(" NO")]  # the table's verdicts
    assert failed and "BEYOND TOLERANCE" in proc.stdout and "Traceback" not in proc.stderr
