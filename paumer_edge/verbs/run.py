"""`paumer-edge run SOURCE`: segment a video, camera, stream or image folder; write and show the results."""

from __future__ import annotations

import argparse
import hashlib
from functools import partial
from pathlib import Path

import numpy as np

from .. import UserError
from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint
from ..core.cache import cache_root
from ..core.errors import SourceError
from ..core.temporal import ReuseOptions
from ..core.video import VideoSink
from ..export import GRAPHS_REVISION
from ..runtime.bundle import MANIFEST, BundleError, load_bundle
from ..runtime.loop import run_stream
from ..runtime.pipeline import Pipeline, Result
from ..runtime.preprocess import grid_to_frame, to_rgb_uint8
from ..runtime.sinks import LabelSink, WindowSink
from ..runtime.sliding import SlidingPipeline
from ..runtime.sources import Frame, open_source
from ..runtime.visualize import annotate, compose


def bundle_for(model: str | None, quiet: bool = False, scores: bool = False) -> Path:
    """A bundle directory as given, or the cached export of a checkpoint (the sample when None).

    `scores`: the export's decoder also gives class probabilities (what sliding windows average)."""
    if model is not None and Path(model).is_dir():
        return Path(model)
    ckpt = resolve_checkpoint(model)
    if not ckpt.is_file():
        raise UserError(f"model '{model}' is neither a bundle directory nor a checkpoint file")
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    name = "sample" if ckpt == SAMPLE_CHECKPOINT else ckpt.stem
    out = cache_root() / "bundles" / f"{name}-{digest}{'-scores' if scores else ''}.paumer"
    if not _usable(out):
        from ..export.exporter import ExportOptions, export_bundle

        if not quiet:
            print(f"exporting {ckpt} once to {out} ...")
        export_bundle(model_from_checkpoint(load_checkpoint(ckpt)), out, ExportOptions(scores=scores), source=str(ckpt),
                      progress=not quiet)
    return out


def _usable(cached: Path) -> bool:
    """Whether a cached export is there, intact and current; a damaged one (an edited file, a crash of an older
    version mid-export) is exported again rather than refused: the cache holds only what it can remake."""
    if not (cached / MANIFEST).exists():
        return False
    try:
        bundle = load_bundle(cached)
    except BundleError:
        return False
    # an export by an older exporter is remade: the cache should give what exporting now gives
    return bundle.manifest.exporter.graphs_revision == GRAPHS_REVISION


def reuse_choice(a: argparse.Namespace, source_kind: str, bundle: Path) -> ReuseOptions | None:
    """Temporal reuse for this run: asked for (--reuse / --no-reuse) or the default (on for videos, cameras and
    streams, off for image folders and sliding windows, off with a note for a bundle from before format 3);
    None: off. The knobs without reuse are a mistake said in one line."""
    knobs = {k: v for k, v in (("threshold", a.change_threshold), ("refresh_every", a.refresh_every)) if v is not None}
    asked = a.reuse
    if asked is None:
        asked = source_kind != "images" and a.sliding is None and a.backend != "trt"
        if asked and not load_bundle(bundle, check_hashes=False).manifest.has_reuse:
            if not a.quiet:
                print(f"note: {bundle} was exported before temporal reuse (format 3): every frame runs in full; "
                      "export it again to reuse unchanged patches")
            asked = False
    if not asked:
        if knobs:
            raise UserError("--change-threshold and --refresh-every tune temporal reuse, which is off here: add "
                            "--reuse, or leave them out")
        return None
    return ReuseOptions(**knobs)


def run(a: argparse.Namespace) -> int:
    if a.max_frames is not None and a.max_frames < 1:
        raise UserError(f"--max-frames {a.max_frames}: give a positive number of frames")
    if a.threads < 0:
        raise UserError(f"--threads {a.threads}: give 0 (the backend's default) or a positive number")
    if a.target_ms is not None and (a.budget is not None or a.threshold is not None):
        raise UserError("--target-ms sets the budget itself: give it alone, or --budget / --threshold")
    source = open_source(a.source)
    if a.sliding is not None and a.letterbox:
        raise UserError("--sliding covers the whole frame at its own resolution: leave out --letterbox")
    bundle = bundle_for(a.model, a.quiet, scores=a.sliding is not None)
    reuse = reuse_choice(a, source.kind, bundle)
    # sliding windows: the same Pipeline, segmenting each frame window by window (runtime/sliding.py)
    pipe_class = partial(SlidingPipeline, stride=a.sliding) if a.sliding is not None else Pipeline
    pipe = pipe_class(bundle, backend=a.backend, budget=a.budget if a.budget is not None else 1.0,
                    threshold=a.threshold, target_ms=a.target_ms, letterbox=a.letterbox,
                    stage_map=a.pause_map is not None, threads=a.threads, shared_threads=True, cost=a.cost,
                    reuse=reuse or False)
    info = pipe.info
    out = a.out
    if out is None and not (a.save_labels or a.show or a.no_save):
        stem = Path(a.source).stem if not a.source.isdigit() else f"camera{a.source}"
        out = str(Path("runs") / "run" / f"{stem or 'stream'}_overlay.mp4")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    video = VideoSink(out, source.fps or 30.0) if out else None
    labels = LabelSink(a.save_labels) if a.save_labels else None
    window = WindowSink() if a.show else None
    if not a.quiet:
        print(f"{source.description} -> {pipe.describe()} ({pipe.cost_source})")

    def view(frame: Frame, result: Result) -> np.ndarray:
        smap = grid_to_frame(result.stage_map, result.placement) if result.stage_map is not None else None
        kept = grid_to_frame(result.reused, result.placement) if result.reused is not None and smap is not None \
            else None
        img = compose(to_rgb_uint8(frame.image), result.labels, info.palette, smap, info.num_stages,
                      a.pause_map or "beside", reused=kept)
        tokens = "/".join(str(c) for c in result.stats.counts)
        if result.stats.reused and any(result.stats.reused):
            tokens += " +" + "/".join(str(c) for c in result.stats.reused) + " reused"
        return annotate(img, f"budget {result.stats.budget:.2f}  tokens {tokens}  {result.total_ms:.0f} ms")

    def consume(frame: Frame, result: Result) -> None:
        if labels is not None:
            labels.write(frame.name, result.labels, frame.index, frame.source)
        if video is not None:
            video.write(view(frame, result))

    def show(frame: Frame, result: Result) -> bool:
        return window.write(view(frame, result)) if window is not None else True

    ok = False
    lost: SourceError | None = None
    try:
        pipe.warmup()
        summary = run_stream(pipe, source, consume, show if window else None, a.max_frames, progress=not a.quiet)
        ok = True
    except SourceError as e:  # a stream that dropped for good: the frames before it are good results, keep them
        if not e.after_frames:
            raise
        lost, ok = e, True
    finally:
        if video is not None:
            video.close(keep=ok)
        if labels is not None:
            labels.close(strict=ok)
        if window is not None:
            window.close()
    wrote = [f"video {out}" if video is not None and video.frames else "",
             f"labels in {a.save_labels}" if labels is not None and labels.rows else ""]
    where = ", ".join(x for x in wrote if x)
    if lost is not None:
        raise SourceError(f"{lost}" + (f"; kept the results until then ({where})" if where else ""))
    print(summary.line() + (f"; wrote {where}" if where else ""))
    return 0
