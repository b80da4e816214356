"""Packaging: the three code folders install as one namespace, in a wheel too, with the sample model."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_namespace_maps_the_three_rooms() -> None:
    import paumer_edge.export
    import paumer_edge.runtime

    import paumer_edge

    assert Path(paumer_edge.export.__file__).parent.name == "export"
    assert Path(paumer_edge.runtime.__file__).parent.name == "runtime"
    assert Path(paumer_edge.__file__).parent.name == "paumer_edge"


def test_runtime_import_does_not_import_torch() -> None:
    code = "import sys, paumer_edge.runtime; assert 'torch' not in sys.modules, 'runtime imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_wheel_contains_every_package_and_the_sample_model(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("paumer_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ["paumer_edge/__init__.py", "paumer_edge/pausing.py", "paumer_edge/model/segmenter.py",
                     "paumer_edge/data/render.py", "paumer_edge/training/trainer.py", "paumer_edge/export/__init__.py",
                     "paumer_edge/runtime/__init__.py", "paumer_edge/assets/sample.pt"]:
        assert required in names, required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "paumer-edge = paumer_edge.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
