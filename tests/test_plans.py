"""Plans: the measured joint front of input size and pausing in the bundle, and one budget knob over it in
`Pipeline`, the latency controller, `run` and `bench`."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paumer_edge.core.contract import Manifest, PlanPoint, Plans
from paumer_edge.core.errors import BundleError
from paumer_edge.core.plans import choose, front
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.bundle import load_bundle
from paumer_edge.runtime.plan_calibration import write_plans


def point(variant: str, pausing: float, miou: float, cost: float) -> PlanPoint:
    return PlanPoint(variant, pausing, miou, 10.0 * cost, cost)


# a hand-made front: the smaller size is cheaper; the main graphs at budget 1 cost 1
PLANS = Plans((point("16x32", 0.5, 0.30, 0.3), point("16x32", 1.0, 0.40, 0.5), point("", 0.5, 0.50, 0.7),
               point("", 1.0, 0.55, 1.0)), images=4, data="test frames", device="here", measured="today")


def test_the_front_and_the_choice() -> None:
    measured = [point("a", 1, 0.5, 1.0), point("a", 0.5, 0.52, 0.6), point("b", 1, 0.45, 0.5),
                point("b", 0.5, 0.4, 0.3), point("b", 0.7, 0.39, 0.45)]
    assert [(p.variant, p.pausing) for p in front(measured)] == [("b", 0.5), ("b", 1), ("a", 0.5)]
    points = PLANS.points
    assert [choose(points, b).cost for b in (1.0, 0.99, 0.7, 0.69, 0.5, 0.31, 0.3, 0.1)] == \
        [1.0, 0.7, 0.7, 0.5, 0.5, 0.3, 0.3, 0.3]  # below the cheapest: the cheapest


@pytest.fixture(scope="module")
def planned(tiny_peers: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("planned") / "b.paumer"
    shutil.copytree(tiny_peers, out)
    write_plans(out, PLANS)
    return out


def frames(n: int) -> list[np.ndarray]:
    return [street_scene(derive_seed(7, i), (48, 96))[0] for i in range(n)]


def test_measured_plans_are_a_front_over_the_staged_sets(tiny_peers: Path) -> None:
    raw = json.loads((tiny_peers / "manifest.json").read_text())
    m = Manifest.from_dict(raw, "m")
    assert raw["format_version"] == 5 and m.to_dict() == raw and m.plans is not None
    assert m.plans.images == 4 and m.plans.data == "synthetic val, 64x128 frames" and "ONNX Runtime" in m.plans.device
    pts = m.plans.points
    assert all(p.variant in ("", "16x32", "dtop") for p in pts)
    assert all(bool(p.exit) == (p.variant == "dtop") and (p.pausing == 1.0 or not p.exit) for p in pts)
    assert all(a.cost < b.cost and a.miou < b.miou for a, b in zip(pts, pts[1:]))
    assert [v.kind for v in m.variants] == ["staged", "early-exit"]
    # every candidate measured is on record: pausing on both sizes, DToP's exit on its graphs
    assert m.plans.candidates == ("pausing 1,0.85,0.7,0.6,0.5,0.46,0.42,0.38,0.35,0.32,0.3,0.27,0.25,0.22,0.2 on "
                                  "main,16x32; exit 0.99,0.97,0.95,0.92,0.9,0.85,0.8 on dtop")


def test_a_budget_runs_the_plan_that_fits_it(planned: Path) -> None:
    frame = frames(1)[0]
    pipe = Pipeline(planned)
    small = Pipeline(load_bundle(planned).variant("16x32"), cost="macs", budget=0.5)
    for budget, plan, first in [(1.0, "32x64 @1", 32), (0.6, "16x32 @1", 8), (0.35, "16x32 @0.5", 8),
                                (0.05, "16x32 @0.5", 8)]:
        result = pipe(frame, budget=budget)
        assert (result.stats.plan, result.stats.counts[0], result.stats.budget) == (plan, first, budget)
        assert result.labels.shape == frame.shape[:2]
    assert np.array_equal(pipe(frame, budget=0.35).labels, small(frame).labels)  # a plan is its graphs at its budget
    ignored = Pipeline(planned, plans=False, cost="macs")(frame, budget=0.35)
    assert ignored.stats.plan == "" and ignored.stats.counts[0] == 32
    assert "budgets pick one of 4 plans over 2 graph sets" in pipe.describe()


def test_an_early_exit_plan_runs_dtop_on_its_graphs(tiny_peers: Path, tmp_path: Path) -> None:
    """A plan may be DToP's early exit (where it measured better): the budget that buys it runs the early-exit
    graphs with that confidence, exactly as the peer runs alone, and says so."""
    from paumer_edge.core.exits import early_exit

    out = tmp_path / "b.paumer"
    shutil.copytree(tiny_peers, out)
    plans = Plans((point("16x32", 0.5, 0.30, 0.3), PlanPoint("dtop", 1.0, 0.45, 6.0, 0.6, exit=0.11),
                   point("", 1.0, 0.55, 1.0)), images=4, data="test frames", device="here", measured="today")
    write_plans(out, plans)
    raw = json.loads((out / "manifest.json").read_text())["plans"]["points"]
    assert raw[1] == {"variant": "dtop", "pausing": 1.0, "miou": 0.45, "ms": 6.0, "cost": 0.6, "exit": 0.11}
    assert "exit" not in raw[0]  # pausing plans read as before
    pipe = Pipeline(out)
    alone = Pipeline(load_bundle(out).variant("dtop"), cost="macs", selector=early_exit(0.11))
    for frame in frames(3):
        result = pipe(frame, budget=0.7)
        assert result.stats.plan == "32x64 exit@0.11" and result.stats.budget == 0.7
        assert result.stats.counts[-1] < result.stats.counts[0]  # tokens exited (no pausing budget: 1.0)
        assert np.array_equal(result.labels, alone(frame).labels)
    assert pipe(frames(1)[0], budget=1.0).stats.plan == "32x64 @1"


def test_the_latency_controller_moves_across_plans(planned: Path) -> None:
    pipe = Pipeline(planned, target_ms=0.01)  # unreachable: the budget falls to the cheapest plan
    plans = [pipe(f).stats.plan for f in frames(8)]
    assert plans[0] == "32x64 @1" and plans[-1] == "16x32 @0.5"


def test_plans_are_checked_on_load(planned: Path) -> None:
    raw = json.loads((planned / "manifest.json").read_text())
    for change, message in [
        (lambda p: p["points"].reverse(), r"'plans.points\[1\]' must cost more and score higher"),
        (lambda p: p["points"][0].update(variant="tome_r2"), "names 'tome_r2', which is not a staged graph set"),
        (lambda p: p["points"][0].update(variant="dtop"), r"'plans.points\[0\].exit' an early-exit confidence goes "
                                                          r"with an early-exit graph set and only there \('dtop' is "
                                                          r"early-exit\)"),
        (lambda p: p["points"][0].update(exit=0.9), r"'plans.points\[0\].exit' an early-exit confidence goes with an "
                                                   r"early-exit graph set and only there \('16x32' is staged\)"),
        (lambda p: p["points"][0].update(variant="dtop", exit=1.5), r"'plans.points\[0\].exit' is 1.5, not a frac"),
        (lambda p: p["points"][0].update(variant="dtop", exit="high"), r"'plans.points\[0\].exit' must be a finite"),
        (lambda p: p["points"][0].update(pausing=1.5), r"'plans.points\[0\].pausing' is 1.5, not a fraction"),
        (lambda p: p.update(points=[]), "'plans.points' must not be empty"),
    ]:
        broken = copy.deepcopy(raw)
        change(broken["plans"])
        with pytest.raises(BundleError, match=message):
            Manifest.from_dict(broken, "m")
    broken = copy.deepcopy(raw)
    dtop = next(v for v in broken["variants"] if v["name"] == "dtop")
    dtop["graphs"]["stage1"]["outputs"].pop()
    with pytest.raises(BundleError, match=r"'variants\[1\].graphs.stage1.outputs' lists \['tokens_out', 'entropy'\]"):
        Manifest.from_dict(broken, "m")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_run_and_bench_say_which_plan_ran(planned: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for i, f in enumerate(frames(3)):
        cv2.imwrite(str(folder / f"{i}.png"), f[..., ::-1])
    proc = cli("run", str(folder), "--model", str(planned), "--budget", "0.5", "--no-save", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "plans 16x32 @1 100%" in proc.stdout
    proc = cli("run", str(folder), "--model", str(planned), "--budget", "0.5", "--no-save", "--quiet", "--no-plans")
    assert proc.returncode == 0 and "plans" not in proc.stdout.splitlines()[-1]
    report = tmp_path / "bench.json"
    proc = cli("bench", str(planned), "--budgets", "1,0.5", "--rounds", "2", "--warmup", "1", "--frame-size", "48x96",
               "--cost", "macs", "--quiet", "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(report.read_text())["results"]
    assert [r.get("plan") for r in rows[:2]] == ["32x64 @1", "16x32 @1"] and rows[1]["plan_speedup"] == 2.0


@pytest.mark.parametrize("args, message", [
    (["export", "--plan-sizes", "16x32"], "--plan-sizes are the input sizes --plans measures: give --plans too"),
    (["export", "--plans", "--plan-sizes", "16xq"], "--plan-sizes: '16xq' is not a size"),
    (["export", "--plans", "--plan-images", "0"], "--plan-images 0 is out of range"),
    (["export", "--peers", "tome:x"], "--peers: 'tome:x' is not a peer graph"),
])
def test_plan_and_peer_mistakes_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args, "-o", str(tmp_path / "b.paumer")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.paumer").exists()


def test_plans_asked_of_a_bundle_without_them_is_one_line(committed_bundle: Path, tmp_path: Path) -> None:
    proc = cli("bench", str(committed_bundle), "--plans", "--rounds", "1", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 2 and "has no plans; export it with `paumer-edge export --plans`" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.json").exists()
