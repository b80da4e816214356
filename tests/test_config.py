"""Model configs: presets, JSON round trip, validation messages."""

from __future__ import annotations

import json

import pytest

from paumer_edge import UserError
from paumer_edge.config import PRESETS, ModelConfig, preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json(name: str) -> None:
    cfg = preset(name)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["name"] == name


def test_segmenter_shapes() -> None:
    assert (preset("vit-t").embed_dim, preset("vit-t").num_heads) == (192, 3)
    assert (preset("vit-s").embed_dim, preset("vit-s").num_heads) == (384, 6)
    assert (preset("vit-b").embed_dim, preset("vit-b").depth) == (768, 12)
    assert (preset("vit-l").embed_dim, preset("vit-l").depth, preset("vit-l").num_heads) == (1024, 24, 16)
    assert preset("vit-b").decoder == "mask_transformer"


def test_derived_geometry() -> None:
    cfg = preset("sample")
    assert cfg.grid == (16, 32) and cfg.num_patches == 512
    assert cfg.stage_bounds == ((0, 2), (2, 5), (5, 8), (8, 12))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_size": (100, 64)}, "multiple of the patch size"),
        ({"embed_dim": 33}, "divisible by num_heads"),
        ({"pause_after": (3, 2)}, "strictly increasing"),
        ({"pause_after": (0, 2)}, "strictly between 0 and depth"),
        ({"decoder": "fpn"}, "not one of linear, mask_transformer"),
        ({"palette": ((0, 0, 0),)}, "palette has 1 colours"),
    ],
)
def test_invalid_configs_say_what_is_wrong(change: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        preset("tiny").replace(**change)


def test_unknown_preset_and_fields() -> None:
    with pytest.raises(UserError, match="unknown preset 'huge'; choose one of"):
        preset("huge")
    with pytest.raises(UserError, match="unknown fields"):
        ModelConfig.from_dict({**preset("tiny").to_dict(), "colour": 1})
