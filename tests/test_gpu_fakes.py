"""The GPU runtime's logic on the CPU: the native TensorRT backend, engine lookup and `auto`, driven through fakes of
TensorRT and cuda-python (tests/fake_tensorrt.py, tests/fake_cudart.py; the `fake_gpu` fixture) that model the
real APIs: engines run their ONNX graphs with ONNX Runtime, device memory is checked on every access.

What this covers: `TrtSession.run` (device buffers, the token buffer handed from stage to stage on the device, the
optimisation profile per token count), `TrtBackend.open` (every reason an engine is refused), `find_engine`,
`gpu_info`, and `open_backend("auto")`'s choice and fallback. What it cannot: real kernels, real timings, a real
GPU's memory model. tests/test_gpu_runtime.py runs the same paths on hardware where there is some.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paumer_edge import UserError
from paumer_edge.core.names import ACTIVE, IMAGE
from paumer_edge.core.pausing import Pauser, PausingPolicy, plan_budget
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.backends.select import open_backend
from paumer_edge.runtime.bundle import load_bundle, sha256_file
from paumer_edge.runtime.staged import StagedRunner

BUDGETS = (0.5, 0.25)  # one engine profile each


def build(bundle: Path, precision: str = "fp32", budgets: tuple[float, ...] = BUDGETS) -> list[Any]:
    from paumer_edge.export.tensorrt_build import EngineOptions, build_engines

    return build_engines(bundle, EngineOptions(precision=precision, budgets=budgets), progress=False)


@pytest.fixture
def engines(fake_gpu: Any, committed_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the committed tiny bundle with fp32 engines for the fake GPU, profiles for budgets 0.5 and 0.25."""
    pytest.importorskip("onnx")  # the engine builder reads graphs with it
    bundle = tmp_path / "b.paumer"
    shutil.copytree(committed_bundle, bundle)
    build(bundle)
    return bundle


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48, 96, 3), dtype=np.uint8) for _ in range(n)]


