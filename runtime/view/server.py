"""The view's web server: aiohttp on its own thread and event loop, beside whatever runs the pipeline.

    GET  /             the page (view.js, view.css beside it)
    GET  /stream.mjpg  the pictures, as MJPEG (multipart/x-mixed-replace): the newest one whenever it is ready
    GET  /events       live stats as server-sent events: a `hello` with the model and history, then `stats`
    GET  /state        the knobs and the model, as JSON
    POST /knobs        {"budget": 0.4} (or threshold, target_ms, pause_map): the new state, or {"error": "..."}

Every viewer gets the newest picture when it is ready for one: a slow viewer skips pictures instead of
queueing them, a stalled one is dropped after `send_timeout_s`, and a viewer that leaves is forgotten.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
from importlib import resources
from typing import Any

import numpy as np

from paumer_edge.core.errors import UserError

from ..pipeline import Pipeline, Result
from ..visualize import stage_palette
from .access import Access, ViewAddress, check_token, parse_view_address
from .errors import ViewError
from .frames import FrameHub, ViewConfig
from .knobs import Knobs

try:
    from aiohttp import web
except ImportError:  # pragma: no cover - exercised where aiohttp is absent
    raise ViewError("the live view needs aiohttp: pip install 'paumer-edge[view]'") from None

BOUNDARY = "paumerframe"
STATIC = {"/": ("page.html", "text/html"), "/view.js": ("view.js", "text/javascript"),
          "/view.css": ("view.css", "text/css")}
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
           "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"}
STATS_INTERVAL_S = 0.1  # at most ten stats messages a second per viewer; each carries every frame since the last
HEARTBEAT_S = 15.0
POLL_S = 1.0  # how often an idle handler checks that its viewer is still connected


class Signal:
    """Wakes every coroutine waiting on it (event-loop side); `fire` may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._future: asyncio.Future[None] = loop.create_future()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except asyncio.TimeoutError:
            pass

    def _fire(self) -> None:
        future, self._future = self._future, self.loop.create_future()
        future.set_result(None)

    def fire(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._fire)
        except RuntimeError:
            pass  # the view has closed: nobody is waiting


