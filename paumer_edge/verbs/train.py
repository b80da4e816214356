"""`paumer-edge train`: train or fine-tune a pausing model (PyTorch; torchrun for several processes or machines)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from .. import UserError
from ..config import PRESETS
from .bundles import needs_torch
from .params import DATA_HELP, FLOATS, SIZE, quiet


@click.command("train", help="Train or fine-tune a pausing model: each batch at a budget drawn from --budget-range, "
               "the pausing heads learning the class mix of every patch; atomic checkpoints in OUT (last.pt with "
               "the training state, model.pt for release). torchrun for several GPUs or machines.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="sample", help="Model shape.")
@click.option("--config", metavar="FILE", help="Model config JSON instead of a preset.")
@click.option("--image-size", type=SIZE, help="Train at HxW instead of the preset's size.")
@click.option("--data", default="synthetic", help=DATA_HELP)
@click.option("--data-scale", type=float, default=1.0, help="Resize real images by this first, e.g. 0.5.")
@click.option("--scale-range", type=FLOATS, default="0.5,2", help="Random scale of the crops of real images, MIN,MAX.")
@click.option("--out", metavar="DIR", help="Run folder for checkpoints [default: runs/<preset>].")
@click.option("--steps", type=int, default=3000, help="Optimisation steps.")
@click.option("--batch-size", type=int, default=16, help="Images per step, per process.")
@click.option("--lr", type=float, default=8e-4, help="Peak learning rate (AdamW, warm-up then cosine).")
@click.option("--train-images", type=int, help="[default: 16000 synthetic scenes, every image of real data]")
@click.option("--val-images", type=int, default=256, help="Images evaluated every --eval-every steps.")
@click.option("--budget-range", type=FLOATS, default="0.25,1", help="Budgets sampled per batch, MIN,MAX.")
@click.option("--aux-weight", type=float, default=0.4, help="Weight of the pausing heads' loss.")
@click.option("--eval-every", type=int, default=500, help="Steps between evaluations (and checkpoints).")
@click.option("--resume", is_flag=False, flag_value="auto", default=None, metavar="CKPT",
              help="Continue a run exactly where it stopped (OUT/last.pt when given bare).")
@click.option("--init", metavar="CKPT", help="Start from this checkpoint's weights (fine-tuning).")
@click.option("--retrofit", is_flag=True, help="With --init: train only the pausing heads; the rest stays frozen.")
@click.option("--retrofit-targets", type=click.Choice(["model", "labels"]), default="model",
              help="What the heads learn: the frozen model's own predictions, or the labels' class mix.")
@click.option("--finetune", type=int, metavar="STEPS",
              help="After --retrofit, fine-tune every weight for STEPS more steps with pausing-aware training.")
@click.option("--seed", type=int, default=0, help="Seed of the model, the data and every draw.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=int, default=0, help="Data loader processes.")
@click.option("--threads", type=int, default=0, help="CPU threads per process (0: PyTorch's default).")
@quiet
def command(**options: Any) -> int:
    needs_torch("train")
    return run(SimpleNamespace(**options))


def run(a: SimpleNamespace) -> int:
    from ..config import ModelConfig, preset
    from ..data.registry import parse_data_spec
    from ..training import TrainConfig, train

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
    from ..training.release import write_release

    if int(os.environ.get("RANK", 0)) != 0:
        return
    release = write_release(out / "last.pt", out / "model.pt", summary["results"])
    best = " ".join(f"budget {r.budget:g}: {100 * r.miou:.2f}" for r in summary["results"])
    print(f"{what} {summary['step']} steps in {time.perf_counter() - t0:.0f} s "
          f"({summary['images_per_s']:.1f} img/s); val mIoU {best}; model: {release}")
