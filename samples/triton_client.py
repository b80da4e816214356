"""A camera client of a paumer-edge model served on Triton: send frames over gRPC, get labels, draw them.

    paumer-edge serve &                                              # or tritonserver on `paumer-edge triton` output
    python samples/triton_client.py drive.mp4 --camera-id dock-3/cam-12 --budget 0.5 --out cam12.mp4
    python samples/triton_client.py 0 --url grpc://gpu-server:8001 --jpeg     # camera 0, JPEG over the wire

SOURCE is a video file, camera index, stream URL or image folder (default: a generated street drive).
Each frame goes to the server as raw RGB (or JPEG with --jpeg: about 10x fewer bytes, decoded on the
server); labels come back as uint8 and are drawn over the frame with the bundle's palette (--bundle)
or a fixed one. Needs only numpy, OpenCV and tritonclient (pip install "paumer-edge[serve]").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from paumer_edge.core.video import VideoSink
from paumer_edge.runtime.preprocess import to_rgb_uint8
from paumer_edge.runtime.serving import SegmentClient
from paumer_edge.runtime.sources import open_source
from paumer_edge.runtime.visualize import annotate, overlay


def palette(bundle: str | None) -> np.ndarray:
    """The bundle's class colours, or 256 fixed distinct ones."""
    if bundle:
        from paumer_edge.runtime import load_bundle

        return np.asarray(load_bundle(bundle).model.palette, np.uint8)
    rng = np.random.default_rng(0)
    return rng.integers(40, 256, (256, 3)).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", help="video file, camera index, URL or image folder (default: a street drive)")
    ap.add_argument("--url", default="grpc://127.0.0.1:8001", help="the server (grpc://HOST:PORT or http://HOST:PORT)")
    ap.add_argument("--model", default="paumer", help="the model's name on the server")
    ap.add_argument("--camera-id", default="cam-0", help="this camera's id (per-camera state on the server)")
    ap.add_argument("--budget", type=float, help="compute budget for these frames (default: the server's)")
    ap.add_argument("--jpeg", action="store_true", help="send JPEG instead of raw RGB")
    ap.add_argument("--bundle", help="the served bundle, for its class colours")
    ap.add_argument("--out", default="triton_client.mp4", help="overlay video to write")
    ap.add_argument("--frames", type=int, default=100, help="stop after this many frames")
    a = ap.parse_args()
    source = a.source
    if source is None:
        from paumer_edge.data.streets import make_street_video

        source = "client_drive.mp4"
        if not Path(source).exists():
            make_street_video(source, seed=5, seconds=4, fps=25, size=(240, 426))
    colours = palette(a.bundle)
    src = open_source(source)
    sink = VideoSink(a.out, src.fps or 25.0)
    ok = False
    with SegmentClient(a.url, a.model) as client:
        try:
            for frame in src:
                rgb = to_rgb_uint8(frame.image)
                payload = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes() if a.jpeg else rgb
                t0 = time.perf_counter()
                served = client.segment(payload, camera_id=a.camera_id, budget=a.budget)
                ms = (time.perf_counter() - t0) * 1000
                tokens = "/".join(str(c) for c in served.counts)
                sink.write(annotate(overlay(rgb, served.labels, colours),
                                    f"{a.camera_id}  {ms:.0f} ms round trip  tokens {tokens}"))
                print(f"frame {frame.index:4d}: {ms:6.1f} ms, compute {100 * served.cost:5.1f}%, tokens {tokens}")
                if frame.index + 1 >= a.frames:
                    break
            ok = True
        finally:
            sink.close(keep=ok)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
