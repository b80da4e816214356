"""Plans: one budget knob over every way a bundle can spend less (input size, precision, pausing, early exit).

A bundle exported with plans carries, besides its main graphs, the same network at other input sizes (and
precisions), and the measured joint front of all of them (`contract.Plans`): points (graph set, pausing
budget) with their accuracy and their time relative to the main graphs at budget 1 on calibration frames,
each point slower and more accurate than the one before. A budget b then buys the most accurate point whose
measured cost is at most b, so the knob always picks the best setting found at that cost, whichever mix of
resolution and pausing it is (or DToP's early exit, where a bundle carries its graphs and it measured
better). A budget below the cheapest point runs the cheapest (and says so).

This module is the rule both sides share (plain Python): the front of measured points, the choice for a
budget, and reading the manifest's `plans` section.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .contract import PlanPoint, Plans, Variant
from .pausing import check_budget
from .schema import _kind, _Reader

__all__ = ["PLAN_KINDS", "choose", "describe_plans", "front", "parse_plans", "plan_label", "plan_set_kinds"]

# graph-set kinds a plan may run: pausing on the usual stages (or a coarse stage 0), or DToP's early exit
PLAN_KINDS = ("staged", "coarse-stage0", "early-exit")


def plan_set_kinds(variants: Sequence[Variant]) -> dict[str, str]:
    """The graph sets a plan may run, in order, with their kinds: the main graphs ("", staged), then every variant
    of a kind in PLAN_KINDS."""
    return {"": "staged", **{v.name: v.kind for v in variants if v.kind in PLAN_KINDS}}


def front(points: Iterable[PlanPoint]) -> list[PlanPoint]:
    """The Pareto front of measured points, cheapest first: every point kept costs more and scores higher than
    the one before it (ties in cost keep the more accurate; ties in accuracy keep the cheaper)."""
    out: list[PlanPoint] = []
    for p in sorted(points, key=lambda q: (q.cost, -q.miou)):
        if not out or p.miou > out[-1].miou:
            out.append(p)
    return out


def choose(points: Sequence[PlanPoint], budget: float) -> PlanPoint:
    """The most accurate point of a front (cheapest first) whose cost fits `budget`; the cheapest if none does."""
    b = check_budget(budget)
    best = points[0]
    for p in points:
        if p.cost <= b + 1e-9:
            best = p
    return best


def plan_label(point: PlanPoint, main_size: tuple[int, int], variants: Sequence[Variant] = ()) -> str:
    """A plan in a few characters: its input size (and precision when not fp32) and pausing budget, e.g.
    "96x192 @0.55", or its early-exit confidence, e.g. "128x256 exit@0.95"."""
    found = [v for v in variants if v.name == point.variant]
    size = found[0].input_size if found else main_size
    precision = f" {found[0].precision}" if found and found[0].precision != "fp32" else ""
    knob = f"exit@{point.exit:.3g}" if point.exit else f"@{point.pausing:.2g}"
    return f"{size[0]}x{size[1]}{precision} {knob}"


def describe_plans(plans: Plans, main_size: tuple[int, int], variants: Sequence[Variant] = ()) -> list[str]:
    """The plans as lines to print: where they were measured, then each point (budget range, plan, accuracy, time)."""
    lines = [f"plans measured on {plans.images} images ({plans.data}) on {plans.device}, {plans.measured}"
             + (f"; candidates: {plans.candidates}" if plans.candidates else "") + ":"]
    for i, p in enumerate(plans.points):
        upper = plans.points[i + 1].cost if i + 1 < len(plans.points) else 1.0
        lines.append(f"  budget {p.cost:.2f}-{upper:.2f}: {plan_label(p, main_size, variants):<18} mIoU "
                     f"{100 * p.miou:.2f}, {p.ms:.1f} ms ({1 / p.cost:.2f}x)")
    return lines


def parse_plans(r: _Reader, raw: Any, variants: tuple[Variant, ...]) -> Plans | None:
    """The manifest's `plans` section, checked: points on the bundle's staged graph sets, a front cheapest first."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise r.fail("plans", f"must be an object, not {_kind(raw)}")
    names = plan_set_kinds(variants)
    points: list[PlanPoint] = []
    for i, d in enumerate(r.items(raw, "points", "plans.", nonempty=True)):
        p = f"plans.points[{i}]."
        if not isinstance(d, dict):
            raise r.fail(f"plans.points[{i}]", f"must be an object, not {_kind(d)}")
        variant = r.text(d, "variant", p)
        if variant not in names:
            raise r.fail(f"{p}variant", f"names '{variant}', which is not a staged graph set of this bundle")
        values = {key: r.number(r.get(d, key, p), f"{p}{key}", lo=0.0, positive=key != "miou")
                  for key in ("pausing", "miou", "ms", "cost")}
        if "exit" in d:
            values["exit"] = r.number(d["exit"], f"{p}exit", lo=0.0, positive=True)
        point = PlanPoint(variant, **values)
        for key in ("pausing", "miou", "exit"):
            if values.get(key, 0.0) > 1:
                raise r.fail(f"{p}{key}", f"is {values[key]}, not a fraction in [0, 1]")
        if bool(point.exit) != (names[variant] == "early-exit"):
            raise r.fail(f"{p}exit", f"an early-exit confidence goes with an early-exit graph set and only there "
                         f"('{variant}' is {names[variant]})")
        if points and not (point.cost > points[-1].cost and point.miou > points[-1].miou):
            raise r.fail(f"plans.points[{i}]", "must cost more and score higher than the point before it (the "
                         "plans are a front, cheapest first)")
        points.append(point)
    candidates = r.text(raw, "candidates", "plans.") if "candidates" in raw else ""
    return Plans(tuple(points), r.integer(raw, "images", "plans.", lo=1), r.text(raw, "data", "plans."),
                 r.text(raw, "device", "plans."), r.text(raw, "measured", "plans."), candidates)
