"""Evaluation: metrics from confusion matrices, and `paumer-edge eval` output (table + JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paumer_edge.cli import main
from paumer_edge.evaluate import confusion, scores


def test_scores_from_a_known_confusion_matrix() -> None:
    conf = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])  # rows: truth, cols: prediction; class 2 absent
    iou, miou, acc = scores(conf)
    assert iou[0] == pytest.approx(8 / 11) and iou[1] == pytest.approx(4 / 7)
    assert np.isnan(iou[2])  # absent and never predicted: not counted in the mean
    assert miou == pytest.approx((8 / 11 + 4 / 7) / 2)
    assert acc == pytest.approx(12 / 15)


def test_confusion_ignores_255() -> None:
    labels = torch.tensor([[0, 1, 255]])
    pred = torch.tensor([[0, 0, 1]])
    assert confusion(pred, labels, 2).tolist() == [[1, 0], [1, 0]]


def test_eval_cli_writes_table_and_json(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(tiny_ckpt), "--images", "12", "--budgets", "1,0.5,0.25",
                 "--thresholds", "0.5", "--batch-size", "4", "--json", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "budget 0.25" in text and "thr 0.5" in text and "evaluated 12 images at 4 settings" in text
    data = json.loads(out.read_text())
    assert [r["budget"] for r in data["results"]] == [1.0, 0.5, 0.25, 1.0]
    assert data["results"][3]["threshold"] == 0.5
    for r in data["results"]:
        assert 0 <= r["miou"] <= 1 and 0 <= r["pixel_acc"] <= 1
        assert set(r["iou"]) >= {"road", "sky", "person"}
        assert len(r["counts"]) == 4
    assert data["results"][0]["cost_fraction"] == 1.0
    assert data["results"][2]["cost_fraction"] < data["results"][1]["cost_fraction"] < 1.0
