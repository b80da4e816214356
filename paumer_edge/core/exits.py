"""Early exit of confident tokens at the pausing heads: DToP's rule as a token selector.

DToP (Tang et al., "Dynamic Token Pruning in Plain Vision Transformers for Semantic Segmentation", ICCV 2023;
github.com/zbwxp/Dynamic-Token-Pruning) splits a ViT segmenter at its auxiliary heads. At each head a token
whose top class probability exceeds `threshold` (p0, 0.9 or 0.95 in the paper) *exits*: its prediction there
is final, and it takes no further part in the encoder. The `keep_per_class` most confident of those tokens of
each class stay in, so the tokens that go on still see every class as context. The labels are the exited
tokens' head predictions where they exited and the decoder's prediction everywhere else.

So DToP differs from PAUMER's pausing in two places, both here: which tokens stop (a confidence threshold and
per-class context tokens, instead of the most certain ones within a budget), and what a stopped token's label
is (its head's prediction, instead of the decoder's reading of its kept features). It runs on the same heads
and stages: the stage graphs also emit the heads' log-probabilities, and the decoder takes the exit
predictions (`export --peers dtop`); the PyTorch model runs the very same selector.

Plain numpy, no torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .cost import CostModel
from .errors import PolicyError
from .knobs import check_confidence
from .pausing import TokenSelector

__all__ = ["DTOP_KEEP_PER_CLASS", "EarlyExit", "check_confidence", "early_exit", "exit_mask"]

DTOP_KEEP_PER_CLASS = 5  # the official code keeps the 5 most confident exit candidates of each class


def exit_mask(logp: np.ndarray, threshold: float, keep_per_class: int = DTOP_KEEP_PER_CLASS) -> np.ndarray:
    """Which active tokens exit, [B, n] bool, from their head's log-probabilities [B, n, K].

    A token exits when its top class probability is above `threshold`, unless it is among the
    `keep_per_class` most confident such tokens of its class (ties: the lower position stays)."""
    logp = np.asarray(logp, np.float32)
    conf = np.exp(logp.max(-1))
    cls = logp.argmax(-1)
    out = np.nan_to_num(conf, nan=0.0) > threshold
    if keep_per_class <= 0:
        return out
    for b in range(out.shape[0]):
        idx = np.flatnonzero(out[b])
        if idx.size == 0:
            continue
        order = idx[np.lexsort((idx, -conf[b, idx], cls[b, idx]))]  # by class, most confident first
        classes = cls[b, order]
        first = np.searchsorted(classes, classes, side="left")  # where each class's run starts
        stay = order[np.arange(order.size) - first < keep_per_class]
        out[b, stay] = False
    return out


class EarlyExit(TokenSelector):
    """DToP's early exit at the pausing heads (see the module docstring). In a batch every image keeps as many
    tokens as the image that keeps the most: the others keep their least confident exit candidates too."""

    wants_head_scores = True

    def __init__(self, cost: CostModel, threshold: float, keep_per_class: int = DTOP_KEEP_PER_CLASS):
        self.cost = cost
        self.confidence = check_confidence(threshold)
        if keep_per_class < 0:
            raise PolicyError(f"keep_per_class {keep_per_class} must be 0 or more")
        self.keep_per_class = int(keep_per_class)
        self.budget, self.threshold = 1.0, None
        self._logp: np.ndarray | None = None
        self._positions: np.ndarray | None = None
        self._canvas: np.ndarray | None = None  # [B, N, K] each patch's latest head log-probabilities
        self._exited: np.ndarray | None = None  # [B, N] 1 where the patch exited

    @property
    def needs_entropy(self) -> bool:
        return self.confidence < 1.0

    def see_head(self, point: int, positions: np.ndarray, logp: np.ndarray) -> None:
        logp = np.asarray(logp, np.float32)
        b, _, k = logp.shape
        if self._canvas is None or self._canvas.shape[0] != b or self._canvas.shape[2] != k:
            self._canvas = np.zeros((b, self.cost.num_patches, k), np.float32)
            self._exited = np.zeros((b, self.cost.num_patches), np.float32)
        np.put_along_axis(self._canvas, positions[..., None], logp, axis=1)
        self._logp, self._positions = logp, positions

    def count(self, point: int, entropy: np.ndarray) -> int:
        if self._logp is None:
            raise PolicyError("early exit needs the heads' class predictions: run it on graphs exported with "
                              "`--peers dtop` (their stages emit head_logp)")
        leaving = exit_mask(self._logp, self.confidence, self.keep_per_class)
        return max(1, int((~leaving).sum(-1).max(initial=0)))

    def select(self, point: int, entropy: np.ndarray) -> np.ndarray | None:
        if self._logp is None or self._positions is None or self._exited is None:
            raise PolicyError("early exit needs the heads' class predictions: run it on graphs exported with "
                              "`--peers dtop` (their stages emit head_logp)")
        leaving = exit_mask(self._logp, self.confidence, self.keep_per_class)
        n = leaving.shape[1]
        keep = max(1, int((~leaving).sum(-1).max(initial=0)))
        if keep >= n:
            return None
        conf = np.exp(self._logp.max(-1))
        priority = np.where(leaving, conf, -1.0)  # the tokens that stay first, then the least confident leavers
        chosen = np.sort(np.argsort(priority, axis=1, kind="stable")[:, :keep], axis=1).astype(np.int64)
        gone = np.ones_like(leaving)
        np.put_along_axis(gone, chosen, False, axis=1)
        np.put_along_axis(self._exited, self._positions, gone.astype(np.float32), axis=1)
        return chosen

    def exit_predictions(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self._canvas is None or self._exited is None:
            return None
        return self._canvas, self._exited


def early_exit(confidence: float) -> Callable[[CostModel], EarlyExit]:
    """DToP at one exit confidence as a pipeline's selector factory (`Pipeline(..., selector=early_exit(0.95))`)."""
    check_confidence(confidence)
    return lambda cost: EarlyExit(cost, confidence)
