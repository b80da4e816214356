"""The `paumer-edge` command: one verb per job, sensible defaults, a summary line after every run.

User mistakes end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import UserError, __version__


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


DATA_HELP = "dataset: synthetic, cityscapes:DIR or ade20k:DIR"


def one_line(text: str) -> str:
    """Errors are one line: fold any line breaks a library put into a message."""
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, like every other user mistake
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS
    from .runtime.backends.select import BACKENDS

    p = _Parser(prog="paumer-edge", description="Deploy PAUMER segmentation transformers: pause the tokens "
                "that are already sure, spend compute where the image is hard.")
    p.add_argument("--version", action="version", version=f"paumer-edge {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    t = sub.add_parser("train", help="train or fine-tune a pausing model (PyTorch; torchrun for several GPUs)")
    t.add_argument("--preset", default="sample", choices=sorted(PRESETS), help="model shape (default: sample)")
    t.add_argument("--config", help="model config JSON instead of a preset")
    t.add_argument("--image-size", type=parse_size, help="train at HxW instead of the preset's size")
    t.add_argument("--data", default="synthetic", help=DATA_HELP + " (default: synthetic street scenes)")
    t.add_argument("--data-scale", type=float, default=1.0,
                   help="resize real images by this first, e.g. 0.5 for half resolution (default 1)")
    t.add_argument("--scale-range", type=parse_floats, default=[0.5, 2.0],
                   help="random scale of the training crops of real images, MIN,MAX (default 0.5,2)")
    t.add_argument("--out", help="run folder for checkpoints (default: runs/<preset>)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=16, help="per process")
    t.add_argument("--lr", type=float, default=8e-4)
    t.add_argument("--train-images", type=int, help="default: 16000 synthetic scenes, every image of real data")
    t.add_argument("--val-images", type=int, default=256)
    t.add_argument("--budget-range", type=parse_floats, default=[0.25, 1.0],
                   help="budgets sampled per batch, MIN,MAX (default 0.25,1)")
    t.add_argument("--aux-weight", type=float, default=0.4, help="weight of the pausing heads' loss")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--resume", nargs="?", const="auto", help="continue from a checkpoint (default: OUT/last.pt)")
    t.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    t.add_argument("--retrofit", action="store_true",
                   help="with --init: train only the pausing heads; encoder and decoder stay frozen")
    t.add_argument("--retrofit-targets", default="model", choices=["model", "labels"],
                   help="what the heads learn: the frozen model's own predictions (default) or the labels")
    t.add_argument("--finetune", type=int, metavar="STEPS",
                   help="after --retrofit, fine-tune every weight for STEPS more steps with pausing-aware training")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--workers", type=int, default=0, help="data loader processes")
    t.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: torch default)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func="train")

    e = sub.add_parser("eval", help="mIoU, per-class IoU and pixel accuracy at a list of budgets")
    e.add_argument("--model", help="checkpoint (default: the bundled sample model)")
    e.add_argument("--data", default="synthetic", help=DATA_HELP + " (default: synthetic)")
    e.add_argument("--split", help="train | val | test (default: the held-out split: test synthetic, val real)")
    e.add_argument("--images", type=int, help="images to score (default: 1000 synthetic, every image of real data)")
    e.add_argument("--data-scale", type=float, default=1.0, help="resize real images by this first (default 1)")
    e.add_argument("--sliding", nargs="?", type=float, const=2 / 3, metavar="STRIDE",
                   help="sliding windows of the model's input size at the image's resolution; STRIDE is a "
                        "fraction of the window (default 0.667); without it, images are resized to the model")
    e.add_argument("--budgets", type=parse_floats, default=[1.0, 0.75, 0.5, 0.25])
    e.add_argument("--cost", metavar="PROFILE",
                   help="budgets as fractions of a device's measured latency, as `run` spends them there: a "
                        "`bench --json` report or a cached profile (default: MACs)")
    e.add_argument("--thresholds", type=parse_floats, help="also evaluate these entropy thresholds")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--device", default="auto")
    e.add_argument("--threads", type=int, default=0)
    e.add_argument("--json", help="write the results (and the accuracy/speed curve) here")
    e.add_argument("--plot", help="write the accuracy/speed curve here: mIoU against FPS, one point per setting")
    e.add_argument("--speed", default="measured", choices=["measured", "modelled"],
                   help="curve x axis: FPS of the PyTorch forward measured in this run (default), or the "
                        "modelled encoder compute")
    e.add_argument("--timing-frames", type=int, default=20,
                   help="images timed one by one per setting for the measured FPS (default 20)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func="evaluate")

    x = sub.add_parser("export", help="checkpoint -> deployment bundle (staged ONNX graphs, manifest, engines)")
    x.add_argument("ckpt", nargs="?", help="checkpoint (default: the bundled sample model)")
    x.add_argument("-o", "--out", help="bundle directory (default: next to the checkpoint, CKPT.paumer)")
    x.add_argument("--image-size", type=parse_size, help="HxW the graphs take (default: the checkpoint's)")
    x.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or 18 (default 18)")
    x.add_argument("--batch", type=parse_floats, default=[1, 1, 8],
                   help="batch sizes for engine profiles: N or MIN,OPT,MAX (default 1,1,8)")
    x.add_argument("--scores", action="store_true", help="the decoder also outputs class probabilities")
    x.add_argument("--no-reuse", action="store_true",
                   help="leave out the temporal-reuse graphs (a smaller bundle, a faster export; `run` then "
                        "processes every video frame in full)")
    x.add_argument("--no-verify", action="store_true", help="skip the parity check against PyTorch")
    x.add_argument("--report", help="write the verify report as JSON here")
    x.add_argument("--trt", action="store_true", help="also build TensorRT engines (needs a GPU and TensorRT)")
    _engine_args(x)
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func="export")

    v = sub.add_parser("verify", help="run a bundle's graphs against PyTorch: errors per output, label agreement")
    v.add_argument("bundle")
    v.add_argument("--ckpt", help="the checkpoint it came from (default: the one the manifest names)")
    v.add_argument("--frames", type=int, default=8, help="street frames to compare on (default 8)")
    v.add_argument("--budgets", type=parse_floats, default=[1.0, 0.5, 0.25])
    v.add_argument("--json", help="write the full report here")
    v.set_defaults(func="verify")

    b = sub.add_parser("build", help="build TensorRT engines for a bundle (GPU + TensorRT)")
    b.add_argument("bundle")
    _engine_args(b)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func="build")

    r = sub.add_parser("run", help="segment a video, camera, stream or image folder; overlay video, labels, window")
    r.add_argument("source", help="video file, camera index (0), rtsp:// or http:// URL, image folder or glob")
    r.add_argument("--model", help="bundle directory or checkpoint (default: the bundled sample, exported once)")
    r.add_argument("--budget", type=float, help="fraction of the encoder's compute to spend, in (0, 1]")
    r.add_argument("--threshold", type=float, help="pause tokens whose normalised entropy is below this")
    r.add_argument("--target-ms", type=float, help="adjust the budget frame by frame to hit this latency")
    r.add_argument("--backend", default="auto", choices=list(BACKENDS))
    r.add_argument("--cost", default="device", choices=["device", "macs"],
                   help="budgets as fractions of this device's measured latency (default; measured once and "
                        "cached) or of the multiply-accumulates, as in training and eval")
    r.add_argument("--out", help="overlay video (default: runs/run/<source>_overlay.mp4)")
    r.add_argument("--save-labels", metavar="DIR", help="write one label PNG per frame here")
    r.add_argument("--show", action="store_true", help="show the overlay in a window (q or Esc stops)")
    r.add_argument("--pause-map", nargs="?", const="beside", choices=["beside", "blend"],
                   help="show where tokens paused: beside the overlay (default) or blended into it")
    r.add_argument("--no-save", action="store_true", help="write nothing (just measure)")
    r.add_argument("--letterbox", action="store_true", help="keep the aspect ratio (pad) instead of stretching")
    r.add_argument("--sliding", nargs="?", type=float, const=2 / 3, metavar="STRIDE",
                   help="segment each frame at its own resolution with windows of the model's input size, "
                        "STRIDE a fraction of the window (default 0.667); needs a bundle exported with --scores")
    r.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=None,
                   help="temporal reuse: patches that did not change since the last frame keep what they computed "
                        "(default: on for videos, cameras and streams, off for image folders)")
    r.add_argument("--change-threshold", type=float, metavar="T",
                   help="with reuse: a patch changed when a quarter of it moved by more than T in mean intensity "
                        "(0-1) since it was computed (default 0.04)")
    r.add_argument("--refresh-every", type=int, metavar="K",
                   help="with reuse: recompute every patch every K frames, bounding drift (default 30)")
    r.add_argument("--max-frames", type=int, help="stop after this many frames")
    r.add_argument("--threads", type=int, default=0, help="inference threads (0: the backend's default)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func="run")

    n = sub.add_parser("bench", help="latency and FPS per budget, beside full.onnx and PyTorch; JSON and plot")
    n.add_argument("bundle", nargs="?", help="bundle or checkpoint (default: the bundled sample)")
    n.add_argument("--budgets", type=parse_floats, default=[1.0, 0.75, 0.5, 0.25])
    n.add_argument("--backend", default="auto", choices=list(BACKENDS))
    n.add_argument("--rounds", type=int, default=50)
    n.add_argument("--warmup", type=int, default=5)
    n.add_argument("--frame-size", type=parse_size, default=(360, 640), help="HxW of the test frames")
    n.add_argument("--threads", type=int, default=0)
    n.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    n.add_argument("--cost", default="device", choices=["device", "macs"],
                   help="budgets as fractions of this device's measured latency (default; measured afresh "
                        "and cached for `run`) or of the multiply-accumulates")
    n.add_argument("--json", help="write the results here")
    n.add_argument("--plot", help="write a PNG of FPS and compute against budget here")
    n.add_argument("--quiet", action="store_true")
    n.set_defaults(func="bench")

    m = sub.add_parser("import", help="Segmenter / timm / mmseg checkpoint -> paumer-edge checkpoint (key report)")
    m.add_argument("src", help="checkpoint file (Segmenter: checkpoint.pth with variant.yml beside it, or its folder)")
    m.add_argument("-o", "--out", help="paumer-edge checkpoint to write (default: beside SRC, <stem>-paumer-edge.pt)")
    m.add_argument("--format", choices=["segmenter", "timm", "mmseg"], help="source layout (default: detected)")
    m.add_argument("--variant", help="Segmenter's variant.yml (default: the one beside SRC)")
    m.add_argument("--num-classes", type=int, help="classes (default: the checkpoint decoder's; needed without one)")
    m.add_argument("--classes", help="class names: ade20k, cityscapes, or a file with one name per line")
    m.add_argument("--image-size", type=parse_size, help="HxW to set the model up for (default: the source's)")
    m.add_argument("--source-size", type=parse_size, help="HxW the source was trained at, if not square")
    m.add_argument("--pause-after", help="pausing points: block counts a,b,c or 'none' (default: depth/4, /2, 3/4)")
    m.add_argument("--num-heads", type=int, help="encoder attention heads (default: the config's, else width/64)")
    m.add_argument("--decoder", choices=["linear", "mask_transformer"], help="kind of a new decoder (default linear)")
    m.add_argument("--decoder-depth", type=int, default=2, help="blocks of a new mask transformer (default 2)")
    m.add_argument("--decoder-heads", type=int, help="mask transformer heads (default: width/64)")
    m.add_argument("--fresh-decoder", action="store_true", help="start a new decoder instead of the checkpoint's")
    m.add_argument("--norm-eps", type=float, help="LayerNorm eps (default: the source framework's)")
    m.add_argument("--normalization", choices=["vit", "deit", "imagenet"],
                   help="input mean/std (default: the source's)")
    m.add_argument("--mean", type=parse_floats, help="input mean R,G,B for images in [0, 1]")
    m.add_argument("--std", type=parse_floats, help="input std R,G,B for images in [0, 1]")
    m.add_argument("--name", help="model name in the config")
    m.add_argument("--seed", type=int, default=0, help="seed for the parts that start new (default 0)")
    m.add_argument("--report", help="write the key report (mapped / initialised / ignored) as JSON here")
    m.set_defaults(func="import_weights")

    i = sub.add_parser("info", help="versions, available backends and devices")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func="info")

    s = sub.add_parser("synth", help="render synthetic street images or a street video (test data)")
    s.add_argument("what", choices=["video", "images"])
    s.add_argument("out", help="video file (.mp4) or image folder")
    s.add_argument("--size", type=parse_size, default=(360, 640), help="HxW (default 360x640)")
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--fps", type=float, default=30.0)
    s.add_argument("--count", type=int, default=20, help="images to write")
    s.add_argument("--labels", action="store_true",
                   help="also write label PNGs: images, with colour versions; a video, one per frame in "
                        "OUT_labels/ (e.g. drive_labels/000000.png)")
    s.add_argument("--static", action="store_true",
                   help="video: a fixed camera watching a street (traffic and people pass, the light flickers, "
                        "sensor noise) instead of a drive; what temporal reuse is measured on")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func="synth")
    return p


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fp16", action="store_true", help="half-precision engines")
    p.add_argument("--int8", action="store_true", help="INT8 engines, calibrated on --calib images (TensorRT 10)")
    p.add_argument("--calib", help="folder of typical frames for INT8 calibration")
    p.add_argument("--engine-budgets", type=parse_floats, default=[0.5],
                   help="budgets the engines are tuned for: one profile each (default 0.5)")
    p.add_argument("--dla", type=int, help="build for this DLA core (Jetson), falling back to the GPU")
    p.add_argument("--workspace", type=float, default=2.0, help="builder workspace in GiB (default 2)")


def main(argv: Sequence[str] | None = None) -> int:
    importlib.import_module("paumer_edge.runtime._quiet")  # our errors are one line; keep OpenCV's out of them
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        verb = importlib.import_module(f"paumer_edge.verbs.{args.func}")
        return int(verb.run(args))
    except UserError as e:
        print(f"paumer-edge {args.verb}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused a file outside the checked paths: still one line, not a traceback
        where = f": '{e.filename}'" if e.filename else ""
        print(f"paumer-edge {args.verb}: error: {one_line(e.strerror or str(e))}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paumer-edge {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
