"""`paumer-edge info`."""

from __future__ import annotations

import argparse
import json

from ..info import collect_info, format_info


def run(a: argparse.Namespace) -> int:
    info = collect_info()
    print(json.dumps(info, indent=2) if a.json else format_info(info))
    return 0
