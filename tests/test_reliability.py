"""Issue 11's probe, case by case, with the original inputs: no input may destroy data, exhaust memory or print a
traceback. Each case ends in one line and exit code 2 (the CLI, run in-process) or a typed `UserError` (the API),
and nothing is overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from paumer_edge.cli import main
from paumer_edge.core.errors import BundleError, PolicyError, UserError
from paumer_edge.data.streets import street_frames, street_scene, write_video
from paumer_edge.runtime import Pipeline, load_bundle


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`paumer-edge ARGS` in this process: exit code, stdout and stderr (file descriptors, so native output too)."""
    capfd.readouterr()
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def one_line(result: tuple[int, str, str], *messages: str) -> str:
    code, _, err = result
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for message in messages:
        assert message in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "w" / "clip.mp4"
    write_video(path, (img for img, _ in street_frames(1, (32, 64), seconds=0.3, fps=10)), fps=10)
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"img_{i}.png"), street_scene(i, (32, 64))[0])
    return folder


def with_changes(ckpt: Path, out: Path, config: dict | None = None, weights: dict | None = None,
                 raw_config: object = None) -> Path:
    c = torch.load(ckpt, weights_only=True)
    if config:
        c["config"] = {**c["config"], **config}
    if raw_config is not None:
        c["config"] = raw_config
    if weights:
        c["model"] = {**c["model"], **weights}
    torch.save(c, out)
    return out


# ---- 1: an output must never overwrite an input ------------------------------------------------------------
def test_1_run_out_is_the_source_video(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, clip: Path) -> None:
    before = digest(clip)
    os.link(clip, clip.with_name("hard.mp4"))
    os.symlink(clip, clip.with_name("soft.mp4"))
    os.symlink(clip.parent, clip.parent.with_name("w2"))
    cases = {str(clip): "is the source", str(clip.with_name("hard.mp4")): "hard link",
             str(clip.with_name("soft.mp4")): "symbolic link",
             str(clip.parent.with_name("w2") / "clip.mp4"): "resolves"}
    for out, how in cases.items():
        one_line(cli(capfd, "run", str(clip), "--model", str(tiny_bundle), "--out", out, "--quiet"), how,
                 "would destroy the input")
    assert digest(clip) == before


def test_1_labels_into_the_image_folder(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, images: Path) -> None:
    before = {p.name: digest(p) for p in images.iterdir()}
    one_line(cli(capfd, "run", str(images), "--model", str(tiny_bundle), "--save-labels", str(images), "--quiet"),
             "the folder the source is read from")
    one_line(cli(capfd, "run", str(images / "img_0.png"), "--model", str(tiny_bundle), "--save-labels", str(images),
                 "--quiet"), "the folder the source is read from")
    assert {p.name: digest(p) for p in images.iterdir()} == before


# ---- 2, 3, 4: checkpoints whose weights or config cannot be built ------------------------------------------
def test_2_weights_of_the_wrong_shape(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, clip: Path,
                                      tmp_path: Path) -> None:
    bad = with_changes(tiny_ckpt, tmp_path / "bad.pt", weights={"encoder.cls_token": torch.zeros(1, 1, 16)})
    message = "'encoder.cls_token' has shape [1, 1, 16], but its config"
    one_line(cli(capfd, "export", str(bad), "-o", str(tmp_path / "b.paumer"), "--quiet"), message)
    one_line(cli(capfd, "run", str(clip), "--model", str(bad), "--no-save", "--quiet"), message)
    assert not (tmp_path / "b.paumer").exists()


def test_3_config_with_zero_heads(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, tmp_path: Path) -> None:
    bad = with_changes(tiny_ckpt, tmp_path / "bad.pt", config={"num_heads": 0})
    one_line(cli(capfd, "export", str(bad), "--quiet"), "num_heads 0 is out of range")


@pytest.mark.parametrize("change, message", [
    ({"embed_dim": 10**6}, "embed_dim 1000000 is out of range"),
    ({"depth": 10**7}, "depth 10000000 is out of range"),
    ({"image_size": [1e5, 1e5]}, "image_size must be a whole number"),
    ({"image_size": [100_000, 100_000]}, "image_size 100000 is out of range"),
    ({"image_size": [16_384, 16_384]}, "of memory, more than"),  # within every range: the memory estimate says no
    ({"embed_dim": 65_536, "num_heads": 1, "depth": 1024, "pause_after": [1, 2, 3]}, "of memory, more than"),
])
def test_4_configs_asking_for_huge_sizes(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, tmp_path: Path,
                                         change: dict, message: str) -> None:
    bad = with_changes(tiny_ckpt, tmp_path / "huge.pt", config=change)
    one_line(cli(capfd, "export", str(bad), "-o", str(tmp_path / "h.paumer"), "--quiet"), message)
    assert bad.stat().st_size < 1 << 20


