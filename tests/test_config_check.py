"""Model configs from any source are held to one set of rules (paumer_edge.config_check): every field's type and
range, the rules between fields, and a memory estimate before anything is built. The config family: any generated
config either builds or is refused with one line and exit code 2 (CLI) / a UserError (API), under a memory cap,
within a time bound; 2,000+ generated cases, most through the validation layer, the rest through the loaders."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limits import main_until, memory_cap

from paumer_edge import cli
from paumer_edge.checkpoint import check_tensor_storage, model_from_checkpoint
from paumer_edge.config import PRESETS, ModelConfig, preset
from paumer_edge.config_check import check_model_memory, vit_shape
from paumer_edge.core.errors import UserError
from paumer_edge.core.memory import MemoryLimitError, forward_bytes, memory_limit, set_memory_limit, vit_parameters
from paumer_edge.model import PausingSegmenter

CASE_SECONDS = 10.0
CAP = 2 << 30


# ---- the rules -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"num_heads": 0}, "num_heads 0 is out of range"),
    ({"num_heads": "3"}, "num_heads must be a whole number, not a string"),
    ({"num_heads": 3.0}, "num_heads must be a whole number, not float"),
    ({"embed_dim": True}, "embed_dim must be a whole number, not a boolean"),
    ({"patch_size": -8}, "patch_size -8 is out of range"),
    ({"image_size": [32]}, "image_size needs 2 values, not 1"),
    ({"image_size": "32x64"}, "image_size must be a list, not a string"),
    ({"image_size": [4, 64]}, "image_size 4 is out of range: give a whole number from 8"),
    ({"mlp_ratio": math.nan}, "mlp_ratio nan is out of range"),
    ({"mlp_ratio": 0.001}, "gives an empty MLP"),
    ({"norm_eps": 0}, "norm_eps 0 is out of range"),
    ({"class_token": "yes"}, "class_token must be true or false"),
    ({"pause_after": [0, 2]}, "strictly between 0 and depth 4"),
    ({"pause_after": [1, 2, 3, 4, 5]}, "pause_after has 5 entries"),
    ({"decoder": None}, "decoder None is not one of"),
    ({"decoder_depth": 0}, "decoder_depth 0 is out of range"),
    ({"class_names": ["a", 2]}, "class_names must be strings"),
    ({"palette": [[0, 0, 256]] * 10}, "palette 256 is out of range"),
    ({"std": [1, 0, 1]}, "std 0 is out of range"),
    ({"name": 5}, "name must be a string"),
])
def test_every_field_has_a_type_and_a_range(change: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.from_dict({**preset("tiny").to_dict(), **change})


@pytest.mark.parametrize("config, message", [
    ("hello", "must be a mapping of field names to values (a JSON object), not a string"),
    ([["depth", 4]], "not list"), (None, "not NoneType"), ({1: 2}, "field names must be strings"),
])
def test_a_config_must_be_a_mapping(config: Any, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.from_dict(config)


def test_the_estimate_covers_the_real_parameters() -> None:
    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            real = sum(p.numel() for p in PausingSegmenter(cfg).parameters())
        assert real <= vit_parameters(vit_shape(cfg)) <= 1.05 * real, name


def test_memory_is_estimated_and_refused_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = preset("sample")
    assert forward_bytes(vit_shape(sample)) < 1 << 30  # the bundled model: far below any limit
    assert forward_bytes(vit_shape(sample), 16, training=True) > 4 * forward_bytes(vit_shape(sample))
    huge = sample.replace(image_size=(8192, 8192))
    with pytest.raises(MemoryLimitError, match=r"model 'sample' .*8192x8192 input.* needs about .* of memory, "
                                               r"more than .*--memory-limit GIB"):
        PausingSegmenter(huge)
    try:
        set_memory_limit(1e-5)  # 10 KiB: even the tiny model is refused, by an explicit limit
        assert memory_limit()[1] == "the limit given with --memory-limit"
        with pytest.raises(MemoryLimitError, match="more than the limit given with --memory-limit"):
            check_model_memory(preset("tiny"))
    finally:
        set_memory_limit(None)
    monkeypatch.setenv("PAUMER_EDGE_MEMORY_LIMIT", "1e6")  # a million GiB: the estimate alone decides nothing
    check_model_memory(huge.replace(image_size=(1024, 1024)))
    monkeypatch.setenv("PAUMER_EDGE_MEMORY_LIMIT", "lots")
    with pytest.raises(UserError, match="'lots' is not a memory size"):
        check_model_memory(sample)


def test_checkpoint_tensors_must_be_stored_whole(tmp_path: Path) -> None:
    check_tensor_storage({"w": torch.zeros(4, 4)[:2], "b": [torch.ones(3)]}, "ok.pt")  # views within storage: fine
    with pytest.raises(UserError, match=r"tensor of shape \[1000000, 1000000\] .* share 4 stored bytes"):
        check_tensor_storage({"model": {"w": torch.zeros(1).expand(10**6, 10**6)}}, "bomb.pt")


def test_the_memory_limit_flag(capsys: pytest.CaptureFixture[str], tiny_ckpt: Path) -> None:
    try:
        assert cli.main(["export", str(tiny_ckpt), "--memory-limit", "0.0001", "--quiet"]) == 2
        assert "more than the limit given with --memory-limit" in capsys.readouterr().err
        assert cli.main(["export", str(tiny_ckpt), "--memory-limit", "-3", "--quiet"]) == 2
        assert "is not a memory size" in capsys.readouterr().err
    finally:
        set_memory_limit(None)


# ---- the family ----------------------------------------------------------------------------------------
BASE = preset("tiny").to_dict()
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.floats(), st.integers(-2, 2),
                 st.sampled_from([10**5000, 2**63, -(10**9), 1e5, [], {}, [[1, 2]], "x" * 100]))
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "image_size": st.one_of(st.lists(st.sampled_from([8, 16, 32, 64, 100, 100_000, 16_384, 0, -8]), max_size=3),
                            st.tuples(st.integers(-10, 70_000), st.integers(-10, 70_000)).map(list)),
    "patch_size": st.sampled_from([1, 2, 4, 8, 16, 0, -1, 3, 1024, 4096]),
    "embed_dim": st.one_of(st.sampled_from([8, 16, 32, 64, 33, 0, 10**6, 65_536]), st.integers(-5, 128)),
    "depth": st.one_of(st.sampled_from([1, 2, 4, 6, 0, 1024, 10**7]), st.integers(-2, 12)),
    "num_heads": st.one_of(st.sampled_from([1, 2, 4, 0, 3, 64, 10**6]), st.integers(-2, 8)),
    "mlp_ratio": st.one_of(st.floats(), st.sampled_from([4.0, 1, 0.001, 64, 65, 1e9])),
    "pause_after": st.lists(st.integers(-2, 12), max_size=5),
    "decoder": st.sampled_from(["linear", "mask_transformer", "fpn", ""]),
    "decoder_depth": st.sampled_from([1, 2, 0, 64, 65, 10**6]),
    "decoder_dim": st.sampled_from([0, 16, 32, 33, 10**6]),
    "decoder_heads": st.sampled_from([0, 1, 2, 3, 10**6]),
    "class_names": st.one_of(st.lists(st.text(max_size=3), max_size=12), st.integers(2, 10).map(
        lambda n: [f"c{i}" for i in range(n)])),
    "palette": st.lists(st.lists(st.integers(-1, 256), min_size=3, max_size=3), max_size=12),
    "mean": st.lists(st.floats(), max_size=4), "std": st.lists(st.floats(), max_size=4),
    "norm_eps": st.one_of(st.floats(), st.sampled_from([1e-6, 0, 1])),
    "class_token": st.booleans(), "distilled": st.booleans(), "name": st.text(max_size=8),
    "pos_embed_interp": st.sampled_from(["bicubic", "bilinear", "nearest"]),
    "extra_field": st.integers(),
}


@st.composite
def configs(draw: st.DrawFn) -> Any:
    """Mostly the tiny config with 1-4 fields changed (to valid, wrong or hostile values), sometimes not a mapping."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(junk, st.lists(junk, max_size=3)))
    d = dict(BASE)
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=4, unique=True)):
        d[name] = draw(st.one_of(FIELD_VALUES[name], junk) if draw(st.integers(0, 4)) == 0 else FIELD_VALUES[name])
    if "palette" not in d or d["palette"] == BASE["palette"]:  # follow the class count, or most configs fail there
        n = len(d["class_names"]) if isinstance(d.get("class_names"), list) else 10
        d["palette"] = [[i % 256, 0, 0] for i in range(n)]
    return d


