"""Deployment bundle -> predictions, with numpy and an inference backend only (never torch).

    from paumer_edge.runtime import Pipeline
    seg = Pipeline("sample.paumer", budget=0.5)
    labels = seg(frame).labels
"""

from . import _quiet  # noqa: F401  (first: before OpenCV loads)
from .bundle import Bundle, BundleError, ModelInfo, load_bundle
from .pipeline import Pipeline, Result

__all__ = ["Bundle", "BundleError", "ModelInfo", "Pipeline", "Result", "load_bundle"]
