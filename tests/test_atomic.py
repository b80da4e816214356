"""Writes are atomic: a failure, a full disk or Ctrl-C mid-write leaves the previous file and no half file;
training survives an interrupted checkpoint save and resumes from the last good one; caches heal."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from paumer_edge import UserError
from paumer_edge.config import preset
from paumer_edge.core.atomic import atomic_path, write_json_atomic
from paumer_edge.core.errors import OutputError
from paumer_edge.training import TrainConfig, train


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "partial" in p.name)


def test_a_failed_json_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.json"
    write_json_atomic(path, {"good": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})  # cannot be serialised: nothing is touched
    real = Path.write_text

    def half_then_full(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        real(self, text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OutputError, match=r"cannot write '.*report.json': the disk is full") as err:
        write_json_atomic(path, {"good": 2, "more": list(range(100))})
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"good": 1}
    assert leftovers(tmp_path) == []


def test_ctrl_c_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous" and leftovers(tmp_path) == []
    with atomic_path(tmp_path / "new" / "deeper.bin") as tmp:  # folders are made as needed
        tmp.write_bytes(b"ok")
    assert (tmp_path / "new" / "deeper.bin").read_bytes() == b"ok"


def test_training_survives_an_interrupted_checkpoint_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tc = TrainConfig(out=str(tmp_path / "run"), train_images=32, val_images=8, steps=8, batch_size=8, lr=2e-3,
                     eval_every=4, progress=False, seed=3)
    real_save = torch.save
    saves = {"n": 0}

    def dies_half_way(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves["n"] += 1
        real_save(obj, f, *args, **kwargs)
        if saves["n"] == 2:  # the second checkpoint (step 8): half written, then the disk is full
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", dies_half_way)
    torch.manual_seed(0)
    with pytest.raises(OutputError, match=r"cannot write '.*last.pt': .*is the disk full\?"):
        train(tc, preset("tiny"))
    monkeypatch.undo()
    last = tmp_path / "run" / "last.pt"
    assert torch.load(last, weights_only=True)["step"] == 4  # the previous good checkpoint, whole
    assert leftovers(tmp_path) == []
    summary = train(tc, resume=str(last))  # resume continues from it
    assert summary["step"] == 8 and torch.load(last, weights_only=True)["step"] == 8
    with pytest.raises(UserError, match="holds no training state .*--init"):
        from paumer_edge.training.release import write_release

        write_release(last, tmp_path / "model.pt", summary["results"])
        train(tc, resume=str(tmp_path / "model.pt"))


def test_a_damaged_cached_export_is_made_again(tiny_ckpt: Path, tmp_path: Path, private_cache: Path) -> None:
    ckpt = tmp_path / "cached.pt"
    shutil.copy(tiny_ckpt, ckpt)
    image = tmp_path / "frame.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "paumer_edge.cli", "run", str(image), "--model", str(ckpt),
                               "--no-save"], capture_output=True, text=True, timeout=600)

    assert run().returncode == 0
    (cached,) = (private_cache / "bundles").glob("cached-*.paumer")
    with open(cached / "stage1.onnx", "ab") as f:
        f.write(b"bit rot")
    again = run()
    assert again.returncode == 0, again.stderr
    assert "exporting" in again.stdout  # remade, not refused: the cache holds only what it can remake
    from paumer_edge.runtime import load_bundle

    load_bundle(cached)


def test_an_interrupted_render_leaves_no_cache(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paumer_edge.data import dataset

    calls = {"n": 0}
    real = dataset._render_one

    def ctrl_c_on_the_third(args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(dataset, "_render_one", ctrl_c_on_the_third)
    size, streets = (24, 40), private_cache / "streets"
    before = set(streets.glob("*"))
    with pytest.raises(KeyboardInterrupt):
        dataset.render_split(7, 5, size, workers=1, progress=False)
    after = set(streets.glob("*"))
    assert after == before  # neither a half cache nor its temporary folder
    monkeypatch.undo()
    images, labels = dataset.render_split(7, 5, size, workers=1, progress=False)
    assert images.shape == (5, 24, 40, 3) and labels.shape == (5, 24, 40)
