"""The soak benchmark script runs end to end (briefly), reports what it promises, and catches a leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the soak process stays torch-free; a planted leak keeps 64 KiB per frame, as a forgotten cache of results would
RUN = ("import sys; sys.modules['torch'] = None\n"
       "if sys.argv[1] == 'leak':\n"
       "    import paumer_edge.runtime.pipeline as p\n"
       "    kept, call = [], p.Pipeline.__call__\n"
       "    def leaky(self, *a, **k):\n"
       "        kept.append(bytearray(64 << 10))\n"
       "        return call(self, *a, **k)\n"
       "    p.Pipeline.__call__ = leaky\n"
       "import runpy; sys.argv = sys.argv[2:]\n"
       "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("leak", [False, True])
def test_soak_reports_drift_and_fails_on_a_leak(committed_bundle: Path, tmp_path: Path, leak: bool) -> None:
    js, png = tmp_path / "soak.json", tmp_path / "soak.png"
    length = ["--frames", "300", "--window", "100", "--no-ab"] if leak else ["--frames", "600", "--window", "200"]
    # latency drift over seconds on a shared host is noise: here the verdict rests on memory and labels
    proc = subprocess.run([sys.executable, "-c", RUN, "leak" if leak else "clean", str(ROOT / "benchmarks" / "soak.py"),
                           "--bundle", str(committed_bundle), *length, "--warmup", "100", "--period", "50",
                           "--height", "60", "--width", "100", "--p99-target", "1000", "--json", str(js),
                           "--plot", str(png), "--quiet"], capture_output=True, text=True, timeout=600)
    r = json.loads(js.read_text())
    growth = r["rss_mib"]["growth_pct"]
    if leak:  # the 200 frames after the warm-up keep 12.5 MiB
        assert proc.returncode == 1 and not r["pass"] and growth >= 2.0 and "FAIL" in proc.stdout, proc.stderr[-2000:]
        assert r["rss_mib"]["end"] - r["rss_mib"]["after_warmup"] > 10
        return
    assert proc.returncode == 0 and r["pass"] and "PASS" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert growth < r["targets"]["rss_growth_pct"] == 2.0 and r["targets"]["p99_drift_pct"] == 1000
    assert r["frames"] == 600 and len(r["windows"]) == 2 and r["windows"][0]["start_frame"] == 100
    assert r["label_mismatches"] == 0 and r["label_checks"] == len(range(0, 600, 7))
    assert 0 < r["rss_mib"]["after_warmup"] <= r["rss_mib"]["max"]
    first, last = r["latency_ms"]["first_window"], r["latency_ms"]["last_window"]
    assert 0 < first["p50"] <= first["p99"] and 0 < last["p50"] <= last["p99"]
    ab = r["aged_vs_fresh"]  # the long-run pipeline against a fresh one, frames alternating
    assert ab["frames"] == 200 and ab["label_disagreements"] == 0 and 0 < ab["fresh"]["p50"] <= ab["fresh"]["p99"]
    assert r["latency_ms"]["cpu_p99_drift_pct"] is not None and r["windows"][0]["cpu_p50_ms"] > 0
    assert r["provenance"]["measured"]["bundle"]["path"] == str(committed_bundle)
    assert png.stat().st_size > 1000
