"""The cost model in both forms: MACs from the config, and a measured latency profile of a device."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paumer_edge.config import preset
from paumer_edge.core.cost import CostModel, fit_latency
from paumer_edge.core.pausing import counts_for_ratio, plan_budget

SAMPLE = CostModel.from_config(preset("sample"))
# shaped like a real CPU profile: stage 0 fixed, later stages with a per-call offset, linear and quadratic parts
PROFILE = SAMPLE.with_latency([(6.7, 0, 0), (0.6, 0.0103, 1.27e-5), (0.7, 0.0079, 1.73e-5), (0.73, 0.0115, 2.26e-5)],
                              decoder_ms=0.8, device="test cpu")


def test_fit_recovers_a_polynomial_and_never_goes_negative() -> None:
    ns = [32, 64, 128, 256, 384, 512]
    a, b, c = fit_latency(ns, [0.5 + 0.01 * n + 2e-5 * n * n for n in ns])
    assert (a, b, c) == pytest.approx((0.5, 0.01, 2e-5), rel=1e-6)
    # timings that fall with n (noise) would fit a negative slope: the fit keeps every term >= 0
    fit = fit_latency(ns, [5.0, 4.8, 4.9, 4.7, 4.75, 4.6])
    assert min(fit) >= 0 and fit[0] == pytest.approx(4.79, abs=0.05)
    with pytest.raises(ValueError):
        fit_latency([1, 2], [1.0])


def test_measured_cost_is_the_profile_and_budget_one_is_all_of_it() -> None:
    assert PROFILE.measured and not SAMPLE.measured and PROFILE.unit == "ms"
    assert PROFILE.full_cost == pytest.approx(6.7 + sum(a + b * 512 + c * 512**2 for a, b, c in PROFILE.stage_ms[1:]))
    assert PROFILE.decoder_cost == 0.8 and PROFILE.macs == SAMPLE
    assert plan_budget(PROFILE, 1.0).counts == (512,) * 4
    assert PROFILE.ideal_speedup(0.5) == pytest.approx((PROFILE.full_cost + 0.8) / (PROFILE.full_cost / 2 + 0.8))


@settings(max_examples=150, deadline=None)
@given(budget=st.floats(min_value=1e-3, max_value=1.0, allow_nan=False))
def test_a_measured_budget_is_never_overspent_unless_clamped(budget: float) -> None:
    plan = plan_budget(PROFILE, budget)
    assert PROFILE.encoder_cost(plan.counts, True) / PROFILE.full_cost == pytest.approx(plan.cost_fraction)
    cheapest = PROFILE.encoder_cost(counts_for_ratio(512, 4, 0.0), True) / PROFILE.full_cost
    if budget >= cheapest:
        assert plan.cost_fraction <= budget + 1e-12
    else:
        assert plan.clamped and plan.counts == (512, 1, 1, 1)


def test_where_attention_is_cheap_a_measured_budget_keeps_fewer_tokens() -> None:
    # the MAC model charges attention 40% of a block at 512 tokens; this profile about 25%
    assert sum(plan_budget(PROFILE, 0.5).counts) < sum(plan_budget(SAMPLE, 0.5).counts)


def test_profiles_round_trip_and_mac_models_keep_their_manifest_form() -> None:
    assert CostModel.from_dict(PROFILE.to_dict()) == PROFILE
    assert "stage_ms" not in SAMPLE.to_dict() and CostModel.from_dict(SAMPLE.to_dict()) == SAMPLE


@pytest.mark.parametrize("polys", [[(1, 0, 0)] * 3, [(1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 1, 0)], [(0, 0, 0)] * 4])
def test_a_bad_profile_is_refused(polys: list) -> None:
    with pytest.raises(ValueError):
        SAMPLE.with_latency(polys, 0.0, "x")
