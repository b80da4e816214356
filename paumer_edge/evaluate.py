"""Evaluation: per-class IoU, mIoU and pixel accuracy at a list of budgets (and thresholds).

Confusion matrices are summed across processes when run under torch.distributed, so training can
evaluate on a sharded validation set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from .core.metrics import scores
from .data.classes import IGNORE_INDEX
from .model import PausingSegmenter
from .sliding import sliding_probs


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


@dataclass
class Prediction:
    labels: torch.Tensor  # [B, H, W] at the images' own size
    cost_fraction: float  # modelled encoder compute per forward (mean over windows when sliding)
    counts: list[float]  # active patch tokens per stage


def predict(model: PausingSegmenter, images: torch.Tensor, point: OperatingPoint, sliding: float | None = None,
            window_batch: int = 8) -> Prediction:
    """Labels for normalised images [B, 3, H, W] of one size at one operating point.

    Images of the model's size take one forward. Others are resized to the model and the logits
    back to the image (bilinear), or, with `sliding` (the stride as a fraction of the window),
    segmented window by window at their own resolution.
    """
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    size = (int(model.cfg.image_size[0]), int(model.cfg.image_size[1]))
    if sliding is not None:
        parts = [sliding_probs(model, im, point.budget, point.threshold, sliding, window_batch) for im in images]
        return Prediction(torch.stack([r.probs.argmax(0) for r in parts]),
                          sum(r.cost_fraction for r in parts) / len(parts),
                          [sum(col) / len(parts) for col in zip(*(r.counts for r in parts))])
    if hw == size:
        out = model(images, budget=point.budget, threshold=point.threshold)
        return Prediction(out.logits.argmax(1), out.cost_fraction, [float(c) for c in out.counts])
    shrink = hw[0] > size[0] or hw[1] > size[1]
    x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    out = model(x, budget=point.budget, threshold=point.threshold)
    logits = F.interpolate(out.logits, size=hw, mode="bilinear", align_corners=False)
    return Prediction(logits.argmax(1), out.cost_fraction, [float(c) for c in out.counts])


def same_size_groups(items: list[tuple[torch.Tensor, torch.Tensor]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Items split into runs of one image size, in order (real datasets mix sizes; synthetic never does)."""
    groups: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for item in items:
        groups.setdefault(tuple(item[0].shape), []).append(item)
    return list(groups.values())


def confusion(pred: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    valid = labels != IGNORE_INDEX
    idx = labels[valid] * k + pred[valid]
    return torch.bincount(idx, minlength=k * k).reshape(k, k)


def _shard(n: int) -> range:
    if dist.is_available() and dist.is_initialized():
        return range(dist.get_rank(), n, dist.get_world_size())
    return range(n)


Predictor = Callable[[torch.Tensor, OperatingPoint], Prediction]  # normalised images, a setting -> labels


@torch.no_grad()
def evaluate(model: PausingSegmenter, dataset: Dataset, points: list[OperatingPoint], batch_size: int = 16,
             device: str | torch.device = "cpu", progress: bool = True, sliding: float | None = None,
             predictor: Predictor | None = None) -> list[PointResult]:
    """Score `model` on `dataset` at every operating point (see `predict` for images of other sizes).

    `predictor` replaces the PyTorch forward with another way of predicting the same model (e.g. its deployed
    graphs in the runtime: `runtime_eval.RuntimePredictor`); `model` still gives classes and normalisation."""
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
        for items in same_size_groups([dataset[i] for i in batch]):
            images = normalise(torch.stack([im for im, _ in items]).to(device), cfg.mean, cfg.std)
            labels = torch.stack([lab for _, lab in items]).to(device)
            for p, point in enumerate(points):
                # a threshold's token count depends on the image: score it one image (and window) at a time,
                # as it runs when deployed, not with the count the most uncertain image of a batch needs
                step = 1 if point.threshold is not None else len(images)
                for i in range(0, len(images), step):
                    if predictor is not None:
                        pred = predictor(images[i : i + step], point)
                    else:
                        pred = predict(model, images[i : i + step], point, sliding, batch_size if step > 1 else 1)
                    conf[p] += confusion(pred.labels, labels[i : i + step], k)
                    cost[p] += torch.tensor([pred.cost_fraction, 1.0], dtype=torch.float64, device=device)
                    counts[p] += torch.tensor(pred.counts, dtype=torch.float64, device=device)
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
    """Every setting's results, named as the tables print it ("budget 0.5", "threshold 0.2")."""
    return [{"setting": OperatingPoint(r.budget, r.threshold).label, **asdict(r)} for r in results]
