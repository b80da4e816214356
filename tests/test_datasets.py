"""Bring your own data: Cityscapes and ADE20K layouts, label mapping, the --data parser, train and eval on them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.cli import main
from paumer_edge.data.classes import IGNORE_INDEX
from paumer_edge.data.images import DrawKeys, LabelledImages, TrainCrops, random_scale_crop
from paumer_edge.data.labelsets import ADE20K_CLASSES, CITYSCAPES_CLASSES
from paumer_edge.data.registry import build_dataset, check_classes, parse_data_spec

# raw Cityscapes label ids in the test pictures: 7 road, 8 sidewalk, 26 car, 23 sky, and ids without a
# train id (0 unlabeled, 1 ego vehicle, 9 parking, 34+ none)
CITY_IDS = np.array([7, 8, 26, 23, 0, 1, 9, 24])


def _picture(rng: np.random.Generator, h: int, w: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A BGR image whose colour follows a blocky label map of raw `ids` (learnable, so a model can fit it)."""
    cells = rng.choice(ids, size=(max(1, h // 8), max(1, w // 8)))
    raw = cv2.resize(cells.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    colours = rng.integers(0, 256, size=(256, 3)).astype(np.uint8)
    colours[ids] = (np.arange(len(ids))[:, None] * [37, 91, 53] % 256).astype(np.uint8)
    return colours[raw], raw


def make_cityscapes(root: Path, sizes: dict[str, int], hw: tuple[int, int] = (48, 96), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in sizes.items():
        for i in range(n):
            city = ["aachen", "bonn"][i % 2]
            stem = f"{city}_{i:06d}_000019"
            img, raw = _picture(rng, *hw, CITY_IDS)
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), img)
            cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"), raw)
    return root


def make_ade20k(root: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for split, n in sizes.items():
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            hw = (40 + 8 * (i % 3), 64 + 16 * (i % 2))  # ADE20K pictures differ in size
            img, raw = _picture(rng, *hw, np.array([0, 1, 2, 3, 13, 150]))
            stem = f"ADE_{split[:5]}_{i:08d}"
            cv2.imwrite(str(base / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(base / "annotations" / split / f"{stem}.png"), raw)
    return root


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"), {"train": 6, "val": 4})


@pytest.fixture(scope="module")
def ade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ade20k(tmp_path_factory.mktemp("ade"), {"training": 6, "validation": 3})


# ---- loading and label mapping ---------------------------------------------------------------
def test_cityscapes_loads_and_maps_label_ids_to_train_ids(city: Path) -> None:
    data = build_dataset(f"cityscapes:{city}", "val", (32, 64))
    assert len(data) == 4
    image, labels = data[0]
    assert image.shape == (3, 48, 96) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert labels.shape == (48, 96) and labels.dtype == torch.int64
    assert isinstance(data, LabelledImages)
    raw = cv2.imread(str(data.pairs[0][1]), cv2.IMREAD_UNCHANGED)
    expected = {7: 0, 8: 1, 26: 13, 23: 10, 0: IGNORE_INDEX, 1: IGNORE_INDEX, 9: IGNORE_INDEX, 24: 11}
    for label_id, train_id in expected.items():
        if (raw == label_id).any():
            assert (labels.numpy()[raw == label_id] == train_id).all(), (label_id, train_id)
    assert set(np.unique(labels.numpy())) <= {0, 1, 10, 11, 13, IGNORE_INDEX}
    assert CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_CLASSES[0] == "road"


def test_ade20k_loads_and_shifts_classes(ade: Path) -> None:
    for root in (ade, ade / "ADEChallengeData2016"):  # the parent folder or the dataset folder itself
        data = build_dataset(f"ade20k:{root}", "val", (32, 64))
        assert len(data) == 3
    image, labels = data[1]
    assert image.shape[0] == 3 and image.shape[1:] == labels.shape == (48, 80)
    raw = cv2.imread(str(data.pairs[1][1]), cv2.IMREAD_UNCHANGED)  # type: ignore[attr-defined]
    lab = labels.numpy()
    assert (lab[raw == 0] == IGNORE_INDEX).all() and (raw == 0).any()
    for c in (1, 2, 3, 13, 150):
        assert (lab[raw == c] == c - 1).all()
    assert ADE20K_CLASSES[0] == "wall" and len(ADE20K_CLASSES) == 150


def test_length_takes_an_even_spread(city: Path) -> None:
    data = build_dataset(f"cityscapes:{city}", "train", (32, 64), length=3)
    assert len(data) == 3
    names = [p[0].name for p in data.pairs]  # type: ignore[attr-defined]
    assert names[0].startswith("aachen_000000") and names[-1].startswith("bonn_000005")


def test_data_scale_resizes_images_and_labels_alike(city: Path) -> None:
    full = build_dataset(f"cityscapes:{city}", "val", (32, 64))[0]
    half = build_dataset(f"cityscapes:{city}", "val", (32, 64), scale=0.5)[0]
    assert half[0].shape == (3, 24, 48) and half[1].shape == (24, 48)
    down = cv2.resize(full[1].numpy().astype(np.uint8), (48, 24), interpolation=cv2.INTER_NEAREST)
    assert (down == half[1].numpy()).mean() > 0.95


def test_train_crops_are_model_sized_repeatable_and_random(city: Path) -> None:
    crops = build_dataset(f"cityscapes:{city}", "train", (32, 64), train=True, seed=3)
    assert isinstance(crops, TrainCrops)
    a_img, a_lab = crops[(0, 5)]
    b_img, b_lab = crops[(0, 5)]
    c_img, _ = crops[(0, 6)]
    assert a_img.shape == (3, 32, 64) and a_lab.shape == (32, 64)
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert not torch.equal(a_img, c_img)
    keys = list(DrawKeys([[4, 1], [2, 0]], start=10))  # type: ignore[arg-type]
    assert keys == [[(4, 20), (1, 21)], [(2, 22), (0, 23)]]


def test_random_scale_crop_keeps_labels_aligned_and_pads_with_ignore() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 40), np.uint8)
    labels[:, 20:] = 1
    rgb = np.where(labels[..., None] == 1, 200, 10).astype(np.uint8).repeat(3, axis=2)
    img, lab = random_scale_crop(rgb, labels, (16, 16), 1.0, rng)  # a plain crop at scale 1
    ok = lab != IGNORE_INDEX
    assert ok.all() and ((img[..., 0] > 100) == (lab == 1)).all()
    img, lab = random_scale_crop(rgb, labels, (64, 64), 0.5, rng)  # 10x20 picture in a 64x64 crop: padded
    assert (lab == IGNORE_INDEX).sum() == 64 * 64 - 10 * 20
    assert (img[lab == IGNORE_INDEX] == 0).all()
    assert ((img[..., 0] > 100) == (lab == 1))[lab != IGNORE_INDEX].mean() > 0.9


# ---- clear errors ------------------------------------------------------------------------------
def test_spec_errors_are_one_clear_line(tmp_path: Path, city: Path) -> None:
    cases = {
        "imagenet:/x": "unknown dataset",
        "cityscapes": "needs the dataset folder",
        f"cityscapes:{tmp_path / 'nope'}": "does not exist",
        "synthetic:/tmp": "takes no folder",
    }
    for spec, message in cases.items():
        with pytest.raises(UserError, match=message):
            parse_data_spec(spec)
    with pytest.raises(UserError, match="no leftImg8bit/train folder"):
        build_dataset(f"cityscapes:{tmp_path}", "train", (32, 64))
    empty = tmp_path / "empty"
    (empty / "leftImg8bit" / "train").mkdir(parents=True)
    (empty / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        build_dataset(f"cityscapes:{empty}", "train", (32, 64))
    with pytest.raises(UserError, match="has no labelled split 'test'"):
        build_dataset(f"ade20k:{tmp_path}", "test", (32, 64))
    with pytest.raises(UserError, match="predicts 10 classes but Cityscapes has 19"):
        check_classes(10, f"cityscapes:{city}")


def test_image_without_label_and_unreadable_files(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "c", {"val": 2})
    label = next((root / "gtFine" / "val").glob("*/*_labelIds.png"))
    label.unlink()
    with pytest.raises(UserError, match="has no label: expected .*gtFine_labelIds.png"):
        build_dataset(f"cityscapes:{root}", "val", (32, 64))
    root = make_ade20k(tmp_path / "a", {"validation": 2})
    image = sorted((root / "ADEChallengeData2016" / "images" / "validation").glob("*.jpg"))[0]
    image.write_bytes(b"not a jpeg")
    data = build_dataset(f"ade20k:{root}", "val", (32, 64))
    with pytest.raises(UserError, match="cannot read image"):
        data[0]


# ---- train and evaluate through the CLI --------------------------------------------------------
def train_tiny(spec: str, out: Path, steps: int, capsys: pytest.CaptureFixture) -> Path:
    """Train the tiny preset on a dataset spec for a few steps through the CLI; the released model."""
    code = main(["train", "--preset", "tiny", "--data", spec, "--steps", str(steps), "--batch-size", "2",
                 "--eval-every", str(steps), "--val-images", "2", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    return out / "model.pt"


def test_train_and_eval_on_cityscapes_through_the_cli(city: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    model = train_tiny(f"cityscapes:{city}", tmp_path / "run", 3, capsys)
    ckpt = torch.load(model, weights_only=True)
    assert tuple(ckpt["config"]["class_names"]) == CITYSCAPES_CLASSES  # the preset took the dataset's classes
    report = tmp_path / "eval.json"
    code = main(["eval", "--model", str(model), "--data", f"cityscapes:{city}", "--budgets", "1,0.5",
                 "--json", str(report), "--quiet"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["split"] == "val" and data["images"] == 4  # held-out split and every image by default
    assert set(data["results"][0]["iou"]) == set(CITYSCAPES_CLASSES)
    assert 0 <= data["results"][0]["miou"] <= 1
    # the same model on synthetic streets: 19 classes against 10 is a clear error, exit 2
    code = main(["eval", "--model", str(model), "--images", "2", "--quiet"])
    assert code == 2 and "predicts 19 classes but synthetic streets has 10" in capsys.readouterr().err


def test_train_and_eval_on_ade20k_with_sliding_windows(ade: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    model = train_tiny(f"ade20k:{ade}", tmp_path / "run", 2, capsys)
    report = tmp_path / "eval.json"
    code = main(["eval", "--model", str(model), "--data", f"ade20k:{ade}", "--budgets", "1",
                 "--sliding", "--json", str(report), "--quiet"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["sliding"] == pytest.approx(2 / 3) and len(data["results"][0]["iou"]) == 150
    # a checkpoint with other classes cannot start a fine-tune on this data
    code = main(["train", "--init", str(model), "--data", "synthetic", "--steps", "1",
                 "--out", str(tmp_path / "bad"), "--quiet"])
    assert code == 2 and "predicts 150 classes but synthetic streets has 10" in capsys.readouterr().err
