"""`paumer-edge compare`: pausing beside its peers and the joint budget knob, as a table, JSON and one chart."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from ..core.knobs import check_budget, check_confidence, check_count, check_size, check_threads
from ..core.paths import Input, Output, guard_paths
from .bundles import needs_torch
from .params import DATA_HELP, FLOATS, SIZE, backend_option, memory_limit_option, model_option, quiet, threads_option

MAX_IMAGES = 100_000


@click.command("compare", help="Evaluate pausing beside its peers on the same held-out frames, each over its own "
               "knob: resolution scaling (the same weights at smaller input sizes), DToP's early exit, ToMe token "
               "merging, PRO-SCALE's coarse early blocks, and the joint budget knob over the plans. Every setting "
               "runs through the deployed runtime on every frame, interleaved frame by frame; speed-ups are paired "
               "ratios against budget 1. A table, JSON (with provenance) and one chart of mIoU against speed-up.")
@model_option("Checkpoint (exported once with every peer's graphs and measured plans, then cached), or a bundle "
              "folder (compares the methods it has graphs for) [default: the bundled sample].")
@click.option("--images", type=int, default=200, help="Held-out test images.")
@click.option("--frame-size", type=SIZE, default="256x512",
              help="HxW of the synthetic test frames; each method resizes them to its input.")
@click.option("--data", default="synthetic", help=DATA_HELP)
@click.option("--plan-images", type=int, default=100,
              help="Held-out val images the plans are measured on (never the test images).")
@click.option("--budgets", type=FLOATS, default="1,0.75,0.5,0.35,0.25", help="Pausing budgets.")
@click.option("--sizes", metavar="HxW,...", help="Input sizes of resolution scaling and of the plans "
              "[default: 7/8, 3/4, 5/8 and 1/2 of the input].")
@click.option("--exits", type=FLOATS, default="0.99,0.95,0.9,0.8", help="DToP's exit confidences (p0).")
@click.option("--merge", type=FLOATS, default="8,16,24,32", help="ToMe's tokens merged per block (r).")
@click.option("--coarse", type=FLOATS, default="2,5", help="PRO-SCALE's blocks on the coarse token grid.")
@click.option("--joint", type=FLOATS, default="1,0.75,0.5,0.35,0.25,0.2",
              help="Budgets of the joint knob, besides each plan's own cost.")
@backend_option
@threads_option
@click.option("--json", "json_path", default="runs/compare/compare.json", metavar="FILE",
              help="Write the results here.")
@click.option("--plot", default="runs/compare/compare.png", metavar="FILE", help="Write the chart here (PNG).")
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    needs_torch("compare (it renders labelled frames and exports the peers' graphs)")
    a = SimpleNamespace(**options)
    opts = options_from(a)  # every knob checked before any work starts
    guard_paths(Input.of("--model", a.model), [*Output.of("--json", a.json_path), *Output.of("--plot", a.plot)])
    return run(a, opts)


def _counts(values: list[float], name: str) -> tuple[int, ...]:
    return tuple(check_count(v, name) for v in values)


def options_from(a: SimpleNamespace) -> Any:
    """The verb's options as `CompareOptions`, every knob checked by its one rule (one line for a bad one)."""
    from ..compare import CompareOptions
    from .export import extra_sizes

    return CompareOptions(
        images=check_count(a.images, "--images", 1, MAX_IMAGES),
        frame_size=check_size(a.frame_size, "--frame-size"), data=a.data,
        plan_images=check_count(a.plan_images, "--plan-images", 1, MAX_IMAGES),
        budgets=tuple(check_budget(b, "--budgets") for b in a.budgets),
        sizes=extra_sizes(a.sizes, "--sizes"),
        exits=tuple(check_confidence(p, "--exits") for p in a.exits),
        merge=_counts(a.merge, "--merge"), coarse=_counts(a.coarse, "--coarse"),
        joint=tuple(check_budget(b, "--joint") for b in a.joint),
        backend=a.backend, threads=check_threads(a.threads, "--threads"), progress=not a.quiet)


def run(a: SimpleNamespace, opts: Any) -> int:
    from ..compare import compare
    from ..compare_report import dominance, dominance_line, pareto, plot, table, verdict_lines, verdicts
    from ..core.atomic import write_json_atomic
    from ..core.provenance import Provenance

    started = Provenance.start()  # the code and the load as the run starts (edits made while it runs do not count)
    t0 = time.perf_counter()
    found = compare(a.model, opts)
    seconds = time.perf_counter() - t0
    print(table(found.results))
    judged = verdicts(found.results)
    misses = verdict_lines(judged)
    for line in misses:
        print(f"not dominated by the joint knob: {line}")

    payload = {"provenance": started.finish(), "bundle": found.bundle,
               "backend": found.backend, "options": found.options,
               "seconds": {**found.seconds, "total": round(seconds, 1)},
               "plans": found.plans, "results": [r.to_dict() for r in found.results],
               "pareto_front": [r.name for r in pareto(found.results)], "verdicts": [v.to_dict() for v in judged],
               "dominance": dominance(judged)}
    json_path, plot_path = Path(a.json_path), Path(a.plot)
    write_json_atomic(json_path, payload)
    n = found.results[0].frames
    plot(found.results, plot_path, f"{Path(found.bundle).name.split('-')[0]}: {n} held-out frames, "
         f"{found.backend}")
    print(f"compared {len(found.results)} settings on {n} frames in {seconds:.0f} s "
          f"(export {found.seconds['export']:.0f} s); {dominance_line(judged)}; JSON {json_path}; chart {plot_path}")
    return 0
