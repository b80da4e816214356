"""The inputs and outputs each graph of a bundle must have, from the model section of its manifest: the staged
graphs, the decoder, the whole-image graphs (full and the peers'), early-exit graph sets and the temporal-reuse
graphs with their key/value caches. `core.schema` checks every manifest's graph specs against this.
"""

from __future__ import annotations

from . import names as peer  # the peer methods' tensor names (peer.HEAD_LOGP, ...)
from .contract import ModelInfo
from .names import (
    ACTIVE,
    CACHE,
    CACHE_ROWS,
    CONTEXT,
    DECODER,
    ENTROPY,
    FULL,
    IMAGE,
    LABELS,
    SCORES,
    TOKENS,
    TOKENS_OUT,
    reuse_stage_index,
    stage_index,
)

Expect = tuple[str, tuple[int | None, ...], str]  # name, shape (None: any size or name; -1: a named dim), dtype


def expected_io(m: ModelInfo, name: str, kind: str = "staged",
                stage_blocks: tuple[int, ...] = ()) -> tuple[list[Expect], list[Expect]] | None:
    """(inputs, outputs) a graph must have; "labels" as dtype = any of LABEL_DTYPES. None for graphs the
    runtime does not run (unknown names). Early-exit graph sets (`kind`) add the heads' log-probabilities to the
    stages' outputs and the exit predictions to the decoder's inputs; `stage_blocks` (blocks per stage, the cost
    model's) shapes the reuse graphs' caches."""
    h, w = m.input_size
    tokens: Expect = (TOKENS, (None, m.tokens, m.embed_dim), "float32")
    image: list[Expect] = [(IMAGE, (None, 3, h, w), "float32")]
    labels: Expect = (LABELS, (None, h, w), "labels")
    scores: Expect = (SCORES, (None, m.num_classes, h, w), "float32")
    exits = kind == "early-exit"
    last = m.num_stages - 1
    k = stage_index(name)
    r = reuse_stage_index(name)
    if r is not None and r < len(stage_blocks):
        return _reuse_io(m, r, stage_blocks[r], image, tokens)
    if k == 0:
        head: list[Expect] = [(peer.HEAD_LOGP, (None, m.num_patches, m.num_classes), "float32")] if exits else []
        return image, [tokens] + ([(ENTROPY, (None, m.num_patches), "float32"), *head] if last else [])
    if k is not None and 0 < k <= last:
        ins: list[Expect] = [tokens, (ACTIVE, (None, -1), "int64")]
        head = [(peer.HEAD_LOGP, (None, -1, m.num_classes), "float32")] if exits else []
        return ins, [(TOKENS_OUT, tokens[1], "float32")] + ([(ENTROPY, (None, -1), "float32"), *head]
                                                            if k < last else [])
    if name == DECODER:
        extra: list[Expect] = [(peer.EXIT_LOGP, (None, m.num_patches, m.num_classes), "float32"),
                               (peer.EXITED, (None, m.num_patches), "float32")] if exits else []
        return [tokens, *extra], [labels, scores]
    if name == FULL or peer.is_peer_graph(name):
        return image, [labels, scores]
    return None


def _reuse_io(m: ModelInfo, k: int, blocks: int, image: list[Expect],
              tokens: Expect) -> tuple[list[Expect], list[Expect]]:
    """The temporal-reuse graph of stage k (`blocks` blocks): (image,) tokens, active, context, cache -> tokens_out,
    (entropy,) cache_rows."""
    heads, dim = m.num_heads, m.embed_dim // max(m.num_heads, 1)
    ins: list[Expect] = [*(image if k == 0 else []), tokens, (ACTIVE, (None, -1), "int64"),
                         (CONTEXT, (None, -1), "int64"), (CACHE, (None, 2 * blocks, heads, m.tokens, dim), "float32")]
    outs: list[Expect] = [(TOKENS_OUT, tokens[1], "float32")] + ([(ENTROPY, (None, -1), "float32")]
                                                                 if k < m.num_stages - 1 else [])
    outs.append((CACHE_ROWS, (None, 2 * blocks, heads, -1, dim), "float32"))
    return ins, outs
