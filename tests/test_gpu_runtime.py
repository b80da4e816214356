"""The runtime's GPU paths: ONNX Runtime's CUDA and TensorRT providers, native TensorRT engines.

Marked `gpu`; each skips with its reason where onnxruntime-gpu, TensorRT or an NVIDIA GPU is missing
(this project's CI has none of them, the GPU machines have them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from paumer_edge import UserError
from paumer_edge.core.pausing import plan_budget
from paumer_edge.runtime import Pipeline

pytestmark = pytest.mark.gpu


def _providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _tensorrt_gpu() -> str:
    """Why native TensorRT cannot run here ('' when it can)."""
    try:
        from paumer_edge.runtime.gpu import cuda_runtime, gpu_info, tensorrt_module

        tensorrt_module()
        gpu_info(cuda_runtime())
        return ""
    except UserError as e:
        return str(e)


def _needs(provider: str) -> pytest.MarkDecorator:  # skip before any fixture is built
    return pytest.mark.skipif(provider not in _providers(), reason=f"needs onnxruntime-gpu with the {provider} "
                              f"(this install has {', '.join(_providers()) or 'no onnxruntime'})")


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (48, 96, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("kind, provider", [
    pytest.param("ort-cuda", "CUDAExecutionProvider", marks=_needs("CUDAExecutionProvider")),
    pytest.param("ort-trt", "TensorrtExecutionProvider", marks=_needs("TensorrtExecutionProvider"))])
def test_ort_gpu_backends_match_the_cpu_and_keep_tokens_on_the_device(tiny_bundle: Path, tmp_path: Path,
                                                                      kind: str, provider: str) -> None:
    bundle = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, bundle)  # the TensorRT provider writes its engine cache into the bundle
    cpu = Pipeline(bundle, backend="ort", cost="macs")
    gpu = Pipeline(bundle, backend=kind, cost="macs")
    assert kind in gpu.backend.describe()
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 64)).astype(np.float32)
    tokens = gpu.runner.stages[0].run({"image": x}, keep=("tokens",))[0]
    assert not isinstance(tokens, np.ndarray) and tokens.device_name().lower() == "cuda"  # an OrtValue on the GPU
    for budget in (1.0, 0.5, 0.25):
        agree = []
        for frame in _frames(4):
            a, b = cpu(frame, budget=budget), gpu(frame, budget=budget)
            assert a.stats.counts == b.stats.counts == list(plan_budget(cpu.cost, budget).counts)
            agree.append((a.labels == b.labels).mean())
        assert np.mean(agree) >= 0.99, (kind, budget, np.mean(agree))
    if kind == "ort-trt":
        assert any((bundle / "engines" / "ort-trt").iterdir())  # the engine cache lives in the bundle


@_needs("CUDAExecutionProvider")
def test_gpu_latency_profile_and_auto_backend(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle)  # auto: the fastest available, a GPU one here
    assert pipe.backend.name in ("trt", "ort-trt", "ort-cuda")
    assert pipe.cost.measured and "on" in pipe.cost.device
    for frame in _frames(3):
        r = pipe(frame, budget=0.5)
        assert r.labels.shape == frame.shape[:2] and r.stats.counts == list(plan_budget(pipe.cost, 0.5).counts)


@pytest.mark.skipif(bool(_tensorrt_gpu()), reason=f"needs TensorRT and an NVIDIA GPU: {_tensorrt_gpu()}")
def test_native_tensorrt_pipeline_runs_the_built_engines(tiny_bundle: Path, tmp_path: Path) -> None:
    from paumer_edge.export.tensorrt_build import EngineOptions, build_engines

    bundle = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, bundle)
    build_engines(bundle, EngineOptions(precision="fp32", budgets=(0.5,)), progress=False)
    trt = Pipeline(bundle, backend="trt")
    cpu = Pipeline(bundle, backend="ort", cost=trt.cost)  # the same budget -> the same tokens
    assert trt.cost.measured
    for frame in _frames(4):
        a, b = trt(frame, budget=0.5), cpu(frame, budget=0.5)
        assert a.stats.counts == b.stats.counts
        assert (a.labels == b.labels).mean() >= 0.99


@pytest.mark.skipif(bool(_tensorrt_gpu()), reason=f"needs TensorRT and an NVIDIA GPU: {_tensorrt_gpu()}")
def test_native_tensorrt_int8_engines_come_from_the_qdq_graphs(tiny_bundle: Path, tmp_path: Path) -> None:
    """Explicit quantization: TensorRT 10 (INT8 flag) and 11 (strongly typed) build the bundle's Q/DQ graphs."""
    from paumer_edge.export.quantize import QuantOptions
    from paumer_edge.export.tensorrt_build import EngineOptions, build_engines

    bundle = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, bundle)
    quant = QuantOptions(calib_images=3, budgets=(1.0, 0.5))
    entries = build_engines(bundle, EngineOptions(precision="int8", budgets=(0.5,), quant=quant), progress=False)
    assert {e.graph for e in entries} == {"stage0", "stage1", "stage2", "stage3", "decoder"}
    assert all(e.variant == "int8" and e.precision == "int8" for e in entries)
    trt = Pipeline(bundle, backend="trt", precision="int8", cost="macs")
    cpu = Pipeline(bundle, backend="ort", precision="int8", cost="macs")
    assert trt.bundle.graphs["stage1"].file == "int8/stage1.onnx"
    for frame in _frames(4):
        for budget in (1.0, 0.5):
            a, b = trt(frame, budget=budget), cpu(frame, budget=budget)
            assert a.stats.counts == b.stats.counts
            assert (a.labels == b.labels).mean() >= 0.97
    again = build_engines(bundle, EngineOptions(precision="int8", budgets=(0.5,)), progress=False)
    assert [e.key for e in again] == [e.key for e in entries]  # the same Q/DQ graphs: engines reused


@_needs("TensorrtExecutionProvider")
def test_ort_tensorrt_provider_runs_the_int8_graphs(tiny_bundle: Path, tmp_path: Path) -> None:
    from paumer_edge.export.quantize import QuantOptions, add_int8

    bundle = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, bundle)
    add_int8(bundle, QuantOptions(calib_images=3, budgets=(1.0, 0.5)), progress=False)
    gpu = Pipeline(bundle, backend="ort-trt", precision="int8", cost="macs")
    cpu = Pipeline(bundle, backend="ort", precision="int8", cost="macs")
    agree = [(gpu(f, budget=0.5).labels == cpu(f, budget=0.5).labels).mean() for f in _frames(4)]
    assert np.mean(agree) >= 0.97
