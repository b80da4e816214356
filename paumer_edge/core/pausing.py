"""The pausing policy: the one place where a budget or a threshold becomes token counts and indices.

Plain Python + numpy, no torch: the PyTorch model and the torch-free runtime both call this module,
so they can never disagree about which tokens pause.

Vocabulary:
- stage k runs the blocks between pausing point k-1 and k; stage 0 always sees every patch token;
- a *pausing point* sits after stage k (k = 0 .. S-2); there an auxiliary head gives every active
  token a normalised entropy in [0, 1] and the policy keeps the most uncertain ones;
- counts are *patch* tokens; a class token, if any, is always active and never counted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .cost import CostModel
from .errors import PolicyError
from .knobs import check_budget, check_target_ms, check_threshold  # the knobs' one rule; re-exported for callers

__all__ = ["BudgetPlan", "CostModel", "FixedCounts", "Pauser", "PausingPolicy", "PolicyError", "TokenSelector",
           "check_budget", "check_target_ms", "check_threshold", "counts_for_ratio", "plan_budget", "select_tokens",
           "threshold_count"]


# ---------------------------------------------------------------------------------------------
# Budget -> counts
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetPlan:
    """Token counts per stage for a compute budget."""

    requested: float  # the budget asked for
    keep_ratio: float  # r: n_{k+1} = round(r * n_k) at every pausing point
    counts: tuple[int, ...]  # patch tokens active in each stage
    cost_fraction: float  # modelled cost / full cost: the effective budget

    @property
    def clamped(self) -> bool:
        """True when the budget was below the cheapest possible plan."""
        return self.cost_fraction > self.requested + 1e-12

    @property
    def pauses(self) -> bool:
        return self.keep_ratio < 1.0


def counts_for_ratio(num_patches: int, num_stages: int, ratio: float) -> tuple[int, ...]:
    """n_0 = all patches, n_{k+1} = round(ratio * n_k) (half up), never fewer than 1."""
    counts = [num_patches]
    for _ in range(num_stages - 1):
        counts.append(max(1, math.floor(ratio * counts[-1] + 0.5)))
    return tuple(counts)


@lru_cache(maxsize=4096)
def plan_budget(cost: CostModel, budget: float) -> BudgetPlan:
    """The largest keep ratio whose modelled encoder cost does not exceed `budget` x full cost.

    Budget 1 keeps every token (no pausing heads run). A budget below the cheapest plan (stage 0 on
    all tokens, one token after) is clamped to it; `cost_fraction` reports what is really spent.
    """
    budget = check_budget(budget)
    full = cost.full_cost
    s, p = cost.num_stages, cost.num_patches
    if budget >= 1.0 or s == 1:
        return BudgetPlan(budget, 1.0, (p,) * s, 1.0)

    def frac(r: float) -> float:
        return cost.encoder_cost(counts_for_ratio(p, s, r), pausing=True) / full

    # For r < 1 the cost is non-decreasing in r (counts are), so bisect for the supremum.
    lo, hi = 0.0, 1.0
    if frac(lo) > budget:
        cheapest = frac(0.0)
        if cheapest >= 1.0:  # the pausing heads cost more than pausing can save: the unpaused network is cheapest
            return BudgetPlan(budget, 1.0, (p,) * s, 1.0)
        return BudgetPlan(budget, 0.0, counts_for_ratio(p, s, 0.0), cheapest)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if frac(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return BudgetPlan(budget, lo, counts_for_ratio(p, s, lo), frac(lo))


# ---------------------------------------------------------------------------------------------
# Entropies -> indices
# ---------------------------------------------------------------------------------------------
def _float32(entropy: np.ndarray) -> np.ndarray:
    """Entropies as float32 (what both frameworks compute); beyond float32's range -> inf, quietly."""
    ent = np.asarray(entropy)
    if ent.dtype != np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            ent = ent.astype(np.float32)
    return ent


def threshold_count(entropy: np.ndarray, threshold: float, minimum: int = 1) -> int:
    """Tokens to keep so that every image keeps all its tokens with entropy >= threshold (at least `minimum`)."""
    ent = np.nan_to_num(_float32(entropy), nan=1.0)
    per_image = (ent >= threshold).sum(axis=-1)
    return max(minimum, int(per_image.max(initial=0)))


