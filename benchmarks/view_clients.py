"""Browser-like viewers of a live view, in their own process: each reads the MJPEG pictures and the stats events.

    python benchmarks/view_clients.py hold URL --viewers 3     # connect, print 'connected', read until stdin closes
    python benchmarks/view_clients.py cycle URL --seconds 600  # connect and leave again and again, for SECONDS

Both print one JSON line at the end: pictures and bytes received, and (cycle) every visit. The benchmarks
run them in a separate process, as remote browsers would be, so their own work does not sit in the
measured process. Every connection goes to the URL given (this machine's loopback in the benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any

import aiohttp


async def watch(session: aiohttp.ClientSession, url: str, tally: dict[str, Any], stop: asyncio.Event,
                first: asyncio.Event | None = None, read: bool = True) -> None:
    """Read the picture stream until `stop` (read=False: connect and then read nothing, a stalled viewer)."""
    async with session.get(url + "stream.mjpg") as response:
        while not stop.is_set():
            if not read:
                await asyncio.wait_for(stop.wait(), None)
                return
            chunk = await response.content.readany()
            if not chunk:
                return
            tally["bytes"] += len(chunk)
            tally["pictures"] += chunk.count(b"Content-Type: image/jpeg")
            if first is not None and tally["pictures"]:
                first.set()


async def events(session: aiohttp.ClientSession, url: str, tally: dict[str, Any], stop: asyncio.Event) -> None:
    async with session.get(url + "events") as response:
        while not stop.is_set():
            line = await response.content.readline()
            if not line:
                return
            tally["events"] += line.startswith(b"event: stats")


async def visit(url: str, seconds: float, tally: dict[str, Any], read: bool = True) -> None:
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
        tasks = [asyncio.create_task(watch(session, url, tally, stop, read=read)),
                 asyncio.create_task(events(session, url, tally, stop))]
        await asyncio.sleep(seconds)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def hold(url: str, viewers: int) -> dict[str, Any]:
    tally = {"pictures": 0, "bytes": 0, "events": 0}
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
        firsts = [asyncio.Event() for _ in range(viewers)]
        tasks = [asyncio.create_task(watch(session, url, tally, stop, firsts[i])) for i in range(viewers)]
        tasks += [asyncio.create_task(events(session, url, tally, stop)) for _ in range(viewers)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 120)
        print("connected", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the benchmark closes stdin
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tally


async def cycle(url: str, seconds: float, seed: int) -> dict[str, Any]:
    """Visits of 1-5 s with 0.5-3 s between them; every fifth viewer stalls (connects and reads nothing)."""
    rng = random.Random(seed)
    tally: dict[str, Any] = {"pictures": 0, "bytes": 0, "events": 0, "visits": []}
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        stay, read = rng.uniform(1, 5), n % 5 != 4
        t0 = time.monotonic()
        await visit(url, stay, tally, read)
        tally["visits"].append([round(t0 - (end - seconds), 2), round(stay, 2), read])
        n += 1
        await asyncio.sleep(rng.uniform(0.5, 3))
    return tally


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["hold", "cycle"])
    p.add_argument("url", help="the view's address, ending in /")
    p.add_argument("--viewers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    result = asyncio.run(hold(a.url, a.viewers) if a.mode == "hold" else cycle(a.url, a.seconds, a.seed))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
