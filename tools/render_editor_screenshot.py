"""Render docs/editor.png — the points-and-boxes editor in use — from the real ComfyUI frontend.

Starts ComfyUI (``COMFYUI_DIR``, ``COMFYUI_PYTHON``; see ``grounded_inpaint.testing.comfy_server``)
with this pack and the tiny random-weight test models, opens the frontend in headless Chromium
(``pip install playwright``; Debian's ``/usr/bin/chromium``), builds Load Image (assets/coffee.png) →
SAM Segment ← Load SAM Model, draws two objects the way a user does — "cup": a box dragged around it
and a click on it; "saucer": two clicks and a negative right click — runs the workflow once, waits
for the live masks and saves a crop of the canvas around the nodes.

The test models have random weights, so the masks are random blobs; with real SAM weights the same
prompts outline the cup and the saucer.

Usage: ``COMFYUI_DIR=... COMFYUI_PYTHON=... python tools/render_editor_screenshot.py [--out docs/editor.png]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def _shoot(server, out: Path) -> None:
    from playwright.async_api import async_playwright

    from grounded_inpaint.testing.editor_browser import (
        BUILD_GRAPH, drag, open_frontend, set_zoom, stage, wait_for_editor, wait_for_picture)

    async with async_playwright() as p:
        browser, page, _ = await open_frontend(p, server.base, width=1260, height=1040, dpr=1.5)
        try:
            node = await page.evaluate(BUILD_GRAPH, ["coffee.png", "sam_vit_tiny_random.pth"])
            await page.evaluate(f"app.graph.getNodeById({node}).setSize([470, 880])")
            await page.evaluate("app.graph.nodes.find((n) => n.type === 'PreviewImage').pos = [1000, 40]")
            await wait_for_picture(page, node)
            await set_zoom(page, 1.0, (20, 64))
            st = await stage(page, node)
            await drag(page, st.to_screen(150, 12), st.to_screen(318, 205))
            await page.mouse.click(*st.to_screen(236, 104))
            name = page.locator(".gi-sam input[data-role=name]").first
            await name.fill("cup")
            await name.press("Enter")
            await page.get_by_role("button", name="+ object").first.click()
            await name.fill("saucer")
            await name.press("Enter")
            st = await stage(page, node)
            await page.mouse.click(*st.to_screen(70, 205))
            await page.mouse.click(*st.to_screen(330, 235))
            await page.mouse.click(*st.to_screen(240, 150), button="right")
            await page.evaluate("app.queuePrompt(0, 1)")
            await wait_for_editor(page, node, "e.preview && e.preview.instances.length === 2", 120_000)
            await page.evaluate(f"app.graph.getNodeById({node}).samEditor.state.selected = null")
            await page.mouse.move(1150, 700)  # on empty canvas: no tooltip in the picture
            await page.evaluate("app.canvas.show_info = false; app.canvas.setDirty(true, true)")
            await page.wait_for_timeout(600)
            box = await page.evaluate(f"""(() => {{
                const c = app.canvas, n = app.graph.getNodeById({node}), r = c.canvas.getBoundingClientRect()
                const [x, y] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]])
                return [r.left + x, r.top + y] }})()""")
            clip = {"x": 56, "y": 92, "width": min(1260, box[0] + 14) - 56, "height": min(1040, box[1] + 14) - 92}
            await page.screenshot(path=str(out), clip=clip)
        finally:
            await browser.close()
    from PIL import Image

    with Image.open(out) as shot:  # the page at 1.5x, in 256 colours: sharp text, about 250 kB
        picture = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    picture.save(out, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "editor.png")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_DIR"):
        raise SystemExit("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout and its Python")
    from grounded_inpaint.testing.comfy_server import ComfyServer
    from grounded_inpaint.testing.editor_browser import browser_missing
    from grounded_inpaint.testing.tiny_models import write_models_folder

    missing = browser_missing()
    if missing:
        raise SystemExit(missing)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_models_folder(work / "models")
        server = ComfyServer(work, work / "models")
        shutil.copy(ROOT / "assets" / "coffee.png", work / "input" / "coffee.png")
        try:
            server.wait_ready()
            asyncio.run(_shoot(server, args.out))
        finally:
            server.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
