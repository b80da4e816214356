"""The command line: verbs listed, clear one-line errors with exit code 2, `info`, `synth`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from paumer_edge.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_verb() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for verb in ("train", "eval", "export", "verify", "build", "run", "bench", "info", "synth"):
        assert verb in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--model", "nope.pt"], "checkpoint 'nope.pt' does not exist"),
        (["eval", "--budgets", "0.5,2"], "--budgets 2.0 is out of range"),
        (["eval", "--thresholds", "-1"], "--thresholds -1.0 is out of range"),
        (["eval", "--budgets", "half"], "'half' is not a comma-separated list of numbers"),
        (["train", "--preset", "huge"], "invalid choice: 'huge'"),
        (["train", "--config", "missing.json"], "model config 'missing.json' does not exist"),
        (["synth", "video", "out.gif", "--seconds", "0.1"], "needs an .mp4"),
        (["synth", "images", "x", "--size", "12xz"], "'12xz' is not a size"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_info_reports_versions_and_devices(capsys: pytest.CaptureFixture) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "paumer-edge 0.1.0" in out and "torch" in out and "cpu" in out


def test_synth_writes_a_video_and_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = tmp_path / "drive.mp4"
    assert main(["synth", "video", str(video), "--seconds", "0.5", "--fps", "10", "--size", "64x96", "--quiet"]) == 0
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    folder = tmp_path / "imgs"
    assert main(["synth", "images", str(folder), "--count", "2", "--size", "48x64", "--labels", "--quiet"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "street_00000.png", "street_00000_color.png", "street_00000_labels.png",
        "street_00001.png", "street_00001_color.png", "street_00001_labels.png"]
    assert cv2.imread(str(folder / "street_00001_labels.png"), cv2.IMREAD_UNCHANGED).shape == (48, 64)
    assert "wrote 2 images" in capsys.readouterr().out
