"""Pausing-aware training: a budget sampled per batch, auxiliary losses on the pausing heads,
AdamW with warm-up and cosine decay, periodic evaluation, atomic checkpoints and exact resume.

Runs on CPU or GPU, single process or under `torchrun` (DDP; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .. import UserError
from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..config import ModelConfig
from ..data.images import DrawKeys
from ..data.registry import build_dataset, check_classes
from ..evaluate import OperatingPoint, evaluate, normalise, results_table
from ..model import PausingSegmenter
from .losses import aux_loss, patch_targets, prediction_targets, segmentation_loss

RETROFIT_TARGETS = ("model", "labels")


@dataclass
class TrainConfig:
    out: str = "runs/train"
    data: str = "synthetic"  # a --data spec: synthetic, cityscapes:DIR, ade20k:DIR
    train_images: int | None = 16000  # None: every image of a real dataset
    val_images: int | None = 256
    data_scale: float = 1.0  # real images are resized by this first (e.g. 0.5: half resolution)
    scale_range: tuple[float, float] = (0.5, 2.0)  # random scale of real training crops
    steps: int = 3000
    batch_size: int = 16  # per process
    lr: float = 8e-4
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of steps
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    budget_min: float = 0.25
    budget_max: float = 1.0
    full_budget_prob: float = 0.25  # how often a batch trains the unpaused path exactly
    aux_weight: float = 0.4
    hflip: bool = True
    eval_every: int = 500
    eval_budgets: tuple[float, ...] = (1.0, 0.5)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int = 0  # torch CPU threads per process; 0 = leave torch's default
    progress: bool = True
    # retrofit: train only the pausing heads of a frozen model (encoder and decoder untouched)
    retrofit: bool = False
    retrofit_targets: str = "model"  # "model": the frozen model's own predictions; "labels": the ground truth

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UserError("steps and batch size must be positive")
        if self.retrofit_targets not in RETROFIT_TARGETS:
            raise UserError(f"retrofit targets '{self.retrofit_targets}' must be one of {', '.join(RETROFIT_TARGETS)}")
        if not (0 < self.budget_min <= self.budget_max <= 1):
            raise UserError(f"budget range [{self.budget_min}, {self.budget_max}] must lie in (0, 1]")
        if self.lr <= 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to `min_ratio`."""
    w = max(1, int(warmup * total))
    if step < w:
        return (step + 1) / w
    progress = min(1.0, (step - w) / max(1, total - w))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ResumableBatches(Sampler[list[int]]):
    """Batches of indices, reshuffled every epoch from (seed, epoch), sharded by rank, starting at any step."""

    def __init__(self, n: int, batch: int, seed: int, start_step: int, total_steps: int, rank: int, world: int):
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.total, self.rank, self.world = start_step, total_steps, rank, world
        self.per_epoch = max(1, n // (batch * world))

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            epoch, j = divmod(step, self.per_epoch)
            perm = np.random.default_rng((self.seed, epoch)).permutation(self.n)
            shard = perm[self.rank :: self.world]
            if len(shard) < self.batch:  # tiny datasets: repeat
                shard = np.resize(shard, self.batch * (j + 1))
            yield shard[j * self.batch : (j + 1) * self.batch].tolist()


def _dist_info() -> tuple[int, int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def trainable_parameters(model: PausingSegmenter, retrofit: bool) -> list[tuple[str, torch.nn.Parameter]]:
    """The (name, parameter) pairs to optimise: all, or for a retrofit only the pausing heads'.

    A retrofit freezes the rest (requires_grad False), so encoder and decoder stay bit for bit.
    """
    if retrofit:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("pause_heads."))
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _start_model(tc: TrainConfig, model_cfg: ModelConfig | None, ckpt: dict[str, Any] | None, resume: str | None,
                 init: str | None) -> PausingSegmenter:
    """The model to train: from a run being resumed, from --init's weights, or fresh from a config."""
    if ckpt is not None:
        lacking = [k for k in ("optimizer", "scheduler", "step") if k not in ckpt]
        if lacking:
            raise UserError(f"'{resume}' holds no training state ({', '.join(lacking)} missing): it is a released "
                            f"model, not a run's last.pt; fine-tune from it with --init {resume}")
        saved = ckpt.get("train_config", {})
        if saved.get("steps") and saved["steps"] != tc.steps:
            raise UserError(f"resuming a run of {saved['steps']} steps with --steps {tc.steps}; "
                            "use the same schedule")
        return model_from_checkpoint(ckpt)
    if init:
        return model_from_checkpoint(load_checkpoint(init))
    if model_cfg is None:
        raise UserError("give a preset or a model config to train from scratch")
    torch.manual_seed(tc.seed)
    return PausingSegmenter(model_cfg)


def _optimiser(model: PausingSegmenter, tc: TrainConfig,
               ckpt: dict[str, Any] | None) -> tuple[torch.optim.Optimizer, Any, int]:
    """AdamW (no decay on biases, norms, position embedding and class token) with warm-up and cosine decay, and
    the step to start from, restored from a resumed run."""
    params = trainable_parameters(model, tc.retrofit)
    decay = [p for n, p in params if p.ndim >= 2 and "pos_embed" not in n and "cls" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "pos_embed" not in n and "cls" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc.steps, tc.warmup, tc.min_lr_ratio))
    if ckpt is None:
        return opt, sched, 0
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    return opt, sched, int(ckpt["step"])


@dataclass
class StepResult:
    loss: float
    seg: float
    aux: float
    budget: float


