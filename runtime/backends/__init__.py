"""Inference backends behind one small interface: open a bundle graph, run it on numpy arrays."""

from .base import Backend, GraphSession
from .ort import OrtBackend

__all__ = ["Backend", "GraphSession", "OrtBackend"]
