"""The backend interface: a backend opens one graph of a bundle as a session; a session runs arrays."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..bundle import Bundle


class GraphSession(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph; outputs in `output_names` order."""
        ...


class Backend(Protocol):
    name: str

    def open(self, bundle: Bundle, graph: str) -> GraphSession:
        """A session for the bundle's graph called `graph` (stage0, stage1, ..., decoder, full)."""
        ...
