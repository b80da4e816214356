"""The runtime-only install: `pip install "paumer-edge[cpu]"` (no PyTorch, no exporter) runs bundles.

Marked `torchfree`: CI runs these a second time in an environment without PyTorch, on the tiny bundle committed
with the tests. Where PyTorch is installed they run too, and the verbs that need it are checked with PyTorch
blocked in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paumer_edge.core.pausing import plan_budget
from paumer_edge.runtime import Pipeline, load_bundle
from paumer_edge.runtime.sliding import SlidingPipeline

pytestmark = pytest.mark.torchfree
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\nfrom paumer_edge.cli import main\nsys.exit(main(sys.argv[1:]))"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_a_pipeline_runs_the_committed_bundle(committed_bundle: Path) -> None:
    bundle = load_bundle(committed_bundle)
    frame = np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)
    pipe = Pipeline(bundle, cost="macs")
    full = pipe(frame)
    assert full.labels.shape == (45, 70) and full.stats.counts == [32, 32, 32, 32]
    half = pipe(frame, budget=0.5)
    assert half.stats.counts == list(plan_budget(bundle.cost, 0.5).counts)
    windows = SlidingPipeline(bundle, cost="macs", budget=0.5)(np.zeros((64, 100, 3), np.uint8))
    assert windows.labels.shape == (64, 100) and windows.scores is not None


def test_run_bench_info_and_synth_work_without_torch(committed_bundle: Path, tmp_path: Path) -> None:
    import av

    video = tmp_path / "clip.mp4"
    assert cli("synth", "video", str(video), "--seconds", "0.4", "--fps", "10", "--size", "48x80", "--quiet",
               cwd=tmp_path).returncode == 0
    proc = cli("run", str(video), "--model", str(committed_bundle), "--out", str(tmp_path / "o.mp4"), "--quiet",
               "--cost", "macs", "--budget", "0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 frames" in proc.stdout and f"wrote video {tmp_path / 'o.mp4'}" in proc.stdout
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames == 4
    proc = cli("bench", str(committed_bundle), "--rounds", "2", "--warmup", "0", "--no-torch", "--cost", "macs",
               "--frame-size", "48x80", "--budgets", "1,0.5", "--json", str(tmp_path / "b.json"), "--quiet",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["budget 1", "budget 0.5", "full.onnx"]
    proc = cli("info", str(committed_bundle), cwd=tmp_path)
    assert proc.returncode == 0 and "model tiny: 10 classes, input 32x64" in proc.stdout


@pytest.mark.parametrize("args, needs", [
    (["export"], "export needs PyTorch and the ONNX exporter"),
    (["eval"], "eval needs PyTorch"),
    (["train", "--steps", "1"], "train needs PyTorch"),
    (["run", "frames"], "the bundled sample model) must be exported to a bundle first, which needs PyTorch"),
])
def test_verbs_that_need_torch_say_what_to_install(args: list[str], needs: str, tmp_path: Path) -> None:
    import cv2

    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((20, 30, 3), np.uint8))
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert needs in proc.stderr and "pip install 'paumer-edge[train]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="checks the runtime-only install itself")
def test_this_install_has_no_torch_and_says_so() -> None:
    from paumer_edge.info import collect_info, format_info

    info = collect_info()
    assert info["packages"]["torch"] is None and not info["extras"]["train"] and info["extras"]["cpu"]
    assert "extra train: not installed; for train, eval, export" in format_info(info)
