"""The points-and-boxes editor's server side: live-mask routes on ComfyUI's own server.

Two routes are added to ComfyUI's ``PromptServer`` (no new port; ComfyUI also serves them under
``/api``):

* ``POST /grounded_inpaint/sam/preview`` — SAM's masks for the editor's objects, from the cached
  image embedding (decoder only);
* ``POST /grounded_inpaint/sam/embed`` — compute that embedding with a loaded SAM model (the
  editor's "compute" button), when no run has done it yet.

Both take the JSON of :func:`grounded_inpaint.live.parse_live_request`, accept only pictures that
ComfyUI serves (input / output / temp, checked like ``/view``) and only SAM models the pack has
loaded (weak references: "Unload models" still frees them), run the model work in one worker
thread so ComfyUI's event loop never waits, and answer a bad request with 400 (409 when the model
or the embedding is missing, 404 for a missing picture) and ``{"error": message, "need": ...}``.

The routes are registered only inside ComfyUI (when ``server`` imports); :func:`add_routes` takes
the folders and the picture loader as arguments, so tests run the handlers against a fake folder
layout with aiohttp's test client.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..py.cache import image_key
from ..py.images import save_image, to_rgb
from ..py.live import (
    MAX_IMAGE_BYTES,
    MAX_REQUEST_BYTES,
    ImageRef,
    LiveRegistry,
    LiveRequest,
    LiveRequestError,
    RunRecord,
    load_picture_like_comfy,
    parse_live_request,
    preview_masks,
    resolve_served_file,
)
from ..py.objects import ObjectsSpec
from ..py.segment import Point, plan_prompts
from ..py.structures import Detections, Segments

log = logging.getLogger("grounded_inpaint.nodes")

PREVIEW_PATH = "/grounded_inpaint/sam/preview"
EMBED_PATH = "/grounded_inpaint/sam/embed"
#: The key of SAM Segment's UI output that tells the editor about the last run.
UI_KEY = "gi_editor"
#: File name prefix of the pictures SAM Segment leaves in the temp folder for the editor.
TEMP_PREFIX = "grounded_inpaint_editor_"

#: The loaded SAM models and the last run of each SAM Segment node (weak references only).
REGISTRY = LiveRegistry()
_executor: Executor | None = None


def _worker() -> Executor:
    """One thread for all live work: requests queue there, and the event loop never waits on a model."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grounded-inpaint-live")
    return _executor


# ----------------------------------------------------------------------------- what the nodes record


def remember_model(name: str, managed: Any) -> None:
    """Called by Load SAM Model: the live routes may use this model while it is alive."""
    REGISTRY.add_model(name, managed.engine)


def _temp_dir() -> Path | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(folder_paths.get_temp_directory())


def record_run(
    node_id: str | None,
    managed: Any,
    images: torch.Tensor,
    detections: Sequence[Detections] | None,
    points: Sequence[Point],
    objects: ObjectsSpec,
    segments: Sequence[Segments],
) -> dict[str, list[dict[str, Any]]]:
    """Remember what SAM Segment node ``node_id`` saw (its first image) and return its ``ui`` entry.

    The first image is saved to ComfyUI's temp folder once per content (named by its content key)
    so the editor can show it when no Load Image feeds the node, and its key is remembered for that
    file, so live masks find its embedding even where a PNG round trip would change the pixels.
    The ``ui`` entry tells the editor the picture, its size and each instance of the first image
    with the prompts that made it (``{"gi_editor": [{"image", "width", "height", "instances"}]}``).
    """
    first = to_rgb(images[0])
    h, w = int(first.shape[0]), int(first.shape[1])
    picture_hash = image_key(first)
    dets = detections[0] if detections is not None else None
    entry: dict[str, Any] = {"width": w, "height": h, "image": None, "instances": []}
    folder = _temp_dir()
    if folder is not None:
        name = f"{TEMP_PREFIX}{picture_hash}.png"
        path = folder / name
        try:
            if not path.is_file():
                save_image(first, path)
            REGISTRY.remember_picture(path, picture_hash, (h, w), first=True)
            entry["image"] = ImageRef(name, "", "temp").as_json()
        except OSError as exc:  # a full disk must not fail the run: the editor then shows no picture
            log.warning("could not save the editor's picture to %s: %s", path, exc)
    if node_id is not None:
        REGISTRY.record_run(str(node_id), RunRecord(_weak(managed.engine), picture_hash, (h, w), dets, managed.name))
    plans = plan_prompts((h, w), dets, points=points, objects=objects, warn=False)
    seg = segments[0]
    for i, plan in enumerate(plans[: len(seg)]):
        entry["instances"].append({
            "label": plan.label, "source": list(plan.source), "box": [round(float(v), 2) for v in seg.boxes[i]],
            "points": [[p.x, p.y, 1 if p.positive else 0] for p in plan.points],
        })
    return {UI_KEY: [entry]}


