"""The pausing policy: budget -> counts (properties), thresholds, token selection, and no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paumer_edge.config import PRESETS, preset
from paumer_edge.core.pausing import (
    CostModel,
    Pauser,
    PausingPolicy,
    PolicyError,
    counts_for_ratio,
    plan_budget,
    select_tokens,
    threshold_count,
)

COSTS = [CostModel.from_config(cfg) for cfg in PRESETS.values()]
budgets = st.floats(min_value=1e-4, max_value=1.0, allow_nan=False)


def min_fraction(cost: CostModel) -> float:
    counts = counts_for_ratio(cost.num_patches, cost.num_stages, 0.0)
    return cost.encoder_cost(counts, pausing=True) / cost.full_cost


@settings(max_examples=200, deadline=None)
@given(cost=st.sampled_from(COSTS), budget=budgets)
def test_cost_never_above_budget_unless_clamped(cost: CostModel, budget: float) -> None:
    plan = plan_budget(cost, budget)
    modelled = cost.encoder_cost(plan.counts, pausing=plan.pauses) / cost.full_cost
    assert modelled == pytest.approx(plan.cost_fraction)
    if budget >= min_fraction(cost):
        assert plan.cost_fraction <= budget + 1e-12
        assert not plan.clamped
    else:  # clamped to the cheapest plan, and says so
        assert plan.clamped
        assert plan.counts[1:] == (1,) * (cost.num_stages - 1)
        assert plan.cost_fraction == pytest.approx(min_fraction(cost))


@settings(max_examples=200, deadline=None)
@given(cost=st.sampled_from(COSTS), a=budgets, b=budgets)
def test_monotone_in_budget(cost: CostModel, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    p, q = plan_budget(cost, lo), plan_budget(cost, hi)
    assert p.keep_ratio <= q.keep_ratio
    assert all(x <= y for x, y in zip(p.counts, q.counts))
    assert p.cost_fraction <= q.cost_fraction + 1e-12


@pytest.mark.parametrize("cost", COSTS, ids=list(PRESETS))
def test_budget_one_is_identity(cost: CostModel) -> None:
    plan = plan_budget(cost, 1.0)
    assert plan.counts == (cost.num_patches,) * cost.num_stages
    assert plan.keep_ratio == 1.0 and plan.cost_fraction == 1.0 and not plan.pauses
    assert not Pauser(cost, PausingPolicy(1.0)).needs_entropy


def test_counts_shrink_geometrically_and_never_below_one() -> None:
    assert counts_for_ratio(512, 4, 0.5) == (512, 256, 128, 64)
    assert counts_for_ratio(10, 4, 0.25) == (10, 3, 1, 1)  # 2.5 rounds half up
    assert counts_for_ratio(7, 3, 0.0) == (7, 1, 1)


def test_sample_budget_half_leaves_a_meaningful_ratio() -> None:
    cost = CostModel.from_config(preset("sample"))
    assert cost.encoder_share >= 0.8
    plan = plan_budget(cost, 0.5)
    assert 0.5 < plan.keep_ratio < 0.9
    assert plan_budget(cost, 0.25).pauses and not plan_budget(cost, 0.25).clamped


def test_attention_makes_cost_superlinear() -> None:
    cost = CostModel.from_config(preset("sample"))
    assert cost.block_macs(512) > 2 * cost.block_macs(256)


def test_cost_model_round_trips() -> None:
    cost = COSTS[1]
    assert CostModel.from_dict(cost.to_dict()) == cost


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_budget_out_of_range_is_a_clear_error(bad: float) -> None:
    with pytest.raises(PolicyError, match="budget .* out of range"):
        PausingPolicy(budget=bad)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_threshold_out_of_range_is_a_clear_error(bad: float) -> None:
    with pytest.raises(PolicyError, match="threshold .* out of range"):
        PausingPolicy(threshold=bad)


def test_threshold_count_is_the_largest_image_need() -> None:
    ent = np.array([[0.1, 0.9, 0.8, 0.2], [0.7, 0.7, 0.7, 0.0]], np.float32)
    assert threshold_count(ent, 0.75) == 2  # image 0 needs 2, image 1 none
    assert threshold_count(ent, 0.5) == 3
    assert threshold_count(ent, 0.95) == 1  # never fewer than one
    assert threshold_count(ent, 0.0) == 4


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 45), st.integers(0, 2**31 - 1))
def test_selection_keeps_the_most_uncertain(b: int, n: int, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ent = rng.choice([0.0, 0.25, 0.5, 1.0], size=(b, n)).astype(np.float32)  # many ties
    idx = select_tokens(ent, count)
    k = min(count, n)
    assert idx.shape == (b, k) and idx.dtype == np.int64
    for row, sel in zip(ent, idx):
        assert np.all(np.diff(sel) > 0)  # ascending, unique
        rest = np.setdiff1d(np.arange(n), sel)
        if len(rest):
            assert row[sel].min() >= row[rest].max()
            # ties at the boundary go to the lower position
            edge = row[sel].min()
            tied_out = rest[row[rest] == edge]
            tied_in = sel[row[sel] == edge]
            if len(tied_out) and len(tied_in):
                assert tied_in.max() < tied_out.min()


def test_selection_treats_nan_as_uncertain() -> None:
    ent = np.array([[0.1, np.nan, 0.9, 0.0]], np.float32)
    assert select_tokens(ent, 2).tolist() == [[1, 2]]


def test_pauser_combines_budget_and_threshold() -> None:
    cost = CostModel.from_config(preset("sample"))
    ent = np.zeros((2, 512), np.float32)
    ent[:, :10] = 0.9
    both = Pauser(cost, PausingPolicy(budget=0.5, threshold=0.5))
    assert both.count(0, ent) == 10  # the threshold is stricter here
    loose = Pauser(cost, PausingPolicy(budget=0.5, threshold=0.0))
    assert loose.count(0, ent) == plan_budget(cost, 0.5).counts[1]
    assert Pauser(cost, PausingPolicy(1.0)).select(0, ent) is None


def test_policy_module_does_not_import_torch() -> None:
    code = "import sys, paumer_edge.core.pausing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_when_the_heads_cost_more_than_pausing_saves_nothing_pauses() -> None:
    # 1000 classes on 4 patches of width 8: a pausing head costs more than the blocks it would skip
    cost = CostModel(embed_dim=8, mlp_ratio=4.0, num_patches=4, extra_tokens=0, stage_blocks=(1, 1),
                     num_classes=1000, patch_size=2)
    assert cost.encoder_cost([4, 1], pausing=True) > cost.full_cost
    plan = plan_budget(cost, 0.5)
    assert plan.counts == (4, 4) and not plan.pauses and plan.cost_fraction == 1.0 and plan.clamped
