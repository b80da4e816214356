"""A robot's perception loop with paumer-edge: capture -> segment -> act, with the budget as a knob.

    python samples/robot_loop.py [SOURCE] [--bundle sample.paumer] [--target-ms 25] [--view 8080]

SOURCE is a camera index, a video file or a stream URL (default: a generated street drive). The loop
steers away from whatever is not drivable straight ahead, and spends less compute when the CPU is
busy (latency target) -- a toy decision, a real loop. Needs only numpy, OpenCV and onnxruntime
(and aiohttp for `--view`: watch the loop and turn its knobs in a browser while it runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.sources import open_source

DRIVABLE = {"road"}


def steer(labels: np.ndarray, class_names: tuple[str, ...]) -> float:
    """-1 (left) .. +1 (right): turn towards the side of the lower half that is more drivable."""
    drivable = np.isin(labels, [class_names.index(c) for c in DRIVABLE if c in class_names])
    lower = drivable[labels.shape[0] // 2 :]
    half = lower.shape[1] // 2
    left, right = lower[:, :half].mean(), lower[:, half:].mean()
    return float(np.clip((right - left) * 4, -1, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", help="camera index, video file or URL (default: a generated drive)")
    ap.add_argument("--bundle", default="sample.paumer", help="a bundle from `paumer-edge export`")
    ap.add_argument("--target-ms", type=float, default=25.0, help="latency the budget is adjusted to")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--view", type=int, metavar="PORT", help="serve the live view on 127.0.0.1:PORT")
    a = ap.parse_args()
    source = a.source
    if source is None:  # make a short street drive to look at
        from paumer_edge.data.streets import make_street_video

        source = "robot_drive.mp4"
        if not Path(source).exists():
            make_street_video(source, seed=4, seconds=6, fps=25, size=(240, 426))
    seg = Pipeline(a.bundle, target_ms=a.target_ms, shared_threads=True)
    print(f"perception: {seg.describe()}, latency target {a.target_ms} ms")
    view = seg.serve_view(a.view) if a.view is not None else None
    if view is not None:
        print(f"live view: {view.url}")
    try:
        for frame in open_source(source):  # capture
            t0 = time.perf_counter()
            result = seg(frame.image)  # process
            if view is not None:
                view.publish(frame.image, result)  # cheap: the view draws and encodes on its own thread
            command = steer(result.labels, seg.info.class_names)  # act
            ms = (time.perf_counter() - t0) * 1000
            print(f"frame {frame.index:4d}: steer {command:+.2f}  {ms:5.1f} ms  budget {result.stats.budget:.2f}  "
                  f"tokens {'/'.join(str(c) for c in result.stats.counts)}")
            if frame.index + 1 >= a.frames:
                break
    finally:
        if view is not None:
            view.close()


if __name__ == "__main__":
    main()
