"""Live masks for the points-and-boxes editor: validation, bookkeeping and the decoder-only preview.

The editor on SAM Segment asks the server for SAM's masks after every edit, without queueing the
workflow. The server runs only SAM's prompt encoder and mask decoder (~0.07 s per object with SAM
ViT-B on a CPU) on the image embedding that an earlier run — or the editor's "compute" button —
left in the content-keyed feature cache (:mod:`grounded_inpaint.cache`). This module holds every
part of that which does not depend on ComfyUI, so it is tested without a server:

* :func:`resolve_served_file` — which file a ``{filename, subfolder, type}`` reference names, refusing
  anything ComfyUI's own ``/view`` route would refuse (absolute paths, ``..``, other folders);
* :func:`parse_live_request` — the request body, bounded and checked, with :class:`LiveRequestError`
  (an HTTP status and a message naming the field) for anything wrong;
* :class:`LiveRegistry` — weak references to the SAM models the pack has loaded and what each SAM
  Segment node saw in its last run: it never keeps a model alive, so ComfyUI's "Unload models" still
  frees it;
* :func:`preview_masks` — decode the objects' prompts on a cached embedding, masks as small PNGs.
"""

from __future__ import annotations

import base64
import copy
import io
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .objects import ObjectsSpec, parse_objects
from .segment import Multimask, Point, PromptPlan, decode_plan_masks, parse_points, plan_prompts
from .structures import Detections

__all__ = [
    "IMAGE_TYPES",
    "MAX_REQUEST_BYTES",
    "PREVIEW_MAX_SIDE",
    "ImageRef",
    "LiveRegistry",
    "LiveRequest",
    "LiveRequestError",
    "RunRecord",
    "encode_mask_png",
    "load_picture_like_comfy",
    "parse_live_request",
    "preview_masks",
    "preview_size",
    "resolve_served_file",
]

#: The folders a picture may come from, as ComfyUI names them in ``/view`` and in node outputs.
IMAGE_TYPES = ("input", "output", "temp")
#: The largest request body accepted, in bytes (a full editor state is a few kB).
MAX_REQUEST_BYTES = 512 * 1024
#: Preview masks come back with their longest side at most this (the editor draws them scaled).
PREVIEW_MAX_SIDE = 1024
#: The largest picture file the live routes read, in bytes.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
_MAX_NAME = 255
_MAX_SUBFOLDER = 1024


class LiveRequestError(ValueError):
    """A request the live routes refuse: ``status`` is the HTTP status, ``need`` what would fix it.

    ``need`` is ``"model"`` (no SAM model loaded: run the workflow once), ``"embedding"`` (the
    picture was not encoded yet: run the workflow or press the editor's compute button) or ``""``.
    """

    def __init__(self, message: str, status: int = 400, need: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.need = need

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "need": self.need}


