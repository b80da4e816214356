"""The video loop: decoding, inference and encoding overlap in threads, so it runs at inference speed.

A reader thread decodes frames into a small queue, the calling thread runs the pipeline, and a writer
thread composes the views and writes them. Bounded queues keep memory flat; an error in any thread
stops the others and is raised in the caller. Frames the source cannot decode or the pipeline refuses
(`FrameError`: e.g. an empty or oversized frame) are skipped and counted; the run goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from paumer_edge.core.errors import FrameError

from .pipeline import Pipeline, Result
from .sources import Frame, Source

_END = object()


@dataclass
class RunSummary:
    frames: int = 0
    seconds: float = 0.0
    skipped: int = 0  # frames that could not be decoded or were refused
    reconnections: int = 0  # times a live source dropped and came back
    stage_ms: list[float] = field(default_factory=list)  # mean per stage
    decoder_ms: float = 0.0
    inference_ms: float = 0.0  # mean per frame, pre/post-processing included
    counts: list[float] = field(default_factory=list)  # mean active patch tokens per stage
    budget: float = 1.0  # mean budget used

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        stages = " ".join(f"{ms:.1f}" for ms in self.stage_ms)
        tokens = "/".join(f"{n:.0f}" for n in self.counts)
        return (f"{self.frames} frames in {self.seconds:.1f} s: {self.fps:.1f} FPS; "
                f"{self.inference_ms:.1f} ms per frame (stages {stages}, decoder {self.decoder_ms:.1f} ms); "
                f"active tokens per stage {tokens}; mean budget {self.budget:.2f}"
                + (f"; {self.skipped} unreadable frames skipped" if self.skipped else "")
                + (f"; reconnected {self.reconnections} times" if self.reconnections else ""))


def run_stream(pipeline: Pipeline, source: Source, consume: Callable[[Frame, Result], None] | None = None,
               show: Callable[[Frame, Result], bool] | None = None, max_frames: int | None = None,
               progress: bool = True, queue_size: int = 4) -> RunSummary:
    """Segment every frame of `source`; `consume` runs in the writer thread, `show` in this one."""
    frames_in: queue.Queue = queue.Queue(queue_size)
    results: queue.Queue = queue.Queue(queue_size)
    stop = threading.Event()
    errors: list[BaseException] = []

    def put(q: queue.Queue, item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for n, frame in enumerate(source):
                if max_frames is not None and n >= max_frames:
                    break
                if not put(frames_in, frame):
                    return
        except BaseException as e:  # handed to the caller
            errors.append(e)
        finally:
            put(frames_in, _END)

    def write() -> None:
        try:
            while True:
                item = results.get()
                if item is _END:
                    return
                if consume is not None and not stop.is_set():
                    consume(*item)
        except BaseException as e:
            errors.append(e)
            stop.set()

    reader = threading.Thread(target=read, name="paumer-read", daemon=True)
    writer = threading.Thread(target=write, name="paumer-write", daemon=True)
    reader.start()
    writer.start()
    total = min(x for x in (source.length, max_frames) if x is not None) if (source.length or max_frames) else None
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True)
    summary = RunSummary()
    stage_sum: np.ndarray | None = None
    count_sum: np.ndarray | None = None
    budget_sum = 0.0
    refused = 0
    t0 = time.perf_counter()
    try:
        while not stop.is_set():
            item = frames_in.get()
            if item is _END:
                break
            try:
                result = pipeline(item.image)
            except FrameError:
                refused += 1
                continue
            st = result.stats
            stage_sum = np.asarray(st.stage_ms) if stage_sum is None else stage_sum + st.stage_ms
            count_sum = np.asarray(st.counts, float) if count_sum is None else count_sum + st.counts
            summary.decoder_ms += st.decoder_ms
            summary.inference_ms += result.total_ms
            budget_sum += st.budget
            summary.frames += 1
            if not put(results, (item, result)):
                break
            if show is not None and not show(item, result):
                break
            bar.update()
            bar.set_postfix(fps=f"{summary.frames / (time.perf_counter() - t0):.1f}", budget=f"{st.budget:.2f}",
                            tokens="/".join(str(c) for c in st.counts))
    finally:
        put(results, _END)  # the writer drains what it has (unless it already stopped on an error)
        writer.join()
        stop.set()  # releases the reader if it waits on a full queue
        reader.join(timeout=5)
        bar.close()
        source.close()
    summary.seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    n = max(summary.frames, 1)
    summary.skipped = source.skipped + refused
    summary.reconnections = source.reconnections
    summary.budget = budget_sum / n if summary.frames else pipeline.budget
    summary.stage_ms = [] if stage_sum is None else (stage_sum / n).tolist()
    summary.counts = [] if count_sum is None else (count_sum / n).tolist()
    summary.decoder_ms /= n
    summary.inference_ms /= n
    return summary
