"""Words to tracked masks through a clip: the one entry point (:func:`grounded_track`), for both engines.

**SAM 2.1 + GroundingDINO** (``engine`` from :func:`grounded_inpaint.video.load_video_model`):

GroundingDINO runs on the first frame and then every ``detect_every`` frames; between those key
frames the video model (SAM 2.1's memory, :mod:`.sam2_video`) carries every object from frame to
frame. On a key frame the detections are matched to the tracks (:class:`.tracks.TrackBook`): new
objects start tracks with new ids, drifting tracks are re-anchored with their detection's box, and
tracks the video model has lost for too long end. Every frame gives a
:class:`~grounded_inpaint.structures.Segments` — the same type as for single images, so the mask,
overlay and cut-out steps work per frame — whose instances carry their object ``ids``.

**SAM 3** (``engine`` from :func:`grounded_inpaint.video.load_sam3_video_model`, no detector):
SAM 3's own detector finds the prompt's concepts (on every frame by default, or every
``detect_every`` frames) and its tracker carries them; ids, new objects, re-conditioning and ending
follow SAM 3's own rules (:mod:`.sam3_video`), and the results are the same
:class:`~grounded_inpaint.structures.Segments` with ids, labels (the concept) and scores.

Frames stream through: :func:`track_frames` takes any iterable of frames (a video being decoded, a
folder being read) and yields each frame's result as soon as it is ready; :func:`grounded_track`
collects them for a batch. Memory stays bounded whatever the clip's length (see
:mod:`.sam2_video`); only the per-frame results (one bool mask per object) accumulate.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, ContextManager, Iterable, Iterator

import torch

from ..checks import count, fraction
from ..detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD
from ..images import to_rgb
from ..interrupt import InterruptCheck
from ..prompts import normalize_prompt
from ..structures import Detections, Segments
from .tracks import TrackBook, mask_box

__all__ = ["grounded_track", "track_frames", "DEFAULT_DETECT_EVERY", "DEFAULT_MAX_OBJECTS", "MAX_OBJECTS_LIMIT"]

log = logging.getLogger(__name__)

DEFAULT_DETECT_EVERY = 10
DEFAULT_MAX_OBJECTS = 8
#: More objects than this would each cost a memory-attention pass per frame; the limit keeps a typo cheap.
MAX_OBJECTS_LIMIT = 64
#: An object counts as seen on a frame when the video model's visibility score reaches this.
VISIBLE_SCORE = 0.5


def _is_key(frame: int, detect_every: int) -> bool:
    return frame == 0 or (detect_every > 0 and frame % detect_every == 0)


def track_frames(
    detector: Any,
    engine: Any,
    frames: Iterable[Any],
    prompt: str,
    *,
    detect_every: int | None = None,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    nms_iou: float | None = DEFAULT_NMS_IOU,
    match_iou: float = 0.3,
    reanchor_iou: float = 0.6,
    forget_after: int = 15,
    state_device: torch.device | str | None = None,
    total: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    interrupt: InterruptCheck | None = None,
    stage: Callable[[str], ContextManager[Any]] | None = None,
    threshold: float | None = None,
    new_object_threshold: float | None = None,
) -> Iterator[Segments]:
    """Track the objects named in ``prompt`` through ``frames``, yielding one result per frame.

    Arguments:
        detector: a loaded GroundingDINO (:func:`grounded_inpaint.models.load_detector`), or anything
            with its ``detect(images, prompt, box_threshold, text_threshold, max_detections, nms_iou,
            interrupt=...)``; ``None`` with SAM 3 (ignored: SAM 3 finds the objects itself).
        engine: a video model: SAM 2.1 (:func:`grounded_inpaint.video.load_video_model`:
            ``start((H, W), state_device=...)`` returns a stream whose ``step(frame, prompts, remove=,
            interrupt=)`` gives ``{id: TrackedMask}`` per frame) or SAM 3
            (:func:`grounded_inpaint.video.load_sam3_video_model`, marked ``text_driven``).
        frames: ``[H, W, 3]`` images (tensors 0..1, arrays, PIL), all the same size, in order; a
            ``[B, H, W, C]`` tensor works too. Read lazily: one frame at a time.
        prompt: e.g. ``"person"`` or ``"dress, handbag"``.
        detect_every: run the detector on every N-th frame (frame 0, N, 2N, ...); 0 = the first
            frame only. Default: 10 with SAM 2.1, 1 (every frame) with SAM 3.
        max_objects: at most this many objects tracked at once (1..64; the best-scoring detections
            first).
        box_threshold, text_threshold, nms_iou: GroundingDINO's settings (see
            :meth:`grounded_inpaint.detector.GroundingDinoDetector.detect`); SAM 2.1 only.
        match_iou, reanchor_iou: the id rules (:class:`.tracks.TrackBook`); SAM 2.1 only.
        forget_after: a track unseen for more than this many frames in a row ends (both engines).
        threshold, new_object_threshold: SAM 3 only: a detection counts above ``threshold`` and starts
            a new object from ``new_object_threshold`` (default: the model's 0.5 and 0.7; see
            :class:`.sam3_video.Sam3VideoStream`).
        state_device: where the memory bank lives (default: the model's device; ComfyUI's nodes
            pass its offload device).
        total: the number of frames, when known, for ``progress``.
        progress: ``progress(done, total)`` after every frame (``total`` 0 when unknown).
        interrupt: called between frames and between the layers of every model pass; raise to stop.
        stage: ``stage("track")`` → a context manager held around the whole clip (ComfyUI's nodes
            load the detector and the video model onto the device there).

    Yields:
        One :class:`Segments` per frame, in order, with ``ids`` (empty where nothing is tracked).
        Instances are ordered by id; ``scores`` is the detection score of the object's latest
        matched detection (SAM 3: the score it started with), ``quality`` the video model's
        confidence that the object is visible.

    Raises:
        EmptyPromptError: the prompt names nothing (before any model runs).
        ValueError: a parameter out of range, or a frame of another size (naming the frame).
    """
    normalize_prompt(prompt)
    if detect_every is None:
        detect_every = getattr(engine, "default_detect_every", DEFAULT_DETECT_EVERY)
    detect_every = count("detect_every", detect_every, low=0, meaning="(0 = the first frame only)")
    max_objects = count("max_objects", max_objects, low=1, high=MAX_OBJECTS_LIMIT)
    forget_after = count("forget_after", forget_after, low=0)
    threshold = fraction("threshold", threshold, allow_none=True, meaning="(None = the model's own)")
    new_object_threshold = fraction("new_object_threshold", new_object_threshold, allow_none=True,
                                    meaning="(None = the model's own)")
    if getattr(engine, "text_driven", False):
        yield from _track_text_driven(
            engine, frames, prompt, detect_every=detect_every, max_objects=max_objects, threshold=threshold,
            new_object_threshold=new_object_threshold, forget_after=forget_after, state_device=state_device, total=total,
            progress=progress, interrupt=interrupt, stage=stage)
        return
    box_threshold = fraction("box_threshold", box_threshold)
    text_threshold = fraction("text_threshold", text_threshold)
    book = TrackBook(max_objects=max_objects, match_iou=match_iou, reanchor_iou=reanchor_iou, forget_after=forget_after)
    enter = stage if stage is not None else (lambda _name: contextlib.nullcontext())
    stream = None
    size: tuple[int, int] | None = None
    ended: list[int] = []
    with enter("track"):
        for index, raw in enumerate(frames):
            if interrupt is not None:
                interrupt()
            frame = to_rgb(raw, name=f"frame {index + 1}")
            if size is None:
                size = (int(frame.shape[0]), int(frame.shape[1]))
                stream = engine.start(size, state_device=state_device)
            elif tuple(frame.shape[:2]) != size:
                raise ValueError(
                    f"frame {index + 1} is {frame.shape[1]}x{frame.shape[0]} but the clip's first frame is "
                    f"{size[1]}x{size[0]}; every frame of a clip must have the same size (resize them first)"
                )
            prompts: dict[int, torch.Tensor] = {}
            if _is_key(index, detect_every):
                (found,) = detector.detect([frame], prompt, box_threshold, text_threshold, None, nms_iou, interrupt=interrupt)
                plan = book.plan(index, found.boxes, found.scores, found.labels)
                prompts = {i: found.boxes[c] for i, c in (*plan.start.items(), *plan.reanchor.items())}
                if plan.start or plan.reanchor or plan.dropped:
                    log.debug("frame %d: %d detections, new %s, re-anchored %s, over the limit %d", index, len(found),
                              sorted(plan.start), sorted(plan.reanchor), len(plan.dropped))
            results = stream.step(frame, prompts, remove=ended, interrupt=interrupt)
            seen = {i: (mask_box(r.mask) if r.score >= VISIBLE_SCORE else None) for i, r in results.items()}
            ended = book.observe(index, seen)  # removed from the video model before the next frame
            if ended:
                log.debug("frame %d: tracks %s ended (unseen for more than %d frames)", index, ended, book.forget_after)
            yield _segments(size, results, seen, book)
            if progress is not None:
                progress(index + 1, total or 0)
    if size is None:
        raise ValueError("the clip has no frames")


def _track_text_driven(engine: Any, frames: Iterable[Any], prompt: str, *, detect_every: int, max_objects: int,
                       threshold: float | None, new_object_threshold: float | None, forget_after: int,
                       state_device: Any, total: int | None, progress: Callable[[int, int], None] | None,
                       interrupt: InterruptCheck | None, stage: Callable[[str], ContextManager[Any]] | None
                       ) -> Iterator[Segments]:
    """:func:`track_frames` with an engine that finds the objects itself (SAM 3, :mod:`.sam3_video`)."""
    enter = stage if stage is not None else (lambda _name: contextlib.nullcontext())
    stream = None
    size: tuple[int, int] | None = None
    with enter("track"):
        for index, raw in enumerate(frames):
            if interrupt is not None:
                interrupt()
            frame = to_rgb(raw, name=f"frame {index + 1}")
            if size is None:
                size = (int(frame.shape[0]), int(frame.shape[1]))
                stream = engine.start(size, prompt, state_device=state_device, max_objects=max_objects, threshold=threshold,
                                      new_object_threshold=new_object_threshold, forget_after=forget_after)
            elif tuple(frame.shape[:2]) != size:
                raise ValueError(
                    f"frame {index + 1} is {frame.shape[1]}x{frame.shape[0]} but the clip's first frame is "
                    f"{size[1]}x{size[0]}; every frame of a clip must have the same size (resize them first)"
                )
            results = stream.step(frame, detect=_is_key(index, detect_every), interrupt=interrupt)
            ids = sorted(results)
            if ids:
                masks = torch.stack([results[i].mask for i in ids])
                yield Segments(masks, torch.stack([mask_box(m) for m in masks]), torch.tensor([results[i].score for i in ids]),
                               torch.tensor([results[i].visibility for i in ids]), [results[i].label for i in ids], size,
                               torch.tensor(ids, dtype=torch.int64))
            else:
                yield Segments(torch.zeros(0, *size, dtype=torch.bool), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), [],
                               size, torch.zeros(0, dtype=torch.int64))
            if progress is not None:
                progress(index + 1, total or 0)
    if size is None:
        raise ValueError("the clip has no frames")


def _segments(size: tuple[int, int], results: dict, seen: dict, book: TrackBook) -> Segments:
    """The visible objects of one frame as :class:`Segments` with ids (ordered by id)."""
    ids = [i for i in sorted(results) if seen.get(i) is not None]
    if not ids:
        return Segments(torch.zeros(0, *size, dtype=torch.bool), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), [], size,
                        torch.zeros(0, dtype=torch.int64))
    tracks = {i: book.tracks[i] for i in ids}  # a visible object's track is live
    return Segments(
        torch.stack([results[i].mask for i in ids]),
        torch.stack([seen[i] for i in ids]),
        torch.tensor([tracks[i].score for i in ids]),
        torch.tensor([results[i].score for i in ids]),
        [tracks[i].label for i in ids],
        size,
        torch.tensor(ids, dtype=torch.int64),
    )


def grounded_track(
    detector: Any,
    engine: Any,
    frames: Any,
    prompt: str,
    **options: Any,
) -> list[Segments]:
    """:func:`track_frames` for a whole batch: ``B`` frames in (``[B, H, W, C]`` tensor or a list), ``B``
    :class:`Segments` out, aligned with the frames (an entry with no instance where nothing is
    tracked). Takes the same keyword arguments; ``total`` is the batch size."""
    if torch.is_tensor(frames) and frames.ndim == 4:
        sequence: Any = [frames[i] for i in range(frames.shape[0])]
    elif isinstance(frames, (list, tuple)):
        sequence = list(frames)
    else:
        sequence = [frames]
    options.setdefault("total", len(sequence))
    results = list(track_frames(detector, engine, sequence, prompt, **options))
    assert len(results) == len(sequence)
    return results
