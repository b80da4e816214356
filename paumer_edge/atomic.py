"""Atomic file writes: readers see the old file or the new one, never half of one (no torch here)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | Path, payload: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
