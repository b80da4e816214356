"""Every knob's rule, in one place: budget, threshold, latency target, threads, stride, counts and sizes.

The CLI verbs, the embedding API (`Pipeline`, `LatencyController`), the pausing policy and the model all
call these, so a value is refused (or taken) the same way wherever it is given. Each check returns the
value in its canonical type or raises a `PolicyError` (a `UserError`) saying what is wrong and what to
give instead, naming the knob as the caller calls it (`name`: "budget" in the API, "--budget" in the CLI).

Numbers must be real numbers: bools, strings, NaN, and for integer knobs fractions, are refused rather
than coerced. The limits that protect the machine (threads, frame and image sizes, frame counts) are
stated here and in the README's guarantees.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

from .errors import PolicyError, UserError

MIN_STRIDE = 0.1  # sliding windows overlapping by more than 90% only repeat work (and time grows as 1/stride^2)
THREADS_PER_CORE = 4  # beyond this, more threads only add hand-over costs (and thousands of them stall a run)
MAX_FRAME_PIXELS = 1 << 28  # 16384 x 16384: frames (decoded, or given to the runtime) beyond this are refused
MAX_SIDE = 1 << 16  # no image side beyond 65536 pixels
MAX_SYNTH_PIXELS = 1 << 24  # rendered street scenes: up to 16 megapixels (the renderer keeps ~60 bytes a pixel)
MAX_SYNTH_SECONDS = 24 * 3600.0
MAX_FPS = 1000.0
MAX_TARGET_MS = 3_600_000.0  # an hour a frame: beyond, a latency target is not one
MAX_COUNT = 1 << 31  # frames, images, steps, rounds: anything a 32-bit counter holds
MAX_SEED = (1 << 63) - 1
CALIB_METHODS = ("minmax", "entropy", "percentile")  # ONNX Runtime's calibrators, for INT8 Q/DQ graphs
# percentile: on the sample model the best label agreement and kept tokens of the three (int8_recipes.json)
DEFAULT_CALIB_METHOD = "percentile"
DEFAULT_CALIB_IMAGES = 32
MAX_CALIB_IMAGES = 4096  # calibration frames: every graph's feeds are kept in memory while it is quantized

__all__ = ["CALIB_METHODS", "DEFAULT_CALIB_IMAGES", "DEFAULT_CALIB_METHOD", "MAX_FRAME_PIXELS", "MIN_STRIDE",
           "THREADS_PER_CORE", "available_cores", "check_budget", "check_budget_range", "check_calib_images",
           "check_calib_method", "check_change_threshold", "check_count", "check_fps", "check_fraction",
           "check_number", "check_refresh_every", "check_seconds", "check_seed", "check_size", "check_stride",
           "check_target_ms", "check_threads", "check_threshold", "max_threads", "show_value"]


def show_value(value: Any) -> str:
    """The value as the user wrote it, short: a 5,000-digit integer is not echoed whole (nor can Python print it)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"{'-' if value < 0 else ''}(a {int(abs(value).bit_length() * math.log10(2)) + 1}-digit number)"
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except (ValueError, RecursionError):  # containers holding such integers, or nested beyond printing
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def check_number(value: Any, name: str, expected: str, lo: float = -math.inf, hi: float = math.inf,
                 lo_open: bool = False, hi_open: bool = False, error: type[UserError] = PolicyError) -> float:
    """A finite real number in [lo, hi] (ends open where asked); bools and text are not numbers.

    `error`: the `UserError` kind to raise (a config field is not a run-time knob)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} {show_value(value)} is not a number: give {expected}")
    try:
        v = float(value)
    except (OverflowError, ValueError):
        raise error(f"{name} {show_value(value)} is out of range: give {expected}") from None
    low_ok = v > lo if lo_open else v >= lo
    high_ok = v < hi if hi_open else v <= hi
    if math.isnan(v) or not (low_ok and high_ok) or math.isinf(v):
        raise error(f"{name} {show_value(value)} is out of range: give {expected}")
    return v


def check_count(value: Any, name: str, lo: int = 1, hi: int = MAX_COUNT, what: str = "",
                error: type[UserError] = PolicyError) -> int:
    """A whole number in [lo, hi] (an integral float such as 8.0 is taken; 2.5, bools and text are not)."""
    expected = what or (f"a whole number from {lo:,} to {hi:,}" if hi < MAX_COUNT else f"a whole number >= {lo:,}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} {show_value(value)} is not a whole number: give {expected}")
    if not isinstance(value, numbers.Integral):
        try:
            whole = float(value).is_integer()
        except OverflowError:
            whole = False
        if not whole:
            raise error(f"{name} {show_value(value)} is not a whole number: give {expected}")
        value = int(float(value))
    v = int(value)
    if not lo <= v <= hi:
        raise error(f"{name} {show_value(value)} is out of range: give {expected}")
    return v


# ---- the pausing knobs ---------------------------------------------------------------------------------
def check_budget(budget: Any, name: str = "budget") -> float:
    """A fraction of the full encoder's compute in (0, 1]."""
    return check_number(budget, name, "a fraction of the full compute in (0, 1]", 0.0, 1.0, lo_open=True)