def select_tokens(entropy: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` most uncertain tokens of each image, ascending, int64 [B, count].

    Ties go to the lower position (stable sort), so the choice is deterministic; NaN counts as
    maximally uncertain, so a broken entropy never pauses a token.
    """
    ent = _float32(entropy)
    if ent.ndim != 2:
        raise PolicyError(f"entropy must be [batch, tokens], got shape {ent.shape}")
    nan = np.isnan(ent)
    if nan.any():
        ent = np.where(nan, np.inf, ent)
    count = int(min(max(count, 1), ent.shape[1]))
    # runs between two stages on every frame: as few numpy calls as possible
    order = np.argsort(-ent, axis=1, kind="stable")[:, :count]
    order.sort(axis=1)
    return order.astype(np.int64, copy=False)


@dataclass(frozen=True)
class PausingPolicy:
    """The run-time knobs: a compute budget, an entropy threshold, or both (the stricter wins)."""

    budget: float = 1.0
    threshold: float | None = None

    def __post_init__(self) -> None:
        check_budget(self.budget)
        if self.threshold is not None:
            check_threshold(self.threshold)


class TokenSelector:
    """A way of choosing the active tokens at each pausing point, bound to a cost model.

    Every policy (a budget and/or threshold, fixed counts for timing and checks, and the ones to come) is
    a selector: the model's forward and the runtime's `StagedRunner` call `select` between stages and
    `spent` at the end, and nothing else, so they cannot disagree.
    """

    cost: CostModel
    budget: float = 1.0  # what to report as the budget asked for
    threshold: float | None = None

    @property
    def needs_entropy(self) -> bool:
        """Whether any token can pause (otherwise the pausing heads need not run at all)."""
        raise NotImplementedError

    def count(self, point: int, entropy: np.ndarray) -> int:
        """Tokens to keep after pausing point `point`, given the active tokens' entropies [B, n]."""
        raise NotImplementedError

    def select(self, point: int, entropy: np.ndarray) -> np.ndarray | None:
        """Positions (within the active set) of the tokens that stay active; None if all stay."""
        keep = self.count(point, entropy)
        if keep >= np.shape(entropy)[-1]:
            return None
        return select_tokens(entropy, keep)

    def spent(self, counts: list[int] | tuple[int, ...]) -> float:
        """Fraction of the full encoder's cost that a forward pass with these per-stage counts spent
        (the pausing heads are charged whenever they ran)."""
        return self.cost.encoder_cost(counts, pausing=self.needs_entropy) / self.cost.full_cost

    # Early-exit policies (DToP, `core.exits`) read the pausing heads' class predictions, not only their
    # entropy, and make the exited patches' predictions final. Pausing policies need neither.
    wants_head_scores = False

    def see_head(self, point: int, positions: np.ndarray, logp: np.ndarray) -> None:
        """The head's log-probabilities [B, n, K] at pausing point `point` for the active patches at `positions`
        [B, n]; called before `select` when `wants_head_scores`."""

    def exit_predictions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(log-probabilities [B, N, K], exited [B, N] float32 0/1) of the patches whose prediction became final
        at a head, for the decoder to use in their place; None: every patch is decoded."""
        return None


class Pauser(TokenSelector):
    """The run-time knobs bound to one model's cost model: keep the most uncertain tokens, as many as the
    budget's plan allows and the threshold asks for."""

    def __init__(self, cost: CostModel, policy: PausingPolicy):
        self.cost = cost
        self.policy = policy
        self.budget, self.threshold = policy.budget, policy.threshold
        self.plan = plan_budget(cost, policy.budget)

    @property
    def needs_entropy(self) -> bool:
        return self.plan.pauses or bool(self.policy.threshold)

    def count(self, point: int, entropy: np.ndarray) -> int:
        n = int(np.shape(entropy)[-1])
        keep = min(n, self.plan.counts[point + 1])
        if self.policy.threshold is not None:
            keep = min(keep, threshold_count(entropy, self.policy.threshold))
        return max(1, keep)


class FixedCounts(TokenSelector):
    """Exactly `counts[k]` patch tokens in stage k (the most uncertain ones): for timing the graphs at chosen
    token counts and checking them there (latency profiles, `verify`)."""

    def __init__(self, cost: CostModel, counts: tuple[int, ...] | list[int]):
        counts = tuple(int(n) for n in counts)
        if len(counts) != cost.num_stages or counts[0] != cost.num_patches or min(counts) < 1 or any(
                b > a for a, b in zip(counts, counts[1:])):
            raise PolicyError(f"fixed token counts {list(counts)} must give every one of {cost.num_stages} stages a "
                              f"count from {cost.num_patches} (stage 0) down to 1, never growing")
        self.cost, self.counts = cost, counts
        self.budget = cost.encoder_cost(counts, pausing=self.needs_entropy) / cost.full_cost

    @classmethod
    def after_stage0(cls, cost: CostModel, n: int) -> FixedCounts:
        """Every stage after the first on the same `n` tokens."""
        return cls(cost, (cost.num_patches,) + (int(n),) * (cost.num_stages - 1))

    @property
    def needs_entropy(self) -> bool:
        return min(self.counts) < self.cost.num_patches

    def count(self, point: int, entropy: np.ndarray) -> int:
        return min(int(np.shape(entropy)[-1]), self.counts[point + 1])
