"""paumer-edge: deploy PAUMER segmentation transformers that pause confident tokens.

This package root stays free of heavy imports: ``paumer_edge.runtime`` and
``paumer_edge.core.pausing`` must import without torch.
"""

from .core.errors import UserError

__version__ = "0.1.0"

__all__ = ["UserError", "__version__"]
