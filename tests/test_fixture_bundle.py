"""The committed tiny bundle is what its script makes: remade here, it gives the same labels and token counts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from paumer_edge.runtime import Pipeline, load_bundle


def test_the_committed_bundle_is_what_its_script_makes(committed_bundle: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_tiny_bundle", committed_bundle.parent / "make_tiny_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fresh = module.make(tmp_path / "tiny.paumer")
    ours, theirs = load_bundle(committed_bundle), load_bundle(fresh)  # sha256 of every committed file checks out
    assert ours.manifest.model == theirs.manifest.model and ours.cost == theirs.cost
    frames = np.random.default_rng(1).integers(0, 255, (6, 40, 72, 3), dtype=np.uint8)
    a, b = Pipeline(ours, cost="macs"), Pipeline(theirs, cost="macs")
    for budget in (1.0, 0.5, 0.25):
        for f in frames:
            x, y = a(f, budget=budget), b(f, budget=budget)
            assert np.array_equal(x.labels, y.labels) and x.stats.counts == y.stats.counts
