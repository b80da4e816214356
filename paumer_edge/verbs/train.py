"""`paumer-edge train`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .. import UserError
from ..config import ModelConfig, preset
from ..data.registry import parse_data_spec
from ..training import TrainConfig, train
from ..training.release import write_release


def run(a: argparse.Namespace) -> int:
    spec = parse_data_spec(a.data)
    cfg, own_classes = None, False
    if a.config:
        path = Path(a.config)
        if not path.is_file():
            raise UserError(f"model config '{path}' does not exist")
        try:
            raw = json.loads(path.read_text())
            cfg = ModelConfig.from_dict(raw)
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise UserError(f"model config '{path}' is not valid: {e}") from None
        own_classes = "class_names" in raw
    elif not (a.resume or a.init):
        cfg = preset(a.preset)
    if cfg is not None and not own_classes:  # a fresh model predicts the dataset's classes
        cfg = cfg.replace(class_names=spec.labels.classes, palette=spec.labels.palette)
    if cfg is not None and a.image_size:
        cfg = cfg.replace(image_size=a.image_size)
    if a.retrofit and not (a.init or a.resume):
        raise UserError("--retrofit trains the pausing heads of an existing model: give it with --init CKPT")
    if a.finetune is not None and not a.retrofit:
        raise UserError("--finetune follows --retrofit; to fine-tune a whole model, give --init CKPT alone")
    if a.finetune is not None and a.resume not in (None, "auto"):
        raise UserError("with --retrofit --finetune, --resume takes no path: it continues both phases in --out")
    out = Path(a.out or f"runs/{cfg.name if cfg else 'train'}")
    common = dict(
        data=a.data, train_images=a.train_images, val_images=a.val_images, batch_size=a.batch_size, lr=a.lr,
        budget_min=a.budget_range[0], budget_max=a.budget_range[-1], aux_weight=a.aux_weight,
        eval_every=a.eval_every, seed=a.seed, device=a.device, workers=a.workers, threads=a.threads,
        progress=not a.quiet, data_scale=a.data_scale, scale_range=(a.scale_range[0], a.scale_range[-1]),
    )
    t0 = time.perf_counter()
    if a.finetune is None:  # one run: training, fine-tuning, or a retrofit alone
        tc = TrainConfig(out=str(out), steps=a.steps, retrofit=a.retrofit, retrofit_targets=a.retrofit_targets,
                         **common)  # type: ignore[arg-type]
        resume = str(out / "last.pt") if a.resume == "auto" else a.resume
        _report(train(tc, cfg, resume=resume, init=a.init), out, "trained", t0)
        return 0
    # retrofit the heads (OUT/retrofit), then fine-tune everything from there (OUT)
    first = out / "retrofit"
    tc = TrainConfig(out=str(first), steps=a.steps, retrofit=True, retrofit_targets=a.retrofit_targets,
                     **common)  # type: ignore[arg-type]
    resume = first / "last.pt" if a.resume and (first / "last.pt").is_file() else None
    _report(train(tc, None, resume=str(resume) if resume else None, init=None if resume else a.init), first,
            "retrofitted the pausing heads in", t0)
    t0 = time.perf_counter()
    tc = TrainConfig(out=str(out), steps=a.finetune, **common)  # type: ignore[arg-type]
    resume = out / "last.pt" if a.resume and (out / "last.pt").is_file() else None
    _report(train(tc, None, resume=str(resume) if resume else None, init=None if resume else str(first / "last.pt")),
            out, "fine-tuned", t0)
    return 0


def _report(summary: dict, out: Path, what: str, t0: float) -> None:
    """Write the release checkpoint (rank 0) and print the summary line."""
    if int(os.environ.get("RANK", 0)) != 0:
        return
    release = write_release(out / "last.pt", out / "model.pt", summary["results"])
    best = " ".join(f"budget {r.budget:g}: {100 * r.miou:.2f}" for r in summary["results"])
    print(f"{what} {summary['step']} steps in {time.perf_counter() - t0:.0f} s "
          f"({summary['images_per_s']:.1f} img/s); val mIoU {best}; model: {release}")
