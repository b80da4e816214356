"""Accuracy of the deployed graphs: `evaluate` through the runtime instead of the PyTorch forward.

A bundle's staged graphs (fp32, or its INT8 Q/DQ graphs) run in ONNX Runtime on the CPU with the shared pausing
policy between stages, exactly as `Pipeline` runs them, so `paumer-edge eval --precision int8` scores what a
robot gets. Images of the model's size go in as they are; others are resized to it and the labels come back
to the image's size by nearest neighbour, as `Pipeline` returns them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .core.cost import CostModel
from .core.pausing import Pauser, PausingPolicy
from .evaluate import OperatingPoint, Prediction
from .runtime.backends import OrtBackend
from .runtime.bundle import Bundle
from .runtime.preprocess import labels_to_frame, place
from .runtime.staged import StagedRunner


class RuntimePredictor:
    """Predictions of a bundle's graphs (at the precision the given bundle view has) for `evaluate`. `cost` is what
    budgets are fractions of: the model's MAC model, or a device's latency profile, as in PyTorch `eval`."""

    def __init__(self, bundle: Bundle, cost: CostModel, threads: int = 0):
        self.runner = StagedRunner(bundle, OrtBackend(threads=threads))
        self.size = bundle.model.input_size
        self.cost = cost

    def __call__(self, images: torch.Tensor, point: OperatingPoint) -> Prediction:
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        x = images.float().cpu()
        if hw != self.size:
            shrink = hw[0] > self.size[0] or hw[1] > self.size[1]
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)
        out = self.runner.forward(np.ascontiguousarray(x.numpy()), Pauser(self.cost, PausingPolicy(point.budget,
                                                                                                 point.threshold)))
        labels = out.labels
        if hw != self.size:  # back to the image as Pipeline does it
            placement = place(hw, self.size, letterbox=False)
            labels = np.stack([labels_to_frame(lab, placement) for lab in labels])
        return Prediction(torch.from_numpy(labels.astype(np.int64)).to(images.device), out.stats.cost_fraction,
                          [float(c) for c in out.stats.counts])