def edit_engines(bundle: Path, **changes: Any) -> None:
    """Change every engine entry of the manifest (as another GPU or TensorRT would have written it)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["engines"]:
        for key, value in changes.items():
            if key == "gpu_name":
                entry["gpu"]["name"] = value
            elif key == "cc":
                entry["gpu"]["compute_capability"] = value
            else:
                entry[key] = value
    path.write_text(json.dumps(manifest))


def test_trt_pipeline_gives_onnx_runtimes_labels_and_tokens(engines: Path) -> None:
    trt = Pipeline(engines, backend="trt", cost="macs")
    cpu = Pipeline(engines, backend="ort", cost="macs")
    assert trt.backend.describe() == "trt (TensorRT 10.3.0 on NVIDIA Fake GPU, any engines)"
    for budget in (1.0, 0.5, 0.25):
        for frame in frames(3):
            a, b = trt(frame, budget=budget), cpu(frame, budget=budget)
            assert a.stats.counts == b.stats.counts == list(plan_budget(cpu.cost, budget).counts)
            assert np.array_equal(a.labels, b.labels)


def test_the_token_buffer_stays_on_the_device_between_stages(engines: Path, fake_gpu: Any) -> None:
    import fake_cudart as cu

    bundle = load_bundle(engines)
    runner = StagedRunner(bundle, open_backend("trt", bundle))
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 64)).astype(np.float32)
    fake_gpu.device.copies.clear()
    out = runner.forward(x, Pauser(bundle.cost, PausingPolicy(0.5)))
    counts = out.stats.counts
    up = [c.nbytes for c in fake_gpu.device.copies if c.kind == cu.cudaMemcpyKind.cudaMemcpyHostToDevice]
    down = [c.nbytes for c in fake_gpu.device.copies if c.kind == cu.cudaMemcpyKind.cudaMemcpyDeviceToHost]
    # up: the image, then only the active indices of stages 1-3 (int64); never a token buffer [1, 33, 32]
    assert up == [x.nbytes] + [8 * n for n in counts[1:]]
    # down: stage 0's entropies of all 32 patches, those of the active ones after stages 1 and 2, then labels and
    # class scores from the decoder (the last stage has no entropy)
    assert down == [4 * 32, 4 * counts[1], 4 * counts[2], 32 * 64, 4 * 10 * 32 * 64]
    assert all(c.stream is not None for c in fake_gpu.device.copies)  # every copy on the backend's stream
    assert fake_gpu.device.syncs == 5  # one synchronisation per graph


def test_each_token_count_runs_on_the_profile_tuned_nearest_to_it(engines: Path, fake_gpu: Any) -> None:
    bundle = load_bundle(engines)
    runner = StagedRunner(bundle, open_backend("trt", bundle))
    x = np.zeros((1, 3, 32, 64), np.float32)
    opt = [plan_budget(bundle.cost, b).counts for b in BUDGETS]  # the count each profile is tuned for
    assert all(len({o[k] for o in opt}) == len(BUDGETS) for k in (1, 2, 3))  # distinct: two profiles per stage
    for budget in (1.0, 0.5, 0.25):
        fake_gpu.state.executions.clear()
        counts = runner.forward(x, Pauser(bundle.cost, PausingPolicy(budget))).stats.counts
        used = [(profile, shapes[ACTIVE][1]) for first, profile, shapes in fake_gpu.state.executions
                if ACTIVE in shapes]
        want = [int(np.argmin([abs(n - o[k]) for o in opt])) for k, n in enumerate(counts) if k]
        assert used == list(zip(want, counts[1:]))
        if budget in BUDGETS:  # at a budget an engine was tuned for, its own profile
            assert want == [BUDGETS.index(budget)] * 3
    assert {p for _, p, s in fake_gpu.state.executions if IMAGE in s} == {0}  # stage 0 has one profile


def test_device_buffers_grow_on_demand_are_reused_and_freed(engines: Path, fake_gpu: Any) -> None:
    bundle = load_bundle(engines)
    backend = open_backend("trt", bundle)
    sessions = [backend.open(bundle, "stage1")]
    tokens = np.zeros((1, 33, 32), np.float32)

    def run(n: int, batch: int = 1) -> None:
        active = np.tile(np.arange(n, dtype=np.int64), (batch, 1))
        sessions[0].run({"tokens": np.repeat(tokens, batch, 0), ACTIVE: active})

    run(4)
    first = fake_gpu.device.mallocs
    assert first == 4  # tokens, active in; tokens_out, entropy out (profile 0's context)
    run(3)
    run(4)
    assert fake_gpu.device.mallocs == first  # smaller or equal: the same buffers
    run(4, batch=2)
    assert fake_gpu.device.mallocs == first + 4  # every buffer grew once
    buffers = dict(sessions[0].buffers)  # type: ignore[attr-defined]  # "profile:tensor" -> (pointer, bytes)
    assert len({k.split(":")[0] for k in buffers}) == 1  # one context's buffers: n = 4 throughout
    assert {k.split(":")[1] for k in buffers} == {"tokens", "active", "tokens_out", "entropy"}
    assert buffers[next(k for k in buffers if k.endswith(":tokens"))][1] == 2 * 33 * 32 * 4
    assert {ptr for ptr, _ in buffers.values()} == set(fake_gpu.device.live)  # nothing else is live
    sessions.clear()
    gc.collect()
    assert fake_gpu.device.live == {}  # every buffer freed with its session


def test_an_input_outside_the_engine_profile_is_refused(engines: Path) -> None:
    bundle = load_bundle(engines)
    session = open_backend("trt", bundle).open(bundle, "stage0")
    with pytest.raises(UserError, match=r"input image of shape \(9, 3, 32, 64\) is outside the engine's profile"):
        session.run({IMAGE: np.zeros((9, 3, 32, 64), np.float32)})  # the manifest's batch range is 1..8
    assert len(session.run({IMAGE: np.zeros((8, 3, 32, 64), np.float32)})) == 2


def test_a_failed_execution_is_one_clear_error(engines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fake_trt_runtime

    bundle = load_bundle(engines)
    session = open_backend("trt", bundle).open(bundle, "decoder")
    monkeypatch.setattr(fake_trt_runtime.ExecutionContext, "execute_async_v3", lambda self, stream: False)
    with pytest.raises(UserError, match="TensorRT execution failed"):
        session.run({"tokens": np.zeros((1, 33, 32), np.float32)})


REFUSALS = {
    "no engines": ({"drop": True}, None, "has no TensorRT engine for stage0; build them with `paumer-edge build"),
    "no engine of that precision": ({}, "fp16", "has no fp16 TensorRT engine for stage0; build them with "
                                                "`paumer-edge build .* --fp16`"),
    "another TensorRT": ({"tensorrt": "10.0.1"}, None, r"the stage0 engine was built for NVIDIA Fake GPU \(sm 8.7\) "
                         r"/ TensorRT 10.0.1, not this NVIDIA Fake GPU \(sm 8.7\) / TensorRT 10.3.0; rebuild with"),
    "another GPU": ({"gpu_name": "NVIDIA Orin"}, None, r"built for NVIDIA Orin \(sm 8.7\) / TensorRT 10.3.0, not this "
                    r"NVIDIA Fake GPU"),
    "another compute capability": ({"cc": "9.0"}, None, r"built for NVIDIA Fake GPU \(sm 9.0\) .*, not this NVIDIA "
                                   r"Fake GPU \(sm 8.7\)"),
    "a changed graph": ({"graph_sha256": "0" * 64}, None, "built from another version of stage0.onnx .*rebuild"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_engines_that_do_not_fit_are_refused_with_the_rebuild_command(engines: Path, case: str) -> None:
    change, precision, message = REFUSALS[case]
    change = dict(change)
    if change.pop("drop", False):
        manifest = json.loads((engines / "manifest.json").read_text())
        (engines / "manifest.json").write_text(json.dumps({**manifest, "engines": []}))
    edit_engines(engines, **change)
    bundle = load_bundle(engines)
    with pytest.raises(UserError, match=message):
        open_backend("trt", bundle, precision=precision).open(bundle, "stage0")
    if precision == "fp16":  # fp16 comes from TensorRT alone: without it auto says so, it does not fall back
        with pytest.raises(UserError, match="fp16 runs on TensorRT"):
            open_backend("auto", bundle, precision=precision)
    else:
        assert open_backend("auto", bundle, precision=precision).name == "ort"  # auto falls back, saying which


@pytest.mark.parametrize("damage", ["missing", "changed", "unreadable"])
def test_engine_files_that_are_missing_changed_or_unreadable_are_refused(engines: Path, damage: str,
                                                                        fake_gpu: Any) -> None:
    bundle = load_bundle(engines)
    entry = next(e for e in bundle.engines if e.graph == "stage1")
    path = engines / entry.file
    if damage == "missing":
        path.unlink()
    elif damage == "changed":
        path.write_bytes(path.read_bytes() + b"\0")
    else:  # intact file, but a plan this TensorRT cannot deserialise: the manifest was edited to claim it fits
        path.write_bytes(b"not a plan")
        edit_engines(engines, sha256=sha256_file(path))
        bundle = load_bundle(engines)
    message = "TensorRT could not load" if damage == "unreadable" else "missing or does not match its sha256"
    with pytest.raises(UserError, match=f"{message}.*rebuild with `paumer-edge build"):
        open_backend("trt", bundle).open(bundle, "stage1")


def test_a_plan_from_another_tensorrt_is_not_deserialised(engines: Path, fake_gpu: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with a manifest claiming otherwise, TensorRT's runtime refuses a plan built by another version."""
    monkeypatch.setattr(fake_gpu.trt, "__version__", "10.4.0")
    edit_engines(engines, tensorrt="10.4.0")
    bundle = load_bundle(engines)
    with pytest.raises(UserError, match="TensorRT could not load .*stage0.engine"):
        open_backend("trt", bundle).open(bundle, "stage0")


