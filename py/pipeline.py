"""Text → detections → instance masks, for a batch, in one call.

This is what the CLI and the one-node "Grounded Segment" use; the separate steps live in
:mod:`grounded_inpaint.detector` and :mod:`grounded_inpaint.segment`.
"""

from __future__ import annotations

from typing import Any, Callable

from .detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD, GroundingDinoDetector
from .images import to_rgb_list
from .sam.predictor import SamPredictorBase
from .segment import Multimask, segment
from .structures import Detections, Segments

__all__ = ["grounded_segment"]


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
    interrupt: Callable[[], None] | None = None,
) -> tuple[list[Detections], list[Segments]]:
    """Detect the objects named in ``prompt`` and segment each one, image by image.

    Returns:
        ``(detections, segments)``: two lists of length ``B``, aligned with the input images.
        Images with no detection get empty entries (and an all-zero union mask).

    ``progress(done, total)`` counts two steps per image (detection, segmentation).
    """
    pictures = to_rgb_list(images)
    total = 2 * len(pictures)
    detections: list[Detections] = []
    segments: list[Segments] = []
    for i, picture in enumerate(pictures):
        if interrupt is not None:
            interrupt()
        found = detector.detect(
            [picture], prompt, box_threshold, text_threshold, max_detections, nms_iou
        )[0]
        detections.append(found)
        if progress is not None:
            progress(2 * i + 1, total)
        segments.append(segment(predictor, [picture], [found], multimask=multimask)[0])
        if progress is not None:
            progress(2 * i + 2, total)
    return detections, segments