def accepted(raw: Any) -> ModelConfig | None:
    """The validation layer: a config, or None when refused with a one-line UserError. Anything else fails."""
    t0 = time.perf_counter()
    try:
        with memory_cap(CAP):
            cfg = ModelConfig.from_dict(raw)
            check_model_memory(cfg)
    except UserError as e:
        assert str(e) and "\n" not in str(e)
        return None
    finally:
        assert time.perf_counter() - t0 < CASE_SECONDS
    h, w = cfg.image_size
    assert h % cfg.patch_size == 0 and w % cfg.patch_size == 0 and cfg.embed_dim % cfg.num_heads == 0
    assert all(0 < p < cfg.depth for p in cfg.pause_after) and len(cfg.palette) == cfg.num_classes >= 2
    return cfg


@settings(max_examples=1800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=configs(), build=st.integers(0, 7))
def test_any_config_is_taken_or_refused_in_one_line(raw: Any, build: int) -> None:
    cfg = accepted(raw)
    if cfg is not None and build == 0 and forward_bytes(vit_shape(cfg)) < 16 << 20:  # one in 8 is built (~20 ms)
        with memory_cap(CAP):
            PausingSegmenter(cfg)


@pytest.fixture(scope="module")
def tiny_state(tiny_ckpt: Path) -> dict[str, Any]:
    return torch.load(tiny_ckpt, weights_only=True)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=configs(), via=st.sampled_from(["checkpoint", "json"]))