def check_threshold(threshold: Any, name: str = "threshold") -> float:
    """A normalised entropy in [0, 1]: tokens below it pause."""
    return check_number(threshold, name, "a normalised entropy in [0, 1]", 0.0, 1.0)


def check_confidence(confidence: Any, name: str = "exit confidence") -> float:
    """DToP's exit confidence: a top-class probability in (0, 1] above which a token exits (1 exits nothing)."""
    return check_number(confidence, name, "a probability in (0, 1] (1 exits nothing)", 0.0, 1.0, lo_open=True)


def check_budget_range(values: Sequence[Any], name: str = "budget range") -> tuple[float, float]:
    """MIN,MAX budgets (one value: that budget alone), each in (0, 1], MIN <= MAX."""
    if not 1 <= len(values) <= 2:
        raise PolicyError(f"{name} takes MIN,MAX (two budgets in (0, 1]), got {len(values)} values")
    lo, hi = check_budget(values[0], name), check_budget(values[-1], name)
    if lo > hi:
        raise PolicyError(f"{name} {lo:g},{hi:g}: MIN must not exceed MAX")
    return lo, hi


def check_target_ms(target_ms: Any, name: str = "latency target") -> float | None:
    """A latency target in milliseconds per frame, in (0, MAX_TARGET_MS]; None means none."""
    if target_ms is None:
        return None
    return check_number(target_ms, name, f"a positive number of milliseconds per frame, up to {MAX_TARGET_MS:,.0f}",
                        0.0, MAX_TARGET_MS, lo_open=True)


# ---- temporal reuse (paumer_edge.core.temporal) ---------------------------------------------------------
def check_change_threshold(threshold: Any, name: str = "change threshold") -> float:
    """A mean-intensity change in [0, 1]: a patch changed since its last computation when it moved by more."""
    return check_number(threshold, name, "a mean-intensity change in [0, 1], e.g. 0.03", 0.0, 1.0)


def check_refresh_every(frames: Any, name: str = "refresh interval") -> int:
    """Frames between full refreshes of a stream's reuse cache: a whole number >= 1."""
    return check_count(frames, name, 1, MAX_COUNT, what="a whole number of frames >= 1, e.g. 30")


def check_fraction(value: Any, name: str) -> float:
    """A fraction in [0, 1] (of the patches, of a scaling)."""
    return check_number(value, name, "a fraction in [0, 1]", 0.0, 1.0)


# ---- the machine's knobs -------------------------------------------------------------------------------
def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    return THREADS_PER_CORE * available_cores()


def check_threads(threads: Any, name: str = "threads") -> int:
    """0 (the library's default) or up to THREADS_PER_CORE x the cores available."""
    top, cores = max_threads(), available_cores()
    return check_count(threads, name, 0, top, what=f"0 (the default) or a number of threads up to {top} "
                       f"({THREADS_PER_CORE} per core; this machine gives us {cores} core{'s' * (cores > 1)})")


def check_stride(stride: Any, name: str = "sliding stride") -> float:
    """A sliding-window stride as a fraction of the window, in [MIN_STRIDE, 1]."""
    return check_number(stride, name, f"a fraction of the window from {MIN_STRIDE:g} to 1, e.g. 0.667",
                        MIN_STRIDE, 1.0)


def check_size(size: Any, name: str = "size", max_pixels: int = MAX_FRAME_PIXELS) -> tuple[int, int]:
    """(height, width) in pixels: whole numbers >= 1, each side at most 65536, at most `max_pixels` in all."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise PolicyError(f"{name} {show_value(size)} is not a size: give HEIGHTxWIDTH, e.g. 128x256")
    h = check_count(size[0], f"{name} height", 1, MAX_SIDE)
    w = check_count(size[1], f"{name} width", 1, MAX_SIDE)
    if h * w > max_pixels:
        raise PolicyError(f"{name} {h}x{w} is {h * w / 1e6:.0f} megapixels, more than the {max_pixels / 1e6:.0f} "
                          "allowed: give a smaller size")
    return h, w


def check_fps(fps: Any, name: str = "fps") -> float:
    return check_number(fps, name, f"frames per second in (0, {MAX_FPS:g}]", 0.0, MAX_FPS, lo_open=True)


def check_seconds(seconds: Any, name: str = "seconds", hi: float = MAX_SYNTH_SECONDS) -> float:
    return check_number(seconds, name, f"a duration in seconds in (0, {hi:g}]", 0.0, hi, lo_open=True)


def check_seed(seed: Any, name: str = "seed") -> int:
    return check_count(seed, name, 0, MAX_SEED, what="a whole number from 0 to 2^63-1")


# ---- INT8 calibration ----------------------------------------------------------------------------------
def check_calib_method(method: Any, name: str = "calibration method") -> str:
    """One of ONNX Runtime's calibrators: minmax, entropy or percentile."""
    if method not in CALIB_METHODS:
        raise PolicyError(f"{name} {show_value(method)} is not one of {', '.join(CALIB_METHODS)}")
    return str(method)


def check_calib_images(count: Any, name: str = "calibration images") -> int:
    """How many calibration frames: 1 to MAX_CALIB_IMAGES (their recorded feeds are held in memory)."""
    return check_count(count, name, 1, MAX_CALIB_IMAGES)