def _train_step(net: torch.nn.Module, model: PausingSegmenter, opt: torch.optim.Optimizer, sched: Any,
                tc: TrainConfig, images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator) -> StepResult:
    """One optimisation step at a budget drawn for this batch (flips and budget from the step's own rng)."""
    cfg = model.cfg
    if tc.hflip:
        flip = torch.from_numpy(rng.random(images.shape[0]) < 0.5).to(images.device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        labels = torch.where(flip.view(-1, 1, 1), labels.flip(-1), labels)
    budget = 1.0 if rng.random() < tc.full_budget_prob else float(rng.uniform(tc.budget_min, tc.budget_max))
    if tc.retrofit:  # frozen network, unpaused: every head sees every token's own features
        budget = 1.0
    output = net(normalise(images, cfg.mean, cfg.std), budget=budget, with_aux=True)
    if tc.retrofit and tc.retrofit_targets == "model":
        targets, mass = prediction_targets(output.logits, cfg.patch_size)
    else:
        targets, mass = patch_targets(labels, cfg.patch_size, cfg.num_classes)
    main_loss = segmentation_loss(output.logits, labels)
    head_loss = aux_loss(output.aux, targets, mass)
    loss = head_loss if tc.retrofit else main_loss + tc.aux_weight * head_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tc.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    opt.step()
    sched.step()
    return StepResult(loss.item(), main_loss.item(), head_loss.item(), budget)


def train(tc: TrainConfig, model_cfg: ModelConfig | None = None, resume: str | None = None,
          init: str | None = None) -> dict[str, Any]:
    """Train (or resume) a pausing model; returns the final evaluation. Checkpoints go to `tc.out`."""
    tc.validate()
    rank, world, local_rank = _dist_info()
    device = pick_device(tc.device, local_rank)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    distributed = world > 1
    owns_group = distributed and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    main = rank == 0
    out = Path(tc.out)
    ckpt = load_checkpoint(resume) if resume else None
    model = _start_model(tc, model_cfg, ckpt, resume, init)
    cfg = model.cfg
    check_classes(cfg.num_classes, tc.data, f"model '{cfg.name}'")
    model.to(device)
    train_set, val_set = _datasets(tc, cfg, main, distributed)
    opt, sched, start = _optimiser(model, tc, ckpt)
    net: torch.nn.Module = DistributedDataParallel(model) if distributed else model
    sampler = ResumableBatches(len(train_set), tc.batch_size, tc.seed, start, tc.steps, rank, world)
    keyed = getattr(train_set, "keyed", False)  # random crops of real data: keys say which draw
    loader = DataLoader(train_set, batch_sampler=DrawKeys(sampler, start) if keyed else sampler,
                        num_workers=tc.workers)
    points = [OperatingPoint(b) for b in tc.eval_budgets]
    history: list[dict[str, Any]] = list(ckpt.get("history", [])) if ckpt else []
    bar = tqdm(total=tc.steps, initial=start, desc="training", disable=not (main and tc.progress), unit="step",
               dynamic_ncols=True)
    seen, t0, ema = 0, time.perf_counter(), None
    results: list = []
    model.train()
    step = start
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        rng = np.random.default_rng((tc.seed, rank, step))  # per step, so a resumed run repeats exactly
        done = _train_step(net, model, opt, sched, tc, images, labels, rng)
        step += 1
        seen += images.shape[0] * world
        ema = done.loss if ema is None else 0.98 * ema + 0.02 * done.loss
        if main:
            history.append({"step": step, "loss": round(done.loss, 5), "seg": round(done.seg, 5),
                            "aux": round(done.aux, 5), "budget": round(done.budget, 3)})
        bar.set_postfix(loss=f"{ema:.3f}", aux=f"{done.aux:.3f}", budget=f"{done.budget:.2f}",
                        img_s=f"{seen / (time.perf_counter() - t0):.1f}")
        bar.update()
        if step % tc.eval_every == 0 or step == tc.steps:
            results = evaluate(model, val_set, points, tc.batch_size, device, progress=False)
            if main:
                history.append({"step": step, "eval": {f"{r.budget:g}": round(r.miou, 5) for r in results}})
                bar.write(f"step {step}: " + ", ".join(f"budget {r.budget:g} mIoU {100 * r.miou:.2f}"
                                                      for r in results))
                save_checkpoint(out / "last.pt", model, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                                step=step, train_config=json.loads(json.dumps(dataclasses.asdict(tc))),
                                history=history)
    bar.close()
    if not results:  # resumed a finished run: evaluate what is there
        results = evaluate(model, val_set, points, tc.batch_size, device, progress=False)
    if main:
        print(results_table(results, cfg.class_names))
    if distributed:
        dist.barrier()
    if owns_group:  # a live group at interpreter exit aborts gloo's threads (SIGABRT on some ranks)
        dist.destroy_process_group()
    return {"step": step, "results": results, "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}


def _datasets(tc: TrainConfig, cfg: ModelConfig, main: bool, distributed: bool) -> tuple[Any, Any]:
    """Training and validation data: rank 0 renders the cache, the others wait and then read it."""
    def build(progress: bool) -> tuple[Any, Any]:
        return (build_dataset(tc.data, "train", cfg.image_size, tc.train_images, progress=progress, train=True,
                              seed=tc.seed, scale=tc.data_scale, scale_range=tc.scale_range),
                build_dataset(tc.data, "val", cfg.image_size, tc.val_images, progress=progress, scale=tc.data_scale))

    sets = build(tc.progress) if main else None
    if distributed:
        dist.barrier()
    return sets if sets is not None else build(False)
