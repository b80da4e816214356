"""The bundle contract: one typed manifest that the exporter writes and the runtime reads back unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from paumer_edge.core.contract import FORMAT_VERSION, Manifest
from paumer_edge.core.errors import BundleError
from paumer_edge.core.names import (
    BUFFERS,
    TOKENS,
    TOKENS_OUT,
    reuse_stage_index,
    reuse_stage_name,
    stage_index,
    stage_name,
)


def _raw(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_the_manifest_round_trips_through_its_dataclasses(tiny_bundle: Path) -> None:
    raw = _raw(tiny_bundle)
    manifest = Manifest.from_dict(raw, "m")
    assert manifest.to_dict() == raw  # every field written is read back, and nothing else is written
    assert Manifest.from_dict(manifest.to_dict(), "again") == manifest
    assert manifest.run_graphs == ["stage0", "stage1", "stage2", "stage3", "decoder"] and manifest.has_full
    assert manifest.has_reuse and manifest.model.num_heads == 2
    cache = {t.name: t.shape for t in manifest.graphs["stage1_reuse"].inputs}["cache"]
    assert cache == (1, 2, 2, 33, 16)  # batch 1, keys and values of the stage's one block, 2 heads, L = 33 rows
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
    # rewritten (e.g. after an engine build) as version 2, without graphs a format 1 bundle could not have had
    want = {**raw, "format_version": 2, "graphs": {n: g for n, g in raw["graphs"].items() if not n.endswith("_reuse")}}
    assert m.format_version == 1 and m.to_dict() == want


def _without_reuse(raw: dict) -> dict:
    """A format 2 manifest: no reuse graphs, no model.num_heads."""
    old = copy.deepcopy(raw)
    old["format_version"] = 2
    del old["model"]["num_heads"]
    old["graphs"] = {name: g for name, g in old["graphs"].items() if not name.endswith("_reuse")}
    return old


def test_a_format_2_bundle_loads_and_cannot_reuse(tiny_bundle: Path) -> None:
    m = Manifest.from_dict(_without_reuse(_raw(tiny_bundle)), "old")
    assert m.format_version == 2 and not m.has_reuse and m.model.num_heads == 0
    assert FORMAT_VERSION == 5 and m.to_dict()["format_version"] == 2  # rewritten as the oldest format reading it
    assert not Manifest.from_dict(m.to_dict(), "again").has_reuse


def test_a_format_4_bundle_loads_without_its_older_reuse_graphs(tiny_bundle: Path) -> None:
    """Format 4's reuse graphs took other caches (one input per block, copied by every call): not read, not run."""
    raw = _raw(tiny_bundle)
    old = copy.deepcopy(raw)
    old["format_version"] = 4
    old["graphs"]["stage1_reuse"]["inputs"][3] = {"name": "keys1", "shape": ["batch", 2, 33, 16], "dtype": "float32"}
    m = Manifest.from_dict(old, "old")
    assert not m.has_reuse and not any(name.endswith("_reuse") for name in m.graphs) and m.run_graphs == [
        "stage0", "stage1", "stage2", "stage3", "decoder"]
    assert m.to_dict()["format_version"] == 2


def test_reuse_graphs_are_checked_against_the_model(tiny_bundle: Path) -> None:
    raw = _raw(tiny_bundle)
    no_heads = copy.deepcopy(raw)
    del no_heads["model"]["num_heads"]
    with pytest.raises(BundleError, match="'model.num_heads' is missing, and graph graphs.stage0_reuse needs it for "
                                          "the shape of its cache"):
        Manifest.from_dict(no_heads, "m")
    wrong = copy.deepcopy(raw)
    wrong["graphs"]["stage2_reuse"]["inputs"][3]["shape"] = [1, 2, 2, 33, 8]
    with pytest.raises(BundleError, match=r"'graphs.stage2_reuse.inputs\[3\].shape' is \[1, 2, 2, 33, 8\], but"):
        Manifest.from_dict(wrong, "m")
    names = [t["name"] for t in raw["graphs"]["stage3_reuse"]["inputs"]]
    assert names == ["tokens", "active", "context", "cache"]
    assert [t["name"] for t in raw["graphs"]["stage3_reuse"]["outputs"]] == ["tokens_out", "cache_rows"]
    assert [t["name"] for t in raw["graphs"]["stage0_reuse"]["outputs"]] == ["tokens_out", "entropy", "cache_rows"]


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
    assert [reuse_stage_name(k) for k in range(2)] == ["stage0_reuse", "stage1_reuse"]
    assert [reuse_stage_index(n) for n in ("stage3_reuse", "stage3", "x_reuse")] == [3, None, None]
    assert BUFFERS == (TOKENS, TOKENS_OUT)


