"""What `paumer-edge compare` measured, as a table, a JSON report and one chart (mIoU against paired speed-up,
one curve per method, the Pareto front marked), and whether the joint knob dominates every peer point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.atomic import save_figure_atomic
from .runtime.sweep import SettingResult

JOINT = "joint knob"
SPEED_TOLERANCE = 0.03  # speed-ups within 3% count as equal on a noisy host


@dataclass(frozen=True)
class Verdict:
    """How the joint knob does against one peer point."""

    point: str
    method: str
    miou: float
    speedup: float
    dominated_by: str  # the joint setting at least as fast (within the tolerance) and as accurate, or ""
    best_joint_miou: float | None  # the joint knob's best mIoU at this speed (within the tolerance), if any

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pareto(results: list[SettingResult]) -> list[SettingResult]:
    """The points no other point beats in both speed-up and mIoU, fastest first."""
    out: list[SettingResult] = []
    for r in sorted(results, key=lambda r: (-r.speedup, -r.miou)):
        if not out or r.miou > out[-1].miou:
            out.append(r)
    return out


def verdicts(results: list[SettingResult], tolerance: float = SPEED_TOLERANCE) -> list[Verdict]:
    """For every peer point (every method but the joint knob): the joint setting that dominates it, if any."""
    joint = [r for r in results if r.method == JOINT]
    out = []
    for p in results:
        if p.method == JOINT:
            continue
        fast = [j for j in joint if j.speedup >= p.speedup * (1 - tolerance)]
        best = max(fast, key=lambda j: j.miou, default=None)
        winner = best if best is not None and best.miou >= p.miou else None
        out.append(Verdict(p.name, p.method, p.miou, p.speedup, winner.name if winner else "",
                           best.miou if best else None))
    return out


OWN = "pausing"  # pausing alone (budgets of device time): the knob's own method, judged too but not a peer


def dominance(found: list[Verdict]) -> dict[str, list[int]]:
    """[dominated, judged] for the peers' points (every method but pausing and the joint knob) and for pausing
    alone's, which the issue's target keeps apart: the knob must beat what a user would do instead."""
    peers = [v for v in found if v.method != OWN]
    own = [v for v in found if v.method == OWN]
    return {"peers": [sum(bool(v.dominated_by) for v in peers), len(peers)],
            "pausing_alone": [sum(bool(v.dominated_by) for v in own), len(own)]}


def dominance_line(found: list[Verdict]) -> str:
    """The verdict in a clause, e.g. "the joint knob dominates all 10 peer points (and 2 of 5 of pausing alone's)"."""
    d = dominance(found)
    (won, peers), (own_won, own) = d["peers"], d["pausing_alone"]
    head = f"all {peers}" if won == peers else f"{won} of {peers}"
    tail = f" (and {own_won} of {own} of pausing alone's)" if own else ""
    return f"the joint knob dominates {head} peer points{tail}"


def table(results: list[SettingResult]) -> str:
    front = {id(r) for r in pareto(results)}
    lines = [f"{'method':<12}{'setting':<24}{'mIoU':>7}{'speed-up':>10}{'ms p50':>8}  front  tokens / plans"]
    for r in results:
        detail = "/".join(f"{c:.0f}" for c in r.counts) if r.counts else ""
        if r.plans:
            detail = ", ".join(f"{k} x{n}" for k, n in sorted(r.plans.items(), key=lambda kv: -kv[1]))
        lines.append(f"{r.method:<12}{r.name:<24}{100 * r.miou:>7.2f}{r.speedup:>9.2f}x{r.ms_p50:>8.1f}  "
                     f"{'  *  ' if id(r) in front else '     '}  {detail}")
    return "\n".join(lines)


def verdict_lines(found: list[Verdict]) -> list[str]:
    """One line per peer point the joint knob does not dominate (empty when it dominates them all)."""
    lines = []
    for v in found:
        if v.dominated_by:
            continue
        if v.best_joint_miou is None:
            lines.append(f"{v.point} ({v.method}): {100 * v.miou:.2f} mIoU at {v.speedup:.2f}x, faster than any "
                         "budget of the joint knob")
        else:
            lines.append(f"{v.point} ({v.method}): {100 * v.miou:.2f} mIoU at {v.speedup:.2f}x; the joint knob's best "
                         f"at that speed is {100 * v.best_joint_miou:.2f} ({100 * (v.best_joint_miou - v.miou):+.2f})")
    return lines


STYLES = {"pausing": ("o-", "tab:blue"), "resolution": ("s-", "tab:orange"), "DToP": ("^-", "tab:green"),
          "ToMe": ("v-", "tab:red"), "PRO-SCALE": ("D-", "tab:purple"), JOINT: ("*-", "black")}


def plot(results: list[SettingResult], path: Path, title: str) -> None:
    """Two panels, one curve per method, the joint knob in bold: mIoU against paired speed-up (the Pareto front
    circled), and mIoU against frames per second (1000 / median ms; the host's load shifts these, not the ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.8, 5.0))
    for ax, speed in zip(axes, (lambda r: r.speedup, lambda r: 1000.0 / r.ms_p50)):
        for method in dict.fromkeys(r.method for r in results):
            pts = sorted((r for r in results if r.method == method), key=speed)
            style, colour = STYLES.get(method, (".-", None))
            ax.plot([speed(r) for r in pts], [100 * r.miou for r in pts], style, color=colour, label=method,
                    lw=2.2 if method == JOINT else 1.2, ms=9 if method == JOINT else 5,
                    zorder=3 if method == JOINT else 2)
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    front = pareto(results)
    axes[0].plot([r.speedup for r in front], [100 * r.miou for r in front], "o", mfc="none", mec="grey", ms=14,
                 label="Pareto front (all points)", zorder=1)
    axes[0].set_xlabel("speed-up over the unpaused network (paired: 1 / relative cost; end to end, batch 1)")
    axes[1].set_xlabel("frames per second (1000 / median ms per frame, on this host under its load)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path)
    plt.close(fig)
