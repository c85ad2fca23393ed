"""The editor's server side without ComfyUI: what SAM Segment records for the editor, which pictures
the live routes accept (the same rules as ComfyUI's /view), the request checks, and the routes
themselves through aiohttp's test client against a fake input/output/temp layout — live masks equal
the masks a run gives, a missing model or embedding is a 409 that says what to do, bad requests a
400 with a message, and the event loop is never blocked by model work."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import os
import sys
import threading
import time
import weakref
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_fakes import FakeComfy  # noqa: F401 - the node fixtures come from test_nodes
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures

from grounded_inpaint.live import (
    ImageRef,
    LiveRequestError,
    load_picture_like_comfy,
    parse_live_request,
    preview_size,
    resolve_served_file,
)

web = pytest.importorskip("aiohttp.web", reason="aiohttp is needed for the route tests (pip install aiohttp)")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402


def _pack_module(name: str):
    return import_module(f"{PACK_NAME}.{name}")


# ----------------------------------------------------------------------------- which files


@pytest.fixture
def folders(tmp_path):
    layout = {kind: tmp_path / "comfy" / kind for kind in ("input", "output", "temp")}
    for folder in layout.values():
        folder.mkdir(parents=True)
    (layout["input"] / "sub").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(layout["input"] / "photo.png")
    Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(layout["input"] / "sub" / "small.png")
    (tmp_path / "comfy" / "secret.png").write_bytes((layout["input"] / "photo.png").read_bytes())
    return {k: str(v) for k, v in layout.items()}


def test_served_files_resolve_like_view(folders):
    assert resolve_served_file(folders, ImageRef("photo.png")) == Path(folders["input"]) / "photo.png"
    assert resolve_served_file(folders, ImageRef("small.png", "sub", "input")) == Path(folders["input"]) / "sub" / "small.png"
    assert resolve_served_file(folders, ImageRef("small.png", "sub/", "input")).name == "small.png"
    for ref in (
        ImageRef("../secret.png"), ImageRef("secret.png", ".."), ImageRef("secret.png", "sub/../.."),
        ImageRef("/etc/passwd"), ImageRef("passwd", "/etc"), ImageRef("photo.png", "C:"), ImageRef("sub/small.png"),
        ImageRef("photo.png", "", "models"), ImageRef("photo.png\x00.txt"), ImageRef("..\\secret.png"), ImageRef(""),
        ImageRef(".."), ImageRef("photo.png", "a" * 2000),
    ):
        with pytest.raises(LiveRequestError) as info:
            resolve_served_file(folders, ref)
        assert info.value.status == 400, ref
    with pytest.raises(LiveRequestError) as info:
        resolve_served_file(folders, ImageRef("missing.png"))
    assert info.value.status == 404 and "missing.png [input]" in str(info.value)


def test_requests_are_checked():
    ok = parse_live_request({"image": {"filename": "a.png", "type": "temp"}, "model": "sam.pth", "node": 12,
                             "objects": '{"objects": [{"name": "cup", "box": [0, 0, 4, 4]}]}',
                             "positive_points": '[{"x": 1, "y": 2}]', "negative_points": "[[3, 4]]", "multimask": "best"})
    assert ok.image == ImageRef("a.png", "", "temp") and ok.model == "sam.pth" and ok.node == "12"
    assert ok.objects.objects[0].name == "cup" and len(ok.points) == 2 and ok.multimask == "best"
    assert parse_live_request({"image": {"filename": "a.png"}}).image.type == "input"
    for payload, words in [
        ([], "JSON object"),
        ({}, "image must be"),
        ({"image": "a.png"}, "image must be"),
        ({"image": {"filename": "a.png", "path": "/x"}}, "unknown key"),
        ({"image": {"filename": 3}}, "image.filename must be text"),
        ({"image": {"filename": "a.png", "type": "models"}}, "image.type must be one of"),
        ({"image": {"filename": "a.png"}, "multimask": "all"}, "multimask"),
        ({"image": {"filename": "a.png"}, "objects": '{"objects": [{"box": [0, 0, "x", 1]}]}'}, "object 1"),
        ({"image": {"filename": "a.png"}, "positive_points": "[[1]]"}, "positive_points"),
        ({"image": {"filename": "a.png"}, "model": ["x"]}, "model must be text"),
        ({"image": {"filename": "a.png"}, "node": "n" * 300}, "node is 300 characters"),
    ]:
        with pytest.raises(LiveRequestError, match=words) as info:
            parse_live_request(payload)
        assert info.value.status == 400


def test_pictures_read_as_load_image_reads_them(folders, tmp_path):
    """The same float32 values as ComfyUI's Load Image (uint8 / 255 in numpy), EXIF orientation applied."""
    picture = load_picture_like_comfy(Path(folders["input"]) / "photo.png")
    raw = np.array(Image.open(Path(folders["input"]) / "photo.png").convert("RGB")).astype(np.float32) / 255.0
    assert picture.dtype == torch.float32 and torch.equal(picture, torch.from_numpy(raw))
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.new("RGB", (40, 20), (200, 10, 10)).save(rotated, exif=exif)
    assert tuple(load_picture_like_comfy(rotated).shape) == (40, 20, 3)
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(LiveRequestError, match="cannot read text.png"):
        load_picture_like_comfy(tmp_path / "text.png")