def test_a_bundle_carries_its_graphs_at_other_input_sizes(tiny_ckpt: Path, tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    """`extra_sizes` adds variants: the same network at another input size, run as a bundle of its own."""
    import numpy as np

    from paumer_edge.checkpoint import load_model
    from paumer_edge.export.exporter import ExportOptions, export_bundle
    from paumer_edge.runtime import Pipeline, load_bundle

    out = export_bundle(load_model(tiny_ckpt), tmp_path / "v.paumer",
                        ExportOptions(extra_sizes=((16, 32),), reuse=False), progress=False)
    bundle = load_bundle(out)
    raw = _raw(out)
    assert raw["format_version"] == 3 and Manifest.from_dict(raw, "m").to_dict() == raw  # variants, no reuse graphs
    assert _raw(tiny_bundle)["format_version"] == 5  # the reuse graphs: format 5
    assert bundle.manifest.variant_names == ["16x32"] and (out / "16x32" / "stage0.onnx").is_file()
    small = bundle.variant("16x32")
    assert small.model.input_size == (16, 32) and small.model.grid == (2, 4) and small.cost.num_patches == 8
    assert small.graphs["stage1"].file == "16x32/stage1.onnx" and "full" not in small.graphs
    frame = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    result = Pipeline(small, cost="macs", budget=0.5)(frame)
    assert result.labels.shape == (40, 60) and result.stats.counts[0] == 8
    exported_there = export_bundle(load_model(tiny_ckpt), tmp_path / "s.paumer", ExportOptions(image_size=(16, 32)),
                                   progress=False)
    same = Pipeline(exported_there, cost="macs", budget=0.5)(frame)
    assert np.array_equal(result.labels, same.labels) and result.stats.counts == same.stats.counts
    with pytest.raises(BundleError, match="no variant 'int8' in this bundle \\(it has: 16x32\\)"):
        bundle.variant("int8")


def test_variant_fields_are_checked(tiny_ckpt: Path, tmp_path: Path) -> None:
    """(The variants carry reuse graphs too, checked at their own size, and a variant can reuse.)"""
    import numpy as np

    from paumer_edge.checkpoint import load_model
    from paumer_edge.export.exporter import ExportOptions, export_bundle
    from paumer_edge.runtime import Pipeline, load_bundle

    out = export_bundle(load_model(tiny_ckpt), tmp_path / "v.paumer", ExportOptions(extra_sizes=((16, 32),)),
                        progress=False)
    raw = _raw(out)
    small = load_bundle(out).variant("16x32")
    assert raw["format_version"] == 5 and small.manifest.has_reuse and small.graphs["stage0_reuse"].file.startswith(
        "16x32/")
    pipe = Pipeline(small, cost="macs", reuse=True)
    frame = np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8)
    kinds = [pipe(frame).stats for _ in range(4)]  # a still camera: two calm frames, a refresh, then reuse
    assert [s.frame_kind for s in kinds] == ["full", "full", "refresh", "reuse"]
    assert kinds[-1].counts == [0, 0, 0, 0] and kinds[-1].reused == [8, 8, 8, 8]  # nothing changed: nothing runs
    for change, message in [
        (lambda v: v.update(input_size=[15, 32]), r"'variants\[0\].input_size' \[15, 32\] must be a multiple"),
        (lambda v: v.update(precision="int4"), r"'variants\[0\].precision' is 'int4', not one of fp32, fp16, int8"),
        (lambda v: v["graphs"].pop("stage2"), r"'variants\[0\].graphs' lacks \['stage2'\]"),
        (lambda v: v["graphs"]["stage0"].update(file="stage0.onnx"), "reuses the files \\['stage0.onnx'\\]"),
        (lambda v: v["cost_model"].update(num_patches=32), r"'variants\[0\].cost_model.num_patches' is 32"),
        (lambda v: v["graphs"]["stage1_reuse"]["inputs"][3].update(shape=[1, 2, 2, 33, 16]),
         r"'variants\[0\].graphs.stage1_reuse.inputs\[3\].shape' is \[1, 2, 2, 33, 16\], but the model section "
         r"gives \['any', 2, 2, 9, 16\]"),  # the cache of the variant's 8 patches + 1
    ]:
        broken = copy.deepcopy(raw)
        change(broken["variants"][0])
        with pytest.raises(BundleError, match=message):
            Manifest.from_dict(broken, "m")
