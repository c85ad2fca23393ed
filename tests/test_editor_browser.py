"""The points-and-boxes editor in a real ComfyUI with its real frontend, in headless Chromium.

A user's session: the picture of the Load Image shows on SAM Segment at once; a box and a click at
known picture pixels at one zoom, a second object, a click, a negative right click, a moved point,
Delete and undo at another zoom (on a 1.5x device pixel ratio screen); the stored widget values
and the API prompt hold those pixels; live masks say what they need (a loaded model), then come
back after one run, for both objects, and after each new click; the run's instances carry the
objects' names and their prompts at those pixels; the objects survive a page reload; the larger
dialog edits the same objects; and a workflow saved before the editor existed loads and converts
as it always did.

Skipped unless ``COMFYUI_DIR`` points at a ComfyUI checkout (like tests/test_comfyui_integration.py)
and the Python ``playwright`` package and Debian's ``/usr/bin/chromium`` are installed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil

import pytest
from grounded_inpaint.testing.comfy_server import COMFYUI_DIR, ROOT, ComfyServer, get
from grounded_inpaint.testing.editor_browser import (
    BUILD_GRAPH,
    browser_missing,
    drag,
    editor_info,
    editor_value,
    open_frontend,
    set_zoom,
    stage,
    wait_for_editor,
    wait_for_picture,
    wait_ready,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the browser test"),
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

PICTURE = "coffee.png"  # assets/coffee.png: 400 x 267
OTHER_PICTURE = "chelsea.png"  # another size
CUP_BOX = (150.0, 20.0, 320.0, 200.0)
CUP_CLICK = (235.0, 110.0)
SAUCER_CLICK = (80.0, 215.0)
SAUCER_NEGATIVE = (380.0, 30.0)
SAUCER_NEGATIVE_MOVED = (370.0, 45.0)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    from grounded_inpaint.testing.tiny_models import write_models_folder

    work = tmp_path_factory.mktemp("comfy_editor")
    models = work / "models"
    write_models_folder(models)
    server = ComfyServer(work, models)
    shutil.copy(ROOT / "assets" / "coffee.png", work / "input" / PICTURE)
    shutil.copy(ROOT / "assets" / "chelsea.png", work / "input" / OTHER_PICTURE)
    server.wait_ready()
    yield server
    server.stop()


def _near(got, want, tol):
    assert len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(got, want)), f"{got} != {want} (± {tol:.2f})"


def test_editor_end_to_end(comfy):
    asyncio.run(_session(comfy))


async def _session(comfy: ComfyServer) -> None:  # noqa: PLR0915 - one user session, step by step
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser, page, errors = await open_frontend(p, comfy.base, dpr=1.5)
        try:
            version = await page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || null")
            print(f"frontend {version}")
            node = await page.evaluate(BUILD_GRAPH, [PICTURE, "sam_vit_tiny_random.pth"])
            await wait_for_picture(page, node)  # the Load Image's file, before any run

            # --- zoom 1: a box and a click for the first object
            await set_zoom(page, 1.0, (0, 0))
            st = await stage(page, node)
            assert (st.image_width, st.image_height) == (400, 267)
            tol1 = max(0.6, 1.0 / st.scale)
            await drag(page, st.to_screen(*CUP_BOX[:2]), st.to_screen(*CUP_BOX[2:]))
            await page.mouse.click(*st.to_screen(*CUP_CLICK))
            await page.locator(".gi-sam input[data-role=name]").first.fill("cup")
            await page.locator(".gi-sam input[data-role=name]").first.press("Enter")

            # --- zoom 1.6, panned: a second object
            await set_zoom(page, 1.6, (-300, -40))
            st2 = await stage(page, node)
            assert st2.scale > st.scale * 1.5  # the widget really is zoomed
            tol2 = max(0.6, 1.0 / st2.scale)
            await page.get_by_role("button", name="+ object").first.click()
            await page.locator(".gi-sam input[data-role=name]").first.fill("saucer")
            await page.locator(".gi-sam input[data-role=name]").first.press("Enter")
            st2 = await stage(page, node)  # the toolbar grew: the drawing area moved
            tol2 = max(0.6, 1.0 / st2.scale)
            await page.mouse.click(*st2.to_screen(*SAUCER_CLICK))
            await page.mouse.click(*st2.to_screen(*SAUCER_NEGATIVE), button="right")
            await drag(page, st2.to_screen(*SAUCER_NEGATIVE), st2.to_screen(*SAUCER_NEGATIVE_MOVED))
            # Delete removes the selected (moved) point, and only that: the node stays
            await page.keyboard.press("Delete")
            assert len(json.loads(await editor_value(page, node))["objects"][1]["points"]) == 1
            assert await page.evaluate(f"!!app.graph.getNodeById({node})")
            await page.keyboard.press("Control+z")

            # --- what is stored: image pixels, whatever the zoom
            stored = json.loads(await editor_value(page, node))
            assert stored["size"] == [400, 267]
            cup, saucer = stored["objects"]
            assert cup["name"] == "cup" and saucer["name"] == "saucer" and "box" not in saucer
            _near(cup["box"], CUP_BOX, tol1)
            assert [p[2] for p in cup["points"]] == [1]
            _near(cup["points"][0][:2], CUP_CLICK, tol1)
            assert [p[2] for p in saucer["points"]] == [1, 0]
            _near(saucer["points"][0][:2], SAUCER_CLICK, tol2)
            _near(saucer["points"][1][:2], SAUCER_NEGATIVE_MOVED, tol2)
            prompt = await page.evaluate("async () => (await app.graphToPrompt()).output")
            assert json.loads(prompt[str(node)]["inputs"]["objects"]) == stored  # the API format: the same plain JSON
            assert "objects_editor" not in prompt[str(node)]["inputs"]

            # --- live masks need a loaded model: the editor says so
            info = await wait_for_editor(page, node, "e.need === 'model'", 20_000)
            assert "run the workflow once" in info["status"]

            # --- queue: two instances named after the objects, prompted at those pixels
            async with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as answer:
                await page.evaluate("app.queuePrompt(0, 1)")
            prompt_id = (await (await answer.value).json())["prompt_id"]
            entry = await asyncio.to_thread(comfy.wait, prompt_id, 300)
            (ran,) = entry["outputs"][str(node)]["gi_editor"]
            assert [i["label"] for i in ran["instances"]] == ["cup", "saucer"]
            assert ran["instances"][0]["box"] == cup["box"]
            assert ran["instances"][0]["points"] == cup["points"] and ran["instances"][1]["points"] == saucer["points"]
            assert ran["image"]["type"] == "temp"

            # --- live masks after the run, for both objects, and after a new click
            info = await wait_for_editor(page, node, "e.preview && e.preview.instances.length === 2")
            assert [i["label"] for i in info["instances"]] == ["cup", "saucer"] and info["need"] == ""
            assert [i["source"] for i in info["instances"]] == [["object", 0], ["object", 1]]
            before = len(info["latencies"])
            st3 = await stage(page, node)  # the run's preview image now shares the node: the area moved
            await page.mouse.click(*st3.to_screen(120.0, 230.0))  # a second click on the saucer
            info = await wait_for_editor(page, node, f"e.stats.latencies.length > {before}")
            assert len(info["instances"][1]["points"]) == 3
            print(f"click to mask drawn (tiny SAM): {info['latencies'][-1]:.3f} s")
            assert await page.evaluate(f"app.graph.getNodeById({node}).samEditor.stats.requests") >= 2
            stored = json.loads(await editor_value(page, node))

            # --- the larger dialog edits the same objects
            await page.locator(".gi-sam button[data-role=open]").first.click()
            dialog = await stage(page, node, view=1)
            assert dialog.width > st.width
            await page.mouse.click(*dialog.to_screen(60.0, 60.0))
            after_dialog = json.loads(await editor_value(page, node))
            assert len(after_dialog["objects"][1]["points"]) == 4
            _near(after_dialog["objects"][1]["points"][3][:2], (60.0, 60.0), max(0.6, 1.0 / dialog.scale))
            await page.keyboard.press("Escape")
            assert await page.locator(".gi-sam-dialog").count() == 0
            stored = after_dialog

            # --- reload the page: the objects are still there, and shown
            await page.reload(wait_until="domcontentloaded")
            await wait_ready(page)
            node_after = await page.evaluate("app.graph.nodes.find((n) => n.comfyClass === 'GroundedInpaintSegment')?.id")
            assert node_after is not None
            assert json.loads(await editor_value(page, node_after)) == stored
            await wait_for_picture(page, node_after)
            assert (await editor_info(page, node_after))["objects"] == ["cup", "saucer"]

            # --- another picture in Load Image: the objects were placed on the first one, and the editor says so
            await page.evaluate(f"""() => {{ const n = app.graph.getNodeById({node_after});
                n.getInputNode(0).widgets.find((w) => w.name === 'image').value = '{OTHER_PICTURE}';
                app.canvas.setDirty(true, true) }}""")
            info = await wait_for_editor(page, node_after, "e.status.includes('were placed on a 400x267 picture')")
            assert info["instances"] is None

            # --- a workflow saved before the editor existed (no objects value) still loads and converts
            old = json.loads((ROOT / "example_workflows" / "mask_only.json").read_text())
            seg = next(n for n in old["nodes"] if n["type"] == "GroundedInpaintSegment")
            seg["widgets_values"] = seg["widgets_values"][:-1]
            await page.evaluate("(wf) => app.loadGraphData(wf, true, true, 'old_mask_only')", copy.deepcopy(old))
            await page.wait_for_timeout(500)
            prompt = await page.evaluate("async () => (await app.graphToPrompt()).output")
            inputs = prompt[str(seg["id"])]["inputs"]
            assert inputs["objects"] == "" and inputs["multimask"] == "auto"
            assert set(inputs) >= {"image", "sam_model", "detections", "positive_points", "negative_points"}
            assert not errors, errors
        finally:
            await browser.close()
    history = get(f"{comfy.base}/history")
    assert all(h["status"]["status_str"] == "success" for h in history.values())


#: Load Image -> Invert Image -> SAM Segment: no file to show before a run.
BUILD_INVERTED = """
([picture, model]) => {
  const g = app.graph
  g.clear()
  const load = LiteGraph.createNode('LoadImage'); load.pos = [20, 40]; g.add(load)
  load.widgets.find((w) => w.name === 'image').value = picture
  const invert = LiteGraph.createNode('ImageInvert'); invert.pos = [20, 420]; g.add(invert)
  load.connect(0, invert, 0)
  const sam = LiteGraph.createNode('GroundedInpaintLoadSam'); sam.pos = [20, 520]; g.add(sam)
  sam.widgets.find((w) => w.name === 'model_name').value = model
  const seg = LiteGraph.createNode('GroundedInpaintSegment'); seg.pos = [380, 40]; g.add(seg)
  seg.setSize([440, 640])
  invert.connect(0, seg, 0)
  sam.connect(0, seg, 1)
  const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [860, 40]; g.add(preview)
  seg.connect(2, preview, 0)
  app.canvas.ds.scale = 1
  app.canvas.ds.offset = [0, 0]
  app.canvas.setDirty(true, true)
  return seg.id
}
"""


def test_editor_shows_the_last_run_picture_when_no_load_image_feeds_it(comfy):
    asyncio.run(_without_load_image(comfy))


async def _without_load_image(comfy: ComfyServer) -> None:
    """The picture comes from the node's last run (saved to temp by the node); a run without prompts
    encodes nothing, so the editor's compute button encodes the picture; live masks then find the
    embedding by the run's own content key (the inverted pixels never existed as a file before)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser, page, errors = await open_frontend(p, comfy.base)
        try:
            node = await page.evaluate(BUILD_INVERTED, [PICTURE, "sam_vit_tiny_random.pth"])
            info = await wait_for_editor(page, node, "e.status.includes('run the workflow once')")
            assert await page.evaluate(f"app.graph.getNodeById({node}).samEditor.picture") is None
            async with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as answer:
                await page.evaluate("app.queuePrompt(0, 1)")
            prompt_id = (await (await answer.value).json())["prompt_id"]
            entry = await asyncio.to_thread(comfy.wait, prompt_id, 300)
            (ran,) = entry["outputs"][str(node)]["gi_editor"]
            assert ran["instances"] == [] and ran["image"]["type"] == "temp"
            await wait_for_picture(page, node)
            picture = await page.evaluate(f"app.graph.getNodeById({node}).samEditor.picture.ref")
            assert picture == ran["image"]
            # that run had no prompt, so SAM encoded nothing: the editor offers to compute the embedding
            await wait_for_editor(page, node, "e.need === 'embedding'")
            await page.locator(".gi-sam button[data-role=compute]").first.click()
            info = await wait_for_editor(page, node, "!e.busy && e.need === '' && e.status.includes('live masks on')")
            st = await stage(page, node)
            await page.mouse.click(*st.to_screen(200.0, 130.0))
            info = await wait_for_editor(page, node, "e.preview && e.preview.instances.length === 1 && e.stats.latencies.length > 0")
            assert info["instances"][0]["points"] == [[200, 130, 1]] and info["need"] == ""
            # the picture is remembered with the workflow, for a reload
            assert await page.evaluate(f"app.graph.getNodeById({node}).properties.grounded_inpaint_picture.filename") == picture["filename"]
            assert not errors, errors
        finally:
            await browser.close()