def test_preview_size():
    assert preview_size(40, 56) == (40, 56)
    assert preview_size(3000, 4000) == (768, 1024)
    assert preview_size(5000, 10) == (1024, 2)


# ----------------------------------------------------------------------------- the registry


def test_registry_holds_models_weakly(pack, comfy, models_dir):
    live = _pack_module("py.live")
    _, paths = models_dir
    registry = live.LiveRegistry()
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_meta"].name, device="auto", precision="auto")
    registry.add_model(sam.name, sam.engine)
    assert registry.choose_engine(sam.name, None) is sam.engine
    assert registry.choose_engine(None, None) is sam.engine  # the only one loaded
    with pytest.raises(live.LiveRequestError) as info:
        registry.choose_engine("other.pth", None)
    assert info.value.status == 409 and info.value.need == "model" and sam.name in str(info.value)
    del info  # its traceback's frames hold the engine
    engine = weakref.ref(sam.engine)
    comfy.patchers.clear()
    comfy.mm.current_loaded_models.clear()
    del sam
    gc.collect()
    assert engine() is None  # the registry kept nothing alive
    with pytest.raises(live.LiveRequestError, match="run the workflow once") as info:
        registry.choose_engine(None, None)
    assert info.value.need == "model"


def test_sam_segment_records_its_run_for_the_editor(pack, comfy, models_dir):
    editor = _pack_module("nodes.editor")
    cache = _pack_module("py.cache")
    structures = _pack_module("py.structures")
    _, paths = models_dir
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_meta"].name, device="auto", precision="auto")
    assert any(engine is sam.engine for _, engine in editor.REGISTRY.alive_models())  # Load SAM registered it
    image = torch.rand(2, 24, 32, 3)
    dets = [structures.Detections([[0.0, 0, 16, 16]], [0.7], ["cup"], (24, 32))] * 2
    objects = json.dumps({"objects": [{"name": "saucer", "box": [18, 4, 30, 20]}, {"name": "handle", "points": [[4, 4, 1], [20, 20, 0]]}]})
    node = pack.NODE_CLASS_MAPPINGS["GroundedInpaintSegment"]()
    out = node.segment(image=image, sam_model=sam, multimask="auto", detections=dets, objects=objects, unique_id="7")
    segs = out["result"][0]
    assert [s.labels for s in segs] == [["cup", "saucer"]] * 2  # handle: its click refines cup, its negative one is left
    (entry,) = out["ui"][editor.UI_KEY]
    assert out["ui"]["images"]  # the preview is still shown
    assert (entry["width"], entry["height"]) == (32, 24)
    assert [i["label"] for i in entry["instances"]] == ["cup", "saucer"]
    assert entry["instances"][0]["points"] == [[4.0, 4.0, 1]] and entry["instances"][1]["source"] == ["object", 0]
    assert entry["instances"][1]["box"] == [18, 4, 30, 20]
    saved = Path(comfy.folder_paths.get_temp_directory()) / entry["image"]["filename"]
    assert entry["image"]["type"] == "temp" and saved.is_file()
    picture_hash = cache.image_key(image[0])
    assert saved.name == f"{editor.TEMP_PREFIX}{picture_hash}.png"
    assert editor.REGISTRY.picture_keys(saved) == ((picture_hash,), (24, 32))  # the run's exact key, not the PNG's
    record = editor.REGISTRY.run("7")
    assert record.engine() is sam.engine and record.image_hash == picture_hash and record.detections.labels == ["cup"]


