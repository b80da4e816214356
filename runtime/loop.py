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
from collections import Counter
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
    plans: dict[str, int] = field(default_factory=dict)  # frames per plan (bundles with plans)
    reused: list[float] = field(default_factory=list)  # temporal reuse: mean patches per stage kept from earlier frames
    kinds: dict[str, int] = field(default_factory=dict)  # temporal reuse: frames per kind (reuse, refresh, full, held)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        stages = " ".join(f"{ms:.1f}" for ms in self.stage_ms)
        tokens = "/".join(f"{n:.0f}" for n in self.counts)
        if self.kinds:  # temporal reuse: what ran and what was kept
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kinds.items()))
            reused = "/".join(f"{n:.0f}" for n in self.reused)
            tokens = f"(recomputed) {tokens}, reused {reused}; frames: {kinds}"
        return (f"{self.frames} frames in {self.seconds:.1f} s: {self.fps:.1f} FPS; "
                f"{self.inference_ms:.1f} ms per frame (stages {stages}, decoder {self.decoder_ms:.1f} ms); "
                f"active tokens per stage {tokens}; mean budget {self.budget:.2f}"
                + (f"; plans {self.plan_text()}" if self.plans else "")
                + (f"; {self.skipped} unreadable frames skipped" if self.skipped else "")
                + (f"; reconnected {self.reconnections} times" if self.reconnections else ""))


    def plan_text(self) -> str:
        """The plans that ran, most used first, with their share of the frames: "96x192 @0.6 80%, ..."."""
        total = max(sum(self.plans.values()), 1)
        return ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in sorted(self.plans.items(), key=lambda kv: -kv[1]))


class _Threads:
    """The reader and writer threads around the caller's inference loop, with bounded queues and one stop flag;
    an error in either is kept for the caller and stops the other."""

    def __init__(self, source: Source, consume: Callable[[Frame, Result], None] | None, max_frames: int | None,
                 queue_size: int):
        self.frames: queue.Queue = queue.Queue(queue_size)
        self.results: queue.Queue = queue.Queue(queue_size)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.source, self.consume, self.max_frames = source, consume, max_frames
        self.reader = threading.Thread(target=self._read, name="paumer-read", daemon=True)
        self.writer = threading.Thread(target=self._write, name="paumer-write", daemon=True)
        self.reader.start()
        self.writer.start()

    def put(self, q: queue.Queue, item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for n, frame in enumerate(self.source):
                if self.max_frames is not None and n >= self.max_frames:
                    break
                if not self.put(self.frames, frame):
                    return
        except BaseException as e:  # handed to the caller
            self.errors.append(e)
        finally:
            self.put(self.frames, _END)

    def _write(self) -> None:
        try:
            while True:
                item = self.results.get()
                if item is _END:
                    return
                if self.consume is not None and not self.stop.is_set():
                    self.consume(*item)
        except BaseException as e:
            self.errors.append(e)
            self.stop.set()

    def finish(self) -> None:
        self.put(self.results, _END)  # the writer drains what it has (unless it already stopped on an error)
        self.writer.join()
        self.stop.set()  # releases the reader if it waits on a full queue
        self.reader.join(timeout=5)


class _Totals:
    """Sums of the per-frame stats, turned into the summary's means at the end."""

    def __init__(self) -> None:
        self.stage_ms: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.decoder_ms = self.inference_ms = self.budget = 0.0
        self.frames = 0
        self.plans: Counter[str] = Counter()
        self.reused: np.ndarray | None = None
        self.kinds: dict[str, int] = {}

    def add(self, result: Result) -> None:
        st = result.stats
        self.stage_ms = np.asarray(st.stage_ms) if self.stage_ms is None else self.stage_ms + st.stage_ms
        self.counts = np.asarray(st.counts, float) if self.counts is None else self.counts + st.counts
        self.decoder_ms += st.decoder_ms
        self.inference_ms += result.total_ms
        self.budget += st.budget
        self.frames += 1
        if st.plan:
            self.plans[st.plan] += 1
        if st.frame_kind:
            self.kinds[st.frame_kind] = self.kinds.get(st.frame_kind, 0) + 1
            reused = np.asarray(st.reused or [0] * len(st.counts), float)
            self.reused = reused if self.reused is None else self.reused + reused

    def into(self, summary: RunSummary, default_budget: float) -> None:
        n = max(self.frames, 1)
        summary.frames = self.frames
        summary.budget = self.budget / n if self.frames else default_budget
        summary.stage_ms = [] if self.stage_ms is None else (self.stage_ms / n).tolist()
        summary.counts = [] if self.counts is None else (self.counts / n).tolist()
        summary.decoder_ms = self.decoder_ms / n
        summary.inference_ms = self.inference_ms / n
        summary.plans = dict(self.plans)
        summary.kinds = dict(self.kinds)
        summary.reused = [] if self.reused is None else (self.reused / n).tolist()


def run_stream(pipeline: Pipeline, source: Source, consume: Callable[[Frame, Result], None] | None = None,
               show: Callable[[Frame, Result], bool] | None = None, max_frames: int | None = None,
               progress: bool = True, queue_size: int = 4) -> RunSummary:
    """Segment every frame of `source`; `consume` runs in the writer thread, `show` in this one."""
    threads = _Threads(source, consume, max_frames, queue_size)
    total = min(x for x in (source.length, max_frames) if x is not None) if (source.length or max_frames) else None
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True)
    totals, refused = _Totals(), 0
    t0 = time.perf_counter()
    try:
        while not threads.stop.is_set():
            item = threads.frames.get()
            if item is _END:
                break
            try:
                result = pipeline(item.image)
            except FrameError:
                refused += 1
                continue
            totals.add(result)
            if not threads.put(threads.results, (item, result)):
                break
            if show is not None and not show(item, result):
                break
            bar.update()
            st = result.stats
            bar.set_postfix(fps=f"{totals.frames / (time.perf_counter() - t0):.1f}", budget=f"{st.budget:.2f}",
                            tokens="/".join(str(c) for c in st.counts))
    finally:
        threads.finish()
        bar.close()
        source.close()
    summary = RunSummary(seconds=time.perf_counter() - t0, skipped=source.skipped + refused,
                         reconnections=source.reconnections)
    if threads.errors:
        raise threads.errors[0]
    totals.into(summary, pipeline.budget)
    return summary
