"""Hostile files let nothing in: checkpoints are data, never code; bundles are checked field by field,
file by file (sha256, confinement, graph I/O, external data); TensorRT engines load only where their key fits."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import set_external_data

from paumer_edge import UserError
from paumer_edge.checkpoint import load_checkpoint
from paumer_edge.core.contract import EngineEntry, GpuSpec
from paumer_edge.runtime import BundleError, Pipeline, load_bundle
from paumer_edge.runtime.backends.trt import find_engine
from paumer_edge.runtime.bundle import sha256_file
from paumer_edge.runtime.gpu import GpuInfo


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def one_clear_line(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr


# ---- checkpoints are data, not code -------------------------------------------------------------------
class _WritesMarker:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class _SetsEnv:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['PAUMER_EDGE_PWNED'] = '1'",))


def test_a_checkpoint_with_code_never_runs_in_the_api(tmp_path: Path) -> None:
    os.environ.pop("PAUMER_EDGE_PWNED", None)
    zipped, raw = tmp_path / "evil.pt", tmp_path / "evil.pkl"
    torch.save({"format": "paumer-edge-checkpoint", "version": 1, "model": _SetsEnv()}, zipped)
    raw.write_bytes(pickle.dumps({"format": "paumer-edge-checkpoint", "model": _SetsEnv()}))  # legacy, not zip
    for path in (zipped, raw):
        with pytest.raises(UserError, match="(refusing to load|not a readable PyTorch checkpoint).*could run") as err:
            load_checkpoint(path)
        assert "\n" not in str(err.value)
        assert "PAUMER_EDGE_PWNED" not in os.environ


@pytest.mark.parametrize("verb", [["export", "{ckpt}", "-o", "{out}"], ["eval", "--model", "{ckpt}", "--images", "2"],
                                  ["run", "{image}", "--model", "{ckpt}", "--no-save"],
                                  ["train", "--resume", "{ckpt}", "--steps", "1", "--out", "{out}"],
                                  ["import", "{ckpt}", "-o", "{out}.pt"]])
def test_a_checkpoint_with_code_never_runs_in_the_cli(tmp_path: Path, verb: list[str]) -> None:
    marker, ckpt, out, image = tmp_path / "ran.txt", tmp_path / "evil.pt", tmp_path / "out", tmp_path / "x.png"
    torch.save({"format": "paumer-edge-checkpoint", "version": 1, "model": _WritesMarker(marker),
                "state_dict": _WritesMarker(marker)}, ckpt)
    import cv2

    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    args = [a.format(ckpt=ckpt, out=out, image=image) for a in verb]
    proc = cli(*args, cwd=tmp_path)
    one_clear_line(proc, "holds code")
    assert not marker.exists()
    assert not out.exists() and not Path(f"{out}.pt").exists()


def test_every_checkpoint_load_in_the_repository_is_weights_only() -> None:
    root = Path(__file__).resolve().parents[1]
    offenders = []
    unsafe = ["pickle." + "load(", "pickle." + "loads(", "allow_pickle" + "=True", "yaml." + "unsafe_load",
              "yaml." + "Loader"]
    for folder in ("paumer_edge", "export", "runtime", "benchmarks", "samples", "tests"):
        for path in (root / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if "torch." + "load(" in code and "weights_only=True" not in code and "weights_only=False); " \
                        "torch.save" not in code:  # (that one is advice printed for files the user trusts)
                    offenders.append(f"{path.relative_to(root)}:{n}")
                if any(bad in code for bad in unsafe):
                    offenders.append(f"{path.relative_to(root)}:{n}")
    assert not offenders, offenders


# ---- bundles: schema and consistency ---------------------------------------------------------------
@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle to break."""
    b = tmp_path / "b.paumer"
    shutil.copytree(tiny_bundle, b)
    return b


def edit_manifest(b: Path, change: Callable[[dict], Any]) -> None:
    m = json.loads((b / "manifest.json").read_text())
    change(m)
    (b / "manifest.json").write_text(json.dumps(m))


