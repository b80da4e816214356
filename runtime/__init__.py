"""Deployment bundle -> predictions, with numpy and an inference backend only (never torch).

    from paumer_edge.runtime import Pipeline
    seg = Pipeline("sample.paumer", budget=0.5)
    labels = seg(frame).labels

Every mistake in what the caller gives is a typed `UserError`: `BundleError` (bundle missing, malformed,
tampered with), `FrameError` (a frame or tensor it cannot use), `SourceError` (video, camera, stream),
`OutputError` (a result that cannot be written), `PolicyError` (budget or threshold out of range).
"""

from paumer_edge import UserError
from paumer_edge.core.errors import BundleError, FrameError, OutputError, SourceError
from paumer_edge.core.pausing import PolicyError

from . import _quiet  # noqa: F401  (before OpenCV loads)
from .bundle import Bundle, ModelInfo, load_bundle
from .pipeline import Pipeline, Result

__all__ = ["Bundle", "BundleError", "FrameError", "ModelInfo", "OutputError", "Pipeline", "PolicyError", "Result",
           "SourceError", "UserError", "load_bundle"]
