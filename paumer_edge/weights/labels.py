"""Class names and colours for an imported model: asked for, stored in the checkpoint, known, or generic."""

from __future__ import annotations

from pathlib import Path

from .. import UserError
from ..data.labelsets import LABELSETS
from .common import SourceFacts

Labels = tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]

# Label sets recognised by their class count alone when the checkpoint names no dataset.
_BY_COUNT = {len(names): name for name, (names, _) in LABELSETS.items()}


def generic_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: distinct, deterministic colours for any number of classes."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def _from_file(path: Path, num_classes: int) -> Labels:
    try:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read class names from '{path}' ({e.__class__.__name__})") from None
    if len(names) != num_classes:
        raise UserError(f"'{path}' names {len(names)} classes but the model has {num_classes}; "
                        "write one class name per line")
    return names, generic_palette(num_classes)


def _labelset(name: str, num_classes: int) -> Labels:
    names, palette = LABELSETS[name]
    if len(names) != num_classes:
        raise UserError(f"--classes {name} has {len(names)} classes but the model has {num_classes}")
    return names, palette


def resolve_labels(num_classes: int, choice: str | None, facts: SourceFacts, notes: list[str]) -> Labels:
    """Names and palette for `num_classes` classes; says in `notes` where they came from."""
    if choice:
        if choice.lower() in LABELSETS:
            return _labelset(choice.lower(), num_classes)
        path = Path(choice)
        if not path.is_file():
            raise UserError(f"--classes '{choice}' is neither a known label set ({', '.join(LABELSETS)}) nor a "
                            "file with one class name per line")
        return _from_file(path, num_classes)
    if facts.class_names and len(facts.class_names) == num_classes:
        palette = facts.palette if facts.palette and len(facts.palette) == num_classes \
            else generic_palette(num_classes)
        notes.append("class names from the checkpoint")
        return facts.class_names, palette
    dataset = (facts.dataset or "").lower()
    if dataset in LABELSETS and len(LABELSETS[dataset][0]) == num_classes:
        notes.append(f"class names: {dataset} (the dataset the checkpoint was trained on)")
        return LABELSETS[dataset]
    if num_classes in _BY_COUNT and not dataset:
        guess = _BY_COUNT[num_classes]
        notes.append(f"class names: {guess}, guessed from {num_classes} classes; pass --classes to change")
        return LABELSETS[guess]
    notes.append("class names: generic ('class 0' ...); pass --classes FILE (one name per line) to name them")
    return tuple(f"class {i}" for i in range(num_classes)), generic_palette(num_classes)
