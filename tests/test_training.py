"""Training: the loss goes down, checkpoints round-trip as data, resume is exact, DDP runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.checkpoint import load_checkpoint, load_model, save_checkpoint
from paumer_edge.config import preset
from paumer_edge.model import PausingSegmenter
from paumer_edge.training import TrainConfig, train
from paumer_edge.training.losses import patch_targets
from paumer_edge.training.trainer import lr_factor


def test_short_training_lowers_the_loss(tiny_run: dict) -> None:
    hist = [h for h in torch.load(tiny_run["out"] / "last.pt", weights_only=True)["history"] if "loss" in h]
    assert len(hist) == 40
    first = np.mean([h["loss"] for h in hist[:8]])
    last = np.mean([h["loss"] for h in hist[-8:]])
    assert last < 0.9 * first
    assert {h["budget"] for h in hist} - {1.0}  # budgets really were sampled
    aux_first, aux_last = np.mean([h["aux"] for h in hist[:8]]), np.mean([h["aux"] for h in hist[-8:]])
    assert aux_last < aux_first


def test_release_checkpoint_has_config_weights_metrics(tiny_ckpt: Path) -> None:
    ckpt = load_checkpoint(tiny_ckpt)
    assert ckpt["config"]["name"] == "tiny"
    assert "optimizer" not in ckpt
    assert ckpt["trained_steps"] == 40
    assert {r["budget"] for r in ckpt["val_metrics"]} == {1.0, 0.5}


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    m = PausingSegmenter(preset("tiny")).eval()
    save_checkpoint(tmp_path / "m.pt", m, note="hello")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: loads with weights_only
    assert raw["note"] == "hello"
    again = load_model(tmp_path / "m.pt")
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(m(x, budget=0.5).logits, again(x, budget=0.5).logits)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_checkpoint_with_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "paumer-edge-checkpoint", "model": _Payload(marker)}, evil)
    with pytest.raises(UserError, match=r"refusing to load .*holds code \(exec\).*could run"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_bad_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="not a paumer-edge checkpoint"):
        load_checkpoint(other)


def test_resume_continues_exactly(tmp_path: Path, tiny_run: dict) -> None:
    base = dict(train_images=48, val_images=16, steps=12, batch_size=8, lr=2e-3, eval_every=6,
                progress=False, seed=1)
    torch.manual_seed(0)
    train(TrainConfig(out=str(tmp_path / "straight"), **base), preset("tiny"))
    torch.manual_seed(0)
    half = TrainConfig(out=str(tmp_path / "split"), **base)
    # stop after 6 steps by training a 12-step schedule and interrupting it at the first checkpoint
    import paumer_edge.training.trainer as trainer

    calls = {"n": 0}
    real = trainer.evaluate

    def stop_after_first_eval(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint of step 6 has been written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer.evaluate = stop_after_first_eval
    try:
        with pytest.raises(KeyboardInterrupt):
            train(half, preset("tiny"))
    finally:
        trainer.evaluate = real
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["step"] == 6
    train(half, resume=str(tmp_path / "split" / "last.pt"))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


def test_patch_targets_are_class_distributions() -> None:
    labels = torch.zeros(1, 8, 16, dtype=torch.long)
    labels[0, :, 8:] = 3
    labels[0, :4, 4:8] = 255  # ignored pixels
    tgt, mass = patch_targets(labels, 8, 5)
    assert tgt.shape == (1, 2, 5)
    assert torch.allclose(tgt[0, 0], torch.tensor([1.0, 0, 0, 0, 0]))
    assert torch.allclose(tgt[0, 1], torch.tensor([0, 0, 0, 1.0, 0]))
    assert mass[0].tolist() == [0.75, 1.0]


def test_lr_schedule_warms_up_then_decays() -> None:
    lrs = [lr_factor(s, 100, 0.1, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.02


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "paumer_edge.cli", "train", "--preset", "tiny", "--steps", "8", "--train-images", "32",
           "--val-images", "8", "--batch-size", "4", "--eval-every", "4", "--device", "cpu", "--quiet",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 8 steps" in proc.stdout
    assert proc.stdout.count("trained 8 steps") == 1  # only rank 0 reports and writes
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 8
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
