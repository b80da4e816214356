"""`paumer-edge train`: train or fine-tune a pausing model (PyTorch; torchrun for several processes or machines)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from .. import UserError
from ..config import PRESETS, ModelConfig, preset
from ..config_check import check_model_memory
from ..core.knobs import (
    check_budget_range,
    check_count,
    check_number,
    check_seed,
    check_size,
    check_threads,
    max_threads,
)
from ..core.paths import Input, Output, guard_paths, same_file
from .bundles import needs_torch
from .params import DATA_HELP, FLOATS, SIZE, memory_limit_option, quiet

if TYPE_CHECKING:
    from ..data.registry import DataSpec

MAX_SCALE = 4.0  # resizing real images beyond 4x only costs memory
MAX_BATCH = 4096


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
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    needs_torch("train")
    return run(SimpleNamespace(**options))


def check_knobs(a: SimpleNamespace) -> None:
    """Every knob of `train` by the one rule for it (paumer_edge.core.knobs)."""
    a.image_size = None if a.image_size is None else check_size(a.image_size, "--image-size")
    a.data_scale = check_number(a.data_scale, "--data-scale", f"a scale factor in (0, {MAX_SCALE:g}]", 0.0, MAX_SCALE,
                                lo_open=True)
    if len(a.scale_range) not in (1, 2):
        raise UserError(f"--scale-range takes MIN,MAX, got {len(a.scale_range)} values")
    a.scale_range = [check_number(v, "--scale-range", f"scale factors in (0, {MAX_SCALE:g}]", 0.0, MAX_SCALE,
                                  lo_open=True) for v in a.scale_range]
    if a.scale_range[0] > a.scale_range[-1]:
        raise UserError(f"--scale-range {a.scale_range[0]:g},{a.scale_range[-1]:g}: MIN must not exceed MAX")
    a.steps = check_count(a.steps, "--steps")
    a.batch_size = check_count(a.batch_size, "--batch-size", 1, MAX_BATCH)
    a.lr = check_number(a.lr, "--lr", "a learning rate in (0, 10]", 0.0, 10.0, lo_open=True)
    a.train_images = None if a.train_images is None else check_count(a.train_images, "--train-images")
    a.val_images = check_count(a.val_images, "--val-images")
    a.budget_range = list(check_budget_range(a.budget_range, "--budget-range"))
    a.aux_weight = check_number(a.aux_weight, "--aux-weight", "a loss weight in [0, 1000]", 0.0, 1000.0)
    a.eval_every = check_count(a.eval_every, "--eval-every")
    a.seed = check_seed(a.seed, "--seed")
    a.workers = check_count(a.workers, "--workers", 0, max_threads(), what=f"0 (load in the main process) or up "
                            f"to {max_threads()} loader processes")
    a.threads = check_threads(a.threads, "--threads")
    a.finetune = None if a.finetune is None else check_count(a.finetune, "--finetune")


def guard(a: SimpleNamespace, out: Path, spec: DataSpec) -> None:
    """What training reads must survive what it writes: OUT/last.pt and OUT/model.pt (and OUT/retrofit/ ...).
    Continuing a run in place (--resume OUT/last.pt) is the one input that is meant to be rewritten."""
    runs = [out / "retrofit", out] if a.finetune is not None else [out]
    outputs = [o for d in runs for o in (Output(f"--out's {f}", d / f) for f in ("last.pt", "model.pt"))]
    resume = str(out / "last.pt") if a.resume == "auto" else a.resume
    continued = resume is not None and any(same_file(resume, o.path) for o in outputs if o.path.name == "last.pt")
    guard_paths([*Input.of("--config", a.config), *Input.of("--init", a.init), *Input.of("--data", spec.root, "folder"),
                 *([] if continued else Input.of("--resume", resume))], outputs)


def run(a: SimpleNamespace) -> int:
    from ..data.registry import parse_data_spec
    from ..training import TrainConfig, train
    from ..training.trainer import pick_device

    check_knobs(a)
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
    guard(a, out, spec)
    if cfg is not None and pick_device(a.device).type == "cpu":  # on a GPU the activations live on the device
        check_model_memory(cfg, a.batch_size, training=True)
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
