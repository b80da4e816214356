"""The accuracy/speed curve: mIoU against frames per second (or modelled compute) at each setting.

One trained network serves every budget; this curve is how a user picks the one that fits their
robot. Speed is the PyTorch forward measured in the same run, image by image (batch 1, what a robot
runs), with every setting timed in turn on the same images so machine noise hits them alike; or,
with `speed="modelled"`, the encoder compute of the cost model, which needs no timing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .core.atomic import save_figure_atomic
from .evaluate import OperatingPoint, PointResult, normalise, predict
from .model import PausingSegmenter

SPEEDS = ("measured", "modelled")


@dataclass
class CurvePoint:
    setting: str
    budget: float
    threshold: float | None
    miou: float
    compute: float  # modelled encoder compute, fraction of budget 1
    ms_p50: float | None = None  # measured PyTorch time per image (median)
    fps: float | None = None  # 1000 / ms_p50


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_points(model: PausingSegmenter, dataset: Dataset, points: list[OperatingPoint], frames: int,
                device: torch.device, sliding: float | None = None, warmup: int = 2,
                progress: bool = True) -> list[list[float]]:
    """Milliseconds per image for every point: the first `frames` images, one at a time, points interleaved."""
    n = min(frames, len(dataset))  # type: ignore[arg-type]
    if n < 1:
        raise ValueError("time at least one image")
    cfg = model.cfg
    images = [normalise(dataset[i][0][None].to(device), cfg.mean, cfg.std) for i in range(n)]
    model.eval()
    for _ in range(warmup):
        for point in points:
            predict(model, images[0], point, sliding, 1)
    times: list[list[float]] = [[] for _ in points]
    for x in tqdm(images, desc="timing", unit="img", disable=not progress, leave=False):
        for p, point in enumerate(points):
            _sync(device)
            t0 = time.perf_counter()
            predict(model, x, point, sliding, 1)
            _sync(device)
            times[p].append((time.perf_counter() - t0) * 1000)
    return times


def curve_points(results: list[PointResult], times: list[list[float]] | None) -> list[CurvePoint]:
    """One curve point per evaluated setting, with its measured speed when there are timings."""
    out = []
    for p, r in enumerate(results):
        name = f"threshold {r.threshold:g}" if r.threshold is not None else f"budget {r.budget:g}"
        point = CurvePoint(name, r.budget, r.threshold, r.miou, r.cost_fraction)
        if times is not None:
            point.ms_p50 = float(np.median(times[p]))
            point.fps = 1000.0 / point.ms_p50
        out.append(point)
    return out


def curve_json(points: list[CurvePoint]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]


def curve_table(points: list[CurvePoint]) -> str:
    lines = [f"{'setting':<16}{'mIoU':>7}{'compute':>9}{'ms':>8}{'FPS':>8}"]
    for p in points:
        ms = f"{p.ms_p50:.1f}" if p.ms_p50 is not None else "-"
        fps = f"{p.fps:.1f}" if p.fps is not None else "-"
        lines.append(f"{p.setting:<16}{100 * p.miou:>7.2f}{100 * p.compute:>8.1f}%{ms:>8}{fps:>8}")
    return "\n".join(lines)


def plot_curve(points: list[CurvePoint], path: Path, title: str) -> None:
    """mIoU against FPS (or modelled compute when not measured): budgets as one line, thresholds as another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = all(p.fps is not None for p in points)

    def x_of(p: CurvePoint) -> float:
        return float(p.fps) if measured and p.fps is not None else 100 * p.compute

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = [("budget", [p for p in points if p.threshold is None], "o-"),
              ("entropy threshold", [p for p in points if p.threshold is not None], "s--")]
    for name, pts, style in series:
        if not pts:
            continue
        pts = sorted(pts, key=x_of)
        ax.plot([x_of(p) for p in pts], [100 * p.miou for p in pts], style, label=name)
        for p in pts:
            knob = f"{p.threshold:g}" if p.threshold is not None else f"{p.budget:g}"
            ax.annotate(f"{knob} ({100 * p.compute:.0f}%)", (x_of(p), 100 * p.miou), textcoords="offset points",
                        xytext=(4, 5), fontsize=7)
    ax.set_xlabel("frames per second (PyTorch, batch 1)" if measured else "modelled encoder compute (%)")
    ax.set_ylabel("mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path)
    plt.close(fig)
