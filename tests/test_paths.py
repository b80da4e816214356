"""The path guard (paumer_edge.core.paths): no output is an input, every output can be written, in one place that
every verb calls before it works."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paumer_edge.cli import main
from paumer_edge.core.errors import OutputError, UserError
from paumer_edge.core.paths import Input, Output, guard_paths, probe_writable, same_file
from paumer_edge.core.video import check_free_space


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    src.write_bytes(b"precious")
    os.link(src, tmp_path / "hard.mp4")
    os.symlink(src, tmp_path / "soft.mp4")
    os.symlink(src.parent, tmp_path / "linked")
    return {"src": src, "hard": tmp_path / "hard.mp4", "soft": tmp_path / "soft.mp4",
            "through": tmp_path / "linked" / "clip.mp4", "other": tmp_path / "out.mp4"}


def test_an_output_file_is_never_an_input(files: dict[str, Path]) -> None:
    src = Input("the source", files["src"])
    for key, how in (("src", "is the source"), ("hard", "is a hard link to"), ("soft", "is a symbolic link to"),
                     ("through", "resolves (through a symbolic link) to")):
        with pytest.raises(UserError, match=f"--out '.*' {how.replace('(', '.').replace(')', '.')}"):
            guard_paths([src], [Output("--out", files[key])])
    guard_paths([src], [Output("--out", files["other"])])  # a new file beside it is fine
    guard_paths({"the source": files["src"], "--model": None}, Output.of("--out", files["other"]))
    assert files["src"].read_bytes() == b"precious"
    assert same_file(files["hard"], files["src"]) and not same_file(files["other"], files["src"])


def test_output_folders_and_trees(tmp_path: Path, files: dict[str, Path]) -> None:
    folder = files["src"].parent
    with pytest.raises(UserError, match="the folder the source is read from"):
        guard_paths([Input("the source", folder)], [Output("--save-labels", folder, "folder")])
    with pytest.raises(UserError, match="the folder the source is read from"):
        guard_paths([Input("the source", folder)], [Output("--save-labels", tmp_path / "linked", "folder")])
    guard_paths([Input("the source", folder)], [Output("--save-labels", folder / "labels", "folder")])
    with pytest.raises(UserError, match="would be replaced as a whole, but it holds checkpoint"):
        guard_paths([Input("checkpoint", files["src"])], [Output("the bundle", folder, "tree")])
    with pytest.raises(UserError, match="are the same file"):
        guard_paths([], [Output("--json", tmp_path / "r.json"), Output("--plot", tmp_path / "r.json")])


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_outputs_that_cannot_be_written_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in ("/proc/x.mp4", "/sys/x.json"):
        with pytest.raises(OutputError, match="virtual file system"):
            probe_writable(path, "--out")
    with pytest.raises(OutputError, match="virtual file system"):
        check_free_space(Path("/proc"), Path("/proc/x.mp4"))  # no longer "the disk is full"
    with pytest.raises(OutputError, match="is not a regular file"):
        probe_writable("/dev/null", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        probe_writable(tmp_path / "file" / "x.mp4", "--out")
    with pytest.raises(OutputError, match="is a folder"):
        probe_writable(tmp_path, "--json")
    probe_writable(tmp_path / "new" / "deeper" / "x.json", "--json")  # folders that will be made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe leaves nothing

    real = os.statvfs

    class ReadOnly:
        def __init__(self, st: os.statvfs_result):
            self.f_blocks, self.f_flag = st.f_blocks, st.f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly(real(p)))
    with pytest.raises(OutputError, match="read-only"):
        probe_writable(tmp_path / "x.mp4", "--out")
    monkeypatch.setattr(os, "statvfs", real)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)  # as for another user's folder (root passes permission bits)
    with pytest.raises(OutputError, match="permission denied"):
        probe_writable(tmp_path / "x.mp4", "--out")


# ---- every verb calls the guard before it works ---------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_verbs_refuse_outputs_that_are_inputs(capsys: pytest.CaptureFixture[str], tiny_ckpt: Path,
                                              tiny_bundle: Path, tmp_path: Path) -> None:
    tiny_bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "tiny.paumer"))  # a copy: it is what is at stake
    manifest = (tiny_bundle / "manifest.json").read_bytes()
    ckpt = tmp_path / "model" / "last.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    before = ckpt.read_bytes()
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.zeros((32, 64, 3), np.uint8))
    cases = [
        (["export", str(ckpt), "-o", str(ckpt.parent)], "would be replaced as a whole, but it holds checkpoint"),
        (["export", str(ckpt), "-o", str(tmp_path / "b.paumer"), "--report", str(ckpt)], "--report"),
        (["eval", "--model", str(ckpt), "--json", str(ckpt)], "--json"),
        (["eval", "--model", str(ckpt), "--json", str(tmp_path / "r"), "--plot", str(tmp_path / "r")], "same file"),
        (["bench", str(tiny_bundle), "--json", str(tiny_bundle / "manifest.json")], "inside the model"),
        (["bench", str(tiny_bundle), "--plot", str(tiny_bundle / "new.png")], "which is read as a whole"),
        (["run", str(frames), "--model", str(tiny_bundle), "--out", str(tiny_bundle / "x.mp4")], "inside --model"),
        (["bench", str(ckpt), "--plot", str(ckpt)], "--plot"),
        (["train", "--init", str(ckpt), "--out", str(ckpt.parent)], "--out's last.pt"),
        (["verify", str(tiny_bundle), "--ckpt", str(ckpt), "--json", str(ckpt)], "--json"),
        (["import", str(ckpt), "--report", str(ckpt)], "--report"),
        (["synth", "video", "/proc/x.mp4"], "virtual file system"),
        (["synth", "images", str(ckpt)], "exists and is not a folder"),
    ]
    for args, message in cases:
        line = run_cli(capsys, *args, *(["--quiet"] if args[0] in ("export", "eval", "bench", "train", "synth")
                                        else []))
        assert message in line, (args, line)
    assert ckpt.read_bytes() == before and torch.load(ckpt, weights_only=True)["format"] == "paumer-edge-checkpoint"
    assert (tiny_bundle / "manifest.json").read_bytes() == manifest


def test_continuing_a_run_in_place_is_not_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import paumer_edge.verbs.train as verb

    reached: list[str | None] = []
    import paumer_edge.training as training

    monkeypatch.setattr(training, "train", lambda tc, cfg, resume=None, init=None: reached.append(resume) or {})
    monkeypatch.setattr(verb, "_report", lambda *args: None)
    (tmp_path / "last.pt").write_bytes(b"x")
    assert main(["train", "--out", str(tmp_path), "--resume", "--quiet"]) == 0
    assert main(["train", "--out", str(tmp_path), "--resume", str(tmp_path / "last.pt"), "--quiet"]) == 0
    assert reached == [str(tmp_path / "last.pt")] * 2