def _weak(engine: Any) -> Callable[[], Any]:
    import weakref

    return weakref.ref(engine)


# ----------------------------------------------------------------------------- ComfyUI's folders and loader


def comfy_folders() -> dict[str, str]:
    """ComfyUI's input, output and temp folders (``folder_paths``)."""
    import folder_paths  # type: ignore[import-not-found]

    return {"input": folder_paths.get_input_directory(), "output": folder_paths.get_output_directory(),
            "temp": folder_paths.get_temp_directory()}


def comfy_load_picture(path: Path, ref: ImageRef) -> torch.Tensor:
    """``[H, W, 3]``: the picture as ComfyUI's own Load Image node reads it (the same tensor, so the
    same content key as the IMAGE a Load Image node feeds to SAM Segment); the same conversion
    (:func:`~grounded_inpaint.live.load_picture_like_comfy`) outside ComfyUI."""
    loader = getattr(sys.modules.get("nodes"), "LoadImage", None)
    if loader is None:
        return load_picture_like_comfy(path)
    if path.stat().st_size > MAX_IMAGE_BYTES:
        return load_picture_like_comfy(path)  # raises the size error
    try:
        image = loader().load_image(ref.annotated())[0]
    except Exception as exc:  # noqa: BLE001 - Pillow's many errors: a picture it cannot read
        raise LiveRequestError(f"cannot read {ref.annotated()!r} as a picture ({type(exc).__name__}: {exc})") from None
    return image[0]


# ----------------------------------------------------------------------------- the routes


async def _read_json(request: Any) -> Any:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise LiveRequestError(f"the request body is {request.content_length} bytes; at most {MAX_REQUEST_BYTES} are accepted")
    body = await request.content.read(MAX_REQUEST_BYTES + 1)
    if len(body) > MAX_REQUEST_BYTES:
        raise LiveRequestError(f"the request body is over {MAX_REQUEST_BYTES} bytes")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LiveRequestError(f"the request body is not JSON ({exc})") from None


