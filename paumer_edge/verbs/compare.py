"""`paumer-edge compare`: pausing beside its peers and the joint budget knob, as a table, JSON and one chart."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import UserError
from ..compare import CompareOptions, compare
from ..compare_report import JOINT, pareto, plot, table, verdict_lines, verdicts
from ..core.atomic import write_json_atomic
from ..core.exits import check_confidence
from ..core.pausing import check_budget
from ..core.provenance import provenance


def _ints(values: list[float] | None, what: str, default: tuple[int, ...]) -> tuple[int, ...]:
    if values is None:
        return default
    if any(v != int(v) or v < 1 for v in values):
        raise UserError(f"--{what} takes positive whole numbers, not {values}")
    return tuple(int(v) for v in values)


def options(a: argparse.Namespace) -> CompareOptions:
    """The verb's arguments as `CompareOptions`, every knob checked (one line for a bad one)."""
    d = CompareOptions()
    if a.images < 1 or a.plan_images < 1 or a.threads < 0:
        raise UserError(f"--images {a.images} / --plan-images {a.plan_images} / --threads {a.threads}: give at least "
                        "one image each and no negative thread count")
    budgets = tuple(check_budget(b) for b in a.budgets) if a.budgets else d.budgets
    joint = tuple(check_budget(b) for b in a.joint) if a.joint else d.joint
    exits = tuple(check_confidence(p) for p in a.exits) if a.exits else d.exits
    return CompareOptions(images=a.images, frame_size=a.frame_size, data=a.data, plan_images=a.plan_images,
                          budgets=budgets, sizes=tuple(a.sizes or ()), exits=exits,
                          merge=_ints(a.merge, "merge", d.merge), coarse=_ints(a.coarse, "coarse", d.coarse),
                          joint=joint, backend=a.backend, threads=a.threads, progress=not a.quiet)


def run(a: argparse.Namespace) -> int:
    opts = options(a)
    t0 = time.perf_counter()
    found = compare(a.model, opts)
    seconds = time.perf_counter() - t0
    print(table(found.results))
    judged = verdicts(found.results)
    misses = verdict_lines(judged)
    for line in misses:
        print(f"not dominated by the joint knob: {line}")
    payload = {"provenance": provenance(), "bundle": found.bundle, "backend": found.backend,
               "options": found.options, "seconds": {**found.seconds, "total": round(seconds, 1)},
               "plans": found.plans, "results": [r.to_dict() for r in found.results],
               "pareto_front": [r.name for r in pareto(found.results)], "verdicts": [v.to_dict() for v in judged]}
    json_path, plot_path = Path(a.json), Path(a.plot)
    write_json_atomic(json_path, payload)
    n = found.results[0].frames
    plot(found.results, plot_path, f"{Path(found.bundle).name.split('-')[0]}: {n} held-out frames, "
         f"{found.backend.split(',')[0]}")
    peers = sum(1 for r in found.results if r.method != JOINT)
    verdict = (f"the joint knob dominates all {peers} peer points" if not misses else
               f"the joint knob dominates {peers - len(misses)} of {peers} peer points")
    print(f"compared {len(found.results)} settings on {n} frames in {seconds:.0f} s "
          f"(export {found.seconds['export']:.0f} s); {verdict}; JSON {json_path}; chart {plot_path}")
    return 0
