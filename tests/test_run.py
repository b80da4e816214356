"""`paumer-edge run` and `bench`: every source kind, every output kind, the cached export, clear errors."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from paumer_edge import UserError
from paumer_edge.core.provenance import bundle_identity, missing_fields
from paumer_edge.data.streets import street_frames, write_video
from paumer_edge.export import GRAPHS_REVISION
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.bundle import load_bundle
from paumer_edge.runtime.loop import run_stream
from paumer_edge.runtime.sources import open_source


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "drive.mp4"
    write_video(path, (img for img, _ in street_frames(3, (72, 128), seconds=1.2, fps=10)), fps=10)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory, video: Path) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, (img, _) in enumerate(street_frames(4, (60, 100), seconds=0.5, fps=10)):
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "gray.png"), np.full((50, 80), 128, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_video_file_with_every_output(tiny_bundle: Path, video: Path, tmp_path: Path) -> None:
    out, labels = tmp_path / "overlay.mp4", tmp_path / "labels"
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--budget", "0.5", "--out", str(out),
               "--save-labels", str(labels), "--pause-map", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("12 frames in") and "FPS" in summary
    assert "active tokens per stage (recomputed) 32/" in summary  # a video reuses (none here: every frame full)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 256  # overlay and pause map side by side
    pngs = sorted(labels.glob("*.png"))
    assert len(pngs) == 12 and pngs[0].name == "frame_000000.png"
    lab = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (72, 128) and lab.max() < 10
    assert not list(tmp_path.glob(".*partial*"))


def test_blended_pause_map_and_threshold_mode(tiny_bundle: Path, video: Path, tmp_path: Path) -> None:
    out = tmp_path / "blend.mp4"
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--threshold", "0.9", "--pause-map", "blend",
               "--out", str(out), "--quiet", "--max-frames", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("5 frames")
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_WIDTH) == 128


def test_target_latency_mode(tiny_bundle: Path, video: Path) -> None:
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--target-ms", "0.001", "--no-save", "--quiet")
    assert proc.returncode == 0, proc.stderr
    budget = float(proc.stdout.strip().split("mean budget ")[1].split(";")[0])
    assert budget < 0.5


def test_image_folder_glob_and_single_image(tiny_bundle: Path, image_folder: Path, tmp_path: Path) -> None:
    for source, count in ((str(image_folder), 6), (str(image_folder / "img_0*.png"), 5),
                          (str(image_folder / "gray.png"), 1)):
        labels = tmp_path / f"labels_{count}"
        proc = cli("run", source, "--model", str(tiny_bundle), "--save-labels", str(labels), "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert len(list(labels.glob("*.png"))) == count
    assert cv2.imread(str(tmp_path / "labels_6" / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (50, 80)
    assert cv2.imread(str(tmp_path / "labels_6" / "img_03.png"), cv2.IMREAD_UNCHANGED).shape == (60, 100)


def test_http_stream_source(tiny_bundle: Path, video: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
        source = open_source(url)
        assert source.kind == "stream"
        summary = run_stream(Pipeline(tiny_bundle), source, progress=False)
        assert summary.frames == 12
    finally:
        server.shutdown()


def test_camera_that_is_not_there() -> None:
    with pytest.raises(UserError, match="camera 7 is not available"):
        open_source("7")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: (d / "fake.mp4").write_text("text, not video") and d / "fake.mp4", "is not a video"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
    ],
)
def test_bad_sources_are_clear(tiny_bundle: Path, tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path)
    proc = cli("run", str(source), "--model", str(tiny_bundle), "--quiet")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_show_without_a_display_is_a_clear_error(tiny_bundle: Path, video: Path) -> None:
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--show", "--quiet")
    if proc.returncode == 0:
        pytest.skip("this OpenCV can open windows")
    assert proc.returncode == 2 and "--show needs OpenCV with GUI support" in proc.stderr


def test_conflicting_knobs_and_bad_values(tiny_bundle: Path, video: Path) -> None:
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--budget", "0.5", "--target-ms", "10")
    assert proc.returncode == 2 and "--target-ms sets the budget itself" in proc.stderr
    proc = cli("run", str(video), "--model", str(tiny_bundle), "--budget", "0")
    assert proc.returncode == 2 and "budget 0.0 is out of range" in proc.stderr


def test_checkpoint_is_exported_once_to_the_cache(tiny_ckpt: Path, video: Path, tmp_path: Path,
                                                   private_cache: Path) -> None:
    ckpt = tmp_path / "mine.pt"
    shutil.copy(tiny_ckpt, ckpt)
    first = cli("run", str(video), "--model", str(ckpt), "--no-save", "--max-frames", "2")
    assert first.returncode == 0, first.stderr
    assert "exporting" in first.stdout
    bundles = list((private_cache / "bundles").glob("mine-*.paumer"))
    assert len(bundles) == 1
    second = cli("run", str(video), "--model", str(ckpt), "--no-save", "--max-frames", "2")
    assert second.returncode == 0 and "exporting" not in second.stdout
    # an export by an older exporter (other graphs for the same checkpoint) is remade, not reused
    manifest = bundles[0] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["exporter"]["graphs_revision"] = 1
    manifest.write_text(json.dumps(data))
    third = cli("run", str(video), "--model", str(ckpt), "--no-save", "--max-frames", "2")
    assert third.returncode == 0 and "exporting" in third.stdout, third.stderr
    assert json.loads(manifest.read_text())["exporter"]["graphs_revision"] == GRAPHS_REVISION


def test_bench_writes_table_json_and_plot(tiny_bundle: Path, tmp_path: Path) -> None:
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    # in its own process: the CLI turns on ONNX Runtime's process-wide shared thread pool
    proc = cli("bench", str(tiny_bundle), "--budgets", "1,0.5", "--rounds", "4", "--warmup", "1",
               "--frame-size", "72x128", "--json", str(js), "--plot", str(png), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(js.read_text())["results"]
    names = [r["name"] for r in rows]
    assert names == ["budget 1", "budget 0.5", "full.onnx", "pytorch 1", "pytorch 0.5"]
    b1, b05 = rows[0], rows[1]
    assert b1["counts"] == [32] * 4 and b05["counts"][-1] < 32
    assert b05["ideal_speedup"] > 1 and b1["ideal_speedup"] == pytest.approx(1.0)
    for r in rows:
        assert r["ms_p50"] > 0 and r["ms_p99"] >= r["ms_p50"] and r["runs"] == 4
        assert r["speedup_paired"] > 0 and r["speedup_vs_budget1"] > 0
    assert b1["speedup_paired"] == 1.0  # budget 1 against itself, round by round
    assert json.loads(js.read_text())["cost_model"]["stage_ms"]  # budgets were fractions of measured latency
    prov = json.loads(js.read_text())["provenance"]  # what was run, on what, by which code
    assert prov["command"].startswith("paumer-edge bench ") and "--rounds 4" in prov["command"]
    assert prov["measured"]["bundle"] == bundle_identity(load_bundle(tiny_bundle).manifest, tiny_bundle)
    assert missing_fields(prov) == []
    assert png.stat().st_size > 1000
    out = proc.stdout
    assert "budget 0.5" in out and "full.onnx" in out and "benchmarked 2 budgets" in out


def test_samples_robot_loop_and_ros2_guard(tiny_bundle: Path, video: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "samples" / "robot_loop.py"), str(video), "--bundle",
                           str(tiny_bundle), "--frames", "3", "--target-ms", "50", "--view", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("steer") == 3 and "live view: http://127.0.0.1:" in proc.stdout
    ros = subprocess.run([sys.executable, str(root / "samples" / "ros2_node.py")], capture_output=True, text=True,
                         timeout=60)
    try:
        import rclpy  # noqa: F401
    except ImportError:
        assert ros.returncode == 2 and "rclpy is not available" in ros.stderr


def test_label_names_from_several_folders_never_collide() -> None:
    from paumer_edge.runtime.sources import unique_names

    files = [Path("a/x.png"), Path("b/x.png"), Path("b/x_2.png"), Path("c/y.jpg")]
    names = unique_names(files)
    assert len(set(names)) == len(files)
    assert names[0] == "x" and names[3] == "y"
