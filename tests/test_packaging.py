"""Packaging: the three code folders install as one namespace, in a wheel too, with the sample model."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.torchfree
def test_namespace_maps_the_three_rooms() -> None:
    import paumer_edge
    import paumer_edge.export
    import paumer_edge.runtime

    assert Path(paumer_edge.export.__file__).parent.name == "export"
    assert Path(paumer_edge.runtime.__file__).parent.name == "runtime"
    assert Path(paumer_edge.__file__).parent.name == "paumer_edge"


@pytest.mark.torchfree
def test_runtime_import_does_not_import_torch() -> None:
    code = "import sys, paumer_edge.runtime; assert 'torch' not in sys.modules, 'runtime imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


CORE_AND_RUNTIME = """
import importlib, json, pkgutil, sys
import paumer_edge.core, paumer_edge.runtime
names = []
for pkg in (paumer_edge.core, paumer_edge.runtime):
    names += [pkg.__name__] + [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
optional = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:  # a module of an extra that is not installed must say which, in one line
        optional[name] = f"{type(e).__name__}: {e}"
ours = sorted(m for m in sys.modules if m.startswith("paumer_edge.")
              and not m.startswith(("paumer_edge.core", "paumer_edge.runtime")))
print(json.dumps({"modules": len(names), "ours": ours, "torch": sys.modules.get("torch") is not None,
                  "optional": optional}))
"""


@pytest.mark.torchfree
def test_core_and_runtime_import_nothing_torch_side(without_torch: Callable[[str], str]) -> None:
    """Every module of the torch-free core and of the runtime imports with torch blocked, and pulls in no
    module of ours outside those two (the model, data, training, export and CLI are torch-side). A module of an
    extra this install lacks (the live view's server without aiohttp) refuses with one line naming the extra."""
    import importlib.util

    found = json.loads(without_torch(CORE_AND_RUNTIME))
    assert found["modules"] >= 20
    expected = {} if importlib.util.find_spec("aiohttp") else {
        "paumer_edge.runtime.view.server": "ViewError: the live view needs aiohttp: pip install 'paumer-edge[view]'"}
    assert found["optional"] == expected
    assert found["ours"] == [], f"core/runtime import torch-side modules of ours: {found['ours']}"
    assert not found["torch"]


@pytest.mark.slow
def test_wheel_contains_every_package_and_the_sample_model(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("paumer_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ["paumer_edge/__init__.py", "paumer_edge/core/pausing.py", "paumer_edge/model/segmenter.py",
                     "paumer_edge/data/render.py", "paumer_edge/training/trainer.py", "paumer_edge/export/__init__.py",
                     "paumer_edge/runtime/__init__.py", "paumer_edge/runtime/backends/ort.py",
                     "paumer_edge/runtime/view/server.py", "paumer_edge/runtime/view/page.html",
                     "paumer_edge/runtime/view/view.js", "paumer_edge/assets/sample.pt"]:
        assert required in names, required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "paumer-edge = paumer_edge.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_runtime_install_asks_for_no_torch() -> None:
    """`pip install "paumer-edge[cpu]"` (and [gpu]) pull no PyTorch and no exporter; [train] brings them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["cpu"] + \
        project["optional-dependencies"]["gpu"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in runtime}
    assert not names & {"torch", "onnx", "onnxscript", "onnx-graphsurgeon"}, names
    assert {"torch", "onnx"} <= {d.split(">")[0].strip() for d in project["optional-dependencies"]["train"]}