def test_any_config_through_the_loaders(tiny_state: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
                                        capsys: pytest.CaptureFixture[str], raw: Any, via: str) -> None:
    """The same configs through `export CKPT` (a checkpoint's config) and `train --config` (a JSON file), in-process;
    the work after every check is cut short. Taken exactly when the validation layer takes them (and, for a
    checkpoint, when the tiny model's weights fit)."""
    import paumer_edge.export.exporter as exporter
    import paumer_edge.training as train

    folder = tmp_path_factory.mktemp("cfg")
    if via == "checkpoint":
        path = folder / "c.pt"
        torch.save({**tiny_state, "config": raw}, path)
        argv = ["export", str(path), "-o", str(folder / "b.paumer"), "--quiet"]
    else:
        path = folder / "c.json"
        try:
            path.write_text(json.dumps(raw))
        except (ValueError, TypeError):  # not JSON at all (NaN is; a 5000-digit int is not)
            return
        argv = ["train", "--config", str(path), "--out", str(folder / "run"), "--quiet"]

    capsys.readouterr()
    code, elapsed = main_until(argv, [(exporter, "_graphs"), (train, "train")], CAP)
    assert elapsed < CASE_SECONDS
    err = capsys.readouterr().err
    cfg = accepted(raw)
    if code is None:
        assert cfg is not None, raw
        return
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[-2000:]
    if via == "checkpoint" and cfg is not None and cfg.to_dict() == BASE:
        pytest.fail(f"the tiny model's own config was refused: {err}")


def test_the_tiny_checkpoint_still_loads(tiny_state: dict[str, Any]) -> None:
    model = model_from_checkpoint(tiny_state)
    assert model.cfg == preset("tiny") or model.cfg.name == "tiny"
