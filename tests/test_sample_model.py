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
    assert model.cost_model().encoder_share == pytest.approx(0.9996774822653041, rel=1e-12)  # README: 99.97%
    val = {r["budget"]: r["miou"] for r in ckpt["val_metrics"]}
    assert val[1.0] > 0.6 and val[1.0] - val[0.5] < 0.015


# the sample model on the first 48 held-out scenes: (mIoU, pixel accuracy, modelled compute, tokens per stage), as
# this code computed them with 1 and 2 threads and batches of 8 and 16 alike
SAMPLE_48 = {1.0: (0.658117215656608, 0.9256464640299479, 1.0, [512, 512, 512, 512]),
             0.5: (0.6613298522161581, 0.9250278472900391, 0.49954026395503054, [512, 355, 246, 170]),
             0.25: (0.6311027167432642, 0.9105059305826823, 0.2497934464425151, [512, 158, 49, 15])}


def test_sample_accuracy_on_held_out_scenes_is_exactly_what_it_was() -> None:
    """Not "good enough": the very numbers, to float noise (1e-4 in mIoU is a few pixels of the 1.6 million), so any
    change of the model, the policy, the data or the scoring shows here first."""
    model = load_model()
    data = StreetScenes(model.cfg.image_size, 48, "test", progress=False)
    results = evaluate(model, data, [OperatingPoint(b) for b in SAMPLE_48], batch_size=16, progress=False)
    for r, (miou, acc, compute, counts) in zip(results, SAMPLE_48.values()):
        assert r.miou == pytest.approx(miou, abs=1e-4) and r.pixel_acc == pytest.approx(acc, abs=1e-5), r.budget
        assert r.cost_fraction == pytest.approx(compute, rel=1e-9) and r.counts == counts


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
