"""`paumer-edge train`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .. import UserError
from ..config import ModelConfig, preset
from ..training import TrainConfig, train
from ..training.release import write_release


def run(a: argparse.Namespace) -> int:
    cfg = None
    if a.config:
        path = Path(a.config)
        if not path.is_file():
            raise UserError(f"model config '{path}' does not exist")
        try:
            cfg = ModelConfig.from_json(path.read_text())
        except (json.JSONDecodeError, TypeError) as e:
            raise UserError(f"model config '{path}' is not valid: {e}") from None
    elif not (a.resume or a.init):
        cfg = preset(a.preset)
    if cfg is not None and a.image_size:
        cfg = cfg.replace(image_size=a.image_size)
    out = a.out or f"runs/{cfg.name if cfg else 'train'}"
    tc = TrainConfig(
        out=out, data=a.data, train_images=a.train_images, val_images=a.val_images, steps=a.steps,
        batch_size=a.batch_size, lr=a.lr, budget_min=a.budget_range[0], budget_max=a.budget_range[-1],
        aux_weight=a.aux_weight, eval_every=a.eval_every, seed=a.seed, device=a.device, workers=a.workers,
        threads=a.threads, progress=not a.quiet,
    )
    resume = a.resume
    if resume == "auto":
        resume = str(Path(out) / "last.pt")
    t0 = time.perf_counter()
    summary = train(tc, cfg, resume=resume, init=a.init)
    if int(os.environ.get("RANK", 0)) == 0:
        release = write_release(Path(out) / "last.pt", Path(out) / "model.pt", summary["results"])
        best = " ".join(f"budget {r.budget:g}: {100 * r.miou:.2f}" for r in summary["results"])
        print(f"trained {summary['step']} steps in {time.perf_counter() - t0:.0f} s "
              f"({summary['images_per_s']:.1f} img/s); val mIoU {best}; model: {release}")
    return 0
