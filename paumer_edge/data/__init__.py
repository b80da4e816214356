"""Data: the procedural street-scene generator (numpy + OpenCV) and the torch Dataset over it."""

from .classes import IGNORE_INDEX, STREET_CLASSES, STREET_PALETTE

__all__ = ["IGNORE_INDEX", "STREET_CLASSES", "STREET_PALETTE"]
