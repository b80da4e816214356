"""The peers in the same stack: DToP's early exit (a selector + early-exit graphs), ToMe and PRO-SCALE graphs,
each against the PyTorch model it wraps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from paumer_edge import UserError
from paumer_edge.checkpoint import load_model
from paumer_edge.core.errors import PolicyError
from paumer_edge.core.exits import EarlyExit, early_exit, exit_mask
from paumer_edge.data.streets import derive_seed, street_scene
from paumer_edge.export.peer_graphs import PeerOptions, parse_peers
from paumer_edge.model.merging import max_merge, merge, merged_counts, merged_forward
from paumer_edge.model.progressive import progressive_forward
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.bench import full_graph_reference
from paumer_edge.runtime.bundle import load_bundle
from paumer_edge.runtime.preprocess import labels_to_frame, preprocess


def logp_of(probs: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray(probs, np.float32))[None]


def test_exit_mask_keeps_the_most_confident_tokens_of_each_class_as_context() -> None:
    # class 0: four confident tokens, class 1: one, token 5 below the threshold
    logp = logp_of([[0.97, 0.03], [0.99, 0.01], [0.95, 0.05], [0.98, 0.02], [0.04, 0.96], [0.6, 0.4]])
    assert exit_mask(logp, 0.9, keep_per_class=0).tolist() == [[True, True, True, True, True, False]]
    # the 2 most confident of class 0 (tokens 1 and 3) stay, and class 1's only one
    assert exit_mask(logp, 0.9, keep_per_class=2).tolist() == [[True, False, True, False, False, False]]
    assert not exit_mask(logp, 0.999).any() and not exit_mask(logp, 0.9, keep_per_class=5).any()


def test_early_exit_selects_the_rest_and_remembers_what_exited() -> None:
    cost = load_model().cost_model()
    sel = EarlyExit(cost, 0.9, keep_per_class=0)
    positions = np.array([[3, 7, 9, 11, 20, 30]], np.int64)
    sel.see_head(0, positions, logp_of([[0.97, 0.03], [0.5, 0.5], [0.95, 0.05], [0.6, 0.4], [0.04, 0.96],
                                        [0.55, 0.45]]))
    kept = sel.select(0, np.zeros((1, 6), np.float32))
    assert kept is not None and kept.tolist() == [[1, 3, 5]]  # within the active set: positions 7, 11, 30
    canvas, exited = sel.exit_predictions()  # type: ignore[misc]
    assert np.flatnonzero(exited[0]).tolist() == [3, 9, 20]
    assert np.allclose(np.exp(canvas[0, 20]), [0.04, 0.96])
    with pytest.raises(PolicyError, match="exit confidence 0 is out of range"):
        EarlyExit(cost, 0)
    with pytest.raises(PolicyError, match="exit confidence 1.5 is out of range"):
        early_exit(1.5)  # the selector factory plans and compare use refuses at once, not at the first frame
    made = early_exit(0.9)(cost)
    assert isinstance(made, EarlyExit) and made.confidence == 0.9 and made.keep_per_class == 5
    with pytest.raises(PolicyError, match="needs the heads' class predictions"):
        EarlyExit(cost, 0.5).select(0, np.zeros((1, 6), np.float32))


def test_in_a_batch_every_image_keeps_as_many_tokens_as_the_one_keeping_most() -> None:
    sel = EarlyExit(load_model().cost_model(), 0.9, keep_per_class=0)
    probs = np.array([[[0.99, 0.01]] * 4, [[0.99, 0.01], [0.95, 0.05], [0.5, 0.5], [0.5, 0.5]]], np.float32)
    sel.see_head(0, np.array([[0, 1, 2, 3], [0, 1, 2, 3]], np.int64), np.log(probs))
    kept = sel.select(0, np.zeros((2, 4), np.float32))
    # image 1 keeps 2 tokens; image 0 keeps its 2 least confident exit candidates (ties: lower position)
    assert kept is not None and kept.tolist() == [[0, 1], [2, 3]]
    assert sel.exit_predictions()[1][:, :4].tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]  # type: ignore[index]


def street(n: int, size: tuple[int, int] = (64, 128)) -> list[np.ndarray]:
    return [street_scene(derive_seed(41, i), size)[0] for i in range(n)]


def normalised(frame: np.ndarray, bundle: Path) -> torch.Tensor:
    m = load_bundle(bundle).model
    return torch.from_numpy(preprocess(frame, m.input_size, m.mean, m.std)[0][None])


@torch.no_grad()
def median_confidence(model: torch.nn.Module, x: torch.Tensor) -> float:
    """A confidence half the tokens pass at the heads (the tiny model's heads are far from sure)."""
    probe = EarlyExit(model.cost_model(), 0.9999)  # runs every head, exits nothing
    model(x, selector=probe)
    return float(np.median(np.exp(probe.exit_predictions()[0].max(-1))))  # type: ignore[index]


@torch.no_grad()
def test_pytorch_early_exit_uses_the_exit_predictions(tiny_ckpt: Path) -> None:
    model = load_model(tiny_ckpt)
    x = torch.from_numpy(np.stack([preprocess(f, (32, 64), model.cfg.mean, model.cfg.std)[0] for f in street(2)]))
    plain = model(x).logits
    assert torch.equal(model(x, selector=EarlyExit(model.cost_model(), 1.0)).logits, plain)
    sel = EarlyExit(model.cost_model(), median_confidence(model, x), keep_per_class=1)
    out = model(x, selector=sel)
    canvas, exited = sel.exit_predictions()  # type: ignore[misc]
    assert out.counts[-1] < model.cfg.num_patches and exited.any()
    # the decoder takes the exit predictions at patch level: all exited -> the heads' scores, upsampled
    tokens = model.embed(x)
    logp, ones = torch.from_numpy(canvas), torch.ones(2, model.cfg.num_patches)
    grid_scores = logp.transpose(1, 2).reshape(2, -1, *model.cfg.grid)
    expect = torch.nn.functional.interpolate(grid_scores, size=(32, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(model.decode(tokens, (32, 64), (logp, ones)), expect, atol=1e-5)
    none = model.decode(tokens, (32, 64), (logp, torch.zeros_like(ones)))
    assert torch.equal(none.argmax(1), model.decode(tokens, (32, 64)).argmax(1))


def test_runtime_early_exit_matches_pytorch(tiny_peers: Path, tiny_ckpt: Path) -> None:
    model = load_model(tiny_ckpt)
    bundle = load_bundle(tiny_peers)
    assert bundle.variant("dtop").manifest.kind == "early-exit"
    frames = street(3)
    p0 = median_confidence(model, torch.cat([normalised(f, tiny_peers) for f in frames]))
    exited = 0
    for p in (1.0, p0):
        pipe = Pipeline(bundle.variant("dtop"), cost="macs", selector=lambda c, p=p: EarlyExit(c, p, 1))
        for frame in frames:
            result = pipe(frame)
            with torch.no_grad():
                out = model(normalised(frame, tiny_peers), selector=EarlyExit(model.cost_model(), p, 1))
            _, placement = preprocess(frame, (32, 64), model.cfg.mean, model.cfg.std)
            expect = labels_to_frame(out.logits.argmax(1)[0].numpy().astype(np.uint8), placement)
            assert result.stats.counts == list(out.counts)
            assert (result.labels == expect).mean() > 0.999
            exited += model.cfg.num_patches - out.counts[-1]
    assert exited > 0
    with pytest.raises(PolicyError, match="has none \\(export with `--peers dtop`"):
        Pipeline(bundle, cost="macs", plans=False, selector=lambda c: EarlyExit(c, 0.5))(street(1)[0])


@torch.no_grad()
def test_token_merging_bookkeeping_and_its_limits(tiny_ckpt: Path) -> None:
    model = load_model(tiny_ckpt)
    x = torch.randn(2, 3, 32, 64)
    assert torch.allclose(merged_forward(model, x, 0), model(x).logits, atol=1e-5)
    tokens = torch.randn(2, 33, 8)
    size = torch.ones(2, 33, 1)
    where = torch.arange(32).expand(2, -1)
    out = merge(tokens, size, where, tokens, 5, extra=1)
    assert out.tokens.shape == (2, 28, 8) and torch.equal(out.size.sum(1), torch.full((2, 1), 33.0))
    counted = torch.zeros(2, 27).scatter_add(1, out.where, torch.ones(2, 32))
    assert torch.equal(counted, out.size[:, 1:, 0])  # every patch points at a token that counts it
    assert merged_counts(32, 4, 6) == [26, 20, 14, 8] and max_merge(32, 4) == 6
    with pytest.raises(UserError, match="ToMe merges at most 6 tokens per block"):
        merged_forward(model, x, 7)


def parity(bundle: Path, graph: str, reference: torch.Tensor, frame: np.ndarray) -> float:
    pipe = Pipeline(bundle, cost="macs", plans=False)
    got = full_graph_reference(pipe, graph)(frame)
    _, placement = preprocess(frame, pipe.info.input_size, pipe.info.mean, pipe.info.std)
    return float((got == labels_to_frame(reference.argmax(1)[0].numpy().astype(np.uint8), placement)).mean())


@torch.no_grad()
def test_merging_and_coarse_graphs_match_pytorch(tiny_peers: Path, tiny_ckpt: Path) -> None:
    model = load_model(tiny_ckpt)
    for frame in street(2):
        x = normalised(frame, tiny_peers)
        assert parity(tiny_peers, "tome_r2", merged_forward(model, x, 2), frame) > 0.999
        assert parity(tiny_peers, "proscale_b1", progressive_forward(model, x, 1), frame) > 0.999


def test_merging_graph_needs_no_scatter_with_reduction(tiny_peers: Path) -> None:
    """TensorRT's scatter layer has no reduction (ScatterND with one is refused by its ONNX parser, ScatterElements
    with one goes to a plugin): the merge is a one-hot matrix product instead."""
    graph = onnx.load(str(tiny_peers / "tome_r2.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"TopK", "MatMul", "GatherElements"} <= ops
    for node in graph.node:
        if node.op_type.startswith("Scatter"):
            reduction = [a.s.decode() for a in node.attribute if a.name == "reduction"]
            assert reduction in ([], ["none"]), f"{node.name} scatters with reduction {reduction}"


def test_peer_options_are_checked(tiny_ckpt: Path) -> None:
    assert parse_peers("dtop, tome:8,tome:16,proscale:2") == PeerOptions(True, (8, 16), (2,))
    assert parse_peers(None) == PeerOptions() and not PeerOptions().any
    with pytest.raises(UserError, match="'tome' is not a peer graph"):
        parse_peers("tome")
    model = load_model(tiny_ckpt)
    with pytest.raises(UserError, match=r"ToMe r \[9\]: merge between 1 and 6 tokens per block"):
        PeerOptions(merge=(9,)).validate(model)
    with pytest.raises(UserError, match="coarse blocks 5 must be between 1 and the depth 4"):
        PeerOptions(coarse=(5,)).validate(model)
