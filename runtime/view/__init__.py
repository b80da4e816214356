"""A live view of a running pipeline in the browser: the overlay and pause map, live stats, and the knobs.

    from paumer_edge.runtime import Pipeline
    seg = Pipeline("sample.paumer", budget=0.5)
    with seg.serve_view(8080) as view:            # http://127.0.0.1:8080/
        for frame in camera:
            view.publish(frame, seg(frame))       # cheap: encoding happens on the view's own thread

`paumer-edge run SOURCE --view [HOST:]PORT` serves the same page. The page changes the pipeline's knobs
(budget, threshold, latency target) through the pipeline's own validated setters, and the pause map
display; nothing else. Torch-free: numpy, OpenCV and aiohttp (`pip install 'paumer-edge[view]'`).
"""

from .access import ViewAddress, parse_view_address
from .errors import ViewError
from .frames import ViewConfig

__all__ = ["ViewAddress", "ViewConfig", "ViewError", "ViewServer", "parse_view_address"]


def __getattr__(name: str) -> object:
    """`ViewServer` needs aiohttp: imported on first use, so the rest works (and says what to install) without it."""
    if name == "ViewServer":
        from .server import ViewServer

        return ViewServer
    raise AttributeError(name)
