"""Why the live view is MJPEG on aiohttp: the measurements behind the choice.

    python benchmarks/view_transport.py --video drive.mp4      # (or street frames rendered here)

1. Encoding, per picture, on the view's real pictures (overlay + pause map of consecutive video frames):
   JPEG through OpenCV, encoded once for every viewer, against the encoders aiortc (WebRTC in Python) runs,
   VP8 (libvpx, aiortc's settings) and H.264 (libx264), which aiortc runs once per viewer (each peer
   connection has its own encoder, tuned to that viewer's bandwidth).
2. Serving: the same MJPEG endpoint (the newest picture to every viewer, 25 pictures a second) on aiohttp
   and on Starlette + uvicorn, each in its own process, 3 viewers reading for `--seconds`: the server's CPU
   time per picture delivered, its memory, and the delay from publishing a picture to a viewer having it.
All traffic stays on this machine's loopback. JSON with provenance (and a plot) in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from provenance import cpu_seconds, provenance, rss_mib

RESULTS = Path(__file__).resolve().parent / "results"
PICTURES_PER_S = 25.0


# ---- 1. encoders ---------------------------------------------------------------------------------
def view_pictures(a: argparse.Namespace) -> list[np.ndarray]:
    """The view's pictures (RGB) of consecutive frames: what a viewer would be sent."""
    from soak import ensure_bundle

    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.view.frames import render

    if a.video:
        cap = cv2.VideoCapture(a.video)
        frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(a.pictures)]
    else:
        from paumer_edge.data.streets import street_frames

        frames = [img for img, _ in street_frames(3, (360, 640), seconds=a.pictures / 30, fps=30)]
    pipe = Pipeline(ensure_bundle(Path(a.bundle)), budget=0.5, stage_map=True, cost="macs")
    return [render(f, pipe(f), pipe.info, False, True, 800) for f in frames]


def time_encoder(name: str, pictures: list[np.ndarray]) -> dict[str, Any]:
    import av

    ms, sizes = [], []
    if name == "jpeg":
        for p in pictures:
            t0 = time.perf_counter()
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(p, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
            ms.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(buf))
    else:
        from aiortc.codecs.h264 import H264Encoder
        from aiortc.codecs.vpx import Vp8Encoder

        encoder = Vp8Encoder() if name == "vp8" else H264Encoder()
        for i, p in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(p), format="rgb24")
            frame.pts, frame.time_base = i * 3600, fractions.Fraction(1, 90000)  # 25 pictures a second
            t0 = time.perf_counter()
            payloads, _ = encoder.encode(frame)
            ms.append((time.perf_counter() - t0) * 1000)
            sizes.append(sum(len(x) for x in payloads))
    steady = ms[5:]  # after the encoder's set-up
    return {"encoder": name, "ms_p50": round(float(np.median(steady)), 3), "ms_mean": round(float(np.mean(steady)), 3),
            "kb_per_picture": round(float(np.mean(sizes)) / 1024, 2), "pictures": len(pictures),
            "per_viewer": name != "jpeg"}


# ---- 2. servers ----------------------------------------------------------------------------------
class Latest:
    """The newest picture and its publishing time; wakes waiting coroutines from the producer thread."""

    def __init__(self, pictures: list[bytes]):
        self.pictures, self.n, self.data, self.t = pictures, -1, b"", 0.0
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def produce(self) -> None:
        i = 0
        while True:
            self.data, self.t, self.n = self.pictures[i % len(self.pictures)], time.time(), i
            for loop, event in list(self.waiters):
                loop.call_soon_threadsafe(event.set)
            i += 1
            time.sleep(1 / PICTURES_PER_S)

    async def parts(self):  # type: ignore[no-untyped-def]
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        self.waiters.append((loop, event))
        sent = -1
        try:
            yield b"--f\r\n"
            while True:
                await event.wait()
                event.clear()
                if self.n != sent:
                    sent = self.n
                    yield (f"Content-Type: image/jpeg\r\nContent-Length: {len(self.data)}\r\nX-Time: {self.t:.6f}"
                           "\r\n\r\n").encode() + self.data + b"\r\n--f\r\n"
        finally:
            self.waiters.remove((loop, event))


