"""The live view in a real browser: headless Chromium (Debian's) opens the page, sees pictures change, moves
the budget slider with the mouse, and the pipeline's reported budget follows within 3 frames; a bad value
typed into a field is refused on the page with the API's own message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chromium import Chromium, chromium_path
from live import Feeder, clip

from paumer_edge.core.errors import PolicyError
from paumer_edge.core.pausing import check_threshold
from paumer_edge.runtime import Pipeline

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="Chromium is not installed: apt-get install chromium (.ci/run installs it)")

# Hashes of the picture as the browser has drawn it, every 50 ms, until two differ (or 2 s pass).
TWO_PICTURES = """(async () => {
  const img = document.getElementById('stream'), c = document.createElement('canvas'), seen = new Set();
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let h = 0; for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) | 0;
    seen.add(h);
    if (seen.size >= 2) return {distinct: seen.size, ms: performance.now() - t0, width: c.width};
    await new Promise((r) => setTimeout(r, 50));
  }
  return {distinct: seen.size, ms: performance.now() - t0, width: c.width};
})()"""


async def drive(url: str, shots: Path) -> dict:
    async with Chromium() as browser:
        page = await browser.open(url)
        await page.wait_for("window.paumerView && paumerView.info && paumerView.records.length > 0", timeout=20)
        await page.wait_for("document.getElementById('stream').naturalWidth > 0", timeout=20)
        pictures = await page.eval(TWO_PICTURES)

        # the slider, moved with the mouse: a click 30% along its track
        box = await page.eval("(() => { const r = document.getElementById('budget').getBoundingClientRect();"
                              " return {x: r.left, y: r.top + r.height / 2, w: r.width}; })()")
        await page.click(box["x"] + 0.3 * box["w"], box["y"])
        change = await page.wait_for("paumerView.lastChange", timeout=10)
        budget = float(await page.eval("document.getElementById('budget').value"))
        before = change["frames_before"]
        await page.wait_for(f"paumerView.records.some((r) => r.frame >= {before + 3})", timeout=10)
        records = await page.eval(f"paumerView.records.filter((r) => r.frame >= {before - 1})")
        shown = await page.eval("document.getElementById('applied').textContent")

        # a bad threshold, typed and submitted: refused on the page with the API's message
        await page.eval("document.getElementById('threshold').focus()")
        await page.type("abc")
        await page.eval("document.querySelector('#threshold-form button').click()")
        error = await page.wait_for("document.getElementById('error').textContent", timeout=10)

        await page.eval("document.getElementById('pause-map').click()")  # the pause map off: the picture narrows
        narrowed = await page.wait_for("document.getElementById('stream').naturalWidth === 128 "
                                       "&& document.getElementById('stream').naturalWidth", timeout=10)
        await page.screenshot(shots / "view.png")
        return {"pictures": pictures, "budget": budget, "before": before, "records": records, "shown": shown,
                "error": error, "narrowed": narrowed}


def test_headless_chromium_sees_pictures_and_turns_the_budget(tiny_bundle: Path, tmp_path: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs")
    with pipe.serve_view(0) as view, Feeder(pipe, view, clip(), fps=15):
        seen = asyncio.run(drive(view.url, tmp_path))
    assert seen["pictures"]["distinct"] >= 2 and seen["pictures"]["ms"] < 2000, seen["pictures"]
    assert seen["pictures"]["width"] == 256  # the overlay and the pause map beside it
    budget, before = seen["budget"], seen["before"]
    assert 0.2 < budget < 0.45 and pipe.budget == pytest.approx(budget)
    first_new = next(r["frame"] for r in seen["records"] if r["budget"] == pytest.approx(budget))
    assert first_new - before < 3, seen["records"]  # the reported budget changed within 3 frames
    assert all(r["budget"] == pytest.approx(budget) for r in seen["records"] if r["frame"] >= first_new)
    assert seen["shown"].startswith(f"{budget:.2f}")
    with pytest.raises(PolicyError) as api:
        check_threshold("abc")
    assert seen["error"] == str(api.value) and pipe.threshold is None
    assert seen["narrowed"] == 128 and (tmp_path / "view.png").stat().st_size > 10_000