class ViewServer:
    """Serves the live view of `pipe` on `host:port` (port 0: a free one; see `url`). `publish(frame, result)`
    after every frame; `close()` (or leaving a `with` block) disconnects every viewer and frees the port.

    The pipeline's stage map is turned on (the pause map needs it; it costs next to nothing)."""

    def __init__(self, pipe: Pipeline, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 config: ViewConfig | None = None):
        self.address = parse_view_address(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.access = Access(self.address, check_token(token))
        self.pipe = pipe
        pipe.stage_map = True
        self.hub = FrameHub(pipe.info, bgr=pipe.bgr, config=config)
        self.knobs = Knobs(pipe, self.hub)
        self.connections = 0  # open picture and stats streams
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._picture: Signal | None = None
        self._record: Signal | None = None

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> ViewServer:
        """Bind and serve (returns once the port is open); a taken or unusable address is a `ViewError`."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="paumer-view", daemon=True)
        self._thread.start()
        ready.result()
        self.hub.start()
        return self

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._picture, self._record = Signal(loop), Signal(loop)
        self.hub.on_picture = self._picture.fire
        try:
            loop.run_until_complete(self._open())
        except BaseException as e:
            ready.set_exception(e)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    async def _open(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/events", self._events)
        app.router.add_get("/state", self._state)
        app.router.add_post("/knobs", self._knobs)
        for path in STATIC:
            app.router.add_get(path, self._static)
        app.on_response_prepare.append(self._headers)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise ViewError(f"cannot serve the view on {self.address.host}:{self.address.port}: "
                            f"{e.strerror or e}; pick another port (--view HOST:PORT, 0 for any free one)") from None
        port = self._runner.addresses[0][1]
        self.address = ViewAddress(self.address.host, port)
        self.access = Access(self.address, self.access.token)

    async def _shutdown(self) -> None:
        self._closing = True
        if self._picture and self._record:
            self._picture._fire()
            self._record._fire()
        if self._runner is not None:
            await self._runner.cleanup()

    def close(self) -> None:
        """Stop serving: every viewer is disconnected, the threads end, the port is free again."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self.hub.close()

    def __enter__(self) -> ViewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def viewers(self) -> int:
        """Pictures streams open now (one per page watching)."""
        return self.hub.watchers

    @property
    def url(self) -> str:
        """Where to open the view (with the token, when there is one)."""
        host = self.address.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.address.port}/" + (f"?token={self.access.token}" if self.access.token else "")

    def publish(self, frame: np.ndarray, result: Result) -> None:
        """Hand the view a frame and its result (cheap; call it on the inference thread after every frame)."""
        self.hub.publish(frame, result)
        if self._record is not None:
            self._record.fire()

    # ---- requests --------------------------------------------------------------------------------
    def _refusal(self, request: web.Request) -> web.Response | None:
        """401/403 with the reason, or None when the request may be served; `?token=` sets the cookie."""
        given = request.query.get("token")
        auth = request.headers.get("Authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else None
        reason = self.access.allowed(request.headers.get("Host"), given or request.cookies.get(self.access.cookie),
                                     bearer)
        if reason is not None:
            return web.json_response({"error": reason}, status=403 if "Host header" in reason else 401)
        if given is not None and request.path == "/":
            response = web.HTTPSeeOther("/")
            response.set_cookie(self.access.cookie, given, httponly=True, samesite="Strict", path="/")
            raise response
        return None

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        name, kind = STATIC[request.path]
        text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        return web.Response(text=text, content_type=kind)

    def _describe(self) -> dict[str, Any]:
        info = self.pipe.info
        return {"model": info.name, "input_size": list(info.input_size), "patches": info.num_patches,
                "stages": info.num_stages, "classes": list(info.class_names),
                "palette": [list(c) for c in info.palette], "backend": self.pipe.describe(),
                "stage_colors": stage_palette(info.num_stages).tolist(),
                "control": self.access.control, "readonly_reason": self.access.readonly_reason,
                "knobs": self.knobs.state()}

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return self._refusal(request) or web.json_response({**self._describe(), "frames": self.hub.frames,
                                                            "fps": round(self.hub.fps(), 2), "viewers": self.viewers})

    async def _knobs(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        reason = self.access.may_steer(request.headers.get("Origin"), request.headers.get("Host"),
                                       request.content_type)
        if reason is not None:
            return web.json_response({"error": reason}, status=403)
        try:
            changes = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body is not JSON: send e.g. {\"budget\": 0.5}"}, status=400)
        try:  # in a worker thread: a setter waits for the frame in flight, the event loop must not
            applied = await asyncio.get_running_loop().run_in_executor(None, self.knobs.apply, changes)
        except UserError as e:
            return web.json_response({"error": " ".join(str(e).split())}, status=400)
        return web.json_response(applied)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        await response.prepare(request)
        self.connections += 1
        self.hub.watchers += 1
        sent = -1
        try:
            # each part ends with the next boundary, so a browser shows a picture as soon as it has it
            await response.write(f"--{BOUNDARY}\r\n".encode())
            while not self._closing and _connected(request):
                jpeg, number = self.hub.jpeg, self.hub.jpeg_frame
                if jpeg is None or number == sent:
                    assert self._picture is not None
                    await self._picture.wait(POLL_S)
                    continue
                part = (f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\nX-Frame: {number}\r\n\r\n"
                        .encode() + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
                await asyncio.wait_for(response.write(part), self.hub.config.send_timeout_s)
                sent = number
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the viewer left or stalled: forget it
        finally:
            self.connections -= 1
            self.hub.watchers -= 1
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.connections += 1
        loop = asyncio.get_running_loop()
        try:
            history = self.hub.records(limit=300)
            await _event(response, "hello", {**self._describe(), "records": history})
            last = history[-1]["frame"] if history else -1
            beat = loop.time()
            while not self._closing and _connected(request):
                assert self._record is not None
                await self._record.wait(POLL_S)
                new = self.hub.records(after=last, limit=self.hub.config.history)
                if new:
                    last = new[-1]["frame"]
                    await _event(response, "stats", {"records": new, "fps": round(self.hub.fps(), 2),
                                                     "knobs": self.knobs.state(), "viewers": self.viewers})
                    beat = loop.time()
                    await asyncio.sleep(STATS_INTERVAL_S)
                elif loop.time() - beat > HEARTBEAT_S:
                    await asyncio.wait_for(response.write(b": alive\n\n"), self.hub.config.send_timeout_s)
                    beat = loop.time()
            if self._closing:
                await _event(response, "end", {"frames": self.hub.frames})
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.connections -= 1
        return response


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _event(response: web.StreamResponse, name: str, data: dict[str, Any], timeout: float = 10.0) -> None:
    payload = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
    await asyncio.wait_for(response.write(payload), timeout)


TOKEN_ENV = "PAUMER_EDGE_VIEW_TOKEN"


def serve_run_view(pipe: Pipeline, spec: str, token: str | None = None,
                   config: ViewConfig | None = None) -> tuple[ViewServer, str | None]:
    """`run --view [HOST:]PORT`: the started server, and a warning to print when strangers could watch."""
    address = parse_view_address(spec)
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    server = ViewServer(pipe, address.host, address.port, token, config).start()
    warning = None
    if not address.loopback and token is None:
        warning = (f"the view on {address.host}:{server.address.port} can be watched by anyone who reaches this "
                   "machine, and its knobs are off; give --view-token (or $PAUMER_EDGE_VIEW_TOKEN) to require a "
                   "token and allow changes")
    return server, warning
