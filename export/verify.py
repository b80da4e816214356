"""`paumer-edge verify`: every graph of a bundle in ONNX Runtime against the PyTorch model.

Per graph: the largest absolute error of each output on real street frames and on random inputs,
with several token counts n (1, a middle value, all) for the later stages. End to end: the label
agreement of the staged graphs, driven by the runtime's pausing policy, with PyTorch at a list of
budgets. Anything beyond tolerance fails the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paumer_edge import UserError
from paumer_edge.core.pausing import PausingPolicy
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.evaluate import normalise
from paumer_edge.model import PausingSegmenter
from paumer_edge.runtime.backends import GraphSession, OrtBackend
from paumer_edge.runtime.bundle import Bundle, load_bundle
from paumer_edge.runtime.staged import StagedRunner

from .graphs import Decoder, Full, Stage0, StageK, at_image_size

STAGE_TOL = 1e-4  # max abs error of float outputs (fp32)
AGREE_FULL = 0.999  # label agreement at budget 1
AGREE_PAUSED = 0.995  # label agreement below budget 1


@dataclass
class Check:
    graph: str
    case: str
    output: str
    value: float
    kind: str  # "max_abs_err" | "agreement"
    limit: float

    @property
    def ok(self) -> bool:
        return self.value <= self.limit if self.kind == "max_abs_err" else self.value >= self.limit


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def table(self) -> str:
        lines = [f"{'graph':<9}{'case':<26}{'output':<12}{'measure':<13}{'value':>12}{'limit':>10}  ok"]
        for c in self.checks:
            value = f"{c.value:.3e}" if c.kind == "max_abs_err" else f"{100 * c.value:.3f}%"
            limit = f"{c.limit:.0e}" if c.kind == "max_abs_err" else f"{100 * c.limit:.1f}%"
            lines.append(f"{c.graph:<9}{c.case:<26}{c.output:<12}{c.kind:<13}{value:>12}{limit:>10}  "
                         f"{'yes' if c.ok else 'NO'}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One row per graph output: the worst case over every input and token count checked."""
        rows: dict[tuple[str, str, str], list[Check]] = {}
        for c in self.checks:  # the pipeline keeps one row per budget
            rows.setdefault((c.graph, c.output, c.case if c.graph == "pipeline" else ""), []).append(c)
        lines = [f"{'graph':<10}{'output':<10}{'worst':>12}{'limit':>10}  {'cases':<44}ok"]
        for (graph, output, _), cs in rows.items():
            worst = max(cs, key=lambda c: c.value) if cs[0].kind == "max_abs_err" else min(cs, key=lambda c: c.value)
            value = f"{worst.value:.2e}" if worst.kind == "max_abs_err" else f"{100 * worst.value:.3f}%"
            limit = f"{worst.limit:.0e}" if worst.kind == "max_abs_err" else f">={100 * worst.limit:.1f}%"
            cases = "; ".join(sorted({c.case for c in cs}))
            cases = cases if len(cases) <= 42 else f"{len(cs)} cases (n = 1 .. all)"
            lines.append(f"{graph:<10}{output:<10}{value:>12}{limit:>10}  {cases:<44}"
                         f"{'yes' if all(c.ok for c in cs) else 'NO'}")
        return "\n".join(lines)

    def to_json(self) -> list[dict]:
        return [{**c.__dict__, "ok": c.ok} for c in self.checks]