def rehash(b: Path, graph: str) -> None:
    """Record a graph file's new sha256, as a tamperer who edits the manifest too would."""
    edit_manifest(b, lambda m: m["graphs"][graph].__setitem__("sha256", sha256_file(b / m["graphs"][graph]["file"])))


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            m = m[int(p)] if isinstance(m, list) else m[p]
        if value is _DELETE:
            del m[last]
        elif isinstance(m, list):
            m[int(last)] = value
        else:
            m[last] = value
    return change


_DELETE = object()


@pytest.mark.parametrize("change, message", [
    (_set("format_version", "1"), "'format_version' must be a positive integer"),
    (_set("format_version", 99), "bundle format 99 is newer than this runtime reads"),
    (_set("format", "something-else"), "is not a paumer-edge bundle manifest"),
    (_set("model.class_names", _DELETE), "'model.class_names' is missing"),
    (_set("model.class_names.0", 7), "'model.class_names[0]' must be a string, not the number 7"),
    (_set("model.patch_size", "8"), "'model.patch_size' must be an integer, not a string"),
    (_set("model.patch_size", True), "'model.patch_size' must be an integer, not a boolean"),
    (_set("model.grid", [4, 9]), "'model.grid' is [4, 9], but input_size [32, 64] / patch_size 8"),
    (_set("model.input_size", [32, 60]), "'model.grid' is [4, 8], but input_size [32, 60] / patch_size 8"),
    (_set("model.tokens", 34), "'model.tokens' is 34, but the grid, extra tokens and classes give 33"),
    (_set("model.palette", [[0, 0, 0]]), "'model.palette' must have"),
    (_set("model.palette.0", [0, 0, 300]), "'model.palette[0][2]' is 300, outside [0, 255]"),
    (_set("model.std", [0.5, 0, 0.5]), "'model.std[1]' is 0"),
    (_set("model.pause_after", [2, 1, 3]), "'model.pause_after' [2, 1, 3] must be strictly increasing"),
    (_set("model", []), "'model' must be an object, not a list"),
    (_set("pausing.cost_model.num_patches", 31),
     "'pausing.cost_model.num_patches' is 31, but the model section says 32"),
    (_set("pausing.cost_model.stage_blocks", [1, 1, 2]), "'pausing.cost_model.stage_blocks' must have 4 entries"),
    (_set("pausing.cost_model.stage_blocks", [2, 1, 1, 1]), "does not split the encoder at model.pause_after"),
    (_set("pausing.cost_model.mlp_ratio", None), "'pausing.cost_model.mlp_ratio' must be a finite number, not null"),
    (_set("graphs.stage2", _DELETE), "'graphs' lacks ['stage2']"),
    (_set("graphs.stage1.sha256", "abc"), "'graphs.stage1.sha256' must be 64 lower-case hex digits"),
    (_set("graphs.stage1.inputs.0.shape", ["batch", 34, 32]), "'graphs.stage1.inputs[0].shape' is ['batch', 34, 32]"),
    (_set("graphs.stage1.inputs.1.shape", ["batch", 32]), "'graphs.stage1.inputs[1].shape' is ['batch', 32]"),
    (_set("graphs.stage0.inputs.0.name", "pixels"), "'graphs.stage0.inputs[0].name' is 'pixels', expected 'image'"),
    (_set("graphs.decoder.outputs.0.dtype", "float32"), "'graphs.decoder.outputs[0].dtype' is 'float32'"),
    (_set("graphs.stage3.outputs", []), "'graphs.stage3.outputs' lists [], expected ['tokens_out']"),
    (_set("engines", {}), "'engines' must be a list, not an object"),
    (_set("engines", [{"graph": "stage0"}]), "'engines[0].file' is missing"),
    (_set("batch", {"min": 4, "opt": 1, "max": 8}), "'batch' must satisfy min <= opt <= max"),
])
def test_a_malformed_manifest_names_the_field(bundle: Path, change: Callable[[dict], None], message: str) -> None:
    edit_manifest(bundle, change)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text
    if "newer" not in text:
        assert "re-export the bundle" in text


