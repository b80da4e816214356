"""A screenshot of the live view as a browser shows it (for the README): headless Chromium, the sample model.

    python benchmarks/view_page.py [--video drive.mp4] [--out benchmarks/results/view_page.png]

The sample model segments street frames in a loop and publishes them to a live view; Debian's chromium
(driven as in tests/test_view_browser.py) opens the page, lets the plot fill, moves the budget slider to
about 0.5 with the mouse, waits a few seconds and takes the screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
from soak import ensure_bundle

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from chromium import Chromium  # noqa: E402  (the tests' CDP driver)


async def shoot(url: str, out: Path, settle: float) -> None:
    async with Chromium() as browser:
        page = await browser.open(url)
        await page.wait_for("window.paumerView && paumerView.records.length > 20", timeout=120)
        box = await page.eval("(() => { const r = document.getElementById('budget').getBoundingClientRect();"
                              " return {x: r.left, y: r.top + r.height / 2, w: r.width}; })()")
        await page.click(box["x"] + 0.47 * box["w"], box["y"])
        await asyncio.sleep(settle)
        await page.screenshot(out)


def main() -> None:
    from paumer_edge.runtime import Pipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer")
    p.add_argument("--video", help="360x640 video to loop (default: street frames rendered here)")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--settle", type=float, default=8.0, help="seconds after the slider moved")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "view_page.png"))
    a = p.parse_args()
    if a.video:
        cap = cv2.VideoCapture(a.video)
        frames: list[np.ndarray] = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(a.frames)]
    else:
        from paumer_edge.data.streets import street_frames

        frames = [img for img, _ in street_frames(3, (360, 640), seconds=a.frames / 30, fps=30)]
    pipe = Pipeline(ensure_bundle(Path(a.bundle)))
    stop = threading.Event()
    with pipe.serve_view(0) as view:
        def loop() -> None:
            i = 0
            while not stop.is_set():
                view.publish(frames[i % len(frames)], pipe(frames[i % len(frames)]))
                i += 1

        feeder = threading.Thread(target=loop)
        feeder.start()
        try:
            asyncio.run(shoot(view.url, Path(a.out), a.settle))
        finally:
            stop.set()
            feeder.join()
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
