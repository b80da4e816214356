"""Where paumer-edge keeps what it can remake: rendered data, exported sample bundles, latency profiles.

Torch-free, so the runtime can use it too.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: $PAUMER_EDGE_CACHE, else ~/.cache/paumer-edge."""
    return Path(os.environ.get("PAUMER_EDGE_CACHE") or Path.home() / ".cache" / "paumer-edge")
