"""The bundle contract: one typed manifest that the exporter writes and the runtime reads back unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from paumer_edge.core.contract import FORMAT_VERSION, Manifest
from paumer_edge.core.errors import BundleError
from paumer_edge.core.names import BUFFERS, TOKENS, TOKENS_OUT, stage_index, stage_name


def _raw(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_the_manifest_round_trips_through_its_dataclasses(tiny_bundle: Path) -> None:
    raw = _raw(tiny_bundle)
    manifest = Manifest.from_dict(raw, "m")
    assert manifest.to_dict() == raw  # every field written is read back, and nothing else is written
    assert Manifest.from_dict(manifest.to_dict(), "again") == manifest
    assert manifest.run_graphs == ["stage0", "stage1", "stage2", "stage3", "decoder"] and manifest.has_full
    assert manifest.exporter.graphs_revision >= 2 and manifest.batch.sizes == (1, 1, 8) and manifest.source


def test_a_format_1_bundle_still_loads(tiny_bundle: Path) -> None:
    """Version 1 wrote fields nothing read (model.config, pausing.pause_after / stage_bounds, graph sizes)."""
    raw = _raw(tiny_bundle)
    old = copy.deepcopy(raw)
    old["format_version"] = 1
    old["model"]["config"] = {"name": "tiny", "depth": 4}
    old["pausing"].update(pause_after=[1, 2, 3], stage_bounds=[[0, 1], [1, 2], [2, 3], [3, 4]])
    for g in old["graphs"].values():
        g.update(bytes=1234, export_s=0.5)
    m = Manifest.from_dict(old, "old")
    assert m.format_version == 1 and m.to_dict() == raw  # rewritten (e.g. after an engine build) as version 2


@pytest.mark.parametrize("version, message", [
    (FORMAT_VERSION + 1, f"bundle format {FORMAT_VERSION + 1} is newer than this runtime reads"),
    (0, "'format_version' must be a positive integer"),
    ("2", "'format_version' must be a positive integer"),
])
def test_format_versions_this_runtime_cannot_read_are_refused(tiny_bundle: Path, version: object,
                                                              message: str) -> None:
    raw = _raw(tiny_bundle)
    raw["format_version"] = version
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(raw, "m")


def test_graph_and_tensor_names_come_from_one_place() -> None:
    assert [stage_name(k) for k in range(3)] == ["stage0", "stage1", "stage2"]
    assert [stage_index(n) for n in ("stage0", "stage12", "stagex", "decoder", "stage")] == [0, 12, None, None, None]
    assert BUFFERS == (TOKENS, TOKENS_OUT)
