"""Shared fixtures: a private data cache, a tiny model trained for a few steps, the committed tiny bundle.

PyTorch is imported only inside the fixtures that need it: the `torchfree` tests run where it is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered data and caches go to a temporary folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("paumer-cache")
    os.environ["PAUMER_EDGE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def graph_memo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each distinct ONNX graph goes through the (slow) dynamo exporter once per test session, in this process and
    in the CLI processes the tests start (tests/graph_memo.py says why that is safe)."""
    import graph_memo as memo

    path = tmp_path_factory.mktemp("graph-memo")
    os.environ[memo.ENV] = str(path)
    site = str(Path(__file__).parent / "memo_site")
    os.environ["PYTHONPATH"] = os.pathsep.join([site, *filter(None, [os.environ.get("PYTHONPATH")])])
    memo.install(path)
    return path


@pytest.fixture(autouse=True)
def no_process_wide_thread_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI run in process (`main(["run", ...])`) would turn on ONNX Runtime's process-wide thread pool, which
    cannot be turned off again and after which INT8 quantization refuses to run: the order of the tests would decide
    whether the INT8 tests pass. Here every session keeps its own threads; the shared pool is tested in a subprocess
    (tests/test_runtime.py)."""
    from paumer_edge.runtime.backends import ort as backend

    monkeypatch.setattr(backend, "shared_thread_pool", lambda threads: False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, private_cache: Path) -> dict:
    """Train the `tiny` preset for 40 steps; returns the run folder and the summary."""
    import torch

    from paumer_edge.config import preset
    from paumer_edge.training import TrainConfig, train
    from paumer_edge.training.release import write_release

    out = tmp_path_factory.mktemp("tiny-run")
    tc = TrainConfig(out=str(out), train_images=48, val_images=16, steps=40, batch_size=8, lr=2e-3,
                     eval_every=20, progress=False, seed=0)
    torch.manual_seed(0)
    summary = train(tc, preset("tiny"))
    write_release(out / "last.pt", out / "model.pt", summary["results"])
    return {"out": out, "summary": summary, "config": tc}


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run: dict) -> Path:
    return tiny_run["out"] / "model.pt"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported to a bundle (no verification: test_export checks that)."""
    from paumer_edge.checkpoint import load_model
    from paumer_edge.export.exporter import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny.paumer"
    export_bundle(load_model(tiny_ckpt), out, ExportOptions(), source=str(tiny_ckpt), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_peers(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every peer's graphs: a smaller input size (16x32), DToP's early-exit variant, ToMe
    (r=2) and PRO-SCALE (1 block) graphs, and plans measured on 4 held-out frames (their figures are noise at this
    size: tests that depend on which plan wins write plans of their own)."""
    from paumer_edge.checkpoint import load_model
    from paumer_edge.export.exporter import ExportOptions, export_bundle
    from paumer_edge.export.peer_graphs import PeerOptions
    from paumer_edge.planning import PlanMeasurement

    out = tmp_path_factory.mktemp("bundles") / "tiny-peers.paumer"
    opts = ExportOptions(extra_sizes=((16, 32),), peers=PeerOptions(early_exit=True, merge=(2,), coarse=(1,)))
    export_bundle(load_model(tiny_ckpt), out, opts, source=str(tiny_ckpt), progress=False,
                  finalize=PlanMeasurement(images=4, frame_size=(64, 128), progress=False))
    return out


@pytest.fixture(scope="session")
def without_torch() -> Callable[[str], str]:
    """Run Python code in a fresh process in which any import of torch fails; returns its output."""

    def run(code: str) -> str:
        proc = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\n" + code],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    return run


FIXTURE_BUNDLE = Path(__file__).parent / "fixtures" / "tiny.paumer"


@pytest.fixture(scope="session")
def committed_bundle() -> Path:
    """A tiny bundle committed with the tests (tests/fixtures/make_tiny_bundle.py makes it): runtime tests run on it
    where PyTorch is not installed."""
    return FIXTURE_BUNDLE


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """TensorRT and cuda-python replaced by CPU fakes (tests/fake_tensorrt.py, tests/fake_cudart.py) modelled on their
    real APIs: a fresh fake GPU ("NVIDIA Fake GPU", sm 8.7) and TensorRT 10.3.0 for every test. Returns a namespace
    with the `device` (memory, copies), the fake `trt` module and its `state` (builds, calibration, executions)."""
    from types import SimpleNamespace

    import fake_cudart
    import fake_tensorrt

    device, state = fake_cudart.Device(), fake_tensorrt.State()
    monkeypatch.setattr(fake_cudart, "DEVICE", device)
    monkeypatch.setattr(fake_tensorrt, "STATE", state)
    monkeypatch.setattr(fake_tensorrt, "__version__", "10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", fake_cudart)
    return SimpleNamespace(device=device, trt=fake_tensorrt, state=state)
