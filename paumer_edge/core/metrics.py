"""Segmentation scores from a confusion matrix (numpy only), shared by PyTorch evaluation and the runtime's
comparisons, so both count a pixel the same way."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255  # labels that count for nothing (the datasets' ignore value)


def confusion_counts(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """[K, K] int64 counts of (true class, predicted class) over the pixels whose label is not ignored."""
    labels = np.asarray(labels).astype(np.int64, copy=False).ravel()
    pred = np.asarray(pred).astype(np.int64, copy=False).ravel()
    valid = labels != IGNORE_INDEX
    return np.bincount(labels[valid] * k + pred[valid], minlength=k * k).reshape(k, k)


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
