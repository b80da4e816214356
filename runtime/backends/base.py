"""The backend interface: a backend opens one graph of a bundle as a session; a session runs it.

Inputs are numpy arrays or device handles a session of the same backend returned. Outputs named in
`keep` stay on the device as such handles (the token buffer between stages); the rest come back as
numpy arrays (entropies, labels). On the CPU a handle is simply the numpy array.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from ..bundle import Bundle


class GraphSession(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, Any], keep: Collection[str] = ()) -> list[Any]:
        """Run the graph; outputs in `output_names` order."""
        ...


class Backend(Protocol):
    name: str

    def open(self, bundle: Bundle, graph: str) -> GraphSession:
        """A session for the bundle's graph called `graph` (stage0, stage1, ..., decoder, full)."""
        ...

    def describe(self) -> str:
        """One line: what runs where (for logs and summaries)."""
        ...
