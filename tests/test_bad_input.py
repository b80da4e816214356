"""Bad input gets one clear line and exit code 2 (CLI) or a typed UserError (API), never a traceback; corrupt
frames are skipped and counted; a dropping stream reconnects, then gives up clearly; a full disk loses nothing."""

from __future__ import annotations

import csv
import errno
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from paumer_edge.core.pausing import Pauser, PausingPolicy
from paumer_edge.core.video import VideoSink
from paumer_edge.data.streets import street_frames, write_video
from paumer_edge.runtime import FrameError, OutputError, Pipeline, PolicyError, SourceError
from paumer_edge.runtime.sinks import LabelSink
from paumer_edge.runtime.sources import VideoSource, open_source


def cli(*args: str, cwd: Path | None = None, code: str = "") -> subprocess.CompletedProcess:
    """The CLI in its own process; `code` runs first (to stand in for a failing disk or a flaky network)."""
    if code:
        prog = f"{code}\nimport sys\nfrom paumer_edge.cli import main\nsys.exit(main({list(args)!r}))"
        cmd = [sys.executable, "-c", prog]
    else:
        cmd = [sys.executable, "-m", "paumer_edge.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def one_clear_line(proc: subprocess.CompletedProcess, message: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "drive.mp4"
    write_video(path, (img for img, _ in street_frames(3, (48, 80), seconds=0.6, fps=10)), fps=10)
    return path


def mjpeg_with_a_corrupt_frame(path: Path, frames: int = 10, bad: tuple[int, ...] = (4,)) -> None:
    """An MJPEG AVI whose frames `bad` have their JPEG data overwritten: the decoder cannot read them."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8] + [len(data) - 40]
    assert len(starts) == frames + 1
    for b in bad:
        data[starts[b]:starts[b + 1] - 40] = b"A" * (starts[b + 1] - 40 - starts[b])
    path.write_bytes(bytes(data))


# ---- files that are missing, unreadable, not videos, empty -----------------------------------------------
def test_sources_that_cannot_be_used(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("text, not a video")
    empty = cv2.VideoWriter(str(tmp_path / "empty.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10, (64, 48))
    empty.release()  # a header, no frames
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "no_images").mkdir()
    cases = {"missing.mp4": "does not exist", "notes.mp4": "cannot be decoded", "empty.mp4": "cannot be decoded",
             "zero.mp4": "cannot be decoded", "no_images": "no images", "nothing*.png": "no images",
             "rtsp://127.0.0.1:9/none": "cannot open the stream", "9": "camera 9 is not available"}
    for source, message in cases.items():
        with pytest.raises(SourceError, match=message):
            open_source(str(tmp_path / source) if "/" not in source and not source.isdigit() else source)
    for source in ("notes.mp4", "no_images", "9"):
        one_clear_line(cli("run", source, "--model", str(tiny_bundle), "--quiet", cwd=tmp_path), cases[source])


def test_a_video_that_opens_but_has_no_decodable_frame(tmp_path: Path) -> None:
    clip = tmp_path / "all_bad.avi"
    mjpeg_with_a_corrupt_frame(clip, frames=4, bad=(0, 1, 2, 3))
    source = open_source(str(clip))  # the container is fine; no frame in it is
    with pytest.raises(SourceError, match="has no frames that can be decoded"):
        list(source)


def test_files_the_system_will_not_let_us_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import paumer_edge.runtime.sources as sources

    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    monkeypatch.setattr(sources.os, "access", lambda *args, **kwargs: False)  # as for another user's files
    for name, what in (("clip.mp4", "file"), ("frames", "folder")):
        with pytest.raises(SourceError, match=f"cannot read {what} '.*{name}' \\(permission denied\\)"):
            open_source(str(tmp_path / name))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_files(tiny_bundle: Path, video: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(video.read_bytes())
    locked.chmod(0)
    with pytest.raises(SourceError, match="permission denied"):
        open_source(str(locked))


# ---- corrupt frames: skipped, counted, the run goes on -----------------------------------------------
def test_a_corrupt_frame_in_a_video_is_skipped_and_counted(tiny_bundle: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    mjpeg_with_a_corrupt_frame(clip)
    labels = tmp_path / "labels"
    proc = cli("run", str(clip), "--model", str(tiny_bundle), "--save-labels", str(labels), "--out",
               str(tmp_path / "out.mp4"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("9 frames in") and "; 1 unreadable frames skipped" in summary, summary
    rows = list(csv.DictReader((labels / "index.csv").open()))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # frames keep their numbers
    assert {r["file"] for r in rows} == {p.name for p in labels.glob("*.png")}
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 9


def test_image_folder_of_every_kind(tiny_bundle: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    (images / "b").mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "a" / "gray.png"), rng.integers(0, 255, (30, 50), dtype=np.uint8))
    cv2.imwrite(str(images / "a" / "rgba.png"), rng.integers(0, 255, (40, 60, 4), dtype=np.uint8))
    cv2.imwrite(str(images / "a" / "deep.png"), rng.integers(0, 65535, (36, 52, 3), dtype=np.uint16))
    cv2.imwrite(str(images / "a" / "deep_gray.png"), rng.integers(0, 65535, (20, 24), dtype=np.uint16))
    cv2.imwrite(str(images / "a" / "speck.png"), rng.integers(0, 255, (3, 5, 3), dtype=np.uint8))  # < a patch
    cv2.imwrite(str(images / "b" / "gray.png"), np.zeros((10, 10), np.uint8))  # same name, other folder
    (images / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)  # a corrupt image
    labels, out = tmp_path / "labels", tmp_path / "mixed.mp4"
    proc = cli("run", str(images / "*" / "*.png"), "--model", str(tiny_bundle), "--save-labels", str(labels),
               "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("6 frames") and "1 unreadable frames skipped" in summary, summary
    shapes = {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape for p in labels.glob("*.png")}
    assert shapes == {"gray": (30, 50), "gray_2": (10, 10), "rgba": (40, 60), "deep": (36, 52),
                      "deep_gray": (20, 24), "speck": (3, 5)}
    rows = list(csv.DictReader((labels / "index.csv").open()))
    assert {Path(r["source"]).name for r in rows} == {"gray.png", "rgba.png", "deep.png", "deep_gray.png",
                                                      "speck.png"}
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 6  # mixed sizes, one video


# ---- frames and tensors through the API ------------------------------------------------------------------
def test_frames_of_every_layout_and_size(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (30, 40), dtype=np.uint8),  # gray
              rng.integers(0, 255, (30, 40, 4), dtype=np.uint8),  # RGBA
              rng.integers(0, 65535, (30, 40, 3), dtype=np.uint16),  # 16-bit
              rng.random((30, 40, 3)).astype(np.float16),
              np.full((2, 3, 3), np.nan, np.float32),  # smaller than a patch, and NaN
              np.zeros((8000, 8000, 3), np.uint8)]  # very large: handled
    for f in frames:
        assert pipe(f).labels.shape == f.shape[:2]
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))  # no memory behind it
    with pytest.raises(FrameError, match="20000x20000 pixels is larger than the 256 megapixels"):
        pipe(huge)
    bad = [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 5), np.uint8), np.zeros((2, 4, 4, 3), np.uint8),
           np.zeros((4, 4, 3), np.complex64), np.array([[object()]]), np.array([["a"]]), None, [[1, 2], [3]],
           np.zeros((4, 4), "datetime64[s]")]
    for f in bad:
        with pytest.raises(FrameError):
            pipe(f)  # type: ignore[arg-type]


def test_a_tensor_of_the_wrong_shape_says_what_the_bundle_takes(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle)
    for x in (np.zeros((1, 3, 64, 64), np.float32), np.zeros((1, 3, 32, 64), np.float64), np.zeros((3, 32, 64))):
        with pytest.raises(FrameError, match=r"takes float32 \[B, 3, 32, 64\] \(exported at 32x64\)"):
            pipe.runner.forward(x, Pauser(pipe.bundle.cost, PausingPolicy(0.5)))


def test_budgets_and_thresholds_out_of_range(tiny_bundle: Path, video: Path, tmp_path: Path) -> None:
    for bad in (0.0, -1.0, 1.5, float("nan"), float("inf"), "half", None):
        with pytest.raises(PolicyError):
            Pipeline(tiny_bundle, budget=bad)  # type: ignore[arg-type]
    pipe = Pipeline(tiny_bundle)
    frame = np.zeros((20, 30, 3), np.uint8)
    for kwargs in ({"budget": 2.0}, {"threshold": -0.1}, {"threshold": float("nan")}, {"budget": "x"}):
        with pytest.raises(PolicyError):
            pipe(frame, **kwargs)  # type: ignore[arg-type]
    for args, message in ((["--budget", "nan"], "budget nan is out of range"),
                          (["--budget", "1.5"], "budget 1.5 is out of range"),
                          (["--threshold", "2"], "threshold 2.0 is out of range"),
                          (["--target-ms", "-5"], "--target-ms -5.0 is out of range: give a positive number"),
                          (["--max-frames", "0"], "--max-frames 0 is out of range: give a whole number >= 1"),
                          (["--threads", "-1"], "--threads -1 is out of range: give 0"),
                          (["--budget", "abc"], "Invalid value for '--budget': 'abc' is not a valid float"),
                          (["--out", "x.gif"], "needs an .mp4, .avi or .mkv extension"),
                          (["--out", "missing/x.mp4"], "output folder 'missing' does not exist")):
        one_clear_line(cli("run", str(video), "--model", str(tiny_bundle), "--quiet", *args, cwd=tmp_path), message)


def test_a_checkpoint_that_does_not_fit_the_bundle_and_bad_bench_rounds(tiny_bundle: Path, tmp_path: Path) -> None:
    from paumer_edge.checkpoint import save_checkpoint
    from paumer_edge.config import preset
    from paumer_edge.model import PausingSegmenter

    other = tmp_path / "other.pt"
    save_checkpoint(other, PausingSegmenter(preset("tiny").replace(pause_after=(1, 3))))
    one_clear_line(cli("verify", str(tiny_bundle), "--ckpt", str(other), "--frames", "1"),
                   "does not fit bundle")
    one_clear_line(cli("bench", str(tiny_bundle), "--rounds", "0"), "--rounds 0 is out of range: give a whole number")


def test_an_interrupted_bundle_swap_says_where_the_old_bundle_is(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from paumer_edge.runtime import BundleError, load_bundle

    shutil.copytree(tiny_bundle, tmp_path / ".robot.paumer.old-1234")  # as left between the exporter's renames
    with pytest.raises(BundleError, match=r"interrupted export left the previous one at '.*\.robot\.paumer\.old-1234'"):
        load_bundle(tmp_path / "robot.paumer")


# ---- a stream that drops ---------------------------------------------------------------------------------
class FlakyCamera:
    """An MJPEG-over-HTTP camera on 127.0.0.1: connection i sends plan[i] frames (frame `corrupt` of the first
    is garbage) and then drops; once the plan is used up it answers 503 (the camera is gone)."""

    def __init__(self, plan: list[int], corrupt: int = -1):
        self.plan, self.corrupt, self.connections = plan, corrupt, 0
        jpegs = [cv2.imencode(".jpg", np.full((48, 64, 3), 20 * i, np.uint8))[1].tobytes() for i in range(10)]
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                k = camera.connections
                camera.connections += 1
                if k >= len(camera.plan):
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(camera.plan[k]):
                        data = b"\xff\xd8garbage" * 20 if (k == 0 and i == camera.corrupt) else jpegs[i % 10]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(data) + data + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.005)
                except OSError:
                    pass  # the client hung up first

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dropping_stream_reconnects_then_gives_up_clearly() -> None:
    camera = FlakyCamera([6, 4], corrupt=3)
    try:
        source = VideoSource(camera.url, "stream", reconnects=3, backoff_s=0.02)
        assert source.live
        got: list[int] = []
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"stream .* dropped after 9 frames and did not come back "
                                              r"\(3 reconnection attempts") as err:
            for frame in source:
                got.append(frame.index)
        assert time.monotonic() - t0 < 20  # bounded: 0.02 + 0.04 + 0.08 s of back-off, plus the reads
        assert err.value.after_frames == 9
        assert got == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # one corrupt frame skipped, numbers kept across the drop
        assert source.skipped == 1 and source.reconnections == 1
        assert camera.connections == 2 + 3  # the two good connections, then three refused attempts
    finally:
        camera.close()


def test_the_cli_keeps_what_it_had_when_a_stream_is_lost(tiny_bundle: Path, tmp_path: Path) -> None:
    camera = FlakyCamera([5])
    out = tmp_path / "live.mp4"
    try:
        proc = cli("run", camera.url, "--model", str(tiny_bundle), "--out", str(out), "--quiet", cwd=tmp_path,
                   code="from paumer_edge.runtime.sources import VideoSource\nVideoSource.backoff_s = 0.01")
    finally:
        camera.close()
    line = one_clear_line(proc, "dropped after 5 frames and did not come back")
    assert f"kept the results until then (video {out})" in line
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 5


# ---- a disk that fills -----------------------------------------------------------------------------------
FULL_DISK = """
import errno
import paumer_edge.core.video as video
real = video._AvEncoder.write
count = [0]
def fills_up(self, rgb):
    count[0] += 1
    if count[0] == 3:
        raise OSError(errno.ENOSPC, "No space left on device")
    real(self, rgb)
video._AvEncoder.write = fills_up
"""


def test_a_full_disk_removes_the_partial_video_and_keeps_the_previous_one(tiny_bundle: Path, video: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "overlay.mp4"
    first = cli("run", str(video), "--model", str(tiny_bundle), "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--out", str(out), "--quiet", code=FULL_DISK)
    one_clear_line(proc, f"cannot write '{out}': the disk is full: free some space or write elsewhere")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]  # no partial file left


def test_sinks_stop_before_the_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import paumer_edge.core.video as sinks

    video, labels = VideoSink(tmp_path / "v.mp4", 10), LabelSink(tmp_path / "labels", first_flush=2)
    frame = np.zeros((32, 48, 3), np.uint8)
    for i in range(30):
        video.write(frame)
        labels.write(f"f{i}", np.zeros((32, 48), np.uint8), i)
    assert (tmp_path / "labels" / "index.csv").exists()  # written as the folder grew
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    with pytest.raises(OutputError, match="the disk is full"):
        for _ in range(sinks.FREE_CHECK_EVERY):
            video.write(frame)
    with pytest.raises(OutputError, match=r"cannot write .*g\d+.png': the disk is full") as err:
        for i in range(sinks.FREE_CHECK_EVERY):
            labels.write(f"g{i}", np.zeros((32, 48), np.uint8), 30 + i)
    labels.close(strict=False)
    assert not (tmp_path / "v.mp4").exists()
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]
    rows = list(csv.DictReader((tmp_path / "labels" / "index.csv").open()))
    assert 30 <= len(rows) < 30 + sinks.FREE_CHECK_EVERY
    assert {r["file"] for r in rows} == {p.name for p in (tmp_path / "labels").glob("*.png")}  # complete ones
    assert err.value.errno == errno.ENOSPC
    assert issubclass(OutputError, OSError)  # code that handles failed writes as OSError keeps working
