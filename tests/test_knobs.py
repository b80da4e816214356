"""Every knob by one rule (paumer_edge.core.knobs), and the CLI flag family: any generated flag value either works
or ends in one line and exit code 2 (the CLI, in-process) or a PolicyError (the API), under a memory cap, within a
time bound. 2,000+ generated cases: most call the validation layer directly, the rest run the CLI's verbs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limits import main_until, memory_cap

from paumer_edge.core import knobs
from paumer_edge.core.errors import PolicyError, UserError
from paumer_edge.runtime.controller import LatencyController

CASE_SECONDS = 10.0  # the time bound of one case: the probe found flags that ran for minutes
CAP = 2 << 30  # and the memory cap: 2 GiB more than the test process has
MAX_THREADS = knobs.max_threads()


# ---- the rules, case by case -----------------------------------------------------------------------------
@pytest.mark.parametrize("check, good, bad", [
    (knobs.check_budget, [1, 0.5, 1e-9, np.float32(0.25)], [0, -0.1, 1.0001, math.nan, math.inf, "0.5", None, True]),
    (knobs.check_threshold, [0, 1, 0.3], [-1e-9, 1.5, math.nan, "x", False]),
    (knobs.check_target_ms, [None, 0.01, 33, 3.6e6], [0, -5, 3.6e6 + 1, math.nan, math.inf, "10", True]),
    (knobs.check_threads, [0, 1, MAX_THREADS, np.int64(2), 4.0], [-1, MAX_THREADS + 1, 10_000, 2.5, "2", True]),
    (knobs.check_stride, [0.1, 2 / 3, 1], [0.05, 0, 1.5, math.nan, "x"]),
    (knobs.check_fps, [1, 30, 1000], [0, 1000.5, -1, math.inf]),
    (knobs.check_seconds, [0.1, 86400], [0, 86401, math.nan]),
    (knobs.check_seed, [0, 2**63 - 1], [-1, 2**63, 0.5]),
    (lambda v: knobs.check_size(v, "--size"), [(1, 1), (16384, 16384), [360, 640]],
     [(0, 5), (16385, 16384), (5,), "128x256", (2.5, 3), (100_000, 1)]),
    (lambda v: knobs.check_count(v, "--count"), [1, 10**6, 8.0], [0, -3, 1.5, 10**40, math.nan, None]),
])
def test_each_knob_takes_its_range_and_refuses_the_rest(check: Callable[[Any], Any], good: list, bad: list) -> None:
    for value in good:
        check(value)
    for value in bad:
        with pytest.raises(PolicyError):
            check(value)


def test_messages_name_the_knob_the_value_and_what_to_give() -> None:
    with pytest.raises(PolicyError, match=r"--threads 10000 is out of range: give 0 \(the default\) or a number of "
                                          rf"threads up to {MAX_THREADS} \(4 per core"):
        knobs.check_threads(10_000, "--threads")
    with pytest.raises(PolicyError, match=r"budget \(a 5001-digit number\) is out of range"):
        knobs.check_budget(10**5000)
    with pytest.raises(PolicyError, match="latency target 0 is out of range: give a positive number of milli"):
        knobs.check_target_ms(0)


def test_the_controller_and_the_policy_use_the_same_rules() -> None:
    from paumer_edge.core.pausing import PausingPolicy, check_budget

    assert check_budget is knobs.check_budget  # re-exported, not a second copy
    for bad in (0, -5, math.nan, math.inf):
        with pytest.raises(PolicyError, match="latency target"):
            LatencyController(target_ms=bad)
    with pytest.raises(PolicyError, match="min_budget 0.5 exceeds the starting budget 0.3"):
        LatencyController(target_ms=5, budget=0.3, min_budget=0.5)
    with pytest.raises(PolicyError):
        PausingPolicy(budget="0.5")  # type: ignore[arg-type]


# ---- the family: the validation layer directly -----------------------------------------------------------
FUZZ = settings(max_examples=1600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLI_FUZZ = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
anything = st.one_of(
    st.floats(), st.integers(), st.integers(-10, 10), st.text(max_size=5), st.none(), st.booleans(),
    st.sampled_from([10**5000, -(10**5000), 2**63, np.float32(0.5), np.int64(3), np.float64("nan"), [1, 2], (3, 4),
                     b"1", 1j]),
    st.tuples(st.integers(-5, 70_000), st.integers(-5, 70_000)),
)
CHECKS = {
    "budget": (knobs.check_budget, lambda v: 0 < v <= 1),
    "threshold": (knobs.check_threshold, lambda v: 0 <= v <= 1),
    "target_ms": (knobs.check_target_ms, lambda v: v is None or 0 < v <= knobs.MAX_TARGET_MS),
    "threads": (knobs.check_threads, lambda v: 0 <= v <= MAX_THREADS and isinstance(v, int)),
    "stride": (knobs.check_stride, lambda v: 0.1 <= v <= 1),
    "fps": (knobs.check_fps, lambda v: 0 < v <= 1000),
    "seconds": (knobs.check_seconds, lambda v: 0 < v <= 86400),
    "seed": (knobs.check_seed, lambda v: 0 <= v < 2**63 and isinstance(v, int)),
    "count": (lambda v: knobs.check_count(v, "count"), lambda v: v >= 1 and isinstance(v, int)),
    "size": (knobs.check_size, lambda v: min(v) >= 1 and v[0] * v[1] <= knobs.MAX_FRAME_PIXELS),
}


@FUZZ
@given(name=st.sampled_from(sorted(CHECKS)), value=anything)
def test_any_value_of_any_knob_is_taken_in_range_or_refused(name: str, value: Any) -> None:
    check, holds = CHECKS[name]
    t0 = time.perf_counter()
    try:
        with memory_cap(CAP):
            result = check(value)
    except PolicyError as e:
        assert str(e) and "\n" not in str(e)
        return
    finally:
        assert time.perf_counter() - t0 < CASE_SECONDS
    assert holds(result), (name, value, result)
    if name not in ("target_ms", "size"):
        assert float(result) == float(value)  # taken as given, never clipped or coerced from text


# ---- the family: flags through the CLI's verbs (in-process) ---------------------------------------------
def flag(valid: st.SearchStrategy[str], hostile: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, bool]]:
    return st.one_of(valid.map(lambda v: (v, True)), hostile.map(lambda v: (v, False)))


JUNK = st.sampled_from(["nan", "inf", "-inf", "", "abc", "0x10", "--", "1e999", "9" * 5000, "1,2", "½"])


def ints(lo: int, hi: int) -> st.SearchStrategy[tuple[str, bool]]:
    hostile = st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1), JUNK,
                        st.floats(0.1, 1e6).filter(lambda f: not f.is_integer()))
    return flag(st.integers(lo, hi).map(str), hostile.map(str))


def floats(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False,
           optional: bool = False) -> st.SearchStrategy[tuple[str, bool]]:
    """A float flag's values; `optional`: the flag may also be given bare (`--sliding`), so "--" after it is the end
    of the options, not a value: the flag stands bare (valid or not, by what follows), never a bad value."""
    valid = st.floats(lo, hi, exclude_min=lo_open, exclude_max=hi_open).map(repr)
    junk = JUNK.filter(lambda v: v != "--") if optional else JUNK
    hostile = st.one_of(st.floats(max_value=lo, exclude_max=not lo_open),
                        st.floats(min_value=hi, exclude_min=not hi_open), junk)
    return flag(valid, hostile.map(lambda f: repr(f) if isinstance(f, float) else f))


def sizes(side: int, pixels: int, multiple: int = 1) -> st.SearchStrategy[tuple[str, bool]]:
    valid = st.tuples(st.integers(1, side // multiple), st.integers(1, side // multiple)).filter(
        lambda s: s[0] * s[1] * multiple**2 <= pixels).map(lambda s: f"{s[0] * multiple}x{s[1] * multiple}")
    hostile = st.one_of(st.sampled_from(["0x5", "5x0", "-3x4", "100000x100000", "65537x1", "axb", "1x2x3", "x"]),
                        st.tuples(st.integers(16385, 10**6), st.integers(16385, 10**6)).map(lambda s: f"{s[0]}x{s[1]}"))
    return flag(valid, hostile)


BUDGETS = floats(0.0, 1.0, lo_open=True)
VERBS: dict[str, dict[str, st.SearchStrategy[tuple[str, bool]]]] = {
    "run": {"--budget": BUDGETS, "--threshold": floats(0.0, 1.0), "--threads": ints(0, MAX_THREADS),
            "--max-frames": ints(1, knobs.MAX_COUNT), "--sliding": floats(0.1, 1.0, optional=True)},
    "run-target": {"--target-ms": floats(0.0, knobs.MAX_TARGET_MS, lo_open=True), "--threads": ints(0, MAX_THREADS)},
    "synth": {"--size": sizes(4096, 1 << 24), "--seconds": floats(0.0, 86400.0, lo_open=True),
              "--fps": floats(0.0, 1000.0, lo_open=True), "--count": ints(1, 10**6), "--seed": ints(0, 2**63 - 1)},
    "export": {"--image-size": sizes(256, 1 << 16, multiple=8),
               "--opset": flag(st.sampled_from(["17", "18"]), st.sampled_from(["0", "16", "19", "x"])),
               "--batch": flag(st.integers(1, 4096).map(str),
                               st.sampled_from(["0", "nan", "2,1,1", "1,2", "5000", "1.5", "-1"]))},
    "eval": {"--budgets": BUDGETS, "--thresholds": floats(0.0, 1.0), "--images": ints(1, knobs.MAX_COUNT),
             "--batch-size": ints(1, 4096), "--threads": ints(0, MAX_THREADS),
             "--timing-frames": ints(1, knobs.MAX_COUNT),
             "--sliding": floats(0.1, 1.0, optional=True)},
    "bench": {"--budgets": BUDGETS, "--rounds": ints(1, 10**6), "--warmup": ints(0, 10**6),
              "--threads": ints(0, MAX_THREADS), "--frame-size": sizes(4096, 1 << 24)},
    "train": {"--steps": ints(1, knobs.MAX_COUNT), "--batch-size": ints(1, 4096),
              "--lr": floats(0.0, 10.0, lo_open=True), "--budget-range": BUDGETS, "--aux-weight": floats(0.0, 1000.0),
              "--eval-every": ints(1, knobs.MAX_COUNT),
              "--seed": ints(0, 2**63 - 1), "--workers": ints(0, MAX_THREADS), "--threads": ints(0, MAX_THREADS)},
    "import": {"--num-classes": ints(2, 1 << 16), "--num-heads": ints(1, 1024), "--decoder-depth": ints(1, 64),
               "--image-size": sizes(4096, 1 << 24), "--norm-eps": floats(0.0, 1.0, lo_open=True, hi_open=True)},
    "verify": {"--frames": ints(1, 10_000), "--budgets": BUDGETS},
}


@st.composite
def command(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, bool]]]:
    verb = draw(st.sampled_from(sorted(VERBS)))
    names = draw(st.lists(st.sampled_from(sorted(VERBS[verb])), min_size=1, max_size=4, unique=True))
    return verb, [(name, *draw(VERBS[verb][name])) for name in names]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path, tiny_bundle: Path) -> dict[str, str]:
    import cv2

    root = tmp_path_factory.mktemp("flags")
    (root / "frames").mkdir()
    cv2.imwrite(str(root / "frames" / "a.png"), np.zeros((32, 64, 3), np.uint8))
    return {"root": str(root), "ckpt": str(tiny_ckpt), "bundle": str(tiny_bundle)}


def base(verb: str, w: dict[str, str]) -> list[str]:
    """A valid command line for the verb, to which the generated flags are added."""
    r = w["root"]
    return {"run": ["run", f"{r}/frames", "--model", w["bundle"], "--no-save", "--quiet"],
            "run-target": ["run", f"{r}/frames", "--model", w["bundle"], "--no-save", "--quiet"],
            "synth": ["synth", "images", f"{r}/synth", "--quiet"],
            "export": ["export", w["ckpt"], "-o", f"{r}/out.paumer", "--quiet"],
            "eval": ["eval", "--model", w["ckpt"], "--quiet"],
            "bench": ["bench", w["bundle"], "--quiet"],
            "train": ["train", "--preset", "tiny", "--out", f"{r}/train", "--quiet"],
            "import": ["import", w["ckpt"], "-o", f"{r}/imported.pt"],
            "verify": ["verify", w["bundle"], "--ckpt", w["ckpt"]]}[verb]


def seams() -> list[tuple[Any, str]]:
    """Where each verb's work starts, after all its checks: reaching one means the flags were taken."""
    import paumer_edge.checkpoint as checkpoint
    import paumer_edge.export.exporter as exporter
    import paumer_edge.runtime.bundle as bundle
    import paumer_edge.training as training
    import paumer_edge.verbs.bench as bench
    import paumer_edge.verbs.run as run
    import paumer_edge.verbs.synth as synth
    import paumer_edge.weights as weights

    # verbs import their torch-side work when they run, so the seams are where it lives
    return [(run, "bundle_for"), (bench, "bundle_for"), (synth, "street_scene"), (synth, "video_frames"),
            (exporter, "_graphs"), (checkpoint, "load_model"), (training, "train"), (weights, "import_weights"),
            (bundle, "load_bundle")]


@CLI_FUZZ
@given(cmd=command())
def test_any_flag_value_works_or_is_one_line_and_exit_2(world: dict[str, str], cmd: tuple,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    verb, flags = cmd
    argv = base(verb, world) + [x for name, value, _ in flags for x in (name, value)]
    valid = all(ok for _, _, ok in flags)
    capsys.readouterr()
    code, elapsed = main_until(argv, seams(), CAP)
    err = capsys.readouterr().err
    assert elapsed < CASE_SECONDS, (argv, elapsed)
    if code is None:
        assert valid, f"took invalid flags: {argv[len(base(verb, world)):]}"
        return
    assert code == 2, (argv, code, err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert not valid, f"refused valid flags {argv[len(base(verb, world)):]}: {lines[0]}"


def test_the_api_refuses_what_the_cli_refuses(tiny_bundle: Path) -> None:
    from paumer_edge.runtime import Pipeline

    for kwargs in ({"threads": 10_000}, {"threads": -1}, {"target_ms": 0}, {"budget": 0}, {"threshold": 2}):
        with pytest.raises(UserError):
            Pipeline(tiny_bundle, **kwargs)  # type: ignore[arg-type]
