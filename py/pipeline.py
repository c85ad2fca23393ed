"""Text → detections → instance masks, for a batch, in one call: the one batch loop.

The CLI, the "Grounded Segment" node and any library user call :func:`grounded_segment`; the separate
steps live in :mod:`grounded_inpaint.detector` and :mod:`grounded_inpaint.segment`. The loop runs
in two stages over the whole batch — every image through GroundingDINO, then every image through
SAM — so only one model needs to be on the device at a time (``stage`` lets the caller move it
there), and reports progress and checks for Cancel all along (``progress``, ``interrupt``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

from .detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD, GroundingDinoDetector
from .images import to_rgb_list
from .interrupt import InterruptCheck
from .prompts import normalize_prompt
from .sam.predictor import SamPredictorBase
from .segment import Multimask, segment
from .structures import Detections, Segments

__all__ = ["grounded_segment", "STAGES"]

#: The stages of :func:`grounded_segment`, in order (the names ``stage`` is called with).
STAGES = ("detect", "segment")


def grounded_segment(
    detector: GroundingDinoDetector,
    predictor: SamPredictorBase,
    images: Any,
    prompt: str,
    *,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    text_threshold: float = DEFAULT_TEXT_THRESHOLD,
    max_detections: int | None = None,
    nms_iou: float | None = DEFAULT_NMS_IOU,
    multimask: Multimask = "auto",
    progress: Callable[[int, int], None] | None = None,
    interrupt: InterruptCheck | None = None,
    stage: Callable[[str], ContextManager[Any]] | None = None,
) -> tuple[list[Detections], list[Segments]]:
    """Detect the objects named in ``prompt`` and segment each one: ``B`` images in, ``B`` results out.

    Arguments:
        detector: a loaded GroundingDINO (:func:`grounded_inpaint.models.load_detector`).
        predictor: a loaded SAM-family predictor (:func:`grounded_inpaint.models.load_segmenter`).
        images: ``[B, H, W, C]`` tensor (0..1), a list of images (sizes may differ) or one image.
        prompt: e.g. ``"shoes"`` or ``"dress, handbag"``.
        box_threshold, text_threshold, max_detections, nms_iou: see
            :meth:`grounded_inpaint.detector.GroundingDinoDetector.detect`.
        multimask: see :func:`grounded_inpaint.segment.segment`.
        progress: ``progress(done, total)`` with ``total = 2 * B``: one step per image and stage.
        interrupt: called between images and between the layers of every model pass; raise from it
            to stop (nothing partial is cached).
        stage: ``stage("detect")`` / ``stage("segment")`` → a context manager entered around each
            stage (ComfyUI's nodes load the stage's model onto the device there).

    Returns:
        ``(detections, segments)``: two lists of length ``B``, aligned with the input images.
        Images with no detection get empty entries (and an all-zero union mask).

    Raises:
        EmptyPromptError: the prompt names nothing (before any model runs).
        ValueError: a parameter out of range (named in the message).
    """
    normalize_prompt(prompt)  # an empty prompt fails before any model runs
    pictures = to_rgb_list(images)
    total = 2 * len(pictures)
    enter = stage if stage is not None else (lambda _name: contextlib.nullcontext())

    def report(offset: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    with enter("detect"):
        detections = detector.detect(
            pictures, prompt, box_threshold, text_threshold, max_detections, nms_iou,
            progress=report(0), interrupt=interrupt,
        )
    with enter("segment"):
        segments = segment(predictor, pictures, detections, multimask=multimask, progress=report(len(pictures)),
                           interrupt=interrupt)
    return detections, segments
