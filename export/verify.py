"""`paumer-edge verify`: every graph of a bundle in ONNX Runtime against the PyTorch model (and its INT8 graphs
against its fp32 ones: `verify_int8`).

Per graph: the largest absolute error of each output (labels: their agreement) against the PyTorch
module it was exported from, on what the graph really sees (the staged network run by the runtime's
`StagedRunner` on street frames with several token counts n: 1, a third, all) and on random inputs. End
to end: the label agreement of the staged graphs, driven by the runtime's pausing policy, with the
PyTorch model at a list of budgets. Anything beyond tolerance fails the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paumer_edge import UserError
from paumer_edge.core.names import (
    ACTIVE,
    CACHE,
    CONTEXT,
    DECODER,
    DECODER_TILES,
    FULL,
    IMAGE,
    LABEL_TILES,
    LABELS,
    TILES,
    TOKENS,
    reuse_stage_name,
    stage_name,
)
from paumer_edge.core.pausing import FixedCounts, Pauser, PausingPolicy
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.evaluate import normalise
from paumer_edge.model import PausingSegmenter
from paumer_edge.runtime.backends import OrtBackend
from paumer_edge.runtime.bundle import Bundle, load_bundle
from paumer_edge.runtime.staged import Observer, StagedRunner

from .graphs import (
    Decoder,
    DecoderTiles,
    Full,
    Stage0,
    Stage0Reuse,
    StageK,
    StageKReuse,
    at_image_size,
    random_positions,
)

STAGE_TOL = 1e-4  # max abs error of float outputs (fp32)
AGREE_FULL = 0.999  # label agreement at budget 1
AGREE_PAUSED = 0.995  # label agreement below budget 1


class VerificationFailed(Exception):
    """A bundle's graphs differ from PyTorch beyond tolerance (not a user mistake: `export` and `verify` exit 1)."""

    def __init__(self, report: VerifyReport):
        super().__init__(f"{sum(not c.ok for c in report.checks)} checks beyond tolerance")
        self.report = report


ERRORS = ("max_abs_err", "rel_err")  # kinds where lower is better; "agreement" and "kept" (fractions): higher


