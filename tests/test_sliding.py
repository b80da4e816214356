"""Sliding-window inference: the window layout, PyTorch windows vs a plain forward, runtime vs PyTorch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.checkpoint import load_model
from paumer_edge.core.windows import covering_size, stride_pixels, window_layout, window_starts
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.evaluate import normalise
from paumer_edge.runtime.sliding import ScoreAccumulator, SlidingPipeline
from paumer_edge.sliding import sliding_probs


@pytest.mark.parametrize("image, window, stride", [
    ((64, 128), (32, 64), 2 / 3), ((100, 333), (32, 64), 2 / 3), ((32, 64), (32, 64), 0.5),
    ((97, 64), (32, 64), 1.0), ((512, 1024), (128, 256), 0.25), ((33, 65), (32, 64), 2 / 3),
])
def test_window_layout_covers_the_image_at_the_stride_and_ends_flush(image: tuple[int, int],
                                                                     window: tuple[int, int], stride: float) -> None:
    corners = window_layout(image, window, stride)
    sy, sx = stride_pixels(window, stride)
    covered = np.zeros(image, np.int32)
    for y, x in corners:
        assert 0 <= y <= image[0] - window[0] and 0 <= x <= image[1] - window[1]  # inside the image
        covered[y : y + window[0], x : x + window[1]] += 1
    assert (covered > 0).all()  # every pixel seen
    ys, xs = sorted({y for y, _ in corners}), sorted({x for _, x in corners})
    assert ys[0] == 0 and xs[0] == 0
    assert ys[-1] == image[0] - window[0] and xs[-1] == image[1] - window[1]  # last window flush with the border
    for starts, step in ((ys, sy), (xs, sx)):
        gaps = np.diff(starts)
        assert (gaps[:-1] == step).all() and (gaps <= step).all() and (gaps > 0).all()  # the stride, last one shorter
    assert len(corners) == len(ys) * len(xs)


def test_window_starts_and_covering_size() -> None:
    assert window_starts(100, 32, 21) == [0, 21, 42, 63, 68]
    assert window_starts(32, 32, 21) == [0]
    assert window_starts(64, 32, 32) == [0, 32]
    assert covering_size((300, 500), (32, 64)) == (300, 500)  # big enough: never scaled down
    assert covering_size((16, 200), (32, 64)) == (32, 400)  # too short: scaled up, aspect kept
    assert covering_size((40, 30), (32, 64)) == (86, 64)
    with pytest.raises(UserError, match="stride"):
        window_layout((64, 64), (32, 32), 0.0)


def test_accumulator_averages_overlaps() -> None:
    acc = ScoreAccumulator(2, (4, 6))
    acc.add(np.ones((2, 4, 4), np.float32), (0, 0))
    acc.add(np.full((2, 4, 4), 3.0, np.float32), (0, 2))
    mean = acc.mean()
    assert (mean[:, :, :2] == 1).all() and (mean[:, :, 2:4] == 2).all() and (mean[:, :, 4:] == 3).all()
    with pytest.raises(ValueError, match="no window"):
        ScoreAccumulator(2, (4, 6)).mean()


def _image(size: tuple[int, int], seed: int = 3) -> tuple[np.ndarray, torch.Tensor]:
    rgb = street_scene(derive_seed(seed, 0), size)[0]
    return rgb, torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)


@pytest.mark.parametrize("budget, threshold", [(1.0, None), (0.5, None), (1.0, 0.3)])
def test_sliding_on_a_model_sized_image_is_the_plain_forward(tiny_ckpt: Path, budget: float,
                                                             threshold: float | None) -> None:
    model = load_model(tiny_ckpt)
    _, image = _image(model.cfg.image_size)
    x = normalise(image[None], model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        plain = model(x, budget=budget, threshold=threshold)
    result = sliding_probs(model, x[0], budget, threshold)
    assert result.windows == 1
    assert torch.equal(result.probs, plain.logits[0].softmax(0))
    assert torch.equal(result.probs.argmax(0), plain.logits[0].argmax(0))
    assert result.cost_fraction == plain.cost_fraction and result.counts == list(plain.counts)


def test_sliding_probabilities_average_the_windows(tiny_ckpt: Path) -> None:
    model = load_model(tiny_ckpt)
    _, image = _image((64, 128))
    x = normalise(image[None], model.cfg.mean, model.cfg.std)[0]
    result = sliding_probs(model, x, 1.0, stride=0.5, batch=3)
    assert result.windows == 9 and result.probs.shape == (model.cfg.num_classes, 64, 128)
    assert torch.allclose(result.probs.sum(0), torch.ones(64, 128), atol=1e-5)
    with torch.no_grad():  # the top-left corner is seen by the first window only
        first = model(x[None, :, :32, :64]).logits[0].softmax(0)
    assert torch.allclose(result.probs[:, :16, :32], first[:, :16, :32], atol=1e-6)
    small = sliding_probs(model, x[:, :20, :30], 1.0)  # smaller than a window: scaled up, back at its own size
    assert small.probs.shape == (model.cfg.num_classes, 20, 30)


@pytest.fixture(scope="module")
def scores_bundle(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from paumer_edge.export.exporter import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-scores.paumer"
    export_bundle(load_model(tiny_ckpt), out, ExportOptions(scores=True, reuse=False), source=str(tiny_ckpt),
                  progress=False)
    return out


@pytest.mark.parametrize("budget, threshold", [(1.0, None), (0.5, None), (1.0, 0.4)])
def test_runtime_sliding_agrees_with_pytorch(tiny_ckpt: Path, scores_bundle: Path, budget: float,
                                             threshold: float | None) -> None:
    model = load_model(tiny_ckpt)
    rgb, image = _image((80, 150), seed=11)  # 3 x 3 windows of 32x64 at the default stride
    x = normalise(image[None], model.cfg.mean, model.cfg.std)[0]
    ref = sliding_probs(model, x, budget, threshold, batch=1)
    pipe = SlidingPipeline(scores_bundle, budget=budget, threshold=threshold, cost="macs")  # budgets as in PyTorch
    out = pipe(rgb)
    assert out.labels.shape == (80, 150) and out.scores is not None and out.scores.shape == ref.probs.shape
    assert np.abs(out.scores - ref.probs.numpy()).max() < 1e-3
    assert (out.labels == ref.probs.argmax(0).numpy()).mean() > 0.995
    assert out.stats.cost_fraction == pytest.approx(ref.cost_fraction, abs=1e-6)
    assert out.stats.counts == [round(c) for c in ref.counts]


def test_runtime_sliding_on_a_small_frame_and_pause_map(scores_bundle: Path) -> None:
    pipe = SlidingPipeline(scores_bundle, budget=0.5, stage_map=True)
    rgb, _ = _image((20, 50))
    out = pipe(rgb)
    assert out.labels.shape == (20, 50)  # scaled up to cover one window, labels back at the frame's size
    assert out.stage_map is not None and out.stage_map.shape == out.placement.input_hw
    assert out.stage_map.max() == 3 and out.stage_map.min() >= 0  # some patches ran every stage


def test_sliding_needs_a_bundle_with_scores(tiny_bundle: Path) -> None:
    with pytest.raises(UserError, match="export it again with .*--scores"):
        SlidingPipeline(tiny_bundle)
    with pytest.raises(UserError, match="letterbox"):
        SlidingPipeline(tiny_bundle, letterbox=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_run_cli_with_sliding_windows(scores_bundle: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"f{i}.png"), cv2.cvtColor(_image((90, 200), seed=i)[0], cv2.COLOR_RGB2BGR))
    labels = tmp_path / "labels"
    proc = _cli("run", str(frames), "--model", str(scores_bundle), "--sliding", "0.5", "--budget", "0.5",
                "--save-labels", str(labels), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("2 frames")
    pngs = sorted(labels.glob("*.png"))
    assert len(pngs) == 2 and cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (90, 200)
    proc = _cli("run", str(frames), "--model", str(tiny_bundle), "--sliding", "--no-save", "--quiet")
    assert proc.returncode == 2 and "--scores" in proc.stderr and "Traceback" not in proc.stderr


def test_runtime_sliding_runs_with_torch_blocked(scores_bundle: Path, without_torch: Callable[[str], str]) -> None:
    out = without_torch(
        "import numpy as np\n"
        "from paumer_edge.runtime.sliding import SlidingPipeline\n"
        f"p = SlidingPipeline({str(scores_bundle)!r}, budget=0.5)\n"
        "r = p(np.zeros((70, 150, 3), np.uint8))\n"
        "assert r.labels.shape == (70, 150), r.labels.shape\n"
        "print('ok')\n"
    )
    assert out.startswith("ok")