@pytest.mark.parametrize("text, message", [
    ("{", "is not valid JSON"),
    ("[1, 2]", "is not a paumer-edge bundle manifest"),
    ("\xff\xfe", "is not valid JSON"),
    ("[" * 100000 + "]" * 100000, "nests too deeply"),
])
def test_a_manifest_that_is_not_a_manifest(bundle: Path, text: str, message: str) -> None:
    (bundle / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe"
                                           else b"\xff\xfe{")
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_nan_and_a_huge_manifest_are_refused(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["model"]["mean"].__setitem__(0, float("nan")))  # json writes NaN
    with pytest.raises(BundleError, match=r"'model.mean\[0\]' must be a finite number"):
        load_bundle(bundle)
    with open(bundle / "manifest.json", "w") as f:
        f.write(" " * (17 << 20))
    with pytest.raises(BundleError, match="far larger than any bundle manifest"):
        load_bundle(bundle)


# ---- bundles: files ---------------------------------------------------------------------------------
def test_file_names_must_stay_inside_the_bundle(bundle: Path, tmp_path: Path) -> None:
    for name in ("../../etc/passwd", "/etc/passwd", "", "sub/../../x.onnx"):
        edit_manifest(bundle, _set("graphs.stage1.file", name))
        with pytest.raises(BundleError, match="outside the bundle; refusing it"):
            load_bundle(bundle)
    edit_manifest(bundle, _set("graphs.stage1.file", "stage1.onnx"))
    load_bundle(bundle)
    # a symlink that points out, even at a file with the right sha256, is refused
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(bundle / "stage1.onnx", outside)
    (bundle / "stage1.onnx").unlink()
    (bundle / "stage1.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match=r"resolves to .*elsewhere.onnx', outside the bundle \(a symlink\?\)"):
        load_bundle(bundle)
    (bundle / "stage1.onnx").unlink()
    shutil.copy(outside, bundle / "stage1.onnx")
    edit_manifest(bundle, lambda m: m["engines"].append(
        {"graph": "stage0", "file": "../evil.engine", "sha256": "0" * 64, "graph_sha256": "0" * 64,
         "tensorrt": "10.3.0", "precision": "fp16", "gpu": {"name": "x", "compute_capability": "8.7"}}))
    with pytest.raises(BundleError, match="names the engine file '../evil.engine', which is outside the bundle"):
        load_bundle(bundle)


def test_tampered_garbage_and_swapped_graphs(bundle: Path) -> None:
    with open(bundle / "stage1.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="'stage1.onnx' does not match its sha256 in the manifest"):
        load_bundle(bundle)
    (bundle / "stage1.onnx").write_bytes(b"\x08\x07garbage that is not protobuf")
    rehash(bundle, "stage1")
    with pytest.raises(BundleError, match=r"'stage1.onnx' \(stage1\) is not a valid ONNX model"):
        load_bundle(bundle)
    shutil.copy(bundle / "decoder.onnx", bundle / "stage1.onnx")  # a valid graph, but not this one
    rehash(bundle, "stage1")
    with pytest.raises(BundleError, match=r"'stage1.onnx' has inputs \(tokens \['batch', 33, 32\] float32\) but the "
                                          r"manifest says \(tokens .*, active \['batch', 'n'\] int64\)"):
        load_bundle(bundle)
    (bundle / "stage1.onnx").unlink()
    with pytest.raises(BundleError, match=r"'stage1.onnx' \(stage1\) is missing"):
        load_bundle(bundle)


@pytest.mark.parametrize("location, outside", [("../secret.bin", True), ("/etc/hostname", True),
                                               ("weights.bin", False)])
def test_external_data_is_refused_without_being_read(bundle: Path, location: str, outside: bool) -> None:
    model = onnx.load(str(bundle / "stage1.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    (bundle.parent / "secret.bin").write_bytes(tensor.raw_data)
    (bundle / "weights.bin").write_bytes(tensor.raw_data)
    set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    (bundle / "stage1.onnx").write_bytes(model.SerializeToString())
    rehash(bundle, "stage1")
    with pytest.raises(BundleError) as err:
        Pipeline(bundle)
    text = str(err.value)
    assert f"keeps tensor '{tensor.name}' in external data ('{location}'" in text
    assert ("outside the bundle" in text) == outside
    assert "bundles keep every weight inside their graphs" in text


def test_a_graph_onnxruntime_cannot_open_is_a_bundle_error(bundle: Path) -> None:
    model = onnx.load(str(bundle / "stage2.onnx"))
    model.graph.node[0].op_type = "NoSuchOperator"
    (bundle / "stage2.onnx").write_bytes(model.SerializeToString())
    rehash(bundle, "stage2")
    with pytest.raises(BundleError, match=r"ONNX Runtime cannot open graph 'stage2' \(stage2.onnx\): .*re-export it"):
        Pipeline(bundle)


def test_the_cli_refuses_a_tampered_bundle_in_one_line(bundle: Path, tmp_path: Path) -> None:
    import cv2

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((40, 60, 3), np.uint8))
    with open(bundle / "decoder.onnx", "ab") as f:
        f.write(b"tampered")
    for verb in (["run", str(image), "--model", str(bundle)], ["bench", str(bundle), "--rounds", "1"],
                 ["verify", str(bundle)]):
        one_clear_line(cli(*verb, cwd=tmp_path), "'decoder.onnx' does not match its sha256")


# ---- TensorRT engines: only where their key fits ------------------------------------------------------
def test_engines_load_only_for_their_tensorrt_gpu_and_graph(tiny_bundle: Path) -> None:
    base = load_bundle(tiny_bundle)
    orin = GpuInfo(0, "NVIDIA Orin", "8.7", 30.0)
    sha = base.graphs["stage1"].sha256

    def entry(**change: Any) -> EngineEntry:
        e = EngineEntry(graph="stage1", key="k", file="engines/k/stage1.engine", sha256="0" * 64, graph_sha256=sha,
                        tensorrt="10.3.0", precision="fp16", gpu=GpuSpec("NVIDIA Orin", "8.7"))
        return dataclasses.replace(e, **change)

    def with_engines(*entries: EngineEntry) -> Any:
        return dataclasses.replace(base, manifest=dataclasses.replace(base.manifest, engines=entries))

    with pytest.raises(UserError, match="has no TensorRT engine for stage1; build them"):
        find_engine(with_engines(), "stage1", None, "10.3.0", orin)
    others = with_engines(entry(gpu=GpuSpec("NVIDIA A100", "8.0")), entry(tensorrt="8.6.1"),
                          entry(gpu=GpuSpec("NVIDIA Orin", "8.6")))
    with pytest.raises(UserError, match=r"built for .*NVIDIA A100 \(sm 8.0\) / TensorRT 10.3.0.*, not this NVIDIA Orin "
                                        r"\(sm 8.7\) / TensorRT 10.3.0; rebuild with `paumer-edge build"):
        find_engine(others, "stage1", None, "10.3.0", orin)
    with pytest.raises(UserError, match=r"built from another version of stage1.onnx .*rebuild with `paumer-edge build "
                                        r".* --fp16`"):
        find_engine(with_engines(entry(graph_sha256="f" * 64)), "stage1", "fp16", "10.3.0", orin)
    good = entry(file="engines/good/stage1.engine")
    assert find_engine(with_engines(entry(tensorrt="8.6.1"), good), "stage1", None, "10.3.0", orin) == good
    with pytest.raises(UserError, match="has no int8 TensorRT engine.*paumer-edge build .* --int8`"):
        find_engine(with_engines(good), "stage1", "int8", "10.3.0", orin)