# ----------------------------------------------------------------------------- the routes


class _Live:
    """The pack's LiveRoutes in an aiohttp app over the fake folders, with a fresh registry."""

    def __init__(self, folders, loader=None):
        editor = _pack_module("nodes.editor")
        live = _pack_module("py.live")
        self.registry = live.LiveRegistry()
        self.loaded = []
        loader = loader or (lambda path, ref: live.load_picture_like_comfy(path))
        self.routes = editor.LiveRoutes(lambda: folders, loader, self.registry)

    def _app(self):
        app = web.Application()
        table = web.RouteTableDef()
        self.routes.add_to(table)

        @table.get("/ping")
        async def ping(request):
            return web.json_response({"at": time.perf_counter()})

        app.add_routes(table)
        return app

    def run(self, scenario):
        async def main():
            async with TestClient(TestServer(self._app())) as client:
                return await scenario(client)

        return asyncio.run(main())


async def _post(client, path, payload, raw: bytes | None = None):
    editor = _pack_module("nodes.editor")
    url = {"preview": editor.PREVIEW_PATH, "embed": editor.EMBED_PATH}[path]
    response = await client.post(url, data=raw if raw is not None else json.dumps(payload),
                                 headers={"Content-Type": "application/json"})
    return response.status, await response.json()


def _mask(data: str) -> torch.Tensor:
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.mode == "LA"
        return torch.from_numpy(np.array(im)[..., 1] > 127)


@pytest.fixture
def loaded_sam(pack, comfy, models_dir):
    _, paths = models_dir
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_meta"].name, device="auto", precision="auto")
    sam.engine.clear_feature_cache()
    return sam


OBJECTS = {"objects": [{"name": "cup", "box": [4, 6, 30, 34], "points": [[15, 20, 1]]},
                       {"name": "saucer", "points": [[45, 30, 1], [50, 10, 0]]}]}


def test_live_masks_equal_the_run_and_need_model_then_embedding(pack, comfy, folders, loaded_sam):
    server = _Live(folders)
    request = {"image": {"filename": "photo.png", "subfolder": "", "type": "input"}, "model": loaded_sam.name,
               "objects": json.dumps(OBJECTS)}

    async def before_the_model(client):
        return await _post(client, "preview", request)

    status, body = server.run(before_the_model)
    assert status == 409 and body["need"] == "model" and "run the workflow once" in body["error"]

    server.registry.add_model(loaded_sam.name, loaded_sam.engine)

    async def scenario(client):
        results = [await _post(client, "preview", request)]  # no embedding yet
        results.append(await _post(client, "embed", request))
        results.append(await _post(client, "embed", request))  # already there
        results.append(await _post(client, "preview", request))
        return results

    (s1, b1), (s2, b2), (s3, b3), (s4, b4) = server.run(scenario)
    assert s1 == 409 and b1["need"] == "embedding" and "compute" in b1["error"]
    assert s2 == 200 and b2["computed"] is True and (b2["width"], b2["height"]) == (56, 40)
    assert s3 == 200 and b3["computed"] is False
    assert s4 == 200 and (b4["width"], b4["height"]) == (56, 40) and b4["mask_size"] == [56, 40]
    assert [i["label"] for i in b4["instances"]] == ["cup", "saucer"]
    assert [i["source"] for i in b4["instances"]] == [["object", 0], ["object", 1]]
    assert b4["instances"][0]["box"] == [4, 6, 30, 34] and b4["seconds"]["decode"] > 0
    # the same masks as queueing SAM Segment with these objects on the picture Load Image gives
    picture = load_picture_like_comfy(Path(folders["input"]) / "photo.png")[None]
    segs, _, _ = call(pack, "GroundedInpaintSegment", image=picture, sam_model=loaded_sam, multimask="auto", objects=json.dumps(OBJECTS))
    for i, instance in enumerate(b4["instances"]):
        assert torch.equal(_mask(instance["mask"]), segs[0].masks[i])
        assert instance["quality"] == pytest.approx(float(segs[0].quality[i]), abs=1e-4)