def test_the_gpu_is_read_from_cuda_and_a_missing_one_is_one_line(fake_gpu: Any, committed_bundle: Path) -> None:
    from paumer_edge.runtime.gpu import cuda_runtime, gpu_info

    info = gpu_info(cuda_runtime())
    assert (info.name, info.compute_capability, info.memory_gib) == ("NVIDIA Fake GPU", "8.7", 16.0)
    fake_gpu.device.count = 0
    bundle = load_bundle(committed_bundle)
    with pytest.raises(UserError, match=r"CUDA error in cudaSetDevice: cudaErrorNoDevice \(is an NVIDIA GPU present"):
        open_backend("trt", bundle)
    assert open_backend("auto", bundle).name == "ort"


def test_type_stubs_alone_are_not_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    from paumer_edge.runtime.gpu import tensorrt_module

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs makes importable
    with pytest.raises(UserError, match=r"TensorRT is not installed \(on a desktop GPU: pip install"):
        tensorrt_module()


@pytest.mark.parametrize("providers, want", [
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], "ort-trt"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "ort-cuda"),
    (["CPUExecutionProvider"], "ort"),
])
def test_auto_takes_native_engines_first_then_the_order_the_help_gives(engines: Path, fake_gpu: Any,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       providers: list[str], want: str) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    bundle = load_bundle(engines)
    assert open_backend("auto", bundle).name == "trt"  # fitting engines for every graph: native TensorRT
    if want == "ort-trt":  # no engines of that precision: the EPs in order, of those that give fp16
        assert open_backend("auto", bundle, precision="fp16").name == want
    else:
        with pytest.raises(UserError, match="fp16 runs on TensorRT"):
            open_backend("auto", bundle, precision="fp16")
    decoder_only_missing = dataclasses.replace(
        bundle, manifest=dataclasses.replace(bundle.manifest, engines=tuple(
            e for e in bundle.engines if e.graph != "decoder")))
    assert open_backend("auto", decoder_only_missing).name == want  # every graph needs its engine
