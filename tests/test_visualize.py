"""Overlays and pause maps: exact colours, any label dtype."""

from __future__ import annotations

import numpy as np

from paumer_edge.runtime.visualize import colorize, compose, pause_map, stage_palette


def test_colorize_maps_every_class_to_its_colour_and_unknown_to_black() -> None:
    palette = np.random.default_rng(0).integers(0, 255, (10, 3)).astype(np.uint8)
    labels = np.random.default_rng(1).integers(0, 12, (37, 53)).astype(np.uint8)  # 10, 11: not classes
    out = colorize(labels, palette)
    expected = np.zeros((*labels.shape, 3), np.uint8)
    known = labels < 10
    expected[known] = palette[labels[known]]
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8 and (out == expected).all()
    assert (colorize(labels.astype(np.int64), palette) == expected).all()


def test_pause_map_colours_each_stage_and_clips_beyond_the_last() -> None:
    smap = np.array([[0, 1, 2, 3, 7]], np.uint8)
    colors = stage_palette(4)
    out = pause_map(smap, 4)
    assert (out[0, :4] == colors).all() and (out[0, 4] == colors[-1]).all()


def test_compose_beside_doubles_the_width() -> None:
    frame = np.full((20, 30, 3), 100, np.uint8)
    labels = np.zeros((20, 30), np.uint8)
    assert compose(frame, labels, [(0, 0, 0)] * 2).shape == (20, 30, 3)
    assert compose(frame, labels, [(0, 0, 0)] * 2, np.zeros((20, 30), np.uint8), 4).shape == (20, 60, 3)
