"""The live view without a browser: addresses and access rules, knobs through the pipeline's setters, the
server's pictures, stats and knobs over HTTP, slow and departed viewers, and `run --view`."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from live import Feeder, clip, mjpeg_parts, request, wait_until

from paumer_edge.core.errors import PolicyError
from paumer_edge.data.streets import write_video
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.view import ViewConfig, ViewError, frames, parse_view_address
from paumer_edge.runtime.view.access import Access, ViewAddress, check_token
from paumer_edge.runtime.view.frames import FrameHub
from paumer_edge.runtime.view.knobs import Knobs

TOKEN = "s3cret-token-for-tests"


def test_addresses_and_tokens() -> None:
    assert parse_view_address("8080") == ViewAddress("127.0.0.1", 8080)
    assert parse_view_address("0.0.0.0:0") == ViewAddress("0.0.0.0", 0)
    assert parse_view_address("[::1]:9000") == ViewAddress("::1", 9000)
    assert parse_view_address("robot.local:80").loopback is False
    assert parse_view_address("localhost:80").loopback and parse_view_address("[::1]:1").loopback
    for bad in ("::1", "http", "1.2.3.4:", "99999", "[::1:80"):
        with pytest.raises(ViewError, match=r"give PORT or HOST:PORT"):
            parse_view_address(bad)
    for bad in ("short", "has space in the middle", "semi;colon-token", "amp&ersand-token", "ünïcode-token-x"):
        with pytest.raises(ViewError, match="at least 12 characters from A-Z"):
            check_token(bad)
    assert check_token(TOKEN) == TOKEN and check_token(None) is None


def test_access_rules() -> None:
    local, remote = ViewAddress("127.0.0.1", 8080), ViewAddress("0.0.0.0", 8080)
    open_local = Access(local)
    assert open_local.control and open_local.allowed("127.0.0.1:8080", None, None) is None
    assert open_local.allowed("localhost:8080", None, None) is None
    assert "does not name this machine" in (open_local.allowed("attacker.example:8080", None, None) or "")
    assert open_local.may_steer("http://127.0.0.1:8080", "127.0.0.1:8080", "application/json") is None
    assert "another site" in (open_local.may_steer("http://evil.example", "127.0.0.1:8080", "application/json") or "")
    assert "as JSON" in (open_local.may_steer(None, "127.0.0.1:8080", "text/plain") or "")
    view_only = Access(remote)
    assert not view_only.control and view_only.allowed("robot:8080", None, None) is None
    assert "--view-token" in (view_only.may_steer(None, "robot:8080", "application/json") or "")
    guarded = Access(remote, TOKEN)
    assert guarded.control
    assert "needs its token" in (guarded.allowed("robot:8080", None, None) or "")
    assert "needs its token" in (guarded.allowed("robot:8080", "wrong-token-wrong", None) or "")
    assert guarded.allowed("robot:8080", TOKEN, None) is None and guarded.allowed("robot:8080", None, TOKEN) is None


def test_knobs_use_the_pipeline_setters_and_their_messages(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    knobs = Knobs(pipe, FrameHub(pipe.info))
    for change, setter in (({"budget": 1.5}, "budget"), ({"budget": "half"}, "budget"),
                           ({"threshold": "abc"}, "threshold"), ({"threshold": -0.1}, "threshold"),
                           ({"target_ms": -5}, "target_ms"), ({"target_ms": "fast"}, "target_ms")):
        with pytest.raises(PolicyError) as api:
            setattr(pipe, setter, change[setter])
        with pytest.raises(PolicyError) as page:
            knobs.apply(change)
        assert str(page.value) == str(api.value)  # the page shows exactly the API's one line
    for bad, message in (({"pause_map": "yes"}, "give true or false"), ({"bundle": "/etc"}, "unknown knob 'bundle'"),
                         ({}, "send a JSON object"), ([1], "send a JSON object")):
        with pytest.raises(PolicyError, match=re.escape(message)):
            knobs.apply(bad)
    with pytest.raises(PolicyError):  # checked whole: the good budget is not applied either
        knobs.apply({"budget": 0.3, "threshold": 2})
    assert pipe.budget == 1.0 and pipe.threshold is None
    state = knobs.apply({"budget": "0.4", "threshold": "0.2", "pause_map": False})["knobs"]
    assert state == {"budget": 0.4, "threshold": 0.2, "target_ms": None, "pause_map": False}
    knobs.apply({"threshold": None, "target_ms": 25})
    assert pipe.threshold is None and pipe.controller is not None and pipe.target_ms == 25.0
    for _ in range(5):
        pipe(np.zeros((32, 64, 3), np.uint8))
    moved = pipe.budget
    knobs.apply({"target_ms": ""})  # an empty field turns the target off; the budget stays where it was
    assert pipe.controller is None and pipe.budget == moved


def publish_for(hub: FrameHub, frame: np.ndarray, result: object, seconds: float) -> None:
    hub.watchers = 1
    hub.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hub.publish(frame, result)  # type: ignore[arg-type]
        time.sleep(0.002)
    hub.close()


def test_pictures_keep_to_their_rate_and_their_share_of_a_core(tiny_bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Pipeline(tiny_bundle, stage_map=True, cost="macs")
    frame = clip(1)[0]
    result = pipe(frame)
    fast = FrameHub(pipe.info, config=ViewConfig(max_fps=10, max_share=1.0))
    publish_for(fast, frame, result, 1.0)
    assert 4 <= fast.encoded <= 11 and fast.frames > 100  # at most 10 a second; publishing never waited

    real = frames.render

    def slow(*args: object) -> np.ndarray:
        time.sleep(0.02)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(frames, "render", slow)
    costly = FrameHub(pipe.info, config=ViewConfig(max_fps=1000, max_share=0.1))
    publish_for(costly, frame, result, 1.0)
    # every picture takes >= 20 ms: within a tenth of a core, one every >= 200 ms
    assert 1 <= costly.encoded <= 6 and costly.frames > 100
    assert costly.encode_s >= 0.02 * costly.encoded


@pytest.fixture()
def served(tiny_bundle: Path):
    pipe = Pipeline(tiny_bundle, cost="macs")
    with pipe.serve_view(0, config=ViewConfig(max_fps=100)) as view, Feeder(pipe, view, clip(), fps=40) as feeder:
        yield pipe, view, feeder


def test_page_pictures_stats_and_knobs_over_http(served) -> None:
    pipe, view, feeder = served
    url = view.url
    status, headers, page = request(url)
    assert status == 200 and b"/view.js" in page and "script-src 'self'" in headers["Content-Security-Policy"]
    assert request(url + "view.js")[0] == 200 and request(url + "view.css")[0] == 200
    assert request(url + "nothing-here")[0] == 404
    parts = mjpeg_parts(url, 3)
    numbers = [n for n, _ in parts]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    picture = cv2.imdecode(np.frombuffer(parts[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (72, 256, 3)  # the overlay and the pause map beside it
    state = json.loads(request(url + "state")[2])
    assert state["model"] == "tiny" and state["patches"] == 32 and state["control"] is True
    assert state["knobs"] == {"budget": 1.0, "threshold": None, "target_ms": None, "pause_map": True}

    status, _, body = request(url + "knobs", {"budget": 0.3})
    assert status == 200, body
    before = json.loads(body)["frames_before"]
    wait_until(lambda: view.hub.frames > before + 3, what="frames after the change")
    after = view.hub.records(after=before - 1)
    first_new = next(r["frame"] for r in after if r["budget"] == 0.3)
    assert first_new - before < 3 and all(r["budget"] == 0.3 for r in after if r["frame"] >= first_new)
    assert pipe.budget == 0.3

    status, _, body = request(url + "knobs", {"budget": 7})
    assert status == 400 and json.loads(body) == {
        "error": "budget 7 is out of range: give a fraction of the full compute in (0, 1]"}
    assert request(url + "knobs", b"not json", {"Content-Type": "application/json"})[0] == 400
    assert request(url + "knobs", b"budget=0.5", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert request(url + "knobs", {"budget": 0.5}, {"Origin": "http://evil.example"})[0] == 403
    assert request(url + "state", headers={"Host": "evil.example"})[0] == 403
    assert pipe.budget == 0.3

    assert request(url + "knobs", {"pause_map": False})[0] == 200
    picture = cv2.imdecode(np.frombuffer(mjpeg_parts(url, 2)[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (72, 128, 3)  # the overlay alone


def test_events_stream_history_then_stats(served) -> None:
    _, view, _ = served
    wait_until(lambda: view.hub.frames > 0, what="a first frame (the history the hello carries)")
    u = urlsplit(view.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", "/events")
    r = conn.getresponse()
    assert r.getheader("Content-Type") == "text/event-stream"
    events = []
    while len(events) < 3:
        line = r.fp.readline().decode()
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
            events.append((name, json.loads(r.fp.readline().decode().split(":", 1)[1])))
    conn.close()
    (hello_name, hello), (stats_name, stats) = events[0], events[1]
    assert hello_name == "hello" and hello["stages"] == 4 and len(hello["stage_colors"]) == 4 and hello["records"]
    assert stats_name == "stats" and stats["records"] and stats["fps"] > 0
    record = stats["records"][-1]
    assert len(record["stage_ms"]) == 4 and record["counts"][0] == 32 and 0 < record["compute"] <= 1
    assert stats["records"][0]["frame"] > hello["records"][-1]["frame"]  # nothing sent twice
    assert events[2][1]["records"][0]["frame"] > record["frame"]


def test_tokens_and_view_only_binding(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    with pipe.serve_view(0, token=TOKEN) as view:
        base = view.url.split("?")[0]
        assert view.url.endswith(f"?token={TOKEN}")
        for path in ("", "state", "stream.mjpg", "events", "view.js"):
            assert request(base + path)[0] == 401, path
        status, headers, _ = request(view.url)
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert f"paumer_view_{view.address.port}={TOKEN}" in cookie and "HttpOnly" in cookie and "Strict" in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert request(base, headers=jar)[0] == 200
        assert request(base + "knobs", {"budget": 0.5}, jar)[0] == 200
        assert request(base + "knobs", {"budget": 0.6}, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert request(base + "knobs", {"budget": 0.7}, {"Authorization": "Bearer wrong-token-123"})[0] == 401
        assert pipe.budget == 0.6
    with pipe.serve_view(0, host="0.0.0.0") as view:  # beyond this machine without a token: view only
        base = f"http://127.0.0.1:{view.address.port}/"
        assert request(base)[0] == 200
        status, _, body = request(base + "knobs", {"budget": 0.2})
        assert status == 403 and "--view-token" in json.loads(body)["error"] and pipe.budget == 0.6
        assert json.loads(request(base + "state")[2])["control"] is False


def test_port_taken_is_one_clear_line(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ViewError, match=r"cannot serve the view on 127.0.0.1:\d+: .*pick another port"):
            pipe.serve_view(taken.getsockname()[1])


def test_publishing_after_close_and_closing_twice_are_harmless(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    frame = clip(1)[0]
    view = pipe.serve_view(0)
    port = view.address.port
    view.close()
    view.publish(frame, pipe(frame))  # a robot loop that outlives its view
    view.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_slow_viewers_skip_stalled_ones_are_dropped_and_leavers_leave_nothing(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    threads_before = threading.active_count()
    config = ViewConfig(max_fps=200, send_timeout_s=1.0, max_width=2000, max_share=1.0)  # pictures flat out
    big = [cv2.resize(f, (1280, 720)) for f in clip(3)]  # large pictures fill a stalled socket quickly
    with pipe.serve_view(0, config=config) as view, Feeder(pipe, view, big, fps=None) as feeder:
        stalled = []
        for _ in range(2):  # connect, then never read
            s = socket.create_connection(("127.0.0.1", view.address.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{view.address.port}\r\n\r\n".encode())
            stalled.append(s)
        wait_until(lambda: view.viewers == 2, what="two stalled viewers")
        start = feeder.count
        numbers = [n for n, _ in mjpeg_parts(view.url, 4)]  # a reading viewer keeps getting the newest
        assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
        wait_until(lambda: feeder.count > start + 20, what="inference going on beside stalled viewers")
        wait_until(lambda: view.viewers == 0, timeout=15, what="stalled viewers dropped after send_timeout_s")
        for s in stalled:
            s.close()
        quick = [mjpeg_parts(view.url, 1) for _ in range(5)]  # viewers that come and go
        assert all(len(q) == 1 for q in quick)
        wait_until(lambda: view.connections == 0, what="departed viewers forgotten")
    wait_until(lambda: threading.active_count() <= threads_before, what="the view's threads to end")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("view-video") / "loop.mp4"
    frames = clip(4)
    write_video(path, (frames[i % 4] for i in range(1500)), fps=30)
    return path


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "paumer_edge.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_run_with_view(tiny_bundle: Path, long_video: Path, tmp_path: Path) -> None:
    proc = run_cli(str(long_video), "--model", str(tiny_bundle), "--view", "127.0.0.1:0", "--no-save", "--quiet",
                   "--cost", "macs")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("live view: http://127.0.0.1:"), line + proc.stderr.read() if proc.stderr else ""
    url = line.split("live view: ")[1].strip()
    status, _, body = request(url + "knobs", {"budget": 0.25})
    assert status == 200, body
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("1500 frames in")
    assert float(summary.split("mean budget ")[1].split(";")[0]) < 0.5
    with pytest.raises(OSError):  # the port is free again: nothing is left serving
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), timeout=2).close()


def test_run_view_mistakes_are_one_line(tiny_bundle: Path, long_video: Path) -> None:
    cases = [(["--view", "nonsense"], "view address 'nonsense': give PORT or HOST:PORT"),
             (["--view-token", TOKEN], "--view-token protects the live view: give --view"),
             (["--view", "0", "--view-token", "short"], "view token: give at least 12 characters")]
    procs = [run_cli(str(long_video), "--model", str(tiny_bundle), "--quiet", *args) for args, _ in cases]
    for proc, (_, message) in zip(procs, cases):  # side by side: each is a process start, then one line
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_run_view_beyond_localhost_warns(tiny_bundle: Path, long_video: Path) -> None:
    proc = run_cli(str(long_video), "--model", str(tiny_bundle), "--quiet", "--view", "0.0.0.0:0", "--no-save",
                   "--max-frames", "5", "--cost", "macs")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "live view: http://127.0.0.1:" in out
    assert "anyone who reaches this machine" in err and "--view-token" in err
