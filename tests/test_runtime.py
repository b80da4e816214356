"""The torch-free runtime: pre-processing, the Pipeline (parity, knobs, threads), the latency controller."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.checkpoint import load_model
from paumer_edge.core.pausing import PolicyError, plan_budget
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.controller import LatencyController
from paumer_edge.runtime.preprocess import labels_to_frame, place, preprocess, to_rgb_uint8


def frames(n: int, size: tuple[int, int] = (64, 128), seed: int = 5) -> list[np.ndarray]:
    return [street_scene(derive_seed(seed, i), size)[0] for i in range(n)]


def test_runtime_runs_with_torch_blocked(tiny_bundle: Path, without_torch: Callable[[str], str]) -> None:
    out = without_torch(
        "import numpy as np\n"
        "from paumer_edge.runtime import Pipeline\n"
        f"p = Pipeline({str(tiny_bundle)!r}, budget=0.5)\n"
        "r = p(np.zeros((40, 70, 3), np.uint8))\n"
        "assert r.labels.shape == (40, 70), r.labels.shape\n"
        "print('ok', r.stats.counts)\n"
    )
    assert out.startswith("ok")


@pytest.mark.parametrize(
    "frame, bgr",
    [
        (np.full((20, 30), 7, np.uint8), False),  # grayscale
        (np.full((20, 30, 1), 7, np.uint8), False),
        (np.dstack([np.full((20, 30), 7, np.uint8)] * 3 + [np.full((20, 30), 255, np.uint8)]), False),  # RGBA
        (np.full((20, 30, 3), 7 * 256, np.uint16), False),  # 16-bit
        (np.full((20, 30, 3), 7 / 255, np.float32), False),  # float in [0, 1]
        (np.full((20, 30, 3), 7, np.uint8), True),  # BGR
    ],
)
def test_any_channel_layout_becomes_rgb_uint8(frame: np.ndarray, bgr: bool) -> None:
    rgb = to_rgb_uint8(frame, bgr=bgr)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert (rgb == 7).all()


def test_bgr_swaps_channels_and_bad_frames_are_refused() -> None:
    f = np.zeros((2, 2, 3), np.uint8)
    f[..., 0] = 9
    assert (to_rgb_uint8(f, bgr=True)[..., 2] == 9).all()
    with pytest.raises(UserError, match="a frame must be"):
        to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(UserError, match="empty frame"):
        to_rgb_uint8(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(UserError, match="numeric images"):
        to_rgb_uint8(np.array([["a"]]))


def test_letterbox_round_trip() -> None:
    p = place((100, 400), (32, 64), letterbox=True)
    assert p.content == (8, 0, 24, 64)  # scaled to 16x64, centred
    rgb = np.full((100, 400, 3), 200, np.uint8)
    x, p2 = preprocess(rgb, (32, 64), (0.5,) * 3, (0.5,) * 3, letterbox=True)
    assert p2 == p and x.shape == (3, 32, 64) and x.dtype == np.float32
    assert np.allclose(x[:, :8], 0) and np.allclose(x[:, 8:24], (200 / 255 - 0.5) / 0.5, atol=1e-6)
    labels = np.zeros((32, 64), np.uint8)
    labels[8:24, :32] = 3
    back = labels_to_frame(labels, p)
    assert back.shape == (100, 400)
    assert (back[:, :200] == 3).all() and (back[:, 200:] == 0).all()


def test_frames_of_any_size_including_smaller_than_a_patch(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle)
    for shape in [(3, 5, 3), (1, 1), (480, 640, 4), (1000, 90, 3)]:
        frame = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        assert pipe(frame).labels.shape == shape[:2]


@pytest.mark.parametrize("budget", [1.0, 0.5, 0.25])
def test_labels_agree_with_pytorch(tiny_bundle: Path, tiny_ckpt: Path, budget: float) -> None:
    pipe = Pipeline(tiny_bundle, budget=budget)
    model = load_model(tiny_ckpt)
    m = pipe.info
    agree = []
    for frame in frames(6):
        x, placement = preprocess(frame, m.input_size, m.mean, m.std)
        with torch.no_grad():
            out = model(torch.from_numpy(x[None]), budget=budget, cost=pipe.cost)  # the same policy and cost
        ref = labels_to_frame(out.logits.argmax(1)[0].numpy().astype(np.uint8), placement)
        result = pipe(frame)
        assert result.stats.counts == list(out.counts)
        agree.append((result.labels == ref).mean())
    assert np.mean(agree) >= 0.995


def test_budget_threshold_and_overrides(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, budget=0.5, stage_map=True)
    f = frames(1)[0]
    plan = plan_budget(pipe.cost, 0.5)
    r = pipe(f)
    assert r.stats.counts == list(plan.counts) and r.stats.budget == 0.5
    assert r.stage_map is not None and r.stage_map.shape == pipe.info.grid
    assert [(r.stage_map >= k).sum() for k in range(4)] == list(plan.counts)
    assert pipe(f, budget=1.0).stats.counts == [32] * 4
    pipe.budget = 0.25
    assert pipe(f).stats.counts == list(plan_budget(pipe.cost, 0.25).counts)
    strict = Pipeline(tiny_bundle, threshold=1.0)
    assert strict(f).stats.counts[1:] == [1, 1, 1]
    assert Pipeline(tiny_bundle, threshold=0.0)(f).stats.counts == [32] * 4
    with pytest.raises(PolicyError):
        pipe.budget = 1.5
    with pytest.raises(PolicyError):
        Pipeline(tiny_bundle, threshold=2.0)


def test_latency_target_moves_the_budget(tiny_bundle: Path) -> None:
    tight = Pipeline(tiny_bundle, target_ms=1e-3)
    f = frames(1)[0]
    for _ in range(15):
        tight(f)
    assert tight.budget == pytest.approx(tight.controller.min_budget)  # type: ignore[union-attr]
    assert tight(f).stats.counts[-1] < 32
    loose = Pipeline(tiny_bundle, target_ms=1e4, budget=0.3)
    for _ in range(15):
        loose(f)
    assert loose.budget == 1.0


def test_controller_converges_on_a_linear_plant() -> None:
    c = LatencyController(target_ms=20.0)
    for _ in range(40):
        c.update(2.0 + 36.0 * c.budget)  # 38 ms at budget 1
    assert 2.0 + 36.0 * c.budget == pytest.approx(20.0, rel=0.05)
    with pytest.raises(UserError, match="latency target 0 is out of range: give a positive number"):
        LatencyController(target_ms=0)


def test_several_threads_get_the_same_labels_as_serial_calls(tiny_bundle: Path) -> None:
    """Threads sharing one Pipeline, each with its own per-call knobs and frame layouts, get exactly what
    serial calls get: no knob or buffer leaks from one caller into another."""
    pipe = Pipeline(tiny_bundle, budget=0.5)
    inputs = frames(8, (48, 96)) + [frames(1, (30, 40))[0].mean(axis=2).astype(np.uint8),  # gray
                                    np.dstack([frames(1, (50, 20))[0], np.full((50, 20), 255, np.uint8)])]  # RGBA
    knobs = [{}, {"budget": 1.0}, {"budget": 0.25}, {"threshold": 0.3}]
    serial = {(k, i): pipe(f, **kw) for k, kw in enumerate(knobs) for i, f in enumerate(inputs)}
    results: dict[tuple[int, int, int], tuple[np.ndarray, list[int]]] = {}

    def worker(t: int) -> None:
        for rep in range(3):
            for i, f in enumerate(inputs):
                k = (t + rep + i) % len(knobs)  # every thread mixes every setting
                r = pipe(f, **knobs[k])  # type: ignore[arg-type]
                results[(t, rep * 100 + i, k)] = (r.labels, r.stats.counts)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 * 3 * len(inputs)
    for (t, i, k), (labels, counts) in results.items():
        want = serial[(k, i % 100)]
        assert np.array_equal(labels, want.labels) and counts == want.stats.counts, (t, i, k)
    assert pipe.budget == 0.5  # per-call overrides never touched the pipeline's own knob


def test_missing_bundle_and_unknown_backend_are_clear(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        Pipeline(tmp_path / "nope.paumer")
    with pytest.raises(UserError, match="unknown backend 'cuda'"):
        Pipeline(tiny_bundle, backend="cuda")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(UserError, match="needs ONNX Runtime's CUDAExecutionProvider"):
            Pipeline(tiny_bundle, backend="ort-cuda")


def test_shared_thread_pool_is_opt_in_and_keeps_later_pipelines_working(tiny_bundle: Path) -> None:
    code = (
        "import numpy as np\n"
        "from paumer_edge.runtime import Pipeline\n"
        f"a = Pipeline({str(tiny_bundle)!r}, shared_threads=True)\n"
        f"b = Pipeline({str(tiny_bundle)!r})\n"  # after the process-wide pool: still fine
        "f = np.zeros((32, 64, 3), np.uint8)\n"
        "assert (a(f).labels == b(f).labels).all()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
