"""The street-scene label set: names and Cityscapes-style colours, shared by data, model presets and UI."""

from ..core.metrics import IGNORE_INDEX  # noqa: F401  (re-exported: the datasets' ignore value)

STREET_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "vegetation",
    "terrain",
    "sky",
    "pole",
    "traffic sign",
    "person",
    "car",
)

STREET_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (153, 153, 153),
    (220, 220, 0),
    (220, 20, 60),
    (0, 0, 142),
)

ROAD, SIDEWALK, BUILDING, VEGETATION, TERRAIN, SKY, POLE, SIGN, PERSON, CAR = range(len(STREET_CLASSES))
