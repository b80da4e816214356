"""Temporal reuse in the runtime: per-stream state, what runs and what is kept, refreshes, camera motion, streams,
threads (the agreement control: test_temporal_control.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from temporal_frames import H, W, changed, pipes, scene, start

from paumer_edge.core.errors import BundleError
from paumer_edge.core.temporal import ReuseOptions
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.temporal import TemporalFrames


@pytest.mark.parametrize("budget", [1.0, 0.5])
def test_refreshes_are_the_per_frame_result(tiny_bundle: Path, budget: float) -> None:
    """Every patch through the reuse graphs with the per-frame policy: the same tokens pause, the same labels."""
    plain, every = Pipeline(tiny_bundle, cost="macs", budget=budget), Pipeline(
        tiny_bundle, cost="macs", budget=budget, reuse=ReuseOptions(refresh_every=1))
    start(every, scene())
    for i in range(3):
        frame = changed(scene(), slice(0, 16 * i), slice(0, 48), 30 * i)  # a still camera: refreshed every frame
        a, b = plain(frame), every(frame)
        assert b.stats.frame_kind == "refresh" and b.stats.counts == a.stats.counts
        assert (a.labels == b.labels).mean() > 0.999


def test_an_unchanged_frame_runs_nothing_and_keeps_its_labels(tiny_bundle: Path) -> None:
    plain, reuse = pipes(tiny_bundle, budget=0.5)
    first, again = start(reuse, scene()), reuse(scene())
    assert first.reused is None
    assert again.stats.frame_kind == "reuse" and again.stats.counts == [0, 0, 0, 0]
    assert again.stats.reused == first.stats.counts and again.stats.decoder_ms == 0.0
    assert again.reused is not None and again.reused.all() and again.reused.shape == (4, 8)
    assert np.array_equal(again.labels, first.labels) and np.array_equal(again.labels, plain(scene()).labels)
    assert np.array_equal(again.stage_map, first.stage_map)


def test_changed_patches_run_and_the_rest_are_kept(tiny_bundle: Path) -> None:
    _, reuse = pipes(tiny_bundle)
    base = scene()
    start(reuse, base)
    block = changed(base, slice(0, 32), slice(0, 64))  # the frame's top-left 32x64 pixels: 2x4 patches of the model
    out = reuse(block)
    assert out.stats.frame_kind == "reuse" and out.stats.counts == [8, 8, 8, 8]  # budget 1: they run every stage
    assert out.stats.reused == [24, 24, 24, 24]
    assert out.reused is not None and np.flatnonzero(~out.reused.reshape(-1)).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert reuse(block).stats.counts == [0, 0, 0, 0]  # their reference is their new content: nothing changed now
    halo = Pipeline(tiny_bundle, cost="macs", reuse=ReuseOptions(halo=1))
    start(halo, base)
    assert halo(changed(base, slice(16, 32), slice(32, 48))).stats.counts[0] == 9  # one patch grown by one: 3x3


def test_reuse_frames_redraw_only_the_label_tiles_around_what_ran(tiny_bundle: Path, tmp_path: Path) -> None:
    """`decoder_tiles` redraws the tiles of the recomputed patches and their neighbours; the labels are the whole
    decoder's, frame by frame (a bundle without the graph decodes whole frames, as exports before it did)."""
    whole = Path(shutil.copytree(tiny_bundle, tmp_path / "whole.paumer"))
    manifest = json.loads((whole / "manifest.json").read_text())
    (whole / manifest["graphs"].pop("decoder_tiles")["file"]).unlink()
    (whole / "manifest.json").write_text(json.dumps(manifest))
    tiled, plain = (Pipeline(b, cost="macs", reuse=True, budget=0.5) for b in (tiny_bundle, whole))
    base = scene(3)
    start(tiled, base)
    start(plain, base)
    frames = [changed(base, slice(0, 16), slice(0, 16), 30), changed(base, slice(48, 64), slice(112, 128), 220),
              changed(base, slice(16, 48), slice(40, 72), 0), scene(3)]  # corners, the middle, back to the start
    for frame in frames:
        a, b = tiled(frame), plain(frame)
        assert a.stats.frame_kind == b.stats.frame_kind == "reuse" and a.stats.counts[0] > 0
        assert np.array_equal(a.labels, b.labels)
    assert tiled.runner.tile_decoder is not None and tiled.runner.decodes_tiles
    assert plain.runner.tile_decoder is None and not plain.runner.decodes_tiles


def test_below_the_threshold_is_unchanged(tiny_bundle: Path) -> None:
    _, reuse = pipes(tiny_bundle)
    base = scene()
    start(reuse, base)
    dim = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)  # +1.2% everywhere: a flicker of the light
    assert reuse(dim).stats.counts == [0, 0, 0, 0]
    strict = Pipeline(tiny_bundle, cost="macs", reuse=ReuseOptions(threshold=0.01))
    start(strict, base)
    assert strict(dim).stats.frame_kind == "full"  # every patch changed for this threshold: the camera "moved"


