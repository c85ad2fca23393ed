"""Driving the points-and-boxes editor in the real ComfyUI frontend with headless Chromium.

Used by the end-to-end test (``tests/test_editor_browser.py``) and the latency benchmark
(``benchmarks/editor_latency.py``). Needs the Python ``playwright`` package (``pip install
playwright``; never ``playwright install``: Debian's ``/usr/bin/chromium`` is launched) and a running
ComfyUI with this pack (:class:`grounded_inpaint.testing.comfy_server.ComfyServer`).

Screen positions of picture pixels are computed here independently of the editor's own code: from
the drawing area's bounding rectangle (which includes ComfyUI's zoom transform) and the picture's
size, letterboxed and centred.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

#: Debian's Chromium (apt-get install chromium); ``CHROMIUM`` overrides.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Flags for headless Chromium as root in a container, with no network beyond loopback.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
#: The one page error every load of frontend 1.27.x logs on a fresh profile (a settings bug, not ours).
KNOWN_PAGE_ERRORS = ("reading 'id'",)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the Python playwright package is not installed (pip install playwright; no 'playwright install')"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


#: Builds LoadImage -> SAM Segment <- Load SAM Model, SAM Segment.preview -> PreviewImage on an empty
#: canvas and returns SAM Segment's node id. Arguments: [picture, sam model name].
BUILD_GRAPH = """
([picture, model]) => {
  const g = app.graph
  g.clear()
  const load = LiteGraph.createNode('LoadImage'); load.pos = [20, 40]; g.add(load)
  load.widgets.find((w) => w.name === 'image').value = picture
  const sam = LiteGraph.createNode('GroundedInpaintLoadSam'); sam.pos = [20, 430]; g.add(sam)
  sam.widgets.find((w) => w.name === 'model_name').value = model
  const seg = LiteGraph.createNode('GroundedInpaintSegment'); seg.pos = [380, 40]; g.add(seg)
  seg.setSize([440, 600])
  load.connect(0, seg, 0)
  sam.connect(0, seg, 1)
  const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [860, 40]; g.add(preview)
  seg.connect(2, preview, 0)
  app.canvas.ds.scale = 1
  app.canvas.ds.offset = [0, 0]
  app.canvas.setDirty(true, true)
  return seg.id
}
"""


@dataclass
class Stage:
    """The editor's drawing area on screen (client pixels) and the picture's size."""

    left: float
    top: float
    width: float
    height: float
    image_width: int
    image_height: int

    @property
    def scale(self) -> float:
        """Client pixels per picture pixel."""
        return min(self.width / self.image_width, self.height / self.image_height)

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Where picture pixel ``(x, y)`` shows on the page (letterboxed, centred)."""
        s = self.scale
        return (self.left + (self.width - self.image_width * s) / 2 + x * s,
                self.top + (self.height - self.image_height * s) / 2 + y * s)


async def open_frontend(playwright: Any, base: str, *, width: int = 1400, height: int = 900, dpr: float = 1.0):
    """Launch Chromium, open ComfyUI at ``base`` and wait until the app is ready; returns ``(browser, page, errors)``."""
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
    context = await browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=dpr)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)) if not any(k in str(e) for k in KNOWN_PAGE_ERRORS) else None)
    await page.goto(base + "/", wait_until="domcontentloaded", timeout=90_000)
    await wait_ready(page)
    return browser, page, errors


async def wait_ready(page: Any) -> None:
    await page.wait_for_function("window.app && app.graph && app.canvas && app.vueAppReady", timeout=90_000)
    await page.wait_for_timeout(800)


async def wait_for_picture(page: Any, node_id: int, timeout: float = 30_000) -> None:
    await page.wait_for_function(
        f"(() => {{ const e = app.graph.getNodeById({node_id})?.samEditor; return !!(e && e.picture) }})()", timeout=timeout)


async def set_zoom(page: Any, scale: float, offset: tuple[float, float] = (0, 0)) -> None:
    """Zoom and pan the canvas, and wait until the DOM widgets have followed."""
    await page.evaluate(
        "([s, ox, oy]) => { app.canvas.ds.scale = s; app.canvas.ds.offset = [ox, oy]; app.canvas.setDirty(true, true) }",
        [scale, offset[0], offset[1]])
    await page.wait_for_timeout(400)


async def stage(page: Any, node_id: int, view: int = 0) -> Stage:
    """The node's editor drawing area (``view`` 0) or its dialog's (1)."""
    g = await page.evaluate(
        f"""(v) => {{ const e = app.graph.getNodeById({node_id}).samEditor; const r = [...e.views][v].stage.getBoundingClientRect();
            return [r.left, r.top, r.width, r.height, e.picture.width, e.picture.height] }}""", view)
    return Stage(*g)


async def drag(page: Any, start: tuple[float, float], end: tuple[float, float], steps: int = 6) -> None:
    await page.mouse.move(*start)
    await page.mouse.down()
    await page.mouse.move(*end, steps=steps)
    await page.mouse.up()


async def wait_for_editor(page: Any, node_id: int, condition: str, timeout: float = 30_000) -> dict:
    """Wait until ``condition`` (JavaScript over ``e``, the node's editor) holds; returns :func:`editor_info`.

    Raises:
        AssertionError: on timeout, with the editor's state.
    """
    try:
        await page.wait_for_function(
            f"(() => {{ const e = app.graph.getNodeById({node_id})?.samEditor; return !!(e && ({condition})) }})()",
            timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError: report what the editor shows
        raise AssertionError(f"the editor never reached {condition!r}: {await editor_info(page, node_id)}") from exc
    return await editor_info(page, node_id)


async def editor_value(page: Any, node_id: int) -> str:
    return await page.evaluate(f"app.graph.getNodeById({node_id}).widgets.find((w) => w.name === 'objects').value")


async def editor_info(page: Any, node_id: int) -> dict:
    """The editor's status, what the server needs, the live instances (labels, sources) and the latency stats."""
    return await page.evaluate(f"""(() => {{
        const e = app.graph.getNodeById({node_id}).samEditor
        return {{ status: e.status, need: e.need, busy: e.busy,
                 instances: e.preview ? e.preview.instances.map((i) => ({{ label: i.label, source: i.source, box: i.box,
                                                                         points: i.points }})) : null,
                 latencies: e.stats.latencies.slice(), requests: e.stats.requests,
                 objects: e.state.objects.map((o) => o.name) }} }})()""")
