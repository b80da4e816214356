"""Latency profiles of a bundle on this device: measured, fitted, cached, and used by the Pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paumer_edge import UserError
from paumer_edge.core.pausing import plan_budget
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.latency import device_profile, measure, profile_path
from paumer_edge.runtime.preprocess import preprocess, shrink


def test_measure_fits_every_stage(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    cost = measure(pipe.runner, seconds=0.2, min_rounds=2)
    assert cost.measured and len(cost.stage_ms or ()) == 4 and cost.decoder_ms > 0
    assert all(min(p) >= 0 for p in cost.stage_ms or ())
    assert (cost.stage_ms or ())[0][1:] == (0.0, 0.0)  # stage 0 always sees every token: a constant
    assert cost.full_cost > 0 and cost.macs == pipe.bundle.cost


def test_profiles_are_cached_per_backend_and_remeasured_when_unreadable(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    first = device_profile(pipe.runner, "test backend", seconds=0.1)
    again = device_profile(pipe.runner, "test backend")
    assert first.source.startswith("measured") and again.source.startswith("cached")
    assert again.cost == first.cost
    path = profile_path(pipe.runner, "test backend", 0)
    assert path != profile_path(pipe.runner, "another backend", 0) != profile_path(pipe.runner, "test backend", 4)
    path.write_text("{ not json")
    assert device_profile(pipe.runner, "test backend", seconds=0.1).source.startswith("measured")
    assert json.loads(path.read_text())["stage_ms"]  # rewritten whole


def test_pipeline_budgets_follow_its_cost_model(tiny_bundle: Path) -> None:
    device = Pipeline(tiny_bundle, budget=0.5)
    macs = Pipeline(tiny_bundle, budget=0.5, cost="macs")
    assert device.cost.measured and not macs.cost.measured
    frame = np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    assert device(frame).stats.counts == list(plan_budget(device.cost, 0.5).counts)
    assert macs(frame).stats.counts == list(plan_budget(macs.bundle.cost, 0.5).counts)
    assert "device latency" in device.describe() and "MACs" in macs.describe()
    before = device.cost
    assert device.calibrate(seconds=0.1).measured and device.cost_source.startswith("measured")
    assert device.cost is not before
    with pytest.raises(UserError, match="unknown cost model 'flops'"):
        Pipeline(tiny_bundle, cost="flops")


def test_shrinking_is_area_like_and_keeps_the_geometry() -> None:
    import cv2

    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (9, 9), 3)
    ref = cv2.resize(frame, (256, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(shrink(frame, (128, 256)).astype(int) - ref).mean() < 1.5
    edge = np.zeros((1080, 1920, 3), np.uint8)
    edge[:, 960:] = 255  # a vertical edge in the middle stays in the middle
    row = shrink(edge, (128, 256))[64, :, 0]
    assert (row[:127] < 40).all() and (row[129:] > 215).all()
    assert shrink(frame, (360, 640)) is frame


def test_bgr_frames_are_swapped_after_shrinking() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    x, _ = preprocess(frame, (32, 32), (0, 0, 0), (1, 1, 1), bgr=True)
    assert np.allclose(x[2], 1.0) and np.allclose(x[:2], 0.0)
    y, _ = preprocess(frame, (32, 32), (0, 0, 0), (1, 1, 1))
    assert np.allclose(y[0], 1.0)


def test_eval_takes_a_devices_profile(tiny_bundle: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    from paumer_edge.checkpoint import load_model
    from paumer_edge.cli import main
    from paumer_edge.core.cost import load_cost

    pipe = Pipeline(tiny_bundle, cost="macs")
    device_profile(pipe.runner, "eval test", seconds=0.1)
    cached = profile_path(pipe.runner, "eval test", 0)
    base = load_model(tiny_ckpt).cost_model()
    profile = load_cost(cached, base)
    assert profile.measured and profile.macs == base
    report = tmp_path / "bench.json"  # a bench report carries the profile too
    report.write_text(json.dumps({"results": [], "cost_model": profile.to_dict()}))
    assert load_cost(report, base) == profile
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_ckpt), "--images", "4", "--budgets", "0.5", "--cost", str(cached),
                 "--json", str(out), "--speed", "modelled", "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["cost_model"]["stage_ms"] == [list(p) for p in profile.stage_ms or ()]
    assert result["results"][0]["counts"] == list(plan_budget(profile, 0.5).counts)
    (tmp_path / "bad.json").write_text('{"stage_ms": [[1, 0, 0]]}')
    with pytest.raises(UserError, match="no latency profile of 4 stages"):
        load_cost(tmp_path / "bad.json", base)
    with pytest.raises(UserError, match="cannot read the latency profile"):
        load_cost(tmp_path / "missing.json", base)
    assert main(["eval", "--model", str(tiny_ckpt), "--cost", str(tmp_path / "bad.json"), "--quiet"]) == 2
