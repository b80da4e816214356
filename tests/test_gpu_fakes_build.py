"""Building TensorRT engines on the CPU through the fakes (tests/fake_tensorrt.py): `build_engines`' manifest
entries, keys and reuse, precision by TensorRT version, INT8 from the Q/DQ graphs, DLA, failures; and that the fakes
keep to TensorRT's real API (mypy against tensorrt-stubs, enum values read from the stubs)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paumer_edge import UserError
from paumer_edge.core.pausing import plan_budget
from paumer_edge.runtime.bundle import load_bundle, sha256_file
from paumer_edge.runtime.gpu import GpuInfo
from paumer_edge.runtime.profiles import profile_shapes

pytest.importorskip("onnx")  # the builder reads the graphs with it (the `train` extra)

from paumer_edge.export.tensorrt_build import EngineOptions, build_engines, engine_key  # noqa: E402

HERE = Path(__file__).parent
GPU = GpuInfo(0, "NVIDIA Fake GPU", "8.7", 16.0)
GRAPHS = ["stage0", "stage1", "stage2", "stage3", "decoder",  # the committed bundle runs these (format 5)
          "stage0_reuse", "stage1_reuse", "stage2_reuse", "stage3_reuse", "full"]
N = len(GRAPHS)


@pytest.fixture
def bundle(fake_gpu: Any, committed_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "b.paumer"
    shutil.copytree(committed_bundle, out)
    return out


def test_build_writes_one_keyed_engine_per_graph_into_the_manifest(bundle: Path, fake_gpu: Any) -> None:
    (bundle / "engines" / "ort-trt").mkdir(parents=True)  # ONNX Runtime's TensorRT cache: not ours to clean up
    entries = build_engines(bundle, EngineOptions(precision="fp32", budgets=(0.5, 0.25)), progress=False)
    loaded = load_bundle(bundle)
    assert [e.graph for e in entries] == GRAPHS and list(loaded.engines) == entries
    for e in entries:
        profiles = profile_shapes(loaded, e.graph, (0.5, 0.25))
        assert e.key == engine_key(loaded.graphs[e.graph].sha256, "10.3.0", GPU, "fp32", profiles, None)
        assert e.file == f"engines/{e.key}/{e.graph}.engine" and e.sha256 == sha256_file(bundle / e.file)
        assert e.graph_sha256 == loaded.graphs[e.graph].sha256 and e.tensorrt == "10.3.0"
        assert (e.gpu.name, e.gpu.compute_capability, e.precision, e.budgets) == ("NVIDIA Fake GPU", "8.7", "fp32",
                                                                                    (0.5, 0.25))
        assert [{k: tuple(tuple(s) for s in v) for k, v in p.items()} for p in e.profiles] == profiles
    counts = [plan_budget(loaded.cost, b).counts[2] for b in (0.5, 0.25)]
    stage2 = fake_gpu.state.builds[2]["profiles"]  # what TensorRT was given: n from 1 to N, opt per budget
    assert [p["active"] for p in stage2] == [[[1, 1], [1, c], [8, 32]] for c in counts]
    assert fake_gpu.state.network_flags == [0] * N  # TensorRT 10: explicit batch is implied, weakly typed
    assert (bundle / "engines" / "ort-trt").is_dir()


def test_builds_are_reused_by_key_and_replaced_per_slot(bundle: Path, fake_gpu: Any) -> None:
    first = build_engines(bundle, EngineOptions(precision="fp32", budgets=(0.5,)), progress=False)
    assert len(fake_gpu.state.builds) == N and fake_gpu.state.timing_caches_in[0] == b""
    again = build_engines(bundle, EngineOptions(precision="fp32", budgets=(0.5,)), progress=False)
    assert [e.key for e in again] == [e.key for e in first] and len(fake_gpu.state.builds) == N  # nothing rebuilt
    half = build_engines(bundle, EngineOptions(precision="fp16", budgets=(0.5,)), progress=False)
    assert json.loads(fake_gpu.state.timing_caches_in[-1]) == list(range(1, 2 * N))  # the cache grew build by build
    assert all(b["flags"] == 1 << int(fake_gpu.trt.BuilderFlag.FP16) for b in fake_gpu.state.builds[N:])
    assert len(load_bundle(bundle).engines) == 2 * N  # fp32 and fp16 side by side
    other = build_engines(bundle, EngineOptions(precision="fp32", budgets=(0.25,)), progress=False)
    engines = load_bundle(bundle).engines
    assert {e.key for e in engines} == {e.key for e in half + other}  # the new fp32 engines replaced the old
    changed = [a.graph for a, b in zip(first, other) if a.key != b.key]
    assert changed == ["stage1", "stage2", "stage3"]  # other graphs' profiles do not depend on the budget
    assert not any((bundle / "engines" / a.key).exists() for a, b in zip(first, other) if a.key != b.key)


@pytest.mark.parametrize("version, flags", [("8.6.2", 1 << 0), ("10.3.0", 0), ("11.0.0", 1 << 1)])
def test_network_flags_and_precision_follow_the_tensorrt_version(bundle: Path, fake_gpu: Any,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 version: str, flags: int) -> None:
    import onnx

    monkeypatch.setattr(fake_gpu.trt, "__version__", version)
    entries = build_engines(bundle, EngineOptions(precision="fp16"), progress=False)
    assert fake_gpu.state.network_flags == [flags] * N
    strongly_typed = version.startswith("11")
    assert all(e.strongly_typed == strongly_typed and e.tensorrt == version for e in entries)
    fp16_weights = [any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load_from_string(m).graph.initializer)
                    for m in fake_gpu.state.parsed]
    builder_fp16 = [bool(b["flags"] & 1) for b in fake_gpu.state.builds]
    # TensorRT 11 takes precision from the graph (an fp16 copy), older ones from the builder flag
    assert fp16_weights == [strongly_typed] * N and builder_fp16 == [not strongly_typed] * N


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_int8_engines_come_from_the_qdq_graphs_without_a_calibrator(bundle: Path, fake_gpu: Any,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    version: str) -> None:
    import onnx

    from paumer_edge.export.quantize import VARIANT

    monkeypatch.setattr(fake_gpu.trt, "__version__", version)
    entries = build_engines(bundle, EngineOptions(precision="int8", budgets=(0.5,)), progress=False)
    loaded = load_bundle(bundle)
    int8 = loaded.at_precision("int8")  # made first: the bundle had no Q/DQ graphs
    assert VARIANT in loaded.manifest.variant_names and [e.graph for e in entries] == int8.manifest.run_graphs
    assert all(e.variant == VARIANT and e.precision == "int8" and e.graph_sha256 == int8.graphs[e.graph].sha256
               for e in entries)
    parsed = [onnx.load_from_string(m) for m in fake_gpu.state.parsed]
    assert all(any(n.op_type == "QuantizeLinear" for n in m.graph.node) for m in parsed)  # explicit quantization
    strongly_typed = version.startswith("11")
    int8_flag = 1 << int(fake_gpu.trt.BuilderFlag.INT8)
    assert [bool(b["flags"] & int8_flag) for b in fake_gpu.state.builds] == [not strongly_typed] * len(entries)
    assert all(b["strongly_typed"] == strongly_typed and b["calibration"] is None for b in fake_gpu.state.builds)
    assert fake_gpu.state.calibration_batches == []  # the Q/DQ nodes carry the scales: nothing calibrates


def test_dla_builds_need_a_core_and_fall_back_to_the_gpu(bundle: Path, fake_gpu: Any) -> None:
    with pytest.raises(UserError, match="DLA core 0 asked for, this device has 0"):
        build_engines(bundle, EngineOptions(precision="fp16", dla_core=0), progress=False)
    fake_gpu.state.dla_cores = 2
    gpu = build_engines(bundle, EngineOptions(precision="fp16"), progress=False)
    dla = build_engines(bundle, EngineOptions(precision="fp16", dla_core=1), progress=False)
    header = fake_gpu.state.builds[-1]
    assert header["device"] == int(fake_gpu.trt.DeviceType.DLA) and header["dla_core"] == 1
    assert header["flags"] & (1 << int(fake_gpu.trt.BuilderFlag.GPU_FALLBACK))
    assert all(e.dla_core == 1 for e in dla) and {e.key for e in dla}.isdisjoint(e.key for e in gpu)


@pytest.mark.parametrize("failure, message", [
    ("parse", r"TensorRT could not parse decoder.onnx: In node 0 \(importModel\)"),
    ("build", r"TensorRT failed to build an engine for stage0.onnx"),
])
def test_a_failed_build_is_one_line_and_leaves_the_manifest(bundle: Path, fake_gpu: Any, failure: str,
                                                            message: str) -> None:
    if failure == "parse":
        fake_gpu.state.fail_parse = {"labels"}  # the decoder's output
    else:
        fake_gpu.state.fail_build = True
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(UserError, match=message):
        build_engines(bundle, EngineOptions(precision="fp32"), progress=False)
    assert (bundle / "manifest.json").read_bytes() == before


def test_the_build_verb_and_auto_backend_end_to_end(bundle: Path, fake_gpu: Any,
                                                    capsys: pytest.CaptureFixture) -> None:
    from paumer_edge.cli import main
    from paumer_edge.runtime import Pipeline

    assert main(["build", str(bundle), "--fp16", "--engine-budgets", "0.5", "--quiet"]) == 0
    assert f"built {N} fp16 TensorRT engines" in capsys.readouterr().out
    pipe = Pipeline(bundle, cost="macs")  # auto: the engines fit this (fake) GPU and TensorRT
    cpu = Pipeline(bundle, backend="ort", cost="macs")
    assert pipe.backend.name == "trt"
    frame = np.random.default_rng(2).integers(0, 255, (40, 80, 3), dtype=np.uint8)
    a, b = pipe(frame, budget=0.5), cpu(frame, budget=0.5)
    assert a.stats.counts == b.stats.counts and (a.labels == b.labels).mean() > 0.95  # fp16 outputs


# ---- the fakes against TensorRT's real API -------------------------------------------------------------------------
def _stubs() -> Path:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    return Path(spec.origin).parents[1]


def _repaired_stubs(site: Path, out: Path) -> Path:
    """tensorrt-stubs as mypy can read them: the package has no py.typed (mypy ignores it, typing `tensorrt` as
    Any) and a few syntax errors (parameters named `in`, one required parameter after optional ones)."""
    for package in ("tensorrt", "tensorrt_bindings"):
        for stub in (site / package).glob("*.pyi"):
            text = re.sub(r"(?<=[(,\s])in(?=: )", "in_", stub.read_text())
            text = text.replace(", channel_axis: int)", ", channel_axis: int = ...)")
            text = text.replace("import tensorrt_libs as tensorrt_libs\n", "")
            ast.parse(text)  # a newer tensorrt-stubs with new defects fails here, saying where
            (out / package).mkdir(parents=True, exist_ok=True)
            (out / package / stub.name).write_text(text)
    return out


def _mypy(files: list[Path], typings: Path, tmp: Path) -> subprocess.CompletedProcess:
    ini = tmp / "mypy.ini"
    ini.write_text("[mypy]\npython_version = 3.10\nignore_missing_imports = True\n"
                   "[mypy-tensorrt_bindings.*]\nignore_errors = True\n[mypy-tensorrt]\nignore_errors = True\n")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir", str(tmp / "cache"),
                           *map(str, files)], capture_output=True, text=True, timeout=600, cwd=files[0].parent,
                          env={"MYPYPATH": str(typings), "PATH": "/usr/bin:/bin"})


def test_the_fakes_keep_to_tensorrts_signatures(tmp_path: Path) -> None:
    typings = _repaired_stubs(_stubs(), tmp_path / "typings")
    fakes = [HERE / "fake_tensorrt.py", HERE / "fake_trt_runtime.py", HERE / "fake_cudart.py"]
    proc = _mypy(fakes, typings, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    wrong = tmp_path / "wrong"  # the check can fail: a fake with one parameter too many
    wrong.mkdir()
    for f in fakes:
        text = f.read_text().replace("def set_tensor_address(self, name: str, memory: int)",
                                     "def set_tensor_address(self, name: str, memory: int, stream: int)")
        (wrong / f.name).write_text(text)
    proc = _mypy([wrong / f.name for f in fakes], typings, tmp_path)
    assert proc.returncode == 1 and 'Signature of "set_tensor_address" incompatible' in proc.stdout


def test_the_fakes_enums_and_names_are_tensorrts(fake_gpu: Any) -> None:
    stubs = (_stubs() / "tensorrt_bindings" / "tensorrt.pyi").read_text()
    trt = fake_gpu.trt
    for enum_class in (trt.TensorIOMode, trt.DataType, trt.BuilderFlag, trt.DeviceType, trt.MemoryPoolType,
                       trt.NetworkDefinitionCreationFlag, trt.Logger.Severity):
        name = enum_class.__name__.lstrip("_")
        for member in enum_class:
            assert re.search(rf"{member.name}: typing.ClassVar\[[\w.]*{name}\]  # value = <{name}.{member.name}: "
                             rf"{member.value}>", stubs), f"{name}.{member.name} = {member.value} is not TensorRT's"
    names = re.findall(r"'(\w+)'", (_stubs() / "tensorrt" / "__init__.pyi").read_text().split("__all__")[1])
    used = ["Builder", "BuilderFlag", "DataType", "DeviceType", "IInt8EntropyCalibrator2", "Logger", "MemoryPoolType",
            "NetworkDefinitionCreationFlag", "OnnxParser", "Runtime", "TensorIOMode", "nptype"]
    assert all(n in names and hasattr(trt, n) for n in used)  # what paumer-edge calls, in both
