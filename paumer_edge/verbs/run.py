"""`paumer-edge run [SOURCE]`: segment a video, camera, stream or image folder; write and show the results.

With no SOURCE it runs the main job on the bundled sample: a short street clip (rendered once), the sample
model exported once, segmented through the torch-free runtime at budget 1 and 0.5, an overlay video each.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np

from .. import UserError
from ..core.cache import cache_root
from ..core.errors import SourceError
from ..core.knobs import (
    check_budget,
    check_change_threshold,
    check_count,
    check_refresh_every,
    check_stride,
    check_target_ms,
    check_threads,
    check_threshold,
)
from ..core.paths import Input, Output, guard_paths
from ..core.temporal import ReuseOptions
from ..core.video import VideoSink
from ..runtime.bundle import load_bundle
from ..runtime.loop import RunSummary, run_stream
from ..runtime.pipeline import Pipeline, Result
from ..runtime.preprocess import grid_to_frame, to_rgb_uint8
from ..runtime.sinks import LabelSink, WindowSink
from ..runtime.sliding import SlidingPipeline
from ..runtime.sources import Frame, Source, open_source
from ..runtime.visualize import annotate, compose
from .bundles import bundle_for
from .params import (
    backend_option,
    cost_option,
    memory_limit_option,
    model_option,
    plans_option,
    precision_option,
    quiet,
    threads_option,
)

REUSE_DEFAULTS = ReuseOptions()  # the help texts' defaults come from the knobs' one definition

DEMO_SECONDS, DEMO_SIZE, DEMO_BUDGETS = 10.0, (360, 640), (1.0, 0.5)


@click.command("run", help="Segment SOURCE (a video file, camera index such as 0, rtsp:// or http:// URL, image "
               "folder or glob) and write an overlay video, label PNGs or a window. With no SOURCE: the main job "
               "on the bundled sample, a short street clip at budget 1 and 0.5.")
@click.argument("source", required=False)
@model_option("Bundle directory or checkpoint (exported once into the cache) [default: the bundled sample].")
@click.option("--budget", type=float, help="Fraction of the encoder's compute to spend, in (0, 1] [default: 1].")
@click.option("--threshold", type=float, help="Pause tokens whose normalised entropy is below this, in [0, 1].")
@click.option("--target-ms", type=float, help="Adjust the budget frame by frame so a frame takes about this long.")
@backend_option
@precision_option()
@cost_option("measured once and cached")
@click.option("--out", metavar="FILE", help="Overlay video (.mp4, .mkv or .avi; H.264) "
              "[default: runs/run/<source>_overlay.mp4].")
@click.option("--save-labels", metavar="DIR", help="Write one label PNG per frame here, with index.csv.")
@click.option("--show", is_flag=True, help="Show the overlay in a window (q or Esc stops).")
@click.option("--pause-map", type=click.Choice(["beside", "blend"]), is_flag=False, flag_value="beside",
              default=None, help="Show where tokens paused: beside the overlay (the default when given bare) or "
                                 "blended into it.")
@click.option("--no-save", is_flag=True, help="Write nothing (just measure).")
@click.option("--letterbox", is_flag=True, help="Keep the aspect ratio (pad) instead of stretching.")
@click.option("--sliding", type=float, is_flag=False, flag_value=2 / 3, default=None, metavar="STRIDE",
              help="Segment each frame at its own resolution with windows of the model's input size; STRIDE is a "
                   "fraction of the window (0.667 when given bare); needs a bundle exported with --scores.")
@click.option("--reuse/--no-reuse", default=None, help="Temporal reuse: patches that did not change since the last "
              "frame keep what they computed [default: on for videos, cameras and streams; off for image folders, "
              "sliding windows and native TensorRT].")
@click.option("--change-threshold", type=float, metavar="T", help="With reuse: a patch changed when a quarter of it "
              "moved by more than T in mean intensity (0-1) since it was computed "
              f"[default: {REUSE_DEFAULTS.threshold:g}; a stream whose labels drift from per-frame processing "
              "lowers it for itself].")
@click.option("--refresh-every", type=int, metavar="K", help="With reuse: recompute every patch every K frames, "
              f"bounding drift [default: {REUSE_DEFAULTS.refresh_every}; at most: a drifting stream refreshes "
              "sooner].")
@click.option("--max-frames", type=int, help="Stop after this many frames.")
@click.option("--view", metavar="[HOST:]PORT", help="Serve a live view in the browser while it runs: overlay, pause "
              "map, stats and the knobs (host 127.0.0.1 unless given; another host, e.g. 0.0.0.0, lets other "
              "machines watch).")
@click.option("--view-token", metavar="TOKEN", envvar="PAUMER_EDGE_VIEW_TOKEN", show_envvar=True,
              help="Require this token to watch and to steer (needed for the knobs beyond 127.0.0.1).")
@threads_option
@plans_option
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    a = SimpleNamespace(**options)
    check_knobs(a)
    if a.source is None:
        return demo(a)
    source = open_source(a.source)
    segment(a, source, default_output(a), a.budget)
    return 0


def check_knobs(a: SimpleNamespace) -> None:
    """Every knob of `run` by the one rule for it (paumer_edge.core.knobs), before anything is opened."""
    a.budget = None if a.budget is None else check_budget(a.budget, "--budget")
    a.threshold = None if a.threshold is None else check_threshold(a.threshold, "--threshold")
    a.target_ms = check_target_ms(a.target_ms, "--target-ms")
    a.threads = check_threads(a.threads, "--threads")
    a.max_frames = None if a.max_frames is None else check_count(a.max_frames, "--max-frames")
    a.sliding = None if a.sliding is None else check_stride(a.sliding, "--sliding")
    a.change_threshold = None if a.change_threshold is None else check_change_threshold(a.change_threshold,
                                                                                         "--change-threshold")
    a.refresh_every = None if a.refresh_every is None else check_refresh_every(a.refresh_every, "--refresh-every")
    if a.target_ms is not None and (a.budget is not None or a.threshold is not None):
        raise UserError("--target-ms sets the budget itself: give it alone, or --budget / --threshold")
    if a.sliding is not None and a.letterbox:
        raise UserError("--sliding covers the whole frame at its own resolution: leave out --letterbox")
    if a.view_token is not None and a.view is None:
        raise UserError("--view-token protects the live view: give --view [HOST:]PORT too")
    if a.view is not None:  # a mistyped address or token is said before the model loads
        from ..runtime.view.access import check_token, parse_view_address

        parse_view_address(a.view)
        check_token(a.view_token)


def source_inputs(source: Source) -> list[Input]:
    """What a source reads from disk: a video file, or image files and the folders they are in."""
    files = [Path(f) for f in getattr(source, "files", [])]
    if source.kind == "video":
        files.append(Path(str(source.target)))
    folders = sorted({f.parent for f in files if source.kind == "images"})
    return [Input("the source", f) for f in files] + [Input("the source", d, "folder") for d in folders]


def default_output(a: SimpleNamespace) -> str | None:
    """The overlay video's path: --out, or runs/run/<source>_overlay.mp4 unless the run writes elsewhere."""
    if a.out is not None or a.save_labels or a.show or a.no_save:
        return a.out
    stem = Path(a.source).stem if not a.source.isdigit() else f"camera{a.source}"
    return str(Path("runs") / "run" / f"{stem or 'stream'}_overlay.mp4")