def test_live_masks_use_the_nodes_last_detections(pack, comfy, folders, loaded_sam):
    """After a run with DETECTIONS, a click inside a detected box refines it live, as the next run would."""
    structures = _pack_module("py.structures")
    picture = load_picture_like_comfy(Path(folders["input"]) / "photo.png")[None]
    dets = [structures.Detections([[0.0, 0, 28, 20]], [0.6], ["cup"], (40, 56))]
    node = pack.NODE_CLASS_MAPPINGS["GroundedInpaintSegment"]()
    node.segment(image=picture, sam_model=loaded_sam, multimask="auto", detections=dets, unique_id="5")  # the first run
    editor = _pack_module("nodes.editor")
    server = _Live(folders)
    server.registry = editor.REGISTRY  # what that run recorded (model, detections, the picture's key)
    server.routes.registry = editor.REGISTRY
    objects = {"objects": [{"name": "strap", "points": [[10, 10, 1]]}, {"name": "other", "points": [[50, 35, 1]]}]}

    async def scenario(client):
        return await _post(client, "preview", {"image": {"filename": "photo.png"}, "node": "5", "objects": json.dumps(objects)})

    status, body = server.run(scenario)
    assert status == 200, body
    assert body["detections"] == 1 and [i["label"] for i in body["instances"]] == ["cup", "other"]
    assert body["instances"][0]["points"] == [[10, 10, 1]] and body["instances"][0]["box"] == [0, 0, 28, 20]
    segs, _, _ = call(pack, "GroundedInpaintSegment", image=picture, sam_model=loaded_sam, multimask="auto",
                      detections=dets, objects=json.dumps(objects))
    assert torch.equal(_mask(body["instances"][0]["mask"]), segs[0].masks[0])


def test_bad_requests_get_400_with_a_message(pack, comfy, folders, loaded_sam):
    server = _Live(folders)
    server.registry.add_model(loaded_sam.name, loaded_sam.engine)
    good = {"image": {"filename": "photo.png"}, "model": loaded_sam.name}

    async def scenario(client):
        out = []
        out.append(await _post(client, "preview", None, raw=b"{not json"))
        out.append(await _post(client, "preview", None, raw=b"x" * (600 * 1024)))
        out.append(await _post(client, "preview", {**good, "image": {"filename": "../secret.png"}}))
        out.append(await _post(client, "embed", {**good, "image": {"filename": "secret.png", "subfolder": "../"}}))
        out.append(await _post(client, "preview", {**good, "image": {"filename": "missing.png"}}))
        out.append(await _post(client, "preview", {**good, "objects": '{"objects": [{"name": "cup", "points": [[500, 5, 1]]}]}'}))
        out.append(await _post(client, "preview", {**good, "objects": {"objects": [{"name": "cup", "box": [0, 0, 1e400, 2]}]}}))
        out.append(await _post(client, "preview", {**good, "model": "not-loaded.pth"}))
        out.append(await _post(client, "embed", {**good, "image": {"filename": "notes.png"}}))
        return out

    (Path(folders["input"]) / "notes.png").write_text("hello")
    results = server.run(scenario)
    statuses = [s for s, _ in results]
    assert statuses == [400, 400, 400, 400, 404, 400, 400, 409, 400], results
    messages = [b["error"] for _, b in results]
    assert "not JSON" in messages[0] and "at most" in messages[1] and "plain file name" in messages[2]
    assert "relative folder inside the input folder" in messages[3]
    assert "missing.png" in messages[4] and "'cup'" in messages[5] and "outside the 56x40 image" in messages[5]
    assert "finite" in messages[6] and "not-loaded.pth" in messages[7] and "cannot read notes.png" in messages[8]


