"""Provenance of results: the command as typed, the git commit and dirty flag, what was measured, the machine."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from paumer_edge.core.provenance import (
    Provenance,
    bundle_identity,
    cli_invocation,
    command_line,
    file_identity,
    git_state,
    missing_fields,
)
from paumer_edge.runtime.bundle import load_bundle

pytestmark = pytest.mark.torchfree


@pytest.mark.parametrize("argv, want", [
    (["/w/.venv/bin/python", "-m", "paumer_edge.cli", "bench", "--rounds", "200"], "paumer-edge bench --rounds 200"),
    (["/w/.venv/bin/python3.11", "/w/.venv/bin/paumer-edge", "eval", "--images", "1000"],
     "paumer-edge eval --images 1000"),
    (["/usr/local/bin/paumer-edge", "run", "my clip.mp4"], "paumer-edge run 'my clip.mp4'"),
    (["python3", "benchmarks/soak.py", "--frames", "9000"], "python benchmarks/soak.py --frames 9000"),
])
def test_command_line_reads_as_typed(argv: list[str], want: str) -> None:
    assert command_line(argv) == want


def test_the_cli_called_in_process_records_its_own_arguments() -> None:
    with cli_invocation(["bench", "--json", "out.json"]):
        assert command_line() == "paumer-edge bench --json out.json"
        assert command_line(["python", "x.py"]) == "python x.py"  # an explicit argv still wins
    assert not command_line().startswith("paumer-edge bench")


def test_command_line_makes_a_script_path_relative_to_where_it_ran(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "benchmarks" / "forward_time.py"
    assert command_line(["/usr/bin/python3", str(script), "--rounds", "40"]) == \
        "python benchmarks/forward_time.py --rounds 40"
    assert command_line(["/usr/bin/python3", "/elsewhere/x.py"]) == "python /elsewhere/x.py"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_state_gives_the_commit_and_whether_tracked_code_changed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    _git(tmp_path, "init", "-q", str(repo))
    (repo / "code.py").write_text("x = 1\n")
    (repo / "benchmarks" / "results" / "r.json").write_text("{}\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "benchmarks" / "results" / "r.json").write_text('{"new": 1}\n')  # an output, not code
    (repo / "notes.txt").write_text("untracked\n")
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True, "dirty_files": ["code.py"]}
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) == {"commit": None}


def test_bundle_identity_changes_with_any_graph(committed_bundle: Path) -> None:
    manifest = load_bundle(committed_bundle).manifest
    ident = bundle_identity(manifest, committed_bundle)
    assert ident["graphs_revision"] == manifest.exporter.graphs_revision and ident["path"] == str(committed_bundle)
    assert len(ident["graphs_sha256"]) == 64 and bundle_identity(manifest)["graphs_sha256"] == ident["graphs_sha256"]
    graphs = dict(manifest.graphs)
    graphs["stage2"] = dataclasses.replace(graphs["stage2"], sha256="0" * 64)
    other = bundle_identity(dataclasses.replace(manifest, graphs=graphs))
    assert other["graphs_sha256"] != ident["graphs_sha256"]


def test_a_record_has_everything_a_result_must_carry(committed_bundle: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    manifest = load_bundle(committed_bundle).manifest
    prov = Provenance.start(manifest, committed_bundle, files={"checkpoint": ckpt, "cost_profile": None},
                            argv=["python", "benchmarks/x.py"])
    record = json.loads(json.dumps(prov.finish()))  # plain JSON
    assert missing_fields(record) == []
    assert record["command"] == "python benchmarks/x.py"
    assert record["measured"]["checkpoint"] == {"path": str(ckpt), "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert set(record["measured"]) == {"bundle", "checkpoint"}  # a None input is left out
    assert record["git"]["commit"] is None or len(record["git"]["commit"]) == 40
    assert record["packages"]["python"] and "numpy" in record["packages"] and record["wall_s"] >= 0
    assert record["date"].endswith("+00:00") and record["machine"]
    assert file_identity(ckpt) == record["measured"]["checkpoint"]
    assert missing_fields({}) == ["command", "git", "machine", "date", "load_average_start", "load_average_end",
                                  "packages"]
    assert "git.commit" in missing_fields({**record, "git": {"commit": None}})
    assert missing_fields(None) == missing_fields({})


@pytest.mark.parametrize("cpuinfo, want", [
    ("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\n"
     "model\t\t: 1\nmodel name\t: AMD EPYC\n", "AMD EPYC (family 26, model 2) x"),
    ("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n",
     "AMD EPYC 7B13 64-Core Processor x"),  # the name says the generation: no numbers added
    ("processor\t: 0\nHardware\t: NVIDIA Jetson Orin\n", "NVIDIA Jetson Orin x"),
    ("processor\t: 0\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\n", "NVIDIA Jetson AGX Orin Developer Kit x"),
])
def test_machine_tells_apart_hosts_whose_model_name_is_generic(cpuinfo: str, want: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from paumer_edge.core import provenance

    class FakePath(type(Path())):  # type: ignore[misc]
        def read_text(self, *args: object, **kw: object) -> str:
            if str(self) == "/proc/device-tree/model":  # an arm64 kernel names no processor; the device tree names
                return "NVIDIA Jetson AGX Orin Developer Kit\x00"  # the board
            return cpuinfo if str(self) == "/proc/cpuinfo" else super().read_text()

    monkeypatch.setattr(provenance, "Path", FakePath)
    assert want in provenance.machine.__wrapped__()