@dataclass(frozen=True)
class ImageRef:
    """A picture ComfyUI serves: ``/view?filename=..&subfolder=..&type=..``."""

    filename: str
    subfolder: str = ""
    type: str = "input"

    def annotated(self) -> str:
        """ComfyUI's annotated name (``"sub/name.png [temp]"``), as Load Image reads it."""
        name = f"{self.subfolder.strip('/')}/{self.filename}" if self.subfolder.strip("/") else self.filename
        return f"{name} [{self.type}]"

    def as_json(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def _check_part(text: Any, what: str, limit: int) -> str:
    if not isinstance(text, str):
        raise LiveRequestError(f"image.{what} must be text; got {type(text).__name__}")
    if len(text) > limit:
        raise LiveRequestError(f"image.{what} is {len(text)} characters long; at most {limit} are accepted")
    if "\x00" in text or "\\" in text:
        raise LiveRequestError(f"image.{what} {text!r} contains a NUL or a backslash")
    return text


def _inside(folder: str, path: str) -> bool:
    try:
        return os.path.commonpath((folder, path)) == folder
    except ValueError:  # different drives on Windows
        return False


def resolve_served_file(folders: Mapping[str, str | os.PathLike], ref: ImageRef) -> Path:
    """The file ``ref`` names, if ComfyUI serves it from its input, output or temp folder.

    The same rules as ComfyUI's ``/view`` (absolute paths and ``..`` refused, the subfolder must stay
    inside the type's folder, paths compared after ``os.path.abspath`` so that a picture linked
    into the input folder works as it does in Load Image), plus: the file name is a plain name
    (no ``/``), no backslashes or NUL characters, and the file exists.

    Arguments:
        folders: ``{"input": dir, "output": dir, "temp": dir}`` (ComfyUI's ``folder_paths``).
        ref: the picture.

    Raises:
        LiveRequestError: 400 for a malformed or escaping reference, 404 when there is no such file.
    """
    if ref.type not in IMAGE_TYPES or ref.type not in folders:
        raise LiveRequestError(f"image.type must be one of {', '.join(IMAGE_TYPES)}; got {ref.type!r}")
    filename = _check_part(ref.filename, "filename", _MAX_NAME)
    subfolder = _check_part(ref.subfolder, "subfolder", _MAX_SUBFOLDER)
    if not filename or filename in (".", "..") or "/" in filename:
        raise LiveRequestError(f"image.filename must be a plain file name (no folders); got {filename!r}")
    if subfolder.startswith("/") or (len(subfolder) > 1 and subfolder[1] == ":") or ".." in subfolder.split("/"):
        raise LiveRequestError(f"image.subfolder must be a relative folder inside the {ref.type} folder; got {subfolder!r}")
    base = os.path.abspath(os.fspath(folders[ref.type]))
    folder = os.path.abspath(os.path.join(base, subfolder))
    path = os.path.abspath(os.path.join(folder, filename))
    if not _inside(base, folder) or not _inside(base, path):
        raise LiveRequestError(f"image {ref.annotated()!r} lies outside ComfyUI's {ref.type} folder")
    if not os.path.isfile(path):
        raise LiveRequestError(f"no picture {ref.annotated()!r} in ComfyUI's {ref.type} folder", status=404)
    return Path(path)


@dataclass(frozen=True)
class LiveRequest:
    """A checked request of the live routes.

    Attributes:
        image: the picture.
        model: the SAM model's name in Load SAM Model (``None``: the one this node last ran with).
        node: the SAM Segment node's id in the prompt (its last run's detections and model).
        objects: the editor's objects.
        points: the node's plain clicks (positive and negative inputs), as in a run.
        multimask: the node's setting.
    """

    image: ImageRef
    model: str | None = None
    node: str | None = None
    objects: ObjectsSpec = field(default_factory=ObjectsSpec)
    points: tuple[Point, ...] = ()
    multimask: Multimask = "auto"


def _optional_text(payload: Mapping[str, Any], key: str, limit: int = 256) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise LiveRequestError(f"{key} must be text; got {type(value).__name__}")
    text = str(value)
    if len(text) > limit:
        raise LiveRequestError(f"{key} is {len(text)} characters long; at most {limit} are accepted")
    return text


def parse_live_request(payload: Any) -> LiveRequest:
    """Check the JSON body of a live request.

    ``{"image": {"filename", "subfolder", "type"}, "model": str, "node": str, "objects": <objects JSON,
    text or decoded>, "positive_points": str, "negative_points": str, "multimask": "auto"|"best"|"single"}``;
    only ``image`` is required.

    Raises:
        LiveRequestError: 400, naming the field (the objects' own errors name the object).
    """
    if not isinstance(payload, dict):
        raise LiveRequestError("the request body must be a JSON object")
    image = payload.get("image")
    if not isinstance(image, dict) or "filename" not in image:
        raise LiveRequestError('image must be {"filename": .., "subfolder": .., "type": "input" | "output" | "temp"}')
    unknown = sorted(set(image) - {"filename", "subfolder", "type"})
    if unknown:
        raise LiveRequestError(f"image has unknown key(s) {', '.join(map(repr, unknown))}")
    ref = ImageRef(image["filename"], image.get("subfolder") or "", image.get("type") or "input")
    _check_part(ref.filename, "filename", _MAX_NAME)
    _check_part(ref.subfolder, "subfolder", _MAX_SUBFOLDER)
    if ref.type not in IMAGE_TYPES:
        raise LiveRequestError(f"image.type must be one of {', '.join(IMAGE_TYPES)}; got {ref.type!r}")
    multimask = payload.get("multimask", "auto")
    if multimask not in ("auto", "best", "single"):
        raise LiveRequestError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    try:
        objects = parse_objects(payload.get("objects"))
        points = parse_points(payload.get("positive_points"), positive=True, name="positive_points") + parse_points(
            payload.get("negative_points"), positive=False, name="negative_points")
    except ValueError as exc:
        raise LiveRequestError(str(exc)) from None
    return LiveRequest(ref, _optional_text(payload, "model"), _optional_text(payload, "node"), objects, tuple(points), multimask)


def load_picture_like_comfy(path: str | os.PathLike) -> torch.Tensor:
    """``[H, W, 3]`` float32 in ``0..1``: the first frame of an image file, read as ComfyUI's Load Image
    reads it (EXIF orientation applied, mode ``I`` scaled by 1/255, converted to RGB, ``uint8 / 255``
    in float32), so its content key matches the IMAGE a Load Image node gives for the same file.

    The nodes use ComfyUI's own Load Image when it is there; this is the same conversion for tests
    and other hosts.

    Raises:
        LiveRequestError: 400 when the file is too large or not a picture Pillow can read.
    """
    from PIL import Image, ImageOps

    size = os.path.getsize(path)
    if size > MAX_IMAGE_BYTES:
        raise LiveRequestError(f"{os.path.basename(path)} is {size / 2**20:.0f} MB; pictures over {MAX_IMAGE_BYTES // 2**20} MB are not read")
    try:
        with Image.open(path) as im:
            im.seek(0)
            frame = ImageOps.exif_transpose(im) or im
            if frame.mode == "I":
                frame = frame.point(lambda i: i * (1 / 255))
            rgb = np.array(frame.convert("RGB")).astype(np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise LiveRequestError(f"cannot read {os.path.basename(path)} as a picture ({type(exc).__name__}: {exc})") from None
    return torch.from_numpy(rgb)


@dataclass
class RunRecord:
    """What one SAM Segment node saw in its last run (its first image).

    Attributes:
        engine: weak reference to the SAM predictor it ran with.
        image_hash: :func:`~grounded_inpaint.cache.image_key` of its first image.
        size: that image's ``(height, width)``.
        detections: that image's detections, or ``None`` (no DETECTIONS input).
        model_name: the name Load SAM Model was given.
    """

    engine: Callable[[], Any]
    image_hash: str
    size: tuple[int, int]
    detections: Detections | None = None
    model_name: str = ""


class LiveRegistry:
    """Weak references to loaded SAM models and the last run of each SAM Segment node.

    Nothing here keeps a model alive: when ComfyUI drops a loader's output ("Unload models",
    ``POST /free``, a new model chosen), the model is freed and its entries here go dead.
    Thread-safe; the tables are bounded (the oldest entries are dropped first).

    Arguments:
        max_entries: the most node runs and picture keys remembered.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._lock = threading.Lock()
        self._models: "OrderedDict[int, tuple[str, weakref.ref]]" = OrderedDict()
        self._runs: "OrderedDict[str, RunRecord]" = OrderedDict()
        self._pictures: "OrderedDict[tuple, tuple[tuple[str, ...], tuple[int, int]]]" = OrderedDict()
        self._max = max_entries

    # ---------------------------------------------------------------- models

    def add_model(self, name: str, engine: Any) -> None:
        """Remember that ``engine`` (a SAM predictor) was loaded as ``name``."""
        with self._lock:
            self._models[id(engine)] = (name, weakref.ref(engine))
            self._models.move_to_end(id(engine))
            self._prune(self._models)

    def alive_models(self) -> list[tuple[str, Any]]:
        """``(name, engine)`` of every loaded model still alive, most recently loaded last."""
        with self._lock:
            out = []
            for key, (name, ref) in list(self._models.items()):
                engine = ref()
                if engine is None:
                    del self._models[key]
                else:
                    out.append((name, engine))
            return out

    # ---------------------------------------------------------------- runs

    def record_run(self, node: str, record: RunRecord) -> None:
        """Remember node ``node``'s last run (replacing the one before)."""
        with self._lock:
            self._runs[str(node)] = record
            self._runs.move_to_end(str(node))
            self._prune(self._runs)

    def run(self, node: str | None) -> RunRecord | None:
        """Node ``node``'s last run, or ``None``."""
        if node is None:
            return None
        with self._lock:
            return self._runs.get(str(node))

    # ---------------------------------------------------------------- pictures

    def picture_keys(self, path: Path) -> tuple[tuple[str, ...], tuple[int, int]] | None:
        """The content keys known for the file at ``path`` as it is now (same size and mtime), and its
        ``(height, width)``; ``None`` when it was never seen.

        A picture may have two keys: the exact key of the IMAGE a run saw (recorded by the node that
        saved the file) and the key of the file's own pixels (a PNG holds 8 bits per channel, so an
        IMAGE that was not 8-bit to begin with reads back a little different). The run's key comes first.
        """
        try:
            stat = path.stat()
        except OSError:
            return None
        with self._lock:
            return self._pictures.get((str(path), stat.st_mtime_ns, stat.st_size))

    def remember_picture(self, path: Path, image_hash: str, size: tuple[int, int], *, first: bool = False) -> None:
        """Add ``image_hash`` to the keys of the file at ``path`` (until the file changes); ``first`` puts
        it before the others (the exact key of a run)."""
        try:
            stat = path.stat()
        except OSError:
            return
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            hashes = self._pictures.get(key, ((), size))[0]
            if image_hash not in hashes:
                hashes = (image_hash, *hashes) if first else (*hashes, image_hash)
            self._pictures[key] = (hashes, (int(size[0]), int(size[1])))
            self._pictures.move_to_end(key)
            self._prune(self._pictures)

    def choose_engine(self, model: str | None, node: str | None) -> Any:
        """The SAM predictor a request means: the newest alive model loaded as ``model``; without a
        name, the one node ``node`` last ran with; else the only loaded one.

        Raises:
            LiveRequestError: 409 ``need="model"`` when there is none (run the workflow once).
        """
        alive = self.alive_models()
        if model is not None:
            named = [engine for name, engine in alive if name == model]
            if named:
                return named[-1]
            loaded = ", ".join(sorted({name for name, _ in alive})) or "none"
            raise LiveRequestError(
                f"the SAM model {model!r} is not loaded (loaded: {loaded}); run the workflow once (Queue) to load it",
                status=409, need="model")
        record = self.run(node)
        engine = record.engine() if record is not None else None
        if engine is not None:
            return engine
        if len(alive) == 1:
            return alive[0][1]
        raise LiveRequestError(
            "no SAM model is loaded for this node; run the workflow once (Queue) to load it" if not alive else
            "several SAM models are loaded; name one (the editor sends the one connected to the node)",
            status=409, need="model")

    def _prune(self, table: OrderedDict) -> None:
        while len(table) > self._max:
            table.popitem(last=False)


def preview_size(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """``(height, width)`` of preview masks: the picture's size, scaled down so the longest side is at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def encode_mask_png(mask: torch.Tensor) -> str:
    """A ``[h, w]`` bool mask as base64 PNG, grey+alpha: white where the mask is set, transparent elsewhere."""
    from PIL import Image

    alpha = mask.to(torch.uint8).mul_(255).cpu().numpy()
    picture = Image.fromarray(np.stack([np.full_like(alpha, 255), alpha], axis=-1), mode="LA")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plan_json(plan: PromptPlan) -> dict[str, Any]:
    return {"label": plan.label, "source": list(plan.source),
            "points": [[p.x, p.y, 1 if p.positive else 0] for p in plan.points]}


def preview_masks(
    engine: Any,
    image_hash: str | tuple[str, ...],
    size: tuple[int, int],
    request: LiveRequest,
    *,
    detections: Detections | None = None,
    max_side: int = PREVIEW_MAX_SIDE,
) -> dict[str, Any]:
    """SAM's masks for the request's prompts, from the cached embedding of the picture ``image_hash``.

    The prompts are formed exactly as in a run (:func:`grounded_inpaint.segment.plan_prompts`: the
    detections of the node's last run on this picture, the objects, the plain clicks). Only the
    prompt encoder and mask decoder run, on a shallow copy of ``engine`` (the model is shared; the
    node's own predictor state is never touched, so a run may go on at the same time).

    Arguments:
        engine: a SAM predictor (:class:`~grounded_inpaint.sam.predictor.SamPredictorBase`).
        image_hash: the picture's content key, or its keys in order of preference (the first one
            whose embedding is cached is used); size: its ``(height, width)``.
        detections: the picture's detections from the node's last run, or ``None``.
        max_side: the longest side of the masks returned.

    Returns:
        ``{"width", "height", "instances": [{"label", "source", "points", "box", "quality", "mask"}],
        "mask_size": [w, h], "seconds": {"decode": s, "png": s}}`` (SAM's decoder with the mask
        upsampling, and the PNG encoding); each ``mask`` is :func:`encode_mask_png`.

    Raises:
        LiveRequestError: 409 ``need="embedding"`` when the picture's embedding is not in the cache;
            400 when a prompt lies outside the picture.
    """
    h, w = int(size[0]), int(size[1])
    try:
        plans = plan_prompts((h, w), detections, points=request.points, objects=request.objects, warn=False)
    except ValueError as exc:
        raise LiveRequestError(str(exc)) from None
    view = copy.copy(engine)
    hashes = (image_hash,) if isinstance(image_hash, str) else tuple(image_hash)
    if not any(view.set_cached_image(key, (h, w)) for key in hashes):
        cache = view.feature_cache
        if cache is None or not cache.enabled:
            raise LiveRequestError("the feature cache is off (GROUNDED_INPAINT_CACHE_MB=0); live masks need it", status=409)
        raise LiveRequestError("this picture has not been encoded by this SAM model yet; run the workflow or press "
                               "'compute' in the editor", status=409, need="embedding")
    mh, mw = preview_size(h, w, max_side)
    view.mask_output_size = (mh, mw)
    start = time.perf_counter()
    instances = []
    encoding = 0.0
    if plans:
        masks, quality, boxes, _ = decode_plan_masks(view, plans, multimask=request.multimask)
        decoded = time.perf_counter()
        for i, plan in enumerate(plans):
            instances.append({**_plan_json(plan), "box": [round(float(v), 2) for v in boxes[i]],
                              "quality": round(float(quality[i]), 4), "mask": encode_mask_png(masks[i])})
        encoding = time.perf_counter() - decoded
    view.reset_image()
    return {"width": w, "height": h, "mask_size": [mw, mh], "instances": instances,
            "seconds": {"decode": round(time.perf_counter() - start - encoding, 4), "png": round(encoding, 4)}}
