"""`paumer-edge compare`: every method's curve on the same frames through the runtime, the joint knob judged
against each peer point, as a table, JSON and chart; user mistakes are one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paumer_edge.compare import plans_outdated
from paumer_edge.compare_report import Verdict, dominance, dominance_line, pareto, verdict_lines, verdicts
from paumer_edge.runtime.bundle import load_bundle
from paumer_edge.runtime.plan_calibration import PAUSING_GRID, write_plans
from paumer_edge.runtime.sweep import SettingResult


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def result(name: str, method: str, miou: float, speedup: float) -> SettingResult:
    return SettingResult(name, method, 0.0, miou, 0.9, [], 10.0, 10.0, speedup, 5)


def test_the_joint_knob_is_judged_against_every_peer_point() -> None:
    results = [result("pausing 1", "pausing", 0.60, 1.0), result("64x128", "resolution", 0.50, 4.0),
               result("ToMe r=8", "ToMe", 0.59, 1.2), result("budget 1", "joint knob", 0.60, 1.0),
               result("budget 0.3", "joint knob", 0.55, 3.0), result("budget 0.8", "joint knob", 0.595, 1.17)]
    found = {v.point: v for v in verdicts(results)}
    assert found["pausing 1"].dominated_by == "budget 1"
    assert found["ToMe r=8"].dominated_by == "budget 0.8"  # 1.17x counts as 1.2x (within 3%)
    assert found["64x128"].dominated_by == "" and found["64x128"].best_joint_miou is None
    assert verdict_lines(list(found.values())) == [
        "64x128 (resolution): 50.00 mIoU at 4.00x, faster than any budget of the joint knob"]
    assert [r.name for r in pareto(results)] == ["64x128", "budget 0.3", "ToMe r=8", "budget 0.8", "pausing 1"]
    # pausing alone is the knob's own method: counted apart from the peers
    assert dominance(list(found.values())) == {"peers": [1, 2], "pausing_alone": [1, 1]}
    assert dominance_line(list(found.values())) == \
        "the joint knob dominates 1 of 2 peer points (and 1 of 1 of pausing alone's)"
    found["64x128"] = Verdict("64x128", "resolution", 0.5, 4.0, "budget 0.2", 0.51)
    assert dominance_line(list(found.values())).startswith("the joint knob dominates all 2 peer points")


def test_cached_plans_are_measured_again_when_their_candidates_change(tiny_peers: Path, tmp_path: Path) -> None:
    """`compare` keeps its exported bundle; its plans are re-measured when they were measured on other images or
    over other candidates (e.g. a bundle from before early exit became a plan kind records none)."""
    bundle = load_bundle(tiny_peers)
    plans = bundle.manifest.plans
    assert plans is not None
    assert not plans_outdated(bundle, plans.images, plans.data, PAUSING_GRID)
    assert plans_outdated(bundle, plans.images + 1, plans.data, PAUSING_GRID)
    assert plans_outdated(bundle, plans.images, "synthetic val, 32x64 frames", PAUSING_GRID)
    assert plans_outdated(bundle, plans.images, plans.data, (1.0, 0.5))  # another pausing grid
    old = tmp_path / "old.paumer"
    shutil.copytree(tiny_peers, old)
    write_plans(old, dataclasses.replace(plans, candidates=""))  # as written before candidates were recorded
    assert plans_outdated(load_bundle(old), plans.images, plans.data, PAUSING_GRID)


def test_compare_measures_every_method_of_a_bundle(tiny_peers: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = cli("compare", "--model", str(tiny_peers), "--images", "3", "--frame-size", "48x96", "--budgets", "1,0.5",
               "--exits", "0.3", "--joint", "1,0.5", "--json", str(out), "--plot", str(tmp_path / "c.png"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    methods = [r["method"] for r in report["results"]]
    assert methods[:6] == ["pausing", "pausing", "resolution", "DToP", "ToMe", "PRO-SCALE"]
    plans = json.loads((tiny_peers / "manifest.json").read_text())["plans"]["points"]
    assert set(methods[6:]) == {"joint knob"} and len(methods[6:]) == len(plans)  # every plan, reached once
    first = report["results"][0]
    assert first["name"] == "pausing 1" and first["speedup"] == 1.0 and first["frames"] == 3
    assert all(0 <= r["miou"] <= 1 and r["ms_p50"] > 0 for r in report["results"])
    assert report["results"][-1]["plans"]  # the joint knob says which plans ran
    assert len(report["verdicts"]) == 6 and report["pareto_front"]
    assert report["dominance"]["peers"][1] == 4 and report["dominance"]["pausing_alone"][1] == 2
    prov = report["provenance"]
    assert prov["git"]["commit"] and prov["load_average_start"] and "compare" in prov["command"]
    assert (tmp_path / "c.png").stat().st_size > 10_000
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"compared {len(methods)} settings on 3 frames") and f"JSON {out}" in last
    assert "peer points (and " in last


@pytest.mark.parametrize("args, message", [
    (["--merge", "2.5"], "--merge 2.5 is not a whole number"),
    (["--exits", "0"], "--exits 0.0 is out of range: give a probability in (0, 1]"),
    (["--joint", "1.5"], "--joint 1.5 is out of range"),
    (["--images", "0"], "--images 0 is out of range"),
    (["--sizes", "12xz"], "'12xz' is not a size"),
    (["--budgets", "x"], "'x' is not a comma-separated list of numbers"),
])
def test_compare_mistakes_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = cli("compare", *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