def serve(kind: str, port: int, pictures: list[bytes]) -> None:
    latest = Latest(pictures)
    threading.Thread(target=latest.produce, daemon=True).start()
    mime = "multipart/x-mixed-replace; boundary=f"
    if kind == "aiohttp":
        from aiohttp import web

        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": mime})
            await response.prepare(request)
            try:
                async for part in latest.parts():
                    await response.write(part)
            except ConnectionError:
                pass  # the viewer left
            return response

        app = web.Application()
        app.router.add_get("/stream.mjpg", stream)
        print("ready", flush=True)
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    else:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        async def sstream(request: Any) -> StreamingResponse:
            return StreamingResponse(latest.parts(), media_type=mime)

        print("ready", flush=True)
        uvicorn.run(Starlette(routes=[Route("/stream.mjpg", sstream)]), host="127.0.0.1", port=port,
                    log_level="warning", access_log=False)


async def read_delays(port: int, viewers: int, seconds: float) -> list[float]:
    import aiohttp

    delays: list[float] = []

    async def viewer(session: aiohttp.ClientSession) -> None:
        async with session.get(f"http://127.0.0.1:{port}/stream.mjpg") as r:
            buffer = b""
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                buffer += await r.content.readany()
                while (i := buffer.find(b"X-Time: ")) >= 0 and (j := buffer.find(b"\r\n", i)) >= 0:
                    delays.append((time.time() - float(buffer[i + 8:j])) * 1000)
                    buffer = buffer[j:]

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(viewer(session) for _ in range(viewers)))
    return delays


def time_server(kind: str, jpegs_file: Path, viewers: int, seconds: float, port: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "serve", kind, str(port), str(jpegs_file)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    import urllib.request

    while True:  # until it answers
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=1)
        except OSError as e:
            if getattr(e, "code", None) == 404:
                break
            time.sleep(0.05)
    started_s, idle_mib = time.perf_counter() - t0, rss_mib(proc.pid)
    cpu0 = cpu_seconds(proc.pid)
    delays = asyncio.run(read_delays(port, viewers, seconds))
    cpu, busy_mib = cpu_seconds(proc.pid) - cpu0, rss_mib(proc.pid)
    proc.terminate()
    proc.wait(timeout=10)
    return {"server": kind, "start_s": round(started_s, 2), "rss_idle_mib": round(idle_mib, 1),
            "rss_serving_mib": round(busy_mib, 1), "pictures_delivered": len(delays),
            "cpu_ms_per_picture_delivered": round(1000 * cpu / max(len(delays), 1), 3),
            "delay_ms_p50": round(float(np.percentile(delays, 50)), 2),
            "delay_ms_p99": round(float(np.percentile(delays, 99)), 2)}


def main(argv: list[str] | None = None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":  # a server process of part 2
        serve(sys.argv[2], int(sys.argv[3]), [bytes.fromhex(h) for h in json.loads(Path(sys.argv[4]).read_text())])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer")
    p.add_argument("--video", help="a 360x640 video whose first --pictures frames are used (default: rendered)")
    p.add_argument("--pictures", type=int, default=100)
    p.add_argument("--viewers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=15.0, help="each server's serving time")
    p.add_argument("--rounds", type=int, default=2, help="servers measured alternately this many times each")
    p.add_argument("--port", type=int, default=18931)
    p.add_argument("--json", default=str(RESULTS / "view_transport.json"))
    a = p.parse_args(argv)
    import tempfile

    from paumer_edge.core.atomic import write_json_atomic

    prov = provenance()
    pictures = view_pictures(a)
    encoders = [time_encoder(name, pictures) for name in ("jpeg", "vp8", "h264")]
    for e in encoders:
        print(f"{e['encoder']}: {e['ms_p50']:.2f} ms and {e['kb_per_picture']:.1f} KiB per picture"
              + (" per viewer" if e["per_viewer"] else " for every viewer"), flush=True)
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
             for x in pictures]
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "jpegs.json"
        file.write_text(json.dumps([j.hex() for j in jpegs]))
        for r in range(a.rounds):
            for kind in (("aiohttp", "starlette") if r % 2 == 0 else ("starlette", "aiohttp")):
                row = time_server(kind, file, a.viewers, a.seconds, a.port)
                servers.append(row)
                print(f"{kind}: {row['cpu_ms_per_picture_delivered']:.3f} CPU ms per picture delivered, delay p50 "
                      f"{row['delay_ms_p50']:.1f} ms, p99 {row['delay_ms_p99']:.1f} ms, "
                      f"RSS {row['rss_serving_mib']:.0f} MiB", flush=True)
    shape = list(pictures[0].shape)
    result = {"what": "MJPEG vs WebRTC encoders, aiohttp vs Starlette+uvicorn serving MJPEG",
              "provenance": prov, "picture_shape": shape, "viewers": a.viewers,
              "pictures_per_s": PICTURES_PER_S, "encoders": encoders, "servers": servers}
    write_json_atomic(a.json, result)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