def test_4_export_image_size_flag(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "h.paumer")
    one_line(cli(capfd, "export", str(tiny_ckpt), "-o", out, "--image-size", "100000x100000", "--quiet"),
             "--image-size height 100000 is out of range")
    line = one_line(cli(capfd, "export", str(tiny_ckpt), "-o", out, "--image-size", "8192x8192", "--quiet"),
                    "of memory, more than", "--memory-limit")
    assert "8192x8192 input" in line


# ---- 5: every manifest parse error is a BundleError ---------------------------------------------------------
def test_5_manifest_integer_of_5000_digits(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, clip: Path,
                                           tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "digits.paumer"))
    text = (bundle / "manifest.json").read_text()
    assert '"patch_size": 8' in text
    (bundle / "manifest.json").write_text(text.replace('"patch_size": 8', '"patch_size": ' + "9" * 5000, 1))
    with pytest.raises(BundleError, match="is not valid JSON"):
        load_bundle(bundle)
    one_line(cli(capfd, "run", str(clip), "--model", str(bundle), "--no-save", "--quiet"), "is not valid JSON")


# ---- 6, 7: knobs by one rule -----------------------------------------------------------------------------
def test_6_threads_are_bounded(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, clip: Path) -> None:
    one_line(cli(capfd, "run", str(clip), "--model", str(tiny_bundle), "--threads", "10000", "--no-save", "--quiet"),
             "--threads 10000 is out of range", "per core")
    with pytest.raises(PolicyError, match="threads 10000 is out of range"):
        Pipeline(tiny_bundle, threads=10000)


def test_7_a_latency_target_of_zero(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, clip: Path) -> None:
    for value in ("0", "-5", "nan", "inf"):
        one_line(cli(capfd, "run", str(clip), "--model", str(tiny_bundle), "--target-ms", value, "--no-save",
                     "--quiet"), f"--target-ms {float(value)} is out of range")
    for value in (0, 0.0, -5, float("nan"), float("inf"), "10"):
        with pytest.raises(PolicyError, match="latency target"):
            Pipeline(tiny_bundle, target_ms=value)  # type: ignore[arg-type]


# ---- 8: the message says what really happened ------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_8_out_on_proc(capfd: pytest.CaptureFixture[str], tiny_bundle: Path, clip: Path) -> None:
    line = one_line(cli(capfd, "run", str(clip), "--model", str(tiny_bundle), "--out", "/proc/x.mp4", "--quiet"),
                    "virtual file system")
    assert "full" not in line


# ---- 9: OpenCV's own log stays out of our output ---------------------------------------------------------
def test_9_a_corrupt_png_in_an_image_folder(capfd: pytest.CaptureFixture[str], tiny_bundle: Path,
                                           images: Path) -> None:
    good = (images / "img_0.png").read_bytes()
    (images / "bad_header.png").write_bytes(good[:8] + b"garbage" * 20)  # OpenCV: "[ERROR:0@...] readHeader"
    crc = bytearray(good)
    crc[16:24] = b"\xff" * 8
    (images / "bad_crc.png").write_bytes(bytes(crc))  # libpng: "libpng error: IHDR: CRC error"
    code, out, err = cli(capfd, "run", str(images), "--model", str(tiny_bundle), "--no-save", "--quiet",
                         "--cost", "macs")
    assert code == 0, err
    assert err.strip() == "", err
    assert "2 unreadable frames skipped" in out


# ---- also observed ---------------------------------------------------------------------------------------
def test_integer_weights_are_refused(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, tmp_path: Path) -> None:
    c = torch.load(tiny_ckpt, weights_only=True)
    bad = with_changes(tiny_ckpt, tmp_path / "int.pt", weights={k: v.to(torch.int64) for k, v in c["model"].items()})
    one_line(cli(capfd, "export", str(bad), "-o", str(tmp_path / "i.paumer"), "--quiet"), "is stored as int64",
             "model weights are floating point")


def test_a_config_that_is_a_string(capfd: pytest.CaptureFixture[str], tiny_ckpt: Path, tmp_path: Path) -> None:
    bad = with_changes(tiny_ckpt, tmp_path / "str.pt", raw_config="hello")
    line = one_line(cli(capfd, "export", str(bad), "--quiet"), "model config must be a mapping")
    assert "['e', 'h', 'l', 'o']" not in line
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps("hello"))
    one_line(cli(capfd, "train", "--config", str(cfg), "--steps", "1", "--quiet"), "model config must be a mapping")


def test_the_api_raises_user_errors_for_the_same_inputs(tiny_ckpt: Path, tmp_path: Path) -> None:
    from paumer_edge.checkpoint import load_model

    for change in ({"num_heads": 0}, {"embed_dim": 10**6}, {"depth": 10**7}, {"image_size": [1e5, 1e5]}):
        with pytest.raises(UserError):
            load_model(with_changes(tiny_ckpt, tmp_path / "x.pt", config=change))