def demo_clip(quiet: bool) -> Path:
    """A short street clip to run on, rendered once into the cache."""
    from ..data.streets import street_frames, write_video

    path = cache_root() / "demo" / f"street-{DEMO_SIZE[0]}x{DEMO_SIZE[1]}-{DEMO_SECONDS:g}s.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not quiet:
            print(f"rendering a {DEMO_SECONDS:g} s street clip once to {path} ...")
        write_video(path, (img for img, _ in street_frames(7, DEMO_SIZE, DEMO_SECONDS, 30.0)), 30.0)
    return path


def demo(a: SimpleNamespace) -> int:
    """The main job on the bundled sample: the street clip at budget 1 and 0.5, an overlay video each."""
    if a.target_ms is not None or a.budget is not None or a.save_labels or a.show:
        raise UserError("without a SOURCE, run shows the bundled sample at budget 1 and 0.5; give a SOURCE to use "
                        "--budget, --target-ms, --save-labels or --show")
    clip = demo_clip(a.quiet)
    folder = Path(a.out or Path("runs") / "run")
    if folder.suffix:
        raise UserError(f"without a SOURCE, --out names a folder for the two overlay videos, not '{folder}'")
    folder.mkdir(parents=True, exist_ok=True)
    fps: dict[float, float] = {}
    outs = []
    for budget in DEMO_BUDGETS:
        out = None if a.no_save else str(folder / f"street_budget{budget:g}_overlay.mp4")
        fps[budget] = segment(a, open_source(str(clip)), out, budget).fps
        outs += [out] if out else []
    ratio = fps[DEMO_BUDGETS[1]] / fps[DEMO_BUDGETS[0]] if fps[DEMO_BUDGETS[0]] else 0.0
    print(f"sample model on {clip.name}: budget 1 at {fps[1.0]:.1f} FPS, budget 0.5 at {fps[0.5]:.1f} FPS "
          f"({ratio:.2f}x)" + (f"; overlays {', '.join(outs)}" if outs else ""))
    return 0


def start_view(a: SimpleNamespace, pipe: Pipeline) -> Any:
    """The live view in the browser (runtime/view) when --view asks for one; its URL is printed even when quiet."""
    if a.view is None:
        return None
    from ..runtime.view.server import serve_run_view

    viewer, warning = serve_run_view(pipe, a.view, a.view_token)
    print(f"live view: {viewer.url}", flush=True)
    if warning:
        print(f"paumer-edge run: warning: {warning}", file=sys.stderr, flush=True)
    return viewer


