"""The soak benchmark script runs end to end (briefly) and reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_soak_reports_memory_and_latency_drift(tiny_bundle: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    js, png = tmp_path / "soak.json", tmp_path / "soak.png"
    code = ("import sys; sys.modules['torch'] = None\n"  # the soak process must stay torch-free
            "import runpy; sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(root / "benchmarks" / "soak.py"), "--bundle",
                           str(tiny_bundle), "--frames", "600", "--warmup", "100", "--window", "200", "--period",
                           "50", "--height", "60", "--width", "100", "--json", str(js), "--plot", str(png),
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    r = json.loads(js.read_text())
    assert r["frames"] == 600 and len(r["windows"]) == 2 and r["windows"][0]["start_frame"] == 100
    assert r["label_mismatches"] == 0 and r["label_checks"] == len(range(0, 600, 7))
    assert 0 < r["rss_mib"]["after_warmup"] <= r["rss_mib"]["max"]
    first, last = r["latency_ms"]["first_window"], r["latency_ms"]["last_window"]
    assert 0 < first["p50"] <= first["p99"] and 0 < last["p50"] <= last["p99"]
    assert r["pass"] == (r["rss_mib"]["growth_pct"] < 2 and r["latency_ms"]["p99_drift_pct"] < 10)
    assert ("PASS" if r["pass"] else "FAIL") in proc.stdout and (proc.returncode == 0) == r["pass"]
    ab = r["aged_vs_fresh"]  # the long-run pipeline against a fresh one, frames alternating
    assert ab["frames"] == 200 and ab["label_disagreements"] == 0 and 0 < ab["fresh"]["p50"] <= ab["fresh"]["p99"]
    assert r["latency_ms"]["cpu_p99_drift_pct"] is not None and r["windows"][0]["cpu_p50_ms"] > 0
    assert png.stat().st_size > 1000
