"""The command line: verbs listed, clear one-line errors with exit code 2, `info`, `synth`."""

from __future__ import annotations

import os
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
        (["train", "--preset", "huge"], "Invalid value for '--preset': 'huge' is not one of"),
        (["run", "--budget", "half", "x.mp4"], "Invalid value for '--budget': 'half' is not a valid float"),
        (["run", "x.mp4", "--no-such-option"], "No such option '--no-such-option'"),
        (["bogus"], "No such command 'bogus'"),
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


def test_every_verb_documents_every_option_and_argument() -> None:
    """`paumer-edge VERB --help` describes every option (with its default) and names every argument."""
    import click

    from paumer_edge.cli import VERBS, cli

    ctx = click.Context(cli)
    for name in VERBS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.help and command.short_help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and len(param.help) >= 12, (name, param.name)
            else:
                assert param.human_readable_name.upper() in command.help, (name, param.name)
    assert run("run", "--help").stdout.count("[default:") >= 3


def test_version_and_no_verb() -> None:
    assert run("--version").stdout.strip() == "paumer-edge 0.1.0"
    proc = run()
    assert proc.returncode == 2 and "Commands:" in proc.stderr and "Traceback" not in proc.stderr


def test_options_come_from_the_environment(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", "run", "x.mp4"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PAUMER_EDGE_BACKEND": "nonsense"})
    assert proc.returncode == 2 and "Invalid value for '--backend' (env var: 'PAUMER_EDGE_BACKEND'): 'nonsense'" \
        in proc.stderr


def test_info_reports_versions_extras_and_devices(capsys: pytest.CaptureFixture) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "paumer-edge 0.1.0" in out and "torch" in out and "cpu" in out
    assert "extra cpu: installed" in out and "extra train: installed" in out
    assert "extra gpu: not installed; for NVIDIA GPUs" in out and "pip install 'paumer-edge[gpu]'" in out


def test_info_shows_a_bundle(tiny_bundle: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert f"bundle {tiny_bundle} (format 5" in out and "input 32x64" in out and "stage3" in out


def test_synth_writes_a_video_and_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import av

    video = tmp_path / "drive.mp4"
    assert main(["synth", "video", str(video), "--seconds", "0.5", "--fps", "10", "--size", "64x96", "--quiet"]) == 0
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    with av.open(str(video)) as container:  # H.264 in MP4, yuv420p: what browsers and phones play
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (96, 64) and stream.average_rate == 10
        assert sum(1 for _ in container.decode(stream)) == 5
    folder = tmp_path / "imgs"
    assert main(["synth", "images", str(folder), "--count", "2", "--size", "48x64", "--labels", "--quiet"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "street_00000.png", "street_00000_color.png", "street_00000_labels.png",
        "street_00001.png", "street_00001_color.png", "street_00001_labels.png"]
    assert cv2.imread(str(folder / "street_00001_labels.png"), cv2.IMREAD_UNCHANGED).shape == (48, 64)
    assert "wrote 2 images" in capsys.readouterr().out