def reuse_choice(a: SimpleNamespace, source_kind: str, bundle: Path) -> ReuseOptions | None:
    """Temporal reuse for this run: asked for (--reuse / --no-reuse) or the default (on for videos, cameras and
    streams, off for image folders and sliding windows, off with a note for a bundle without format 5's reuse graphs);
    None: off. The knobs without reuse are a mistake said in one line."""
    knobs = {k: v for k, v in (("threshold", a.change_threshold), ("refresh_every", a.refresh_every)) if v is not None}
    asked = a.reuse
    if asked is None:
        asked = source_kind != "images" and a.sliding is None and a.backend != "trt"
        if asked and not load_bundle(bundle, check_hashes=False).manifest.has_reuse:
            if not a.quiet:
                print(f"note: {bundle} has no temporal-reuse graphs this version runs (format 5): every frame runs "
                      "in full; export it again to reuse unchanged patches")
            asked = False
    if not asked:
        if knobs:
            raise UserError("--change-threshold and --refresh-every tune temporal reuse, which is off here: add "
                            "--reuse, or leave them out")
        return None
    return ReuseOptions(**knobs)


def segment(a: SimpleNamespace, source: Source, out: str | None, budget: float | None) -> RunSummary:
    """Segment `source` with the options in `a` and write the results; the summary of the run."""
    guard_paths([*source_inputs(source), *Input.of("--model", a.model)],
                [*Output.of("--out", out), *Output.of("--save-labels", a.save_labels, "folder")])
    if out is not None and out != a.out:  # the default place (and the demo's) is ours to make; --out's is not
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    bundle = bundle_for(a.model, a.quiet, scores=a.sliding is not None, int8=a.precision == "int8",
                        plans=bool(a.plans))
    reuse = reuse_choice(a, source.kind, bundle)
    # sliding windows: the same Pipeline, segmenting each frame window by window (runtime/sliding.py)
    pipe_class = partial(SlidingPipeline, stride=a.sliding) if a.sliding is not None else Pipeline
    pipe = pipe_class(bundle, backend=a.backend, budget=budget if budget is not None else 1.0,
                    threshold=a.threshold, target_ms=a.target_ms, letterbox=a.letterbox,
                    stage_map=a.pause_map is not None, threads=a.threads, shared_threads=True, cost=a.cost,
                    precision=a.precision, plans=a.plans is not False, reuse=reuse or False)
    info = pipe.info
    viewer = start_view(a, pipe)
    try:
        video = VideoSink(out, source.fps or 30.0) if out else None
        labels = LabelSink(a.save_labels) if a.save_labels else None
        window = WindowSink() if a.show else None
    except BaseException:
        if viewer is not None:
            viewer.close()
        raise
    if not a.quiet:
        print(f"{source.description} -> {pipe.describe()}" + ("" if pipe.plans else f" ({pipe.cost_source})"))

    def view(frame: Frame, result: Result) -> np.ndarray:
        smap = grid_to_frame(result.stage_map, result.placement) if result.stage_map is not None and a.pause_map \
            else None  # (the live view turns the stage map on for itself)
        kept = grid_to_frame(result.reused, result.placement) if result.reused is not None and smap is not None \
            else None
        img = compose(to_rgb_uint8(frame.image), result.labels, info.palette, smap, info.num_stages,
                      a.pause_map or "beside", reused=kept)
        tokens = "/".join(str(c) for c in result.stats.counts)
        plan = f"  plan {result.stats.plan}" if result.stats.plan else ""
        if result.stats.reused and any(result.stats.reused):
            tokens += " +" + "/".join(str(c) for c in result.stats.reused) + " reused"
        return annotate(img, f"budget {result.stats.budget:.2f}{plan}  tokens {tokens}  {result.total_ms:.0f} ms")

    def consume(frame: Frame, result: Result) -> None:
        if labels is not None:
            labels.write(frame.name, result.labels, frame.index, frame.source)
        if video is not None:
            video.write(view(frame, result))

    def show(frame: Frame, result: Result) -> bool:
        if viewer is not None:
            viewer.publish(frame.image, result)
        return window.write(view(frame, result)) if window is not None else True

    ok = False
    lost: SourceError | None = None
    try:
        pipe.warmup()
        summary = run_stream(pipe, source, consume, show if window or viewer else None, a.max_frames,
                             progress=not a.quiet)
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
        if viewer is not None:
            viewer.close()
    wrote = [f"video {out}" if video is not None and video.frames else "",
             f"labels in {a.save_labels}" if labels is not None and labels.rows else ""]
    where = ", ".join(x for x in wrote if x)
    if lost is not None:
        raise SourceError(f"{lost}" + (f"; kept the results until then ({where})" if where else ""))
    print(summary.line() + (f"; wrote {where}" if where else ""))
    return summary