@dataclass
class Check:
    graph: str
    case: str
    output: str
    value: float
    kind: str  # "max_abs_err" | "rel_err" (error norm / signal norm) | "agreement" (labels) | "kept" (tokens)
    limit: float
    detail: dict[str, float] = field(default_factory=dict)  # further statistics of the same comparison

    @property
    def ok(self) -> bool:
        return self.value <= self.limit if self.kind in ERRORS else self.value >= self.limit

    def shown(self) -> tuple[str, str]:
        """Value and limit as the tables print them."""
        if self.kind == "max_abs_err":
            return f"{self.value:.2e}", f"{self.limit:.0e}"
        rel = self.kind in ERRORS
        return f"{100 * self.value:.3f}%", f"{'<=' if rel else '>='}{100 * self.limit:.1f}%"


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def _widths(self) -> tuple[int, int]:
        """Column widths that fit every graph and output name (the reuse graphs' are long)."""
        return (max([len(c.graph) for c in self.checks] + [8]) + 2, max([len(c.output) for c in self.checks] + [8]) + 2)

    def table(self) -> str:
        gw, ow = self._widths()
        lines = [f"{'graph':<{gw}}{'case':<26}{'output':<{ow}}{'measure':<13}{'value':>12}{'limit':>10}  ok"]
        for c in self.checks:
            value, limit = c.shown()
            lines.append(f"{c.graph:<{gw}}{c.case:<26}{c.output:<{ow}}{c.kind:<13}{value:>12}{limit:>10}  "
                         f"{'yes' if c.ok else 'NO'}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One row per graph output: the worst case over every input and token count checked."""
        rows: dict[tuple[str, str, str, str], list[Check]] = {}
        for c in self.checks:  # the pipelines keep one row per budget
            rows.setdefault((c.graph, c.output, c.kind, c.case if c.graph.endswith("pipeline") else ""),
                            []).append(c)
        gw, ow = self._widths()
        lines = [f"{'graph':<{gw}}{'output':<{ow}}{'worst':>12}{'limit':>10}  {'cases':<44}ok"]
        for (graph, output, kind, _), cs in rows.items():
            worst = max(cs, key=lambda c: c.value) if kind in ERRORS else min(cs, key=lambda c: c.value)
            value, limit = worst.shown()
            cases = "; ".join(sorted({c.case for c in cs}))
            cases = cases if len(cases) <= 42 else f"{len(cs)} cases (n = 1 .. all)"
            lines.append(f"{graph:<{gw}}{output:<{ow}}{value:>12}{limit:>10}  {cases:<44}"
                         f"{'yes' if all(c.ok for c in cs) else 'NO'}")
        return "\n".join(lines)

    def to_json(self) -> list[dict]:
        return [{**c.__dict__, "ok": c.ok} for c in self.checks]


def checked_counts(num_patches: int) -> list[int]:
    """The active-token counts every graph is checked at: one, a third, all."""
    return sorted({1, max(1, num_patches // 3), num_patches})


def street_batch(size: tuple[int, int], count: int, mean, std, seed: int = 123) -> torch.Tensor:
    """Real frames: held-out street scenes at the bundle's input size, normalised."""
    imgs = [street_scene(derive_seed(seed, i), size)[0] for i in range(count)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return normalise(x, mean, std)


def _err(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.abs(a.astype(np.float64) - b.double().numpy()).max())


def graph_modules(model: PausingSegmenter, scores: bool, reuse: bool = False) -> dict[str, nn.Module]:
    """The PyTorch form of every graph a bundle of `model` holds, by graph name."""
    modules: dict[str, nn.Module] = {stage_name(0): Stage0(model)}
    modules.update({stage_name(k): StageK(model, k) for k in range(1, model.cfg.num_stages)})
    if reuse:
        modules[reuse_stage_name(0)] = Stage0Reuse(model)
        modules.update({reuse_stage_name(k): StageKReuse(model, k) for k in range(1, model.cfg.num_stages)})
        if model.tiles_decodable:
            modules[DECODER_TILES] = DecoderTiles(model)
    modules[DECODER], modules[FULL] = Decoder(model, scores), Full(model, scores)
    return modules


def _run_module(module: nn.Module, spec_inputs: list[str], feeds: dict[str, Any]) -> Any:
    """A graph's PyTorch module on the graph's feeds."""
    return module(*[torch.from_numpy(np.asarray(feeds[name])) for name in spec_inputs])


class GraphChecker:
    """Compares graph outputs from ONNX Runtime with the PyTorch modules they were exported from, on the same
    inputs, and records a `Check` per output: labels by agreement, everything else by largest error."""

    def __init__(self, bundle: Bundle, modules: dict[str, nn.Module], report: VerifyReport):
        self.bundle, self.modules, self.report = bundle, modules, report
        self.seen: set[tuple[str, str]] = set()

    def check(self, graph: str, case: str, feeds: dict[str, Any], got: list[Any]) -> None:
        if (graph, case) in self.seen:
            return
        self.seen.add((graph, case))
        spec = self.bundle.graphs[graph]
        ref = _run_module(self.modules[graph], [t.name for t in spec.inputs], feeds)
        for name, a, r in zip(spec.output_names, got, ref):
            if name in (LABELS, LABEL_TILES):
                agree = AGREE_FULL
                self.report.checks.append(Check(graph, case, name, float((a == r.numpy()).mean()), "agreement", agree))
            else:
                self.report.checks.append(Check(graph, case, name, _err(a, r), "max_abs_err", STAGE_TOL))

    def observer(self, case: Callable[[str], str]) -> Observer:
        """An observer for `StagedRunner.forward` checking every graph it runs, under the case `case(graph)`."""
        return lambda graph, feeds, outputs: self.check(graph, case(graph), feeds, outputs)


def street_case(n: int) -> Callable[[str], str]:
    """The case name of a graph run on street frames with `n` tokens after stage 0."""
    return lambda graph: "street frames" if graph == stage_name(0) else f"street tokens, n={n}"


def _fits(bundle: Bundle, model: PausingSegmenter) -> None:
    info, cfg = bundle.model, model.cfg
    pairs = {"embed dim": (cfg.embed_dim, info.embed_dim), "patch size": (cfg.patch_size, info.patch_size),
             "classes": (cfg.num_classes, info.num_classes), "extra tokens": (cfg.num_extra_tokens, info.extra_tokens),
             "pausing points": (tuple(cfg.pause_after), info.pause_after)}
    differ = [f"{k} {mine} vs {theirs}" for k, (mine, theirs) in pairs.items() if mine != theirs]
    if differ:
        raise UserError(f"the checkpoint does not fit bundle '{bundle.path}' (checkpoint vs bundle: "
                        f"{'; '.join(differ)}); give the checkpoint it was exported from with --ckpt")


def verify_bundle(bundle: Bundle | str | Path, model: PausingSegmenter, frames: int = 8,
                  budgets: tuple[float, ...] = (1.0, 0.5, 0.25), threads: int = 0) -> VerifyReport:
    """Every graph of the bundle in ONNX Runtime against PyTorch, and the staged pipeline against the model."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    _fits(bundle, model)
    info = bundle.model
    model = at_image_size(model.eval().float(), info.input_size)
    backend = OrtBackend(threads=threads)
    runner = StagedRunner(bundle, backend)
    report = VerifyReport()
    checker = GraphChecker(bundle, graph_modules(model, bundle.manifest.has_scores, bundle.manifest.has_reuse), report)
    gen = torch.Generator().manual_seed(7)
    real = street_batch(info.input_size, frames, info.mean, info.std).numpy()
    n_all = info.num_patches
    with torch.inference_mode():
        # every graph on what it really sees: the staged network on street frames at n = 1, a third, all
        for n in checked_counts(n_all):
            runner.forward(real, FixedCounts.after_stage0(bundle.cost, n), observe=checker.observer(street_case(n)))
        # and on random inputs, one graph at a time
        noise = torch.randn(2, 3, *info.input_size, generator=gen).numpy()
        checker.check(stage_name(0), "random image", {IMAGE: noise}, runner.stages[0].run({IMAGE: noise}))
        scale = float(np.std(runner.stages[0].run({IMAGE: real})[0]))  # random tokens at the real tokens' scale
        for k in range(1, info.num_stages):
            tokens = (torch.randn(2, info.tokens, info.embed_dim, generator=gen) * scale).numpy()
            for n in checked_counts(n_all):
                active = random_positions(n_all, n, gen, rows=2)
                feeds = {TOKENS: tokens, ACTIVE: active.numpy()}
                checker.check(stage_name(k), f"random tokens, n={n}", feeds, runner.stages[k].run(feeds))
        if bundle.manifest.has_reuse:
            check_reuse_graphs(runner, checker, real, gen)
        if bundle.manifest.has_full:
            checker.check(FULL, "street frames", {IMAGE: real}, backend.open(bundle, FULL).run({IMAGE: real}))
        # end to end: staged graphs + runtime policy vs the PyTorch model
        for budget in budgets:
            labels = runner.forward(real, Pauser(bundle.cost, PausingPolicy(budget))).labels
            ref_labels = model(torch.from_numpy(real), budget=budget).logits.argmax(1).numpy()
            report.checks.append(Check("pipeline", f"budget {budget:g}, {frames} frames", LABELS,
                                       float((labels == ref_labels).mean()), "agreement",
                                       AGREE_FULL if budget >= 1 else AGREE_PAUSED))
    if "int8" in bundle.manifest.variant_names:  # the INT8 graphs against these fp32 ones
        from .verify_int8 import check_int8

        check_int8(bundle, real, budgets, report, threads)
    return report


def check_reuse_graphs(runner: StagedRunner, checker: GraphChecker, real: np.ndarray, gen: torch.Generator) -> None:
    """Each temporal-reuse graph against PyTorch on random tokens and caches (stage 0: a street frame, one per n), at
    n = 1, a third, all, with random context patches (batch 1: the graphs run one stream's frame at a time). (That
    reuse of an unchanged frame gives the full computation's labels is the runtime's test.) `decoder_tiles` on a street
    frame's final buffer."""
    bundle, backend = runner.bundle, runner.backend
    info = bundle.model
    n_all = info.num_patches
    for k, name in enumerate(info.reuse_stage_names):
        session = backend.open(bundle, name)
        for i, n in enumerate(checked_counts(n_all)):
            order = torch.randperm(n_all, generator=gen)[None]
            active = order[:, :n].sort().values.numpy()
            m = (n_all - n) // 2  # half the other patches in the context (none when all are active)
            context = order[:, n : n + m].sort().values.numpy()
            cache = torch.randn(1, *runner.cache_shapes[k], generator=gen).numpy()
            tokens = torch.randn(1, info.tokens, info.embed_dim, generator=gen).numpy()
            image = real[i % real.shape[0]][None]
            feeds = {**({IMAGE: image} if k == 0 else {}), TOKENS: tokens, ACTIVE: active, CONTEXT: context,
                     CACHE: cache}
            checker.check(name, f"random tokens, n={n}, context m={m}", feeds, session.run(feeds))
    if DECODER_TILES in bundle.graphs:  # on a street frame's final buffer, as a reuse frame decodes it
        final: dict[str, Any] = {}

        def keep(graph: str, feeds: dict[str, Any], outs: list[Any]) -> None:
            if graph == DECODER:
                final.update(feeds)

        runner.forward(real[:1], FixedCounts.after_stage0(bundle.cost, n_all), observe=keep)
        session = backend.open(bundle, DECODER_TILES)
        for n in checked_counts(n_all):
            tiles = random_positions(n_all, n, gen).numpy()
            feeds = {TOKENS: final[TOKENS], TILES: tiles}
            checker.check(DECODER_TILES, f"street tokens, n={n}", feeds, session.run(feeds))
