"""Turn a training checkpoint into a release checkpoint: weights, config and metrics, no optimizer."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import atomic_torch_save, load_checkpoint
from ..evaluate import PointResult, results_json


def write_release(last: Path, out: Path, results: list[PointResult]) -> Path:
    ckpt = load_checkpoint(last)
    release = {k: ckpt[k] for k in ("format", "version", "config", "model")}
    release["trained_steps"] = int(ckpt.get("step", 0))
    release["train_config"] = ckpt.get("train_config", {})
    release["val_metrics"] = results_json(results)
    atomic_torch_save(release, out)
    return out
