"""The PAUMER network in PyTorch: ViT encoder, pausing heads, Segmenter decoders."""

from .segmenter import AuxPrediction, PausingSegmenter, SegmenterOutput

__all__ = ["AuxPrediction", "PausingSegmenter", "SegmenterOutput"]