class LiveRoutes:
    """The handlers of the two routes, over a folder layout, a picture loader and a registry.

    Arguments:
        folders: returns ``{"input": dir, "output": dir, "temp": dir}``.
        load_picture: ``(path, ref) -> [H, W, 3]`` float32.
        registry: the models and runs (default: the nodes' :data:`REGISTRY`).
        executor: where model work runs (default: one shared worker thread).
    """

    def __init__(
        self,
        folders: Callable[[], Mapping[str, str]],
        load_picture: Callable[[Path, ImageRef], torch.Tensor],
        registry: LiveRegistry | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.folders = folders
        self.load_picture = load_picture
        self.registry = registry if registry is not None else REGISTRY
        self.executor = executor

    def _picture_keys(self, path: Path, ref: ImageRef) -> tuple[tuple[str, ...], tuple[int, int]]:
        """The picture's content keys and ``(h, w)``: from the registry when the file is known, else read and hashed."""
        known = self.registry.picture_keys(path)
        if known is not None:
            return known
        picture_hash, size = self._read(path, ref)[1:]
        return (picture_hash,), size

    def _read(self, path: Path, ref: ImageRef) -> tuple[torch.Tensor, str, tuple[int, int]]:
        """The file's pixels (as Load Image reads them), their content key and ``(h, w)``; the key is remembered."""
        picture = to_rgb(self.load_picture(path, ref))
        size = (int(picture.shape[0]), int(picture.shape[1]))
        picture_hash = image_key(picture)
        self.registry.remember_picture(path, picture_hash, size)
        return picture, picture_hash, size

    def _preview_job(self, engine: Any, path: Path, request: LiveRequest) -> dict[str, Any]:
        start = time.perf_counter()
        hashes, size = self._picture_keys(path, request.image)
        record = self.registry.run(request.node)
        detections = record.detections if record is not None and record.image_hash in hashes else None
        result = preview_masks(engine, hashes, size, request, detections=detections)
        result["seconds"]["total"] = round(time.perf_counter() - start, 4)
        result["detections"] = 0 if detections is None else len(detections)
        return result

    def _embed_job(self, engine: Any, path: Path, request: LiveRequest) -> dict[str, Any]:
        """Encode the picture unless one of its keys has an embedding. The file's own pixels are
        encoded (under their own key: a run's exact IMAGE, if it differed, is not available here)."""
        start = time.perf_counter()
        hashes, size = self._picture_keys(path, request.image)
        if any(engine.has_cached_features(key) for key in hashes):
            return {"computed": False, "width": size[1], "height": size[0], "seconds": round(time.perf_counter() - start, 4)}
        cache = engine.feature_cache
        if cache is None or not cache.enabled:
            raise LiveRequestError("the feature cache is off (GROUNDED_INPAINT_CACHE_MB=0); live masks need it", status=409)
        picture = self._read(path, request.image)[0]
        view = copy.copy(engine)  # the node's own predictor state is never touched
        view.set_image(picture)
        view.reset_image()
        return {"computed": True, "width": size[1], "height": size[0], "seconds": round(time.perf_counter() - start, 4)}

    async def _handle(self, request: Any, job: Callable[[Any, Path, LiveRequest], dict[str, Any]]) -> Any:
        from aiohttp import web

        try:
            live = parse_live_request(await _read_json(request))
            path = resolve_served_file(self.folders(), live.image)
            engine = self.registry.choose_engine(live.model, live.node)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.executor or _worker(), job, engine, path, live)
        except LiveRequestError as exc:
            return web.json_response(exc.as_json(), status=exc.status)
        except Exception as exc:  # noqa: BLE001 - never a bare 500 without a message
            log.exception("live SAM request failed")
            return web.json_response({"error": f"{type(exc).__name__}: {exc}", "need": ""}, status=500)
        return web.json_response(result)

    async def preview(self, request: Any) -> Any:
        return await self._handle(request, self._preview_job)

    async def embed(self, request: Any) -> Any:
        return await self._handle(request, self._embed_job)

    def add_to(self, routes: Any) -> None:
        """Add both routes to an aiohttp ``RouteTableDef`` (ComfyUI's ``PromptServer.instance.routes``)."""
        routes.post(PREVIEW_PATH)(self.preview)
        routes.post(EMBED_PATH)(self.embed)


def register_routes() -> bool:
    """Add the live routes to ComfyUI's server; ``False`` outside ComfyUI (no ``server`` module)."""
    try:
        from server import PromptServer  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - not inside ComfyUI (tests, the CLI)
        return False
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return False
    LiveRoutes(comfy_folders, comfy_load_picture).add_to(instance.routes)
    log.info("grounded-inpaint: live SAM masks at %s", PREVIEW_PATH)
    return True