def street_batch(size: tuple[int, int], count: int, mean, std, seed: int = 123) -> torch.Tensor:
    """Real frames: held-out street scenes at the bundle's input size, normalised."""
    imgs = [street_scene(derive_seed(seed, i), size)[0] for i in range(count)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return normalise(x, mean, std)


def _err(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.abs(a.astype(np.float64) - b.double().numpy()).max())


def verify_bundle(bundle: Bundle | str | Path, model: PausingSegmenter, frames: int = 8,
                  budgets: tuple[float, ...] = (1.0, 0.5, 0.25), threads: int = 0) -> VerifyReport:
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    info = bundle.model
    cfg = model.cfg
    pairs = {"embed dim": (cfg.embed_dim, info.embed_dim), "patch size": (cfg.patch_size, info.patch_size),
             "classes": (cfg.num_classes, info.num_classes), "extra tokens": (cfg.num_extra_tokens, info.extra_tokens),
             "pausing points": (tuple(cfg.pause_after), info.pause_after)}
    differ = [f"{k} {mine} vs {theirs}" for k, (mine, theirs) in pairs.items() if mine != theirs]
    if differ:
        raise UserError(f"the checkpoint does not fit bundle '{bundle.path}' (checkpoint vs bundle: "
                        f"{'; '.join(differ)}); give the checkpoint it was exported from with --ckpt")
    model = at_image_size(model.eval().float(), info.input_size)
    backend = OrtBackend(threads=threads)
    report = VerifyReport()
    gen = torch.Generator().manual_seed(7)
    real = street_batch(info.input_size, frames, info.mean, info.std)
    noise = torch.randn(2, 3, *info.input_size, generator=gen)

    sessions: dict[str, GraphSession] = {}

    def run(name: str, feeds: dict[str, torch.Tensor]) -> list[np.ndarray]:
        if name not in sessions:
            sessions[name] = backend.open(bundle, name)
        return sessions[name].run({k: v.numpy() for k, v in feeds.items()})

    with torch.inference_mode():
        # stage 0 on real frames and noise
        s0 = Stage0(model)
        for case, x in (("street frames", real), ("random image", noise)):
            ref = s0(x)
            got = run("stage0", {"image": x})
            for name, a, r in zip(("tokens", "entropy"), got, ref):
                report.checks.append(Check("stage0", case, name, _err(a, r), "max_abs_err", STAGE_TOL))
        # later stages on the real token buffer reaching them, and on random tokens, at several n
        tokens = s0(real)[0]
        n_all = info.num_patches
        for k in range(1, info.num_stages):
            stage = StageK(model, k)
            rand_tokens = torch.randn(2, info.tokens, info.embed_dim, generator=gen) * tokens.std()
            for n in sorted({1, max(1, n_all // 3), n_all}):
                for case, buf in (("street tokens", tokens), ("random tokens", rand_tokens)):
                    b = buf.shape[0]
                    active = torch.stack([torch.randperm(n_all, generator=gen)[:n].sort().values for _ in range(b)])
                    ref = stage(buf, active)
                    got = run(f"stage{k}", {"tokens": buf, "active": active})
                    for name, a, r in zip(("tokens", "entropy"), got, ref):
                        report.checks.append(Check(f"stage{k}", f"{case}, n={n}", name, _err(a, r),
                                                   "max_abs_err", STAGE_TOL))
            tokens = stage(tokens, torch.arange(n_all).expand(tokens.shape[0], -1))[0]
        # decoder and the unsplit reference: labels must agree
        dec = Decoder(model, scores="scores" in [o.name for o in bundle.graphs["decoder"].outputs])
        got = run("decoder", {"tokens": tokens})
        ref = dec(tokens)
        report.checks.append(Check("decoder", "street tokens", "labels", float((got[0] == ref[0].numpy()).mean()),
                                   "agreement", AGREE_FULL))
        if len(got) > 1:
            report.checks.append(Check("decoder", "street tokens", "scores", _err(got[1], ref[1]), "max_abs_err",
                                       STAGE_TOL))
        if "full" in bundle.graphs:
            got = run("full", {"image": real})
            ref = Full(model, dec.scores)(real)
            report.checks.append(Check("full", "street frames", "labels", float((got[0] == ref[0].numpy()).mean()),
                                       "agreement", AGREE_FULL))
        # end to end: staged graphs + runtime policy vs the PyTorch model
        runner = StagedRunner(bundle, backend)
        for budget in budgets:
            (labels, *_), _stats = runner.run(real.numpy(), PausingPolicy(budget))
            ref_labels = model(real, budget=budget).logits.argmax(1).numpy()
            report.checks.append(Check("pipeline", f"budget {budget:g}, {frames} frames", "labels",
                                       float((labels == ref_labels).mean()), "agreement",
                                       AGREE_FULL if budget >= 1 else AGREE_PAUSED))
    return report