def test_a_moving_camera_turns_reuse_off_and_gives_the_per_frame_labels(tiny_bundle: Path) -> None:
    plain, reuse = pipes(tiny_bundle, budget=0.5)
    kinds = []
    for seed in range(4):  # every frame different everywhere
        a, b = plain(scene(seed)), reuse(scene(seed))
        kinds.append(b.stats.frame_kind)
        assert np.array_equal(a.labels, b.labels) and b.reused is None
    assert kinds == ["full"] * 4
    # the camera stops (on the last frame): one calm frame more, then the cache starts afresh, then reuse
    assert [reuse(scene(3)).stats.frame_kind for _ in range(3)] == ["full", "refresh", "reuse"]
    assert reuse(scene(5)).stats.frame_kind == "full"  # and moves again


def test_refresh_interval_bounds_reuse(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=ReuseOptions(refresh_every=3))
    start(pipe, scene())
    kinds = [pipe(scene()).stats.frame_kind for _ in range(6)]
    assert kinds == ["reuse", "refresh", "reuse", "reuse", "refresh", "reuse"]  # a new cache's first: 2 frames


@pytest.mark.parametrize("share", [1.0, 0.2])  # every patch unsure (the tiny model), or the most unsure fifth
def test_unsure_patches_are_recomputed_once_old_enough(tiny_bundle: Path, share: float,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from paumer_edge.core import temporal as rules

    quiet = ReuseOptions(refresh_every=1000, unsure_every=0)
    for every in (0, 3):
        pipe = Pipeline(tiny_bundle, cost="macs", budget=0.5, reuse=dataclasses.replace(quiet, unsure_every=every))
        start(pipe, scene())
        assert isinstance(pipe.tiler, TemporalFrames)
        state = pipe.tiler.streams.get(0)
        assert state.entropy is not None and state.stage is not None
        levels = rules.unsure_levels(state.entropy, state.stage)
        if share < 1:
            monkeypatch.setattr(rules, "UNSURE", float(np.quantile(levels, 1 - share)))
        unsure = levels > rules.UNSURE
        assert unsure.any() and (share == 1 or not unsure.all())  # with a fifth: some patches sure, some not
        results = [pipe(scene()) for _ in range(6)]  # nothing changes
        assert [r.stats.frame_kind for r in results] == ["reuse"] * 6  # recomputing unsure patches is no scene cut
        counts = [r.stats.counts[0] for r in results]
        if every == 0:
            assert counts == [0] * 6
        else:  # ages 1, 2 after the refresh: kept; at 3 the unsure ones run (their age starts again), and so on
            assert counts[:2] == [0, 0] and counts[3:5] == [0, 0] and counts[5] > 0
            ran = results[2].reused
            assert ran is not None and np.array_equal(~ran.reshape(-1), unsure)  # exactly the unsure ones



def test_streams_are_kept_apart_also_across_threads(tiny_bundle: Path) -> None:
    videos = {name: [changed(scene(seed), slice(8 * i, 8 * i + 16), slice(0, 32), 40 * i) for i in range(4)]
              for name, seed in (("cam1", 1), ("cam2", 2))}
    alone = {}
    for name, frames in videos.items():  # each stream on a pipeline of its own
        own = Pipeline(tiny_bundle, cost="macs", budget=0.5, reuse=True)
        alone[name] = [own(f).labels for f in frames]
    shared = Pipeline(tiny_bundle, cost="macs", budget=0.5, reuse=True)
    interleaved: dict[str, list[np.ndarray]] = {"cam1": [], "cam2": []}
    for i in range(4):
        for name in ("cam1", "cam2"):
            interleaved[name].append(shared(videos[name][i], stream=name).labels)
    threaded = Pipeline(tiny_bundle, cost="macs", budget=0.5, reuse=True)
    results: dict[str, list[np.ndarray]] = {}

    def feed(name: str) -> None:
        results[name] = [threaded(f, stream=name).labels for f in videos[name]]

    workers = [threading.Thread(target=feed, args=(name,)) for name in videos]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for name in videos:
        assert all(np.array_equal(a, b) for a, b in zip(alone[name], interleaved[name]))
        assert all(np.array_equal(a, b) for a, b in zip(alone[name], results[name]))
    assert sorted(map(str, threaded.tiler.streams.streams)) == ["cam1", "cam2"]  # type: ignore[attr-defined]


def test_reset_and_the_least_recently_used_stream_start_afresh(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=True, max_streams=2)
    for name in ("a", "b"):
        start(pipe, scene(), name)
    assert pipe(scene(), stream="a").stats.frame_kind == "reuse"
    pipe.reset("a")
    start(pipe, scene(), "a")  # afresh
    pipe(scene(), stream="c")  # a third stream: "b", the least recently used, is dropped
    start(pipe, scene(), "b")
    pipe.warmup()  # warm-up frames never touch the streams
    assert pipe(scene(), stream="b").stats.frame_kind == "reuse"


def test_warmup_runs_the_reuse_graphs_and_leaves_the_streams_alone(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=True, max_streams=2)
    for name in ("a", "b"):  # as many streams as it keeps: a warm-up stream must not push one out
        start(pipe, scene(), name)
    seen: list[str] = []
    original = pipe.runner.forward_reuse

    def spy(*args: object, **kw: object) -> object:
        seen.append("reuse graphs")
        return original(*args, **kw)  # type: ignore[arg-type]

    pipe.runner.forward_reuse = spy  # type: ignore[method-assign]
    pipe.warmup()
    assert len(seen) == 2  # the refresh, then a frame that reuses
    assert isinstance(pipe.tiler, TemporalFrames) and pipe.tiler.streams.streams == ["a", "b"]
    assert [pipe(scene(), stream=name).stats.frame_kind for name in ("a", "b")] == ["reuse", "reuse"]
    assert pipe(scene(), stream="c").stats.frame_kind == "full"  # a new stream starts as always


def _format2(bundle: Path, out: Path) -> Path:
    """A copy of the bundle as format 2 wrote it: no reuse graphs, no model.num_heads."""
    shutil.copytree(bundle, out)
    raw = json.loads((out / "manifest.json").read_text())
    raw["format_version"] = 2
    del raw["model"]["num_heads"]
    for name in [n for n in raw["graphs"] if n.endswith("_reuse")]:
        (out / raw["graphs"].pop(name)["file"]).unlink()
    (out / "manifest.json").write_text(json.dumps(raw))
    return out


def test_a_bundle_without_reuse_graphs_says_so_in_one_line(tiny_bundle: Path, tmp_path: Path) -> None:
    old = _format2(tiny_bundle, tmp_path / "old.paumer")
    with pytest.raises(BundleError, match=r"\(format 2\) has no temporal-reuse graphs this runtime runs, so it "
                                          "cannot reuse"):
        Pipeline(old, reuse=True)
    assert Pipeline(old, cost="macs")(scene()).stats.frame_kind == ""  # per frame, as before
    video = tmp_path / "still.mp4"
    from paumer_edge.data.streets import write_video

    write_video(video, (changed(scene(), slice(0, 8 * (i % 3)), slice(0, 16)) for i in range(6)), 30)
    run = [sys.executable, "-m", "paumer_edge.cli", "run", str(video), "--model", str(old), "--cost", "macs",
           "--no-save"]
    proc = subprocess.run([*run, "--reuse"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "has no temporal-reuse graphs" in proc.stderr
    proc = subprocess.run(run, capture_output=True, text=True, timeout=300)  # the default: a note, then per frame
    assert proc.returncode == 0 and "has no temporal-reuse graphs this version runs" in proc.stdout
    assert "reused" not in proc.stdout


def test_cli_static_video_with_labels_and_reuse(tiny_bundle: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "paumer_edge.cli"]
    proc = subprocess.run([*cli, "synth", "video", str(tmp_path / "still.mp4"), "--static", "--seconds", "0.3",
                           "--size", "64x128", "--labels", "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "still_labels").iterdir()) == [f"{i:06d}.png" for i in range(9)]
    proc = subprocess.run([*cli, "run", str(tmp_path / "still.mp4"), "--model", str(tiny_bundle), "--cost", "macs",
                           "--pause-map", "--refresh-every", "4", "--quiet"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert "frames: 2 full, 3 refresh, 4 reuse" in line and "reused" in line
    assert (tmp_path / "runs" / "run" / "still_overlay.mp4").exists()
    images = subprocess.run([*cli, "synth", "images", str(tmp_path / "imgs"), "--static"], capture_output=True,
                            text=True, timeout=300)
    assert images.returncode == 2 and "--static is a kind of video" in images.stderr
    assert not (tmp_path / "imgs").exists()
    bad = subprocess.run([*cli, "run", str(tmp_path / "still.mp4"), "--model", str(tiny_bundle), "--reuse",
                          "--change-threshold", "2", "--no-save"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--change-threshold 2.0 is out of range" in bad.stderr



def test_a_camera_panning_over_a_uniform_floor_turns_reuse_off(tiny_bundle: Path) -> None:
    import cv2

    rng = np.random.default_rng(1)
    floor = cv2.GaussianBlur(rng.normal(128, 16, (H + 64, W + 64, 3)).astype(np.float32), (0, 0), 1.5)
    floor = floor.astype(np.uint8)  # fine, faint texture: panning over it barely moves any patch's quarter means
    view = [floor[8 * i : 8 * i + H, 8 * i : 8 * i + W] for i in range(8)]  # (4, 4) model pixels a frame
    options = ReuseOptions(agreement=None, unsure_every=0, uncertain=0.0)
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=options)
    start(pipe, view[0])
    panning = [pipe(v).stats.frame_kind for v in view[1:]]
    assert panning == ["full"] * 7  # the picture slid as a whole: the camera moves
    still = Pipeline(tiny_bundle, cost="macs", reuse=dataclasses.replace(options, pan=0.0))
    start(still, view[0])
    assert "reuse" in [still(v).stats.frame_kind for v in view[1:]]  # without the check it would have reused
