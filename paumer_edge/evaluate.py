"""Evaluation: per-class IoU, mIoU and pixel accuracy at a list of budgets (and thresholds).

Confusion matrices are summed across processes when run under torch.distributed, so training can
evaluate on a sharded validation set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from tqdm import tqdm

from .data.classes import IGNORE_INDEX
from .model import PausingSegmenter


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of the run-time knobs."""

    budget: float = 1.0
    threshold: float | None = None

    @property
    def label(self) -> str:
        return f"threshold {self.threshold:g}" if self.threshold is not None else f"budget {self.budget:g}"


@dataclass
class PointResult:
    budget: float
    threshold: float | None
    miou: float
    pixel_acc: float
    iou: dict[str, float]
    cost_fraction: float  # modelled encoder compute actually spent (mean over batches)
    counts: list[float]  # mean active patch tokens per stage


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[0, 1] RGB images -> the model's input normalisation."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


def confusion(pred: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    valid = labels != IGNORE_INDEX
    idx = labels[valid] * k + pred[valid]
    return torch.bincount(idx, minlength=k * k).reshape(k, k)


def scores(conf: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(per-class IoU with NaN for classes neither present nor predicted, mIoU, pixel accuracy)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    acc = float(tp.sum() / max(conf.sum(), 1))
    return iou, miou, acc


def _shard(n: int) -> range:
    if dist.is_available() and dist.is_initialized():
        return range(dist.get_rank(), n, dist.get_world_size())
    return range(n)


@torch.no_grad()
def evaluate(model: PausingSegmenter, dataset: Dataset, points: list[OperatingPoint], batch_size: int = 16,
             device: str | torch.device = "cpu", progress: bool = True) -> list[PointResult]:
    """Score `model` on `dataset` at every operating point."""
    cfg = model.cfg
    k = cfg.num_classes
    was_training = model.training
    model.eval()
    idx = list(_shard(len(dataset)))  # type: ignore[arg-type]
    conf = torch.zeros(len(points), k, k, dtype=torch.int64, device=device)
    cost = torch.zeros(len(points), 2, dtype=torch.float64, device=device)  # sum, batches
    counts = torch.zeros(len(points), cfg.num_stages, dtype=torch.float64, device=device)
    batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    for batch in tqdm(batches, desc="evaluating", disable=not progress, unit="batch", leave=False):
        items = [dataset[i] for i in batch]
        images = normalise(torch.stack([im for im, _ in items]).to(device), cfg.mean, cfg.std)
        labels = torch.stack([lab for _, lab in items]).to(device)
        for p, point in enumerate(points):
            out = model(images, budget=point.budget, threshold=point.threshold)
            conf[p] += confusion(out.logits.argmax(1), labels, k)
            cost[p] += torch.tensor([out.cost_fraction, 1.0], dtype=torch.float64, device=device)
            counts[p] += torch.tensor(out.counts, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        for t in (conf, cost, counts):
            dist.all_reduce(t)
    model.train(was_training)
    results = []
    for p, point in enumerate(points):
        iou, miou, acc = scores(conf[p].cpu().numpy())
        n = max(cost[p, 1].item(), 1.0)
        results.append(PointResult(
            budget=point.budget, threshold=point.threshold, miou=miou, pixel_acc=acc,
            iou={name: (None if math.isnan(v) else float(v)) for name, v in zip(cfg.class_names, iou)},  # type: ignore[misc]
            cost_fraction=cost[p, 0].item() / n, counts=(counts[p] / n).tolist(),
        ))
    return results


def results_table(results: list[PointResult], class_names: tuple[str, ...]) -> str:
    """A plain-text table: one row per operating point, mIoU, accuracy, compute, per-class IoU."""
    short = [n[:8] for n in class_names]
    head = f"{'setting':<16}{'mIoU':>7}{'acc':>7}{'compute':>9}  " + " ".join(f"{s:>8}" for s in short)
    lines = [head, "-" * len(head)]
    for r in results:
        name = f"thr {r.threshold:g}" if r.threshold is not None else f"budget {r.budget:g}"
        per = " ".join(f"{'-' if v is None else f'{100 * v:.1f}':>8}" for v in r.iou.values())
        lines.append(f"{name:<16}{100 * r.miou:>7.2f}{100 * r.pixel_acc:>7.2f}{100 * r.cost_fraction:>8.1f}%  {per}")
    return "\n".join(lines)


def results_json(results: list[PointResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
