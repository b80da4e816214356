"""Overlay videos play everywhere: H.264 / yuv420p in MP4 at the right size, rate and length, a crisp text stamp,
and a real browser (headless Chromium) decodes them."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from paumer_edge.core.video import VideoSink
from paumer_edge.runtime.visualize import annotate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STAMP = "budget 0.50  tokens 512/330/212/137  17 ms"


def _write(path: Path, frames: int = 20, size: tuple[int, int] = (271, 641), fps: float = 10.0) -> list[np.ndarray]:
    sink, written = VideoSink(path, fps), []
    for i in range(frames):
        f = np.zeros((*size, 3), np.uint8)
        f[..., 0] = 40 + 5 * i
        f[100:150, 100:300] = (0, 200, 0)
        f = annotate(f, STAMP)
        sink.write(f)
        written.append(f)
    sink.close()
    assert sink.codec == "h264"
    return written


def test_the_video_is_h264_with_the_frames_size_rate_and_a_crisp_stamp(tmp_path: Path) -> None:
    frames = _write(tmp_path / "clip.mp4")
    with av.open(str(tmp_path / "clip.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p" and s.average_rate == 10
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == 20 and decoded[0].shape == (272, 642, 3)  # odd sides padded by one pixel (yuv420p)
    band = (slice(0, 20), slice(0, 300))  # the text stamp: light text on a solid dark band
    err = np.abs(decoded[10][band].astype(int) - frames[10][band].astype(int)).mean()
    assert err < 6, err  # no ghosting: the stamp survives compression


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_a_browser_plays_it(tmp_path: Path) -> None:
    _write(tmp_path / "clip.mp4")
    (tmp_path / "page.html").write_text("""<html><body><video id="v" src="clip.mp4" muted></video><canvas id="c">
</canvas><pre id="out">pending</pre><script>
const v = document.getElementById('v'), out = document.getElementById('out');
v.addEventListener('error', () => { out.textContent = 'error ' + (v.error && v.error.code); });
v.addEventListener('loadeddata', () => {
  const c = document.getElementById('c'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  out.textContent = JSON.stringify({duration: v.duration, width: v.videoWidth,
                                    pixel: Array.from(g.getImageData(200, 120, 1, 1).data)});
});</script></body></html>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom"]
        page = f"http://127.0.0.1:{server.server_address[1]}/page.html"
        proc = subprocess.run([str(CHROMIUM), *flags, page], capture_output=True, text=True, timeout=90)
    finally:
        server.shutdown()
    found = re.search(r'<pre id="out">([^<]*)', proc.stdout)
    assert found is not None, proc.stdout[-500:]
    result = json.loads(found.group(1))  # "pending" or "error N" would not parse
    assert result["duration"] == pytest.approx(2.0, abs=0.05) and result["width"] == 642
    r, g, b, _ = result["pixel"]  # the green block decoded in the browser
    assert g > 170 and r < 60 and b < 40
