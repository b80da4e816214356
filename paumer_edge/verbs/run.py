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
from ..core.knobs import check_budget, check_count, check_stride, check_target_ms, check_threads, check_threshold
from ..core.paths import Input, Output, guard_paths
from ..core.video import VideoSink
from ..export import GRAPHS_REVISION
from ..runtime.bundle import MANIFEST, BundleError, load_bundle
from ..runtime.loop import run_stream
from ..runtime.pipeline import Pipeline, Result
from ..runtime.preprocess import grid_to_frame, to_rgb_uint8
from ..runtime.sinks import LabelSink, WindowSink
from ..runtime.sliding import SlidingPipeline
from ..runtime.sources import Frame, Source, open_source
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
    return bundle.manifest.get("exporter", {}).get("graphs_revision") == GRAPHS_REVISION


def check_knobs(a: argparse.Namespace) -> None:
    """Every knob of `run` by the one rule for it (paumer_edge.core.knobs), before anything is opened."""
    a.budget = None if a.budget is None else check_budget(a.budget, "--budget")
    a.threshold = None if a.threshold is None else check_threshold(a.threshold, "--threshold")
    a.target_ms = check_target_ms(a.target_ms, "--target-ms")
    a.threads = check_threads(a.threads, "--threads")
    a.max_frames = None if a.max_frames is None else check_count(a.max_frames, "--max-frames")
    a.sliding = None if a.sliding is None else check_stride(a.sliding, "--sliding")
    if a.target_ms is not None and (a.budget is not None or a.threshold is not None):
        raise UserError("--target-ms sets the budget itself: give it alone, or --budget / --threshold")
    if a.sliding is not None and a.letterbox:
        raise UserError("--sliding covers the whole frame at its own resolution: leave out --letterbox")


def source_inputs(source: Source) -> list[Input]:
    """What a source reads from disk: a video file, or image files and the folders they are in."""
    files = [Path(f) for f in getattr(source, "files", [])]
    if source.kind == "video":
        files.append(Path(str(source.target)))
    folders = sorted({f.parent for f in files if source.kind == "images"})
    return [Input("the source", f) for f in files] + [Input("the source", d, "folder") for d in folders]


def run(a: argparse.Namespace) -> int:
    check_knobs(a)
    source = open_source(a.source)
    out = a.out
    if out is None and not (a.save_labels or a.show or a.no_save):
        stem = Path(a.source).stem if not a.source.isdigit() else f"camera{a.source}"
        out = str(Path("runs") / "run" / f"{stem or 'stream'}_overlay.mp4")
    guard_paths([*source_inputs(source), *Input.of("--model", a.model)],
                [*Output.of("--out", out), *Output.of("--save-labels", a.save_labels, "folder")])
    bundle = bundle_for(a.model, a.quiet, scores=a.sliding is not None)
    # sliding windows: the same Pipeline, segmenting each frame window by window (runtime/sliding.py)
    pipe_class = partial(SlidingPipeline, stride=a.sliding) if a.sliding is not None else Pipeline
    pipe = pipe_class(bundle, backend=a.backend, budget=a.budget if a.budget is not None else 1.0,
                    threshold=a.threshold, target_ms=a.target_ms, letterbox=a.letterbox,
                    stage_map=a.pause_map is not None, threads=a.threads, shared_threads=True, cost=a.cost)
    info = pipe.info
    if out is not None and a.out is None:  # the default place is ours to make
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    video = VideoSink(out, source.fps or 30.0) if out else None
    labels = LabelSink(a.save_labels) if a.save_labels else None
    window = WindowSink() if a.show else None
    if not a.quiet:
        print(f"{source.description} -> {pipe.describe()} ({pipe.cost_source})")

    def view(frame: Frame, result: Result) -> np.ndarray:
        smap = grid_to_frame(result.stage_map, result.placement) if result.stage_map is not None else None
        img = compose(to_rgb_uint8(frame.image), result.labels, info.palette, smap, info.num_stages,
                      a.pause_map or "beside")
        tokens = "/".join(str(c) for c in result.stats.counts)
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
