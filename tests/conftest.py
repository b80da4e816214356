"""Shared fixtures: a private data cache, a tiny model trained for a few steps, the committed tiny bundle.

PyTorch is imported only inside the fixtures that need it: the `torchfree` tests run where it is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered data and caches go to a temporary folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("paumer-cache")
    os.environ["PAUMER_EDGE_CACHE"] = str(path)
    return path


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
