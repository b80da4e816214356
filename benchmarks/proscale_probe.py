"""Why progressive token length (PRO-SCALE) does not carry over to a trained plain ViT without retraining.

    python benchmarks/proscale_probe.py [--images 40] [--blocks 1,2,5] [--out benchmarks/results]

PRO-SCALE's closest form for a plain ViT (`paumer_edge.model.progressive`) runs the first k blocks on a 2x2
coarser token grid and then brings every patch back as its embedding plus its window's update. This measures,
on held-out street scenes (PyTorch, the sample model), how far those tokens are from the ones the full grid
gives after the same k blocks (relative error of the token buffer, cosine similarity of the updates), how many
labels survive to the end, and the mIoU: the gap is in the first blocks' updates, which are not smooth over a
2x2 window of patches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paumer_edge.checkpoint import load_model
from paumer_edge.core.atomic import write_json_atomic
from paumer_edge.core.metrics import confusion_counts, scores
from paumer_edge.core.provenance import Provenance
from paumer_edge.data.dataset import render_split
from paumer_edge.evaluate import normalise
from paumer_edge.model.progressive import coarse_tokens, progressive_forward


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--blocks", default="1,2,5")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model().eval()
    cfg = model.cfg
    images, labels = render_split(2, a.images, cfg.image_size, progress=False)  # the held-out test split
    blocks = [int(b) for b in a.blocks.split(",")]
    conf = {k: np.zeros((cfg.num_classes,) * 2, np.int64) for k in [0, *blocks]}
    err: dict[int, list[float]] = {k: [] for k in blocks}
    cos: dict[int, list[float]] = {k: [] for k in blocks}
    agree: dict[int, list[float]] = {k: [] for k in blocks}
    e = model.encoder.num_extra_tokens
    for i in range(a.images):
        x = normalise(torch.from_numpy(np.array(images[i])).permute(2, 0, 1).float()[None] / 255, cfg.mean, cfg.std)
        truth = np.array(labels[i])
        full = model.forward_unpaused(x).argmax(1)[0].numpy()
        conf[0] += confusion_counts(full, truth, cfg.num_classes)
        start = model.embed(x)
        for k in blocks:
            exact = start
            for blk in model.encoder.blocks[:k]:
                exact = blk(exact)
            approx = coarse_tokens(model, x, k)
            err[k].append(float((approx - exact)[:, e:].norm() / exact[:, e:].norm()))
            cos[k].append(float(F.cosine_similarity((approx - start)[:, e:], (exact - start)[:, e:], dim=-1).mean()))
            pred = progressive_forward(model, x, k).argmax(1)[0].numpy()
            agree[k].append(float((pred == full).mean()))
            conf[k] += confusion_counts(pred, truth, cfg.num_classes)
    rows = [{"blocks": 0, "miou": scores(conf[0])[1]}]
    for k in blocks:
        rows.append({"blocks": k, "miou": scores(conf[k])[1], "token_rel_error": float(np.mean(err[k])),
                     "update_cosine": float(np.mean(cos[k])), "label_agreement_with_full": float(np.mean(agree[k]))})
        r = rows[-1]
        print(f"{k} coarse blocks: mIoU {100 * r['miou']:.2f} (full {100 * rows[0]['miou']:.2f}); tokens after them "
              f"{100 * r['token_rel_error']:.1f}% off, updates' cosine {r['update_cosine']:.2f}; "
              f"{100 * r['label_agreement_with_full']:.1f}% of labels as the full grid's")
    out = Path(a.out) / "proscale_probe.json"
    record = Provenance.start(argv=[sys.executable, *sys.argv]).finish()
    write_json_atomic(out, {"provenance": record, "images": a.images,
                            "image_size": list(cfg.image_size), "pool": 2, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
