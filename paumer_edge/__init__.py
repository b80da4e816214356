"""paumer-edge: deploy PAUMER segmentation transformers that pause confident tokens.

This package root stays free of heavy imports: ``paumer_edge.runtime`` and
``paumer_edge.pausing`` must import without torch.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad value): shown as one line, never a traceback."""
