"""A bundle's latency profile on this device: each stage's time against its active tokens.

With it, a budget is a fraction of this device's encoder time rather than of its multiply-accumulates:
on a CPU where attention costs less than its MACs suggest (or a GPU where small token counts leave it
idle) budget 0.5 still runs the encoder in half the time. `paumer_edge.core.cost` holds the model; this module
measures it: every stage at a spread of token counts, interleaved the way frames run them, fitted
to `a + b*n + c*n^2`. A profile is measured once per bundle, backend and machine and cached.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge.core.atomic import write_json_atomic
from paumer_edge.core.cache import cache_root
from paumer_edge.core.cost import CostModel, fit_latency
from paumer_edge.core.pausing import FixedCounts

from .staged import StagedRunner

PROFILE_VERSION = 1
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0)  # token counts measured, as fractions of all patches


@dataclass(frozen=True)
class Profile:
    cost: CostModel
    source: str  # "measured in 1.9 s" or "cached <path>"


@functools.cache
def machine() -> str:
    """This machine as a profile is keyed: architecture, processor model and cores."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} {model} x{os.cpu_count()}".strip()


def profile_path(runner: StagedRunner, describe: str, threads: int) -> Path:
    """Cache file of a profile: keyed by the graphs it times (their sha256, and the engines built from them), the
    backend (versions, device) and this machine; a variant of a bundle gets its own."""
    b = runner.bundle
    graphs = "|".join(f"{name}={g.sha256}" for name, g in sorted(b.graphs.items()))
    engines = "|".join(sorted(e.key for e in b.engines))
    blob = f"v{PROFILE_VERSION}|{graphs}|{engines}|{describe}|{threads}|{machine()}"
    key = hashlib.sha256(blob.encode()).hexdigest()[:20]
    return cache_root() / "latency" / f"{runner.bundle.model.name}-{key}.json"


def measure(runner: StagedRunner, seconds: float = 2.0, min_rounds: int = 4, max_rounds: int = 40,
            device: str = "") -> CostModel:
    """Time every stage at several token counts (median over rounds) and fit the bundle's latency profile.

    A round runs the whole staged network once per token count n (stage 0, every later stage on n
    tokens, the decoder: `FixedCounts` through the `StagedRunner`, as frames run), so caches and thread
    pools are as warm or cold as in real frames. The first round only warms up. Stops after `seconds`
    once `min_rounds` are done.
    """
    bundle = runner.bundle
    m = bundle.model
    ns = sorted({max(1, round(m.num_patches * f)) for f in FRACTIONS})
    selectors = {n: FixedCounts.after_stage0(bundle.cost, n) for n in ns}
    image = np.random.default_rng(0).standard_normal((1, 3, *m.input_size)).astype(np.float32)
    stage_ms: dict[int, list[list[float]]] = {n: [] for n in ns}  # per n: per round, ms of every stage
    decoder: list[float] = []
    start = time.perf_counter()
    for r in range(max_rounds + 1):
        for n in ns:
            stats = runner.forward(image, selectors[n]).stats
            if r:
                stage_ms[n].append(stats.stage_ms)
                decoder.append(stats.decoder_ms)
        if r >= min_rounds and time.perf_counter() - start >= seconds:
            break
    medians = {n: np.median(np.asarray(stage_ms[n]), axis=0) for n in ns}
    polys = [(float(np.median([row[0] for n in ns for row in stage_ms[n]])), 0.0, 0.0)]
    for k in range(1, m.num_stages):
        polys.append(fit_latency(ns, [float(medians[n][k]) for n in ns]))
    return bundle.cost.with_latency(polys, float(np.median(decoder)), device or machine())


def _read(path: Path, cost: CostModel) -> CostModel | None:
    """A cached profile, or None if there is none or it is unreadable (it is then measured again)."""
    try:
        d = json.loads(path.read_text())
        if d.get("version") != PROFILE_VERSION:
            return None
        return cost.with_latency([tuple(p) for p in d["stage_ms"]], float(d["decoder_ms"]), str(d["device"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def device_profile(runner: StagedRunner, describe: str, threads: int = 0, refresh: bool = False,
                   seconds: float = 2.0) -> Profile:
    """This device's latency profile of the bundle: from the cache, or measured now and cached."""
    path = profile_path(runner, describe, threads)
    if not refresh:
        cached = _read(path, runner.bundle.cost.macs)
        if cached is not None:
            return Profile(cached, f"cached {path}")
    t0 = time.perf_counter()
    cost = measure(runner, seconds=seconds, device=f"{describe} on {machine()}")
    elapsed = time.perf_counter() - t0
    payload: dict[str, Any] = {"version": PROFILE_VERSION, "bundle": str(runner.bundle.path), "device": cost.device,
                               "stage_ms": [list(p) for p in cost.stage_ms or ()], "decoder_ms": cost.decoder_ms,
                               "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(elapsed, 2)}
    try:
        write_json_atomic(path, payload)
    except OSError:  # a read-only cache costs a new measurement next time, nothing more
        pass
    return Profile(cost, f"measured in {elapsed:.1f} s")
