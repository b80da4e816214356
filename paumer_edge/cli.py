"""The `paumer-edge` command: one verb per job, sensible defaults, a summary line after every run.

User mistakes end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import UserError, __version__

Handler = Callable[[argparse.Namespace], int]


# ---- argument parsing helpers ---------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (or a single number for a square) -> (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size; write HEIGHTxWIDTH, e.g. 128x256") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size; write HEIGHTxWIDTH, e.g. 128x256")
    return parts[0], parts[1]


def parse_floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, like every other user mistake
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---- verbs ----------------------------------------------------------------------------------
def cmd_train(a: argparse.Namespace) -> int:
    from .config import ModelConfig, preset
    from .training import TrainConfig, train
    from .training.release import write_release

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


def cmd_eval(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_model
    from .data.dataset import build_dataset
    from .evaluate import OperatingPoint, evaluate, results_json, results_table
    from .pausing import check_budget, check_threshold
    from .training.trainer import pick_device

    points = [OperatingPoint(check_budget(b)) for b in a.budgets]
    points += [OperatingPoint(1.0, check_threshold(t)) for t in (a.thresholds or [])]
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model, device)
    data = build_dataset(a.data, a.split, model.cfg.image_size, a.images, progress=not a.quiet)
    t0 = time.perf_counter()
    results = evaluate(model, data, points, a.batch_size, device, progress=not a.quiet)
    dt = time.perf_counter() - t0
    print(results_table(results, model.cfg.class_names))
    if a.json:
        payload = {"model": str(a.model or "sample"), "data": a.data, "split": a.split, "images": a.images,
                   "seconds": round(dt, 2), "results": results_json(results)}
        _write_json(Path(a.json), payload)
    print(f"evaluated {a.images} images at {len(points)} settings in {dt:.1f} s"
          + (f"; results in {a.json}" if a.json else ""))
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .info import collect_info, format_info

    info = collect_info()
    print(json.dumps(info, indent=2) if a.json else format_info(info))
    return 0


def cmd_synth(a: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from .data.classes import STREET_PALETTE
    from .data.streets import check_video_path, derive_seed, street_frames, street_scene, write_video

    t0 = time.perf_counter()
    if a.what == "video":
        check_video_path(a.out)
        frames = street_frames(a.seed, a.size, a.seconds, a.fps)
        total = max(1, int(round(a.seconds * a.fps)))
        bar = tqdm(total=total, desc="rendering", unit="frame", disable=a.quiet)

        def images():
            for img, _ in frames:
                bar.update()
                yield img

        n = write_video(a.out, images(), a.fps)
        bar.close()
        print(f"wrote {n} frames ({a.size[0]}x{a.size[1]}, {a.fps:g} fps) to {a.out} "
              f"in {time.perf_counter() - t0:.1f} s")
        return 0
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    palette = np.array(STREET_PALETTE, np.uint8)
    for i in tqdm(range(a.count), desc="rendering", unit="img", disable=a.quiet):
        img, lab = street_scene(derive_seed(a.seed, i), a.size)
        cv2.imwrite(str(out / f"street_{i:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if a.labels:
            cv2.imwrite(str(out / f"street_{i:05d}_labels.png"), lab)
            cv2.imwrite(str(out / f"street_{i:05d}_color.png"), cv2.cvtColor(palette[lab], cv2.COLOR_RGB2BGR))
    print(f"wrote {a.count} images to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


# ---- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    p = _Parser(prog="paumer-edge", description="Deploy PAUMER segmentation transformers: pause the tokens "
                "that are already sure, spend compute where the image is hard.")
    p.add_argument("--version", action="version", version=f"paumer-edge {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    t = sub.add_parser("train", help="train or fine-tune a pausing model (PyTorch; torchrun for several GPUs)")
    t.add_argument("--preset", default="sample", choices=sorted(PRESETS), help="model shape (default: sample)")
    t.add_argument("--config", help="model config JSON instead of a preset")
    t.add_argument("--image-size", type=parse_size, help="train at HxW instead of the preset's size")
    t.add_argument("--data", default="synthetic", help="dataset (default: synthetic street scenes)")
    t.add_argument("--out", help="run folder for checkpoints (default: runs/<preset>)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=16, help="per process")
    t.add_argument("--lr", type=float, default=8e-4)
    t.add_argument("--train-images", type=int, default=16000)
    t.add_argument("--val-images", type=int, default=256)
    t.add_argument("--budget-range", type=parse_floats, default=[0.25, 1.0],
                   help="budgets sampled per batch, MIN,MAX (default 0.25,1)")
    t.add_argument("--aux-weight", type=float, default=0.4, help="weight of the pausing heads' loss")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--resume", nargs="?", const="auto", help="continue from a checkpoint (default: OUT/last.pt)")
    t.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--workers", type=int, default=0, help="data loader processes")
    t.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: torch default)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="mIoU, per-class IoU and pixel accuracy at a list of budgets")
    e.add_argument("--model", help="checkpoint (default: the bundled sample model)")
    e.add_argument("--data", default="synthetic")
    e.add_argument("--split", default="test", help="train | val | test (default: test, held out)")
    e.add_argument("--images", type=int, default=1000, help="held-out images (default 1000)")
    e.add_argument("--budgets", type=parse_floats, default=[1.0, 0.75, 0.5, 0.25])
    e.add_argument("--thresholds", type=parse_floats, help="also evaluate these entropy thresholds")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--device", default="auto")
    e.add_argument("--threads", type=int, default=0)
    e.add_argument("--json", help="write the results here")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="versions, available backends and devices")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("synth", help="render synthetic street images or a street video (test data)")
    s.add_argument("what", choices=["video", "images"])
    s.add_argument("out", help="video file (.mp4) or image folder")
    s.add_argument("--size", type=parse_size, default=(360, 640), help="HxW (default 360x640)")
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--fps", type=float, default=30.0)
    s.add_argument("--count", type=int, default=20, help="images to write")
    s.add_argument("--labels", action="store_true", help="also write label PNGs (and colour versions)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"paumer-edge {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paumer-edge {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
