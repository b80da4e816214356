"""Optimisation-profile shapes of a bundle's graphs for TensorRT (native engines and the ORT TensorRT EP).

The token count n of each stage gets min 1, max N, and opt = the count an expected budget gives, so
one profile per budget the robot is expected to run at. The temporal-reuse graphs run on the patches that
changed: their opt is an eighth of that count (a still camera sees a few to a few tens of percent change), their
context's every other patch; batch 1 (one stream's frame at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

from paumer_edge import UserError
from paumer_edge.core.names import ACTIVE, CACHE, CONTEXT, IMAGE, TOKENS, reuse_stage_index, stage_index
from paumer_edge.core.pausing import plan_budget

from .bundle import Bundle

Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def profile_shapes(bundle: Bundle, graph: str, budgets: Sequence[float]) -> list[Shapes]:
    """(min, opt, max) shape of every input, one dict per optimisation profile; batch sizes from the manifest."""
    m = bundle.model
    lo, opt, hi = bundle.batch.sizes
    spec = bundle.graphs[graph]
    profiles = []
    plans = [plan_budget(bundle.cost, b) for b in budgets] or [plan_budget(bundle.cost, 1.0)]
    reuse = reuse_stage_index(graph)
    if reuse is not None:  # one stream's frame at a time
        lo = opt = hi = 1
    for plan in plans:
        shapes: Shapes = {}
        n_opt = plan.counts[stage_index(graph) or 0] if reuse is None else max(1, plan.counts[reuse] // 8)
        for t in spec.inputs:
            if t.name in (IMAGE, TOKENS):
                s: tuple[int, ...] = (3, *m.input_size) if t.name == IMAGE else (m.tokens, m.embed_dim)
                shapes[t.name] = ((lo, *s), (opt, *s), (hi, *s))
            elif t.name == ACTIVE:
                shapes[t.name] = ((lo, 1), (opt, n_opt), (hi, m.num_patches))
            elif t.name == CONTEXT:  # the reused patches still active at the stage: none to all but the active
                shapes[t.name] = ((lo, 0), (opt, m.num_patches - n_opt), (hi, m.num_patches))
            elif t.name == CACHE:
                c = tuple(int(d) for d in t.shape[1:])
                shapes[t.name] = ((lo, *c), (opt, *c), (hi, *c))
            else:
                raise UserError(f"graph {graph} has an input '{t.name}' this builder does not know")
        if shapes not in profiles:
            profiles.append(shapes)
    return profiles
