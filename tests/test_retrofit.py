"""Retrofitting pausing onto an existing model: only the heads learn; encoder and decoder stay bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paumer_edge.checkpoint import load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from paumer_edge.cli import main
from paumer_edge.data.dataset import StreetScenes
from paumer_edge.evaluate import normalise
from paumer_edge.model import PausingSegmenter
from paumer_edge.training.losses import aux_loss, prediction_targets
from paumer_edge.training.trainer import trainable_parameters


@pytest.fixture(scope="module")
def headless(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with fresh, untrained pausing heads: an existing segmenter that never learnt to pause."""
    model = model_from_checkpoint(load_checkpoint(tiny_ckpt))
    torch.manual_seed(123)
    fresh = PausingSegmenter(model.cfg)
    model.pause_heads.load_state_dict(fresh.pause_heads.state_dict())
    path = tmp_path_factory.mktemp("headless") / "segmenter.pt"
    save_checkpoint(path, model)
    return path


def head_excess_loss(model: PausingSegmenter) -> float:
    """The auxiliary loss against the model's own final predictions on fixed held-out scenes, above its
    floor (the targets' own entropy, which no head can beat): the heads' KL divergence from the targets."""
    data = StreetScenes(model.cfg.image_size, 16, "test", progress=False)
    images = normalise(torch.stack([data[i][0] for i in range(16)]), model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        out = model.eval()(images, budget=1.0, with_aux=True)
        targets, mass = prediction_targets(out.logits, model.cfg.patch_size)
        floor = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean()
        return (aux_loss(out.aux, targets, mass) - floor).item()


def frozen_state(model: PausingSegmenter) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("pause_heads.")}


def test_only_the_heads_are_trainable() -> None:
    from paumer_edge.config import preset

    model = PausingSegmenter(preset("tiny"))
    names = [n for n, _ in trainable_parameters(model, retrofit=True)]
    assert names and all(n.startswith("pause_heads.") for n in names)
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("pause_heads."))
    assert len(trainable_parameters(PausingSegmenter(preset("tiny")), retrofit=False)) > len(names)


def test_retrofit_lowers_the_head_loss_and_leaves_the_network_untouched(headless: Path, tmp_path: Path) -> None:
    before = load_model(headless)
    out = tmp_path / "retrofit"
    code = main(["train", "--init", str(headless), "--retrofit", "--steps", "25", "--batch-size", "8",
                 "--train-images", "32", "--val-images", "8", "--eval-every", "25", "--lr", "1e-2",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    after = load_model(out / "model.pt")
    old, new = frozen_state(before), frozen_state(after)
    assert old.keys() == new.keys()
    assert all(torch.equal(old[k], new[k]) for k in old), [k for k in old if not torch.equal(old[k], new[k])]
    assert not torch.equal(before.pause_heads[0].head.weight, after.pause_heads[0].head.weight)
    loss_before, loss_after = head_excess_loss(before), head_excess_loss(after)
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
    # the optimiser held the heads' parameters and nothing else
    last = torch.load(out / "last.pt", weights_only=True)
    held = sum(len(g["params"]) for g in last["optimizer"]["param_groups"])
    assert held == sum(1 for _ in after.pause_heads.parameters())
    assert last["train_config"]["retrofit"] is True
    assert all(h["budget"] == 1.0 for h in last["history"] if "budget" in h)


def test_retrofit_then_finetune_trains_everything_pausing_aware(headless: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", "--init", str(headless), "--retrofit", "--finetune", "6", "--steps", "3",
                 "--batch-size", "4", "--train-images", "16", "--val-images", "4", "--eval-every", "100",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    retrofitted, tuned = load_model(out / "retrofit" / "model.pt"), load_model(out / "model.pt")
    fc1 = [m.encoder.blocks[0].mlp.fc1.weight for m in (load_model(headless), retrofitted, tuned)]
    assert torch.equal(fc1[0], fc1[1]) and not torch.equal(fc1[1], fc1[2])
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["step"] == 6 and last["train_config"]["retrofit"] is False
    budgets = [h["budget"] for h in last["history"] if "budget" in h]
    assert len(budgets) == 6 and min(budgets) < 1.0  # budgets sampled per batch, as normal training does


@pytest.mark.parametrize("args, message", [
    (["--retrofit"], "give it with --init"),
    (["--finetune", "5"], "--finetune follows --retrofit"),
])
def test_retrofit_mistakes_are_one_line(args: list[str], message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path), "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
