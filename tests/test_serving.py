"""Serving for real on 127.0.0.1: `paumer-edge serve` (PyTriton) and a generated repository on tritonserver.

Both give Pipeline's labels for the same frames, refuse bad requests with a clear error and keep serving.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytriton", reason="needs the serve extra: pip install 'paumer-edge[serve]'")

from paumer_edge.runtime import Pipeline  # noqa: E402
from paumer_edge.runtime.serving import (  # noqa: E402
    RepositoryOptions,
    SegmentClient,
    ServedRequestError,
    TritonServerProcess,
    write_repository,
)
from paumer_edge.runtime.serving.tritonserver import free_port  # noqa: E402

RNG = np.random.default_rng(3)
FRAMES = [(RNG.random((48 + 16 * (i % 2), 96, 3)) * 255).astype(np.uint8) for i in range(4)]
BAD = [  # (frame, knobs, what the error says)
    (FRAMES[0], {"budget": 3.0}, "budget 3.0 is out of range"),
    (FRAMES[0], {"camera_id": "cam 1"}, "is not a valid camera id"),
    (b"\xff\xd8\xff\xe0 not really a jpeg", {}, "not a readable JPEG or PNG"),
    (np.zeros((0, 8, 3), np.uint8), {}, "is empty"),
]


def jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def wait_ready(client: SegmentClient, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.ready():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "server not ready"
        time.sleep(0.3)


def check_served(client: SegmentClient, pipe: Pipeline) -> None:
    """Labels equal Pipeline's (raw and JPEG, several budgets), bad requests refused, server still serving."""
    for frame, budget in zip(FRAMES, (1.0, 0.5, 0.25, 0.5)):
        served = client.segment(frame, camera_id="dock-3/cam-1", budget=budget)
        ref = pipe(frame, budget=budget)
        assert np.array_equal(served.labels, ref.labels) and served.counts == ref.stats.counts
        assert served.cost == pytest.approx(ref.stats.cost_fraction, rel=1e-5)
    data = jpeg(FRAMES[1])
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(client.segment(data, camera_id="cam-2").labels, pipe(decoded, budget=1.0).labels)
    for frame, knobs, message in BAD:
        with pytest.raises(ServedRequestError, match=message) as e:
            client.segment(frame, **knobs)
        assert "Traceback" not in str(e.value)
    with pytest.raises(ServedRequestError, match="data-type is 'FP32', but model 'paumer' expects 'UINT8'"):
        client.segment(FRAMES[0].astype(np.float32))
    # four cameras at once: dynamically batched, each its own labels
    with ThreadPoolExecutor(4) as pool:
        many = list(pool.map(lambda i: client.segment(FRAMES[i], camera_id=f"cam-{i}", budget=0.5), range(4)))
    for frame, served in zip(FRAMES, many):
        assert np.mean(served.labels == pipe(frame, budget=0.5).labels) > 0.999  # batched matmuls may round apart


def test_serve_verb_serves_pipeline_labels_and_stops_cleanly(tiny_bundle: Path, tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "paumer_edge.cli", "serve", str(tiny_bundle), "--cost", "macs", "--max-delay-us",
           "20000", "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           "--log-file", str(tmp_path / "triton.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pipe = Pipeline(tiny_bundle, cost="macs")
        with SegmentClient(f"grpc://127.0.0.1:{ports[1]}") as client:
            wait_ready(client, proc)
            check_served(client, pipe)
            # past the helper's own check, an empty frame fails in PyTriton itself: an error, and serving goes on
            empty = client._tc.InferInput("frame", [1, 0, 8, 3], "UINT8")
            empty.set_data_from_numpy(np.zeros((1, 0, 8, 3), np.uint8))
            with pytest.raises(ServedRequestError, match="the server failed on this request"):
                client.infer([empty])
        with SegmentClient(f"http://127.0.0.1:{ports[0]}") as client:
            assert np.array_equal(client.segment(FRAMES[2], budget=0.5).labels, pipe(FRAMES[2], budget=0.5).labels)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"HTTP http://127.0.0.1:{ports[0]}, gRPC grpc://127.0.0.1:{ports[1]}" in out
    assert f"metrics http://127.0.0.1:{ports[2]}/metrics" in out
    assert "served 9 frames from 5 cameras; stopped" in out  # 4 on dock-3/cam-1, 1 on cam-2, 4 on cam-0..3
    assert "Traceback" not in out


def test_repository_on_tritonserver_serves_pipeline_labels(tiny_bundle: Path, tmp_path: Path) -> None:
    repo = write_repository(tiny_bundle, tmp_path / "repo", RepositoryOptions(
        stage_backend="python", device="cpu", max_delay_us=20000))
    pipe = Pipeline(tiny_bundle, cost="macs")  # the repository's budgets are fractions of MACs
    with TritonServerProcess(repo) as server, SegmentClient(server.grpc_url) as client:
        check_served(client, pipe)
        # a bad request batched with good ones fails alone (the Python backend answers request by request)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client.segment, FRAMES[i], f"cam-{i}", 3.0 if i == 2 else 0.5) for i in range(4)]
            for i, f in enumerate(futures):
                if i == 2:
                    with pytest.raises(ServedRequestError, match="budget 3.0 is out of range"):
                        f.result()
                else:
                    assert f.result().labels.shape == FRAMES[i].shape[:2]
        import urllib.request

        with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
            metrics = r.read().decode()
        assert 'nv_inference_request_success{model="paumer",version="1"}' in metrics


def test_stopping_finishes_requests_in_flight(tiny_bundle: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What Ctrl-C does (PipelineServer.stop): no new requests, and the one being computed still gets its labels."""
    from paumer_edge.runtime.serving import PipelineServer, ServeConfig, binding

    slow_run = binding.run_jobs

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(1.5)
        return slow_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(binding, "run_jobs", slow)
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), cost="macs",
                         log_file=str(tmp_path / "triton.log"))
    server = PipelineServer(tiny_bundle, config).start()
    try:
        with SegmentClient(server.urls["grpc"]) as client, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.segment, FRAMES[0], "cam-1", 0.5)
            time.sleep(0.5)  # the request is inside the model now
            t0 = time.monotonic()
            server.stop()
            assert pending.done() and time.monotonic() - t0 >= 0.5
            served = pending.result()
        assert np.array_equal(served.labels, Pipeline(tiny_bundle, cost="macs")(FRAMES[0], budget=0.5).labels)
        with SegmentClient(server.urls["grpc"]) as client:
            assert not client.ready()
    finally:
        server.stop()