def test_model_work_never_blocks_the_event_loop(pack, comfy, folders, loaded_sam):
    """A slow request runs in the worker thread: another request is answered meanwhile."""
    started = threading.Event()

    def slow_loader(path, ref):
        started.set()
        time.sleep(0.6)
        return load_picture_like_comfy(path)

    server = _Live(folders, loader=slow_loader)
    server.registry.add_model(loaded_sam.name, loaded_sam.engine)

    async def scenario(client):
        slow = asyncio.ensure_future(_post(client, "embed", {"image": {"filename": "photo.png"}, "model": loaded_sam.name}))
        while not started.is_set():
            await asyncio.sleep(0.01)
        ping = await (await client.get("/ping")).json()
        result = await slow
        return ping["at"], time.perf_counter(), result

    pinged, finished, (status, body) = server.run(scenario)
    assert status == 200 and body["computed"] is True
    assert finished - pinged > 0.3  # the ping was answered while the picture was still loading


def test_the_routes_exist_only_inside_comfyui(pack):
    editor = _pack_module("nodes.editor")
    assert "server" not in sys.modules or not hasattr(sys.modules["server"], "PromptServer")
    assert editor.register_routes() is False
    assert os.path.basename(editor.PREVIEW_PATH) == "preview" and editor.PREVIEW_PATH.startswith("/grounded_inpaint/")


def test_a_run_picture_that_png_cannot_hold_exactly(pack, comfy, loaded_sam):
    """A run's IMAGE that is not 8-bit (here random floats) is saved to temp as a PNG, which reads back a
    little different. Live masks still find the run's embedding (by the run's exact key); when the
    run encoded nothing (no prompt), compute encodes the PNG's pixels under their own key."""
    editor = _pack_module("nodes.editor")
    temp = comfy.folder_paths.get_temp_directory()
    folders = {"input": temp, "output": temp, "temp": temp}
    server = _Live(folders)
    server.registry = server.routes.registry = editor.REGISTRY
    node = pack.NODE_CLASS_MAPPINGS["GroundedInpaintSegment"]()
    picture = torch.rand(1, 30, 44, 3)
    out = node.segment(image=picture, sam_model=loaded_sam, multimask="auto", unique_id="21")  # no prompt: no encoder
    ref = out["ui"][editor.UI_KEY][0]["image"]
    png = load_picture_like_comfy(Path(temp) / ref["filename"])
    assert not torch.equal(png, picture[0])  # the PNG is not the IMAGE
    request = {"image": ref, "node": "21", "objects": '{"objects": [{"name": "a", "points": [[10, 10, 1]]}]}'}

    async def scenario(client):
        return [await _post(client, "preview", request), await _post(client, "embed", request),
                await _post(client, "preview", request)]

    (s1, b1), (s2, b2), (s3, b3) = server.run(scenario)
    assert (s1, b1["need"]) == (409, "embedding") and s2 == 200 and b2["computed"] is True
    assert s3 == 200 and [i["label"] for i in b3["instances"]] == ["a"]
    # a run with a prompt encodes the exact IMAGE: its key comes first, no compute needed
    picture2 = torch.rand(1, 30, 44, 3)
    out = node.segment(image=picture2, sam_model=loaded_sam, multimask="auto", unique_id="22", objects=request["objects"])
    request2 = {**request, "image": out["ui"][editor.UI_KEY][0]["image"], "node": "22"}

    async def scenario2(client):
        return await _post(client, "preview", request2)

    status, body = server.run(scenario2)
    assert status == 200
    assert torch.equal(_mask(body["instances"][0]["mask"]), out["result"][0][0].masks[0])
