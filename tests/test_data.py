"""Street-scene generator: determinism, any resolution, class coverage, videos, the Dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.data.classes import STREET_CLASSES
from paumer_edge.data.dataset import StreetScenes
from paumer_edge.data.registry import build_dataset
from paumer_edge.data.streets import derive_seed, street_frames, street_scene, write_video


def test_same_seed_same_picture_and_different_seeds_differ() -> None:
    a_img, a_lab = street_scene(5, (64, 128))
    b_img, b_lab = street_scene(5, (64, 128))
    c_img, _ = street_scene(6, (64, 128))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("size", [(37, 91), (128, 256), (360, 640)])
def test_any_resolution(size: tuple[int, int]) -> None:
    img, lab = street_scene(1, size)
    assert img.shape == (*size, 3) and img.dtype == np.uint8
    assert lab.shape == size and lab.dtype == np.uint8
    assert lab.max() < len(STREET_CLASSES)


def test_resolutions_agree_on_the_layout() -> None:
    """The same scene at two resolutions has (nearly) the same labels: it is one 3-D world."""
    _, small = street_scene(3, (64, 128))
    _, big = street_scene(3, (256, 512))
    down = cv2.resize(big, (128, 64), interpolation=cv2.INTER_NEAREST)
    assert (down == small).mean() > 0.9


def test_all_classes_appear_with_very_different_sizes() -> None:
    freq = np.zeros(len(STREET_CLASSES))
    for i in range(24):
        _, lab = street_scene(derive_seed(9, i), (128, 256))
        freq += np.bincount(lab.ravel(), minlength=len(STREET_CLASSES))
    freq /= freq.sum()
    assert (freq > 0).all(), dict(zip(STREET_CLASSES, freq))
    name = dict(zip(STREET_CLASSES, freq))
    assert name["road"] > 0.1 and name["sky"] > 0.03 and name["building"] > 0.1  # large, easy regions
    assert name["pole"] < 0.02 and name["traffic sign"] < 0.01 and name["person"] < 0.03  # small, thin


def test_video_frames_are_a_moving_camera_in_one_world(tmp_path: Path) -> None:
    frames = list(street_frames(4, (72, 128), seconds=1.0, fps=10))
    assert len(frames) == 10
    again = list(street_frames(4, (72, 128), seconds=1.0, fps=10))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(frames, again))
    # consecutive frames are similar (same street) but not identical (the camera moves)
    first, second, last = frames[0][1], frames[1][1], frames[-1][1]
    assert (first == second).mean() > 0.6
    assert not np.array_equal(first, last)
    path = tmp_path / "drive.mp4"
    assert write_video(path, (img for img, _ in frames), fps=10) == 10
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 10
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 128


def test_video_write_failure_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"

    def frames():
        yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError):
        write_video(path, frames())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="needs an .mp4"):
        write_video(tmp_path / "x.gif", iter([]))


def test_dataset_items_and_cache(private_cache: Path) -> None:
    ds = StreetScenes((32, 64), 6, "val", progress=False)
    image, labels = ds[2]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert labels.shape == (32, 64) and labels.dtype == torch.int64
    img, lab = street_scene(derive_seed(1, 2), (32, 64))
    assert np.array_equal(lab, labels.numpy())
    assert list((private_cache / "streets").glob("32x64-s1-n6-*/labels.npy"))
    again = StreetScenes((32, 64), 6, "val", progress=False)
    assert torch.equal(again[2][0], image)
    with pytest.raises(IndexError):
        ds[6]


def test_splits_are_disjoint() -> None:
    train = StreetScenes((32, 64), 2, "train", cache=False)
    test = StreetScenes((32, 64), 2, "test", cache=False)
    assert not torch.equal(train[0][0], test[0][0])


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown dataset 'kitti:/data'; use synthetic, cityscapes:DIR or ade20k:DIR"):
        build_dataset("kitti:/data", "train", (32, 64), 4)
    with pytest.raises(UserError, match="unknown split"):
        StreetScenes((32, 64), 2, "holdout")
