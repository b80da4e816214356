"""Serving without a server: request decoding and its refusals, batches by plan, cameras, the repository files."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from paumer_edge.core.errors import OutputError, UserError
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.serving.batch import run_jobs
from paumer_edge.runtime.serving.cameras import CameraRegistry
from paumer_edge.runtime.serving.protocol import FrameJob, RequestError, decode_request
from paumer_edge.runtime.serving.repository import MARKER, RepositoryOptions, write_repository
from paumer_edge.runtime.serving.tritonserver import backend_env

RNG = np.random.default_rng(7)
FRAME = (RNG.random((40, 72, 3)) * 255).astype(np.uint8)


def jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes()


def test_raw_and_encoded_frames_decode_with_their_knobs() -> None:
    jobs = decode_request({"frame": np.stack([FRAME, FRAME[::-1]]), "camera_id": np.array([[b"dock-3/cam-1"]] * 2),
                           "budget": np.array([[0.5], [0.25]], np.float32)})
    assert [(j.camera_id, j.budget, j.threshold) for j in jobs] == [("dock-3/cam-1", 0.5, None),
                                                                    ("dock-3/cam-1", 0.25, None)]
    assert np.array_equal(jobs[1].frame, FRAME[::-1])
    png = cv2.imencode(".png", FRAME[..., ::-1])[1].tobytes()
    (job,) = decode_request({"image": np.array([[png]], dtype=object), "threshold": np.array([[0.3]], np.float32)})
    assert np.array_equal(job.frame, FRAME) and job.camera_id == "" and job.threshold == pytest.approx(0.3)
    gray = decode_request({"frame": FRAME[None, ..., :1]})[0].frame
    assert gray.shape == (40, 72, 3)


@pytest.mark.parametrize("inputs, message", [
    ({"frame": FRAME[None], "budget": np.array([[3.0]], np.float32)}, "input 'budget': budget 3.0 is out of range"),
    ({"frame": FRAME[None], "threshold": np.array([[np.nan]], np.float32)}, "threshold nan is out of range"),
    ({"frame": FRAME[None], "camera_id": np.array([[b"cam 1"]])}, "camera_id 'cam 1' is not a valid camera id"),
    ({"frame": FRAME[None], "camera_id": np.array([[b"\xff"]])}, "camera_id' is not UTF-8"),
    ({"image": np.array([[jpeg(FRAME)[:300]]], dtype=object)}, "not a readable JPEG or PNG"),
    ({"image": np.array([[b""]], dtype=object)}, "input 'image' is empty"),
    ({"frame": np.zeros((1, 0, 4, 3), np.uint8)}, "input 'frame' is empty"),
    ({"frame": FRAME[None].astype(np.float32)}, "dtype float32; send uint8"),
    ({"frame": FRAME[None, ..., None]}, "send HxWxC with C = 1, 3 or 4"),
    ({}, "send exactly one of 'image'"),
    ({"frame": FRAME[None], "image": np.array([[b"x"]], dtype=object)}, "send exactly one of 'image'"),
    ({"image": np.array([[jpeg(FRAME)], [jpeg(FRAME[:20])]], dtype=object)}, "must have one size"),
    ({"frame": FRAME[None], "budget": np.array([[0.5], [0.5]], np.float32)}, "one value per frame"),
])
def test_bad_requests_are_refused_with_what_to_send(inputs: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        decode_request(inputs)
    assert "\n" not in str(e.value)


def test_batched_plans_give_pipeline_labels(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    frames = [(RNG.random((40 + 8 * i, 72, 3)) * 255).astype(np.uint8) for i in range(5)]
    knobs = [(0.5, None), (None, None), (0.5, None), (None, 0.4), (0.5, None)]
    jobs = [FrameJob(f, "", b, t) for f, (b, t) in zip(frames, knobs)]
    outputs = run_jobs(pipe, jobs, budget=1.0, threshold=None)
    for frame, (b, t), out in zip(frames, knobs, outputs):
        ref = pipe(frame, budget=b if b is not None else 1.0, threshold=t)
        assert out.labels.shape == frame.shape[:2] and out.labels.dtype == np.uint8
        assert out.counts == ref.stats.counts
        assert np.mean(out.labels == ref.labels) > 0.999  # batched matmuls may round differently
    # the frame at batch 1 (threshold: alone) is exactly Pipeline's
    assert np.array_equal(outputs[3].labels, pipe(frames[3], threshold=0.4).labels)


def test_cameras_keep_state_and_never_run_concurrently() -> None:
    reg = CameraRegistry(max_cameras=4)
    inside: dict[str, int] = {}
    overlaps = []

    def frames(cam: str) -> None:
        for _ in range(20):
            with reg.claim([cam, "other-" + cam[-1]]) as states:
                inside[cam] = inside.get(cam, 0) + 1
                if inside[cam] > 1:
                    overlaps.append(cam)
                states[cam].reuse["last"] = states[cam].frames
                time.sleep(0.0005)
                inside[cam] -= 1

    threads = [threading.Thread(target=frames, args=(c,)) for c in ("a-1", "a-1", "b-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
    a = reg.get("a-1")
    assert a is not None and a.frames == 40 and a.reuse["last"] == 39
    assert reg.frames == 20 * 3 * 2
    lru = CameraRegistry(max_cameras=2)
    for cams in (["x"], ["y"], ["x"], ["z"], ["", ""]):
        with lru.claim(cams):
            pass
    assert len(lru) == 2 and lru.get("y") is None and lru.get("x") is not None  # the least recently seen went
    assert lru.get("x").frames == 2 and lru.frames == 4  # type: ignore[union-attr]


def test_backend_env_puts_this_interpreters_libpython_first() -> None:
    env = backend_env({"LD_LIBRARY_PATH": "/opt/x", "PATH": "/usr/bin"}, extra_libs=("/opt/triton",))
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR")
    if (Path(libdir) / sysconfig.get_config_var("INSTSONAME")).exists():
        assert parts[0] == libdir
    assert parts[-2:] == ["/opt/triton", "/opt/x"]
    assert env["PATH"].startswith(str(Path(sys.exec_prefix) / "bin"))


def test_repository_layout_and_configs(tiny_bundle: Path, tmp_path: Path) -> None:
    repo = write_repository(tiny_bundle, tmp_path / "repo", RepositoryOptions(max_batch=4, instances=2,
                                                                                tensorrt=True, budget=0.5))
    stages = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert stages == ["paumer", "paumer_decoder", "paumer_stage0", "paumer_stage1", "paumer_stage2", "paumer_stage3"]
    top = (repo / "paumer" / "config.pbtxt").read_text()
    assert 'backend: "python"' in top and "max_batch_size: 4" in top and "count: 2 kind: KIND_CPU" in top
    assert "dynamic_batching { max_queue_delay_microseconds: 2000 }" in top
    assert 'input { name: "frame" data_type: TYPE_UINT8 dims: [ -1, -1, -1 ] optional: true }' in top
    assert 'output { name: "labels" data_type: TYPE_UINT8 dims: [ -1, -1 ] }' in top
    assert 'key: "budget" value { string_value: "0.5" }' in top
    assert (repo / "paumer" / "1" / "bundle" / "manifest.json").is_file()
    assert "triton_bls import TritonPythonModel" in (repo / "paumer" / "1" / "model.py").read_text()
    stage1 = (repo / "paumer_stage1" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in stage1 and "kind: KIND_GPU" in stage1 and '"tensorrt"' in stage1
    assert 'input { name: "active" data_type: TYPE_INT64 dims: [ -1 ] }' in stage1
    assert (repo / "paumer_stage1" / "1" / "model.onnx").read_bytes() == (tiny_bundle / "stage1.onnx").read_bytes()
    assert not (repo / "paumer_stage1" / "1" / "model.py").exists()
    # written again over itself: replaced; over a folder that is not one: refused, untouched
    write_repository(tiny_bundle, repo, RepositoryOptions(stage_backend="python", device="cpu"))
    assert (repo / MARKER).is_file() and (repo / "paumer_stage1" / "1" / "model.py").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not a paumer-edge Triton repository; refusing"):
        write_repository(tiny_bundle, other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    with pytest.raises(UserError, match="TensorRT acceleration needs the onnxruntime stage backend on gpu"):
        write_repository(tiny_bundle, tmp_path / "r2", RepositoryOptions(device="cpu", tensorrt=True))


@pytest.mark.parametrize("args, message", [
    (["serve", "--instances", "0"], "instances 0: give at least 1"),
    (["serve", "--budget", "3"], "budget 3.0 is out of range"),
    (["serve", "--http-port", "8001"], "give three different ports"),
    (["triton", "REPO", "--stage-backend", "python", "--tensorrt"], "TensorRT acceleration needs"),
])
def test_serving_verbs_refuse_bad_options_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
