"""`verify` for INT8: a bundle's Q/DQ graphs against its fp32 graphs, in ONNX Runtime, on street frames.

Per graph, on exactly what the fp32 graph sees at each budget (the fp32 staged pipeline's feeds, recorded
through `StagedRunner.forward(observe=...)`): the relative error of the token buffer over the rows the stage
ran (error norm / signal norm), the entropies and how many of the tokens the fp32 entropies keep at that
pausing point the int8 ones keep too (int8 noise can reorder near-equal entropies), and the decoder's labels.
End to end, the int8 pipeline making its own pausing decisions against the fp32 one at each budget (the same
MAC cost model, so the same token counts): label agreement, and the share of the tokens fp32 keeps in every
later stage that int8 keeps as well. The tolerances are stated in the README.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paumer_edge.core.names import ACTIVE, ENTROPY, LABELS, TOKENS, stage_index, stage_name
from paumer_edge.core.pausing import Pauser, PausingPolicy, select_tokens
from paumer_edge.runtime.backends import OrtBackend
from paumer_edge.runtime.bundle import Bundle
from paumer_edge.runtime.staged import StagedRunner

from .verify import Check, VerifyReport

INT8_TOKENS_REL = 0.05  # relative error of a stage's tokens (the rows it ran) against fp32
INT8_RANKING = 0.97  # tokens kept at a pausing point from the same input: fp32's choice that int8 also makes
INT8_AGREE = 0.97  # label agreement with the fp32 graphs (decoder on the same tokens; pipelines end to end)
INT8_KEPT = 0.97  # end to end, below budget 1: tokens fp32 keeps in later stages that int8 keeps too
PREFIX = "int8 "


def _rows(tokens: np.ndarray, active: np.ndarray | None, extra: int) -> np.ndarray:
    """The rows of a token buffer [B, L, C] a stage ran on: every row, or the extra tokens and the active patches."""
    if active is None:
        return tokens
    idx = np.concatenate([np.broadcast_to(np.arange(extra), (active.shape[0], extra)), active + extra], axis=1)
    return np.take_along_axis(tokens, idx[..., None], axis=1)


def kept_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Of the (sorted, per image) positions in `a` [B, n], the share also in `b` [B, n]."""
    hits = sum(np.intersect1d(x, y, assume_unique=True).size for x, y in zip(a, b))
    return hits / max(a.size, 1)


class GraphComparer:
    """Runs the int8 graph on each fp32 graph's feeds and records how far apart their outputs are."""

    def __init__(self, fp32: Bundle, runner: StagedRunner, report: VerifyReport):
        self.fp32, self.runner, self.report = fp32, runner, report
        self.extra = fp32.model.extra_tokens
        self.seen: set[tuple[str, str, str]] = set()
        self.pauser: Pauser | None = None

    def _session(self, graph: str) -> Any:
        k = stage_index(graph)
        return self.runner.decoder if k is None else self.runner.stages[k]

    def observe(self, case: str) -> Any:
        def run(graph: str, feeds: dict[str, Any], outputs: list[Any]) -> None:
            got = self._session(graph).run(feeds)
            for name, a, r in zip(self.fp32.graphs[graph].output_names, got, outputs):
                # stage 0 sees the same frames at every budget; its pausing decision differs per budget
                where = "street frames" if graph == stage_name(0) and name != ENTROPY else case
                if (graph, where, name) not in self.seen:
                    self.seen.add((graph, where, name))
                    self._compare((graph, where), name, np.asarray(a), np.asarray(r), feeds)
        return run

    def _compare(self, key: tuple[str, str], name: str, a: np.ndarray, r: np.ndarray, feeds: dict[str, Any]) -> None:
        graph, case = key
        if name == LABELS:
            self.report.checks.append(Check(PREFIX + graph, case, name, float((a == r).mean()), "agreement",
                                            INT8_AGREE))
        elif name == ENTROPY:
            k = stage_index(graph) or 0
            assert self.pauser is not None
            keep = min(r.shape[1], self.pauser.plan.counts[k + 1])
            if keep >= r.shape[1]:  # nothing pauses here: no decision to compare
                return
            ranking = kept_overlap(select_tokens(r, keep), select_tokens(a, keep))
            diff = np.abs(a.astype(np.float64) - r)
            self.report.checks.append(Check(PREFIX + graph, case, "ranking", ranking, "kept", INT8_RANKING,
                                            {"entropy_mean_abs_err": float(diff.mean()),
                                             "entropy_max_abs_err": float(diff.max()), "kept_tokens": keep}))
        else:  # the token buffer, over the rows the stage ran
            active = feeds.get(ACTIVE) if TOKENS in feeds else None
            a, r = _rows(a, active, self.extra).astype(np.float64), _rows(r, active, self.extra).astype(np.float64)
            rel = float(np.linalg.norm(a - r) / max(float(np.linalg.norm(r)), 1e-12))
            self.report.checks.append(Check(PREFIX + graph, case, name, rel, "rel_err", INT8_TOKENS_REL,
                                            {"max_abs_err": float(np.abs(a - r).max()),
                                             "mean_abs_err": float(np.abs(a - r).mean())}))


def check_int8(bundle: Bundle, images: np.ndarray, budgets: tuple[float, ...] = (1.0, 0.5, 0.25),
               report: VerifyReport | None = None, threads: int = 0) -> VerifyReport:
    """Compare the bundle's int8 graphs with its fp32 graphs on normalised `images` [B, 3, H, W] (see the module
    docstring); appends to `report` and returns it."""
    report = report if report is not None else VerifyReport()
    fp32, q = bundle.at_precision("fp32"), bundle.at_precision("int8")
    backend = OrtBackend(threads=threads)
    ref_runner, q_runner = StagedRunner(fp32, backend), StagedRunner(q, backend)
    comparer = GraphComparer(fp32, q_runner, report)
    n = len(images)
    for budget in budgets:
        pauser = Pauser(fp32.cost, PausingPolicy(budget))  # MACs: both pipelines keep the same number of tokens
        comparer.pauser = pauser
        case = f"budget {budget:g}, {n} frames"
        ref = ref_runner.forward(images, pauser, stage_map=True, observe=comparer.observe(case))
        got = q_runner.forward(images, pauser, stage_map=True)
        report.checks.append(Check(PREFIX + "pipeline", case, LABELS, float((got.labels == ref.labels).mean()),
                                   "agreement", INT8_AGREE))
        if budget < 1 and ref.stage_map is not None and got.stage_map is not None:
            stages = range(1, fp32.model.num_stages)
            ref_n = {k: int((ref.stage_map >= k).sum()) for k in stages}  # stage k ran on the patches mapped >= k
            both = {k: int(((ref.stage_map >= k) & (got.stage_map >= k)).sum()) for k in stages}
            kept = sum(both.values()) / max(sum(ref_n.values()), 1)
            report.checks.append(Check(PREFIX + "pipeline", case, "kept", kept, "kept", INT8_KEPT,
                                       {f"stage{k}": both[k] / max(ref_n[k], 1) for k in stages}))
    return report

