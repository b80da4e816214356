"""`paumer-edge eval --plot/--json`: the accuracy/speed curve, one point per budget and threshold."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from paumer_edge.cli import main
from paumer_edge.core.provenance import file_identity, missing_fields


def test_curve_with_measured_fps(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    png, js = tmp_path / "curve.png", tmp_path / "curve.json"
    code = main(["eval", "--model", str(tiny_ckpt), "--images", "8", "--budgets", "1,0.5,0.3", "--thresholds",
                 "0.3", "--batch-size", "4", "--timing-frames", "3", "--plot", str(png), "--json", str(js),
                 "--quiet", "--device", "cpu"])
    assert code == 0
    assert "FPS" in capsys.readouterr().out
    data = json.loads(js.read_text())
    assert data["speed"] == "measured" and data["timing_frames"] == 3
    curve = data["curve"]
    assert [p["setting"] for p in curve] == ["budget 1", "budget 0.5", "budget 0.3", "threshold 0.3"]
    for point, result in zip(curve, data["results"]):
        assert point["miou"] == result["miou"] and 0 <= point["miou"] <= 1
        assert point["compute"] == result["cost_fraction"]
        assert point["ms_p50"] > 0 and point["fps"] == pytest.approx(1000 / point["ms_p50"])
    assert curve[0]["compute"] == 1.0 and curve[2]["compute"] < curve[1]["compute"] < 1.0
    assert [r["setting"] for r in data["results"]] == [p["setting"] for p in curve]  # rows named as printed
    prov = data["provenance"]
    assert prov["command"].startswith("paumer-edge eval ") and missing_fields(prov) == []
    assert prov["measured"] == {"checkpoint": file_identity(tiny_ckpt)}
    img = cv2.imread(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and img is not None and img.shape[0] > 200


def test_curve_with_modelled_compute(tiny_ckpt: Path, tmp_path: Path) -> None:
    png, js = tmp_path / "curve.png", tmp_path / "curve.json"
    code = main(["eval", "--model", str(tiny_ckpt), "--images", "4", "--budgets", "1,0.5", "--speed", "modelled",
                 "--plot", str(png), "--json", str(js), "--quiet", "--device", "cpu"])
    assert code == 0
    data = json.loads(js.read_text())
    assert data["speed"] == "modelled" and len(data["curve"]) == 2
    assert all(p["fps"] is None and p["ms_p50"] is None for p in data["curve"])
    assert data["curve"][1]["compute"] < 1.0
    assert cv2.imread(str(png)) is not None


def test_thresholds_are_scored_image_by_image_as_deployed(tiny_ckpt: Path) -> None:
    """A threshold keeps what each image needs: the batch size of the evaluation must not change its score."""
    from paumer_edge.checkpoint import load_model
    from paumer_edge.data.dataset import StreetScenes
    from paumer_edge.evaluate import OperatingPoint, evaluate

    model = load_model(tiny_ckpt)
    data = StreetScenes(model.cfg.image_size, 8, "test", progress=False)
    points = [OperatingPoint(1.0, 0.9), OperatingPoint(0.5)]  # the tiny model's heads are unsure: 0.9 pauses
    batched = evaluate(model, data, points, batch_size=8, progress=False)
    single = evaluate(model, data, points, batch_size=1, progress=False)
    assert batched[0].cost_fraction < 0.9  # tokens paused, each image as far as it may
    for a, b in zip(batched, single):
        assert a.miou == pytest.approx(b.miou, abs=1e-9) and a.cost_fraction == pytest.approx(b.cost_fraction)
        assert a.counts == pytest.approx(b.counts)
