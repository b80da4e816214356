"""Speed of this checkout against another revision of paumer-edge, paired: `bench` of each, in turn, on one machine.

A refactor must leave the runtime's speed where it was. Each revision runs its own `paumer-edge bench` (its own
CLI, its own export of the sample model) with budgets counted in multiply-accumulates (so both run the very same
token counts), alternating old / new for `--pairs` rounds; the figure is the median over pairs of new / old FPS
per budget, with the spread of the pairs.

    git worktree add /work/old b4b7a48 && (cd /work/old && python -m venv .venv && ...)   # the other revision
    python benchmarks/revision_parity.py --old-cli /work/old/.venv/bin/paumer-edge \
        --old-bundle /tmp/old_sample.paumer --new-bundle /tmp/new_sample.paumer --pairs 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def bench_once(cli: str, bundle: str, budgets: str, rounds: int, threads: int, out: Path) -> dict[float, float]:
    """FPS per budget of one `bench` run of `cli` (MAC budgets, no PyTorch reference; rows such as the whole-graph
    reference carry no budget and are left out)."""
    cmd = [cli, "bench", bundle, "--budgets", budgets, "--rounds", str(rounds), "--cost", "macs", "--no-torch",
           "--quiet", "--json", str(out), *(["--threads", str(threads)] if threads else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")
    rows = json.loads(out.read_text())["results"]
    return {float(r["budget"]): float(r["fps"]) for r in rows if r.get("budget") is not None and r.get("fps")}


def commit_of(cli: str) -> str | None:
    """The git commit of the checkout a CLI's venv belongs to (its venv sits in the checkout)."""
    root = Path(cli).resolve().parents[2]
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def summarise(pairs: list[dict[str, dict[float, float]]]) -> list[dict[str, Any]]:
    """Per budget: median FPS of each side, median and range of the paired new/old ratios."""
    rows = []
    for b in sorted(pairs[0]["old"], reverse=True):
        ratios = [p["new"][b] / p["old"][b] for p in pairs]
        rows.append({"budget": b, "old_fps_median": round(statistics.median(p["old"][b] for p in pairs), 2),
                     "new_fps_median": round(statistics.median(p["new"][b] for p in pairs), 2),
                     "new_over_old_median": round(statistics.median(ratios), 4),
                     "new_over_old_min": round(min(ratios), 4), "new_over_old_max": round(max(ratios), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old-cli", required=True, help="paumer-edge executable of the other revision")
    p.add_argument("--new-cli", default=shutil.which("paumer-edge") or "paumer-edge", help="this checkout's CLI")
    p.add_argument("--old-bundle", required=True, help="the sample model exported by the other revision")
    p.add_argument("--new-bundle", required=True, help="the sample model exported by this checkout")
    p.add_argument("--budgets", default="1,0.5,0.25")
    p.add_argument("--rounds", type=int, default=60, help="timed frames per budget in each bench run")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the backend's default)")
    p.add_argument("--json", default=str(RESULTS / "revision_parity.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic

    record = provenance(argv)
    pairs: list[dict[str, dict[float, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in tqdm(range(a.pairs), desc="pairs", unit="pair"):
            order = [("old", a.old_cli, a.old_bundle), ("new", a.new_cli, a.new_bundle)]
            pair = {side: bench_once(cli, bundle, a.budgets, a.rounds, a.threads, Path(tmp) / f"{side}.json")
                    for side, cli, bundle in (order if i % 2 == 0 else order[::-1])}
            pairs.append(pair)
    result = {"what": "bench FPS of this checkout over another revision, paired runs alternating in order",
              "provenance": record.finish(), "old_commit": commit_of(a.old_cli), "new_commit": record.git.get("commit"),
              "cost": "macs", "rounds": a.rounds, "results": summarise(pairs),
              "pairs": [{side: {str(b): round(f, 3) for b, f in fps.items()} for side, fps in pair.items()}
                        for pair in pairs]}
    write_json_atomic(a.json, result)
    for r in result["results"]:
        print(f"budget {r['budget']:g}: new/old {r['new_over_old_median']:.3f} (pairs {r['new_over_old_min']:.3f}-"
              f"{r['new_over_old_max']:.3f}); FPS {r['old_fps_median']} -> {r['new_fps_median']}")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
