"""Digest of the labels a bundle gives through the runtime, per setting: the check that a change of code kept
every label of every frame (e.g. a refactor of the stage definition), comparing two runs' JSON.

    python benchmarks/labels_digest.py BUNDLE --json out.json            # in each version of the code
    python benchmarks/labels_digest.py --compare before.json after.json  # exit 1 unless identical

MAC budgets (the same on every run), batch 1, street frames of 360x640 rendered from fixed seeds. It uses only
the embedding API (`Pipeline`), so it runs against older versions of paumer-edge as well.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paumer_edge.core.provenance import Provenance
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.runtime import Pipeline

SETTINGS = [("budget 1", 1.0, None), ("budget 0.75", 0.75, None), ("budget 0.5", 0.5, None),
            ("budget 0.25", 0.25, None), ("threshold 0.3", 1.0, 0.3), ("budget 0.5 + threshold 0.2", 0.5, 0.2)]


def digests(bundle: str, frames: int) -> dict[str, dict[str, object]]:
    pipe = Pipeline(bundle, backend="ort", cost="macs")
    images = [street_scene(derive_seed(2024, i), (360, 640))[0] for i in range(frames)]
    out: dict[str, dict[str, object]] = {}
    for name, budget, threshold in tqdm(SETTINGS, desc="settings"):
        h = hashlib.sha256()
        tokens = []
        for image in images:
            result = pipe(image, budget=budget, threshold=threshold)
            h.update(np.ascontiguousarray(result.labels).tobytes())
            tokens.append(result.stats.counts)
        out[name] = {"sha256": h.hexdigest(), "mean_tokens": np.mean(tokens, axis=0).round(2).tolist()}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", help="bundle directory")
    p.add_argument("--frames", type=int, default=50, help="street frames per setting (default 50)")
    p.add_argument("--json", help="write the digests here")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two digest files")
    a = p.parse_args()
    if a.compare:
        before, after = (json.loads(Path(f).read_text())["settings"] for f in a.compare)
        differ = [k for k in before if before[k] != after.get(k)]
        print("identical labels in every setting" if not differ else f"labels differ in: {', '.join(differ)}")
        return 1 if differ else 0
    if not a.bundle:
        p.error("give a bundle, or --compare BEFORE AFTER")
    from paumer_edge.runtime.bundle import load_bundle

    provenance = Provenance.start(load_bundle(a.bundle).manifest, a.bundle)
    result = {"bundle": a.bundle, "frames": a.frames, "settings": digests(a.bundle, a.frames),
              "provenance": provenance.finish()}
    text = json.dumps(result, indent=2)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
