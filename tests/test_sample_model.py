"""The bundled sample model: it is there, it is the trained one, pausing costs it little accuracy,
and its exported bundle agrees with PyTorch on a street video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paumer_edge.checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, load_model
from paumer_edge.data.dataset import StreetScenes
from paumer_edge.data.streets import street_frames
from paumer_edge.evaluate import OperatingPoint, evaluate
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.preprocess import labels_to_frame, preprocess


@pytest.fixture(scope="module")
def sample_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from paumer_edge.export.exporter import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("sample") / "sample.paumer"
    return export_bundle(load_model(), out, ExportOptions(reuse=False), source=str(SAMPLE_CHECKPOINT), progress=False)


def test_sample_is_shipped_trained_and_sized_for_pausing() -> None:
    ckpt = load_checkpoint(SAMPLE_CHECKPOINT)
    assert ckpt["config"]["name"] == "sample" and ckpt["trained_steps"] == 3000
    model = load_model()
    assert model.cost_model().encoder_share >= 0.8
    val = {r["budget"]: r["miou"] for r in ckpt["val_metrics"]}
    assert val[1.0] > 0.6 and val[1.0] - val[0.5] < 0.015


def test_sample_accuracy_on_held_out_scenes() -> None:
    model = load_model()
    data = StreetScenes(model.cfg.image_size, 48, "test", progress=False)
    full, half, quarter = evaluate(model, data, [OperatingPoint(1.0), OperatingPoint(0.5), OperatingPoint(0.25)],
                                   batch_size=16, progress=False)
    assert full.miou > 0.55
    assert full.miou - half.miou < 0.02  # pausing half the compute away costs almost nothing
    assert half.cost_fraction <= 0.5 and quarter.cost_fraction <= 0.25
    assert quarter.miou > full.miou - 0.1


@pytest.mark.parametrize("cost", ["device", "macs"])
def test_runtime_agrees_with_pytorch_on_a_street_video(sample_bundle: Path, cost: str) -> None:
    model = load_model()
    video = [img for img, _ in street_frames(11, (180, 320), seconds=1.0, fps=8)]
    m = Pipeline(sample_bundle, cost="macs").info
    for budget in (1.0, 0.5, 0.25):
        pipe = Pipeline(sample_bundle, budget=budget, cost=cost)
        agree = []
        for frame in video:
            x, placement = preprocess(frame, m.input_size, m.mean, m.std)
            with torch.no_grad():
                out = model(torch.from_numpy(x[None]), budget=budget, cost=pipe.cost)
                ref = out.logits.argmax(1)[0].numpy().astype(np.uint8)
            agree.append((pipe(frame).labels == labels_to_frame(ref, placement)).mean())
        assert np.mean(agree) >= 0.995, (budget, np.mean(agree))
