"""No input file under 1 MiB can make a verb allocate more than 2 GiB before refusing: the hostile inputs of issue 11
(and a few more: a broadcast tensor, a manifest asking for a huge input, a PNG that decodes to 400 megapixels) go
through the CLI in a process whose address space may grow by at most 2 GiB (resource.setrlimit). Each ends in one
line and exit code 2, or, for the image, in a skipped frame; none in a MemoryError or a traceback. A control run of a
real model under the same cap shows the cap leaves room for real work."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

TESTS = Path(__file__).parent
CAP = 2 << 30

PROGRAM = """
import io, json, resource, sys, traceback
from contextlib import redirect_stderr, redirect_stdout
sys.path.insert(0, {tests!r})
from limits import address_space
import cv2, numpy, onnxruntime, torch  # what every verb loads anyway: mapped before the cap is set
import paumer_edge.cli, paumer_edge.export.exporter, paumer_edge.verbs.export, paumer_edge.verbs.run
import paumer_edge.verbs.train, paumer_edge.training
cap = address_space() + {cap}
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
results = []
for args in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = paumer_edge.cli.main(args)
    except BaseException as e:
        code = repr(e)[:300]
        err.write(traceback.format_exc())
    results.append({{"args": args, "code": code, "err": err.getvalue()[-3000:], "out": out.getvalue()[-3000:]}})
print(json.dumps(results))
"""


def run_capped(cases: list[list[str]]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", PROGRAM.format(tests=str(TESTS), cap=CAP), json.dumps(cases)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def png_bomb(path: Path, side: int) -> Path:
    """A gray PNG of side x side zeros, compressed as it is written (never held whole)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def huge_manifest(tiny_bundle: Path, out: Path, side: int = 8192) -> Path:
    """The tiny bundle with a manifest, consistent in every field, for a side x side input in 8-pixel patches."""
    bundle = Path(shutil.copytree(tiny_bundle, out))
    m = json.loads((bundle / "manifest.json").read_text())
    model = m["model"]
    grid = [side // model["patch_size"]] * 2
    patches = grid[0] * grid[1]
    tokens = patches + model["extra_tokens"]
    model.update(input_size=[side, side], grid=grid, num_patches=patches, tokens=tokens)
    model.pop("config", None)
    m["pausing"]["cost_model"]["num_patches"] = patches
    sizes = {"image": {2: side, 3: side}, "tokens": {1: tokens}, "tokens_out": {1: tokens},
             "labels": {1: side, 2: side}, "scores": {2: side, 3: side}}
    # the temporal-reuse graphs (and their caches' shapes) are left out: this manifest is about the input size
    m["graphs"] = {name: g for name, g in m["graphs"].items() if not name.endswith("_reuse")}
    for name, g in m["graphs"].items():
        for t in g["inputs"] + g["outputs"]:
            fixed = sizes.get(t["name"], {1: patches} if t["name"] == "entropy" and name == "stage0" else {})
            t["shape"] = [fixed.get(i, d) for i, d in enumerate(t["shape"])]
    (bundle / "manifest.json").write_text(json.dumps(m))
    return bundle


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the cap is measured from /proc (Linux)")
def test_hostile_inputs_are_refused_within_2_gib(tiny_ckpt: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_ckpt, weights_only=True)
    inputs: dict[str, Path] = {}
    for name, change in {"embed_dim": {"embed_dim": 10**6}, "depth": {"depth": 10**7},
                         "image_size": {"image_size": [1e5, 1e5]},
                         "memory": {"image_size": [16384, 16384]},  # every field in range: the estimate refuses
                         "params": {"embed_dim": 65536, "num_heads": 1, "depth": 1024},
                         "under_the_limit": {"embed_dim": 2048, "num_heads": 16, "depth": 24}}.items():
        inputs[name] = tmp_path / f"{name}.pt"  # the last: 4.8 GB of weights, within the limit, none in the file
        torch.save({**state, "config": {**state["config"], **change}}, inputs[name])
    inputs["broadcast"] = tmp_path / "broadcast.pt"
    torch.save({**state, "model": {**state["model"], "encoder.pos_embed": torch.zeros(1).expand(1, 10**6, 10**4)}},
               inputs["broadcast"])
    inputs["manifest"] = huge_manifest(tiny_bundle, tmp_path / "huge.paumer") / "manifest.json"
    frames = tmp_path / "frames"
    frames.mkdir()
    inputs["png"] = png_bomb(frames / "bomb.png", 20_000)
    png_bomb(frames / "small.png", 64)
    for name, path in inputs.items():
        assert path.stat().st_size < 1 << 20, name
    out = str(tmp_path / "out.paumer")
    cases = [["export", str(inputs[n]), "-o", out, "--quiet"] for n in
             ("embed_dim", "depth", "image_size", "memory", "params", "under_the_limit", "broadcast")]
    cases += [["run", str(frames), "--model", str(inputs[n]), "--no-save", "--quiet"] for n in ("memory", "params")]
    cases += [["export", str(tiny_ckpt), "-o", out, "--image-size", "8192x8192", "--quiet"],
              ["run", str(frames), "--model", str(inputs["manifest"].parent), "--no-save", "--quiet"],
              ["run", str(frames), "--model", str(tiny_bundle), "--no-save", "--quiet", "--cost", "macs"]]
    results = run_capped(cases)
    for r in results[:-1]:
        assert r["code"] == 2, r
        lines = r["err"].strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r["err"] and "MemoryError" not in r["err"], r
    assert "of memory, more than" in results[-2]["err"]  # the manifest's input is refused before any frame
    control = results[-1]  # the bomb is skipped unread (OpenCV's pixel limit); the run itself works under the cap
    assert control["code"] == 0 and "1 frames" in control["out"] and "1 unreadable frames skipped" in control["out"], \
        control
