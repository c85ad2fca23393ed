"""Detections (and optional clicks or a rough mask) → one SAM instance mask per object.

:func:`segment` encodes each image once and decodes all of its prompts in one batched call:

* every detection box is one prompt (its label and score are carried over);
* user points (:class:`Point`) refine the box that contains them; points outside every box form
  one extra instance labelled ``"points"``; with no boxes at all, the points are that instance;
* a mask prompt (a rough ``[H, W]`` mask) becomes one extra instance labelled ``"mask"``, prompted
  with the mask's bounding box and the mask itself;
* an image with no prompt at all yields an empty :class:`Segments` of the right size.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch

from .images import to_mask, to_rgb, to_rgb_list
from .interrupt import InterruptCheck
from .sam.predictor import SamPredictorBase
from .structures import Detections, Segments

__all__ = ["Point", "parse_points", "segment", "segment_image", "Multimask", "mask_bbox", "MAX_POINTS"]

log = logging.getLogger(__name__)

#: ``"auto"``: single-mask output for prompts with a box, best-of-3 for points/mask-only prompts.
Multimask = Literal["auto", "best", "single"]

#: The most clicks one image may carry (SAM's decoder cost grows with them; real edits use a handful).
MAX_POINTS = 256


@dataclass(frozen=True)
class Point:
    """A click in pixels of the original image; ``positive=False`` marks background."""

    x: float
    y: float
    positive: bool = True


def parse_points(text: str | Sequence[Any] | None, *, positive: bool = True, name: str = "points") -> list[Point]:
    """Parse points given as JSON: ``[{"x": 10, "y": 20}, ...]`` or ``[[10, 20], ...]``.

    An empty string or ``None`` gives no points. Errors name the offending entry.
    """
    if text is None:
        return []
    if isinstance(text, str):
        if not text.strip():
            return []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: not valid JSON ({exc.msg}); expected e.g. [{{\"x\": 120, \"y\": 80}}]") from None
    else:
        data = text
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{name}: expected a list of points such as [{{\"x\": 120, \"y\": 80}}]; got {type(data).__name__}")
    points = []
    for i, item in enumerate(data):
        try:
            if isinstance(item, dict):
                x, y = float(item["x"]), float(item["y"])
            else:
                x, y = float(item[0]), float(item[1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise ValueError(f"{name}: entry {i} ({item!r}) is not a point; use {{\"x\": 120, \"y\": 80}}") from None
        if not (torch.isfinite(torch.tensor([x, y])).all()):
            raise ValueError(f"{name}: entry {i} has a non-finite coordinate ({item!r})")
        points.append(Point(x, y, positive))
    if len(points) > MAX_POINTS:
        raise ValueError(f"{name}: {len(points)} points were given; at most {MAX_POINTS} are accepted")
    return points


def _check_points(points: Sequence[Point], height: int, width: int) -> None:
    """Every point lies on the ``height x width`` image (pixel coordinates, edges included)."""
    if len(points) > MAX_POINTS:
        raise ValueError(f"{len(points)} points were given for one image; at most {MAX_POINTS} are accepted")
    for i, p in enumerate(points):
        if not isinstance(p, Point):
            raise TypeError(f"point {i} is a {type(p).__name__}; use grounded_inpaint.segment.Point(x, y, positive)")
        if not (0 <= p.x <= width and 0 <= p.y <= height):
            raise ValueError(
                f"point {i} (x={p.x:g}, y={p.y:g}) lies outside the {width}x{height} image; points are in pixels "
                f"of the image, x in 0..{width} and y in 0..{height}"
            )


def mask_bbox(mask: torch.Tensor) -> torch.Tensor | None:
    """XYXY pixel box ``[4]`` (exclusive right/bottom edge) around the non-zero pixels of ``[H, W]``; ``None`` if empty."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float().cpu()


def _inside(point: Point, box: torch.Tensor) -> bool:
    x0, y0, x1, y1 = box.tolist()
    return x0 <= point.x <= x1 and y0 <= point.y <= y1


def segment_image(
    predictor: SamPredictorBase,
    image: torch.Tensor,
    detections: Detections | None = None,
    *,
    points: Sequence[Point] = (),
    mask_prompt: torch.Tensor | None = None,
    multimask: Multimask = "auto",
    interrupt: InterruptCheck | None = None,
) -> Segments:
    """Segment one ``[H, W, 3]`` image; see the module docstring for how prompts are formed.

    Arguments:
        interrupt: called between the layers of SAM's encoder and decoder; raise from it to stop.
    """
    if multimask not in ("auto", "best", "single"):
        raise ValueError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    image = to_rgb(image)
    h, w = int(image.shape[0]), int(image.shape[1])
    _check_points(points, h, w)
    if detections is not None and tuple(detections.image_size) != (h, w):
        raise ValueError(
            f"the detections were made on a {detections.image_size[1]}x{detections.image_size[0]} image but the "
            f"image to segment is {w}x{h}; run detection and segmentation on the same images"
        )
    boxes = detections.boxes if detections is not None else torch.zeros(0, 4)
    labels = list(detections.labels) if detections is not None else []
    scores = detections.scores.tolist() if detections is not None else []

    prompt_points: list[list[Point]] = [[] for _ in range(len(labels))]
    loose: list[Point] = []
    for p in points:
        owners = [i for i in range(len(labels)) if _inside(p, boxes[i])]
        for i in owners:
            prompt_points[i].append(p)
        if not owners:
            loose.append(p)
    prompt_boxes: list[torch.Tensor | None] = [boxes[i] for i in range(len(labels))]
    prompt_masks: list[torch.Tensor | None] = [None] * len(labels)
    if loose and any(p.positive for p in loose):
        prompt_boxes.append(None)
        prompt_points.append(loose)
        prompt_masks.append(None)
        labels.append("points")
        scores.append(1.0)
    elif loose:
        log.warning("%d background point(s) lie outside every box and were ignored (no foreground point to go with them)", len(loose))
    if mask_prompt is not None:
        m = to_mask(mask_prompt, name="mask prompt")
        if tuple(m.shape) != (h, w):
            raise ValueError(f"the mask prompt is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
        box = mask_bbox(m)
        if box is not None:
            prompt_boxes.append(box)
            prompt_points.append([])
            prompt_masks.append(m)
            labels.append("mask")
            scores.append(1.0)

    if not labels:
        return Segments.empty((h, w))

    predictor.set_image(image, interrupt=interrupt)
    try:
        return _decode_prompts(predictor, (h, w), prompt_boxes, prompt_points, prompt_masks, labels, scores, multimask, interrupt)
    finally:
        predictor.reset_image()


def _decode_prompts(
    predictor: SamPredictorBase,
    size: tuple[int, int],
    prompt_boxes: list[torch.Tensor | None],
    prompt_points: list[list[Point]],
    prompt_masks: list[torch.Tensor | None],
    labels: list[str],
    scores: list[float],
    multimask: Multimask,
    interrupt: InterruptCheck | None,
) -> Segments:
    """Decode every prompt on the image set in ``predictor`` → one instance each, in prompt order."""
    h, w = size
    n = len(labels)
    has_box = [b is not None for b in prompt_boxes]
    n_points = max((len(p) for p in prompt_points), default=0)
    # Prompts with and without a box (or mask) cannot share one decoder call (different token counts
    # and dense inputs), nor can "single" and "best" outputs: group them, decode each group in one
    # call (usually there is just one group), and put the results back in prompt order.
    groups: dict[tuple[bool, bool, bool], list[int]] = {}
    for i in range(n):
        with_box = has_box[i]
        mode = multimask if multimask != "auto" else ("single" if with_box else "best")
        groups.setdefault((with_box, mode == "single", prompt_masks[i] is not None), []).append(i)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    quality = torch.zeros(n)
    out_boxes = torch.zeros(n, 4)
    logits: torch.Tensor | None = None
    for (with_box, single, with_mask), idx in groups.items():
        kwargs: dict[str, Any] = {"multimask": "single" if single else "best"}
        if with_box:
            kwargs["boxes"] = torch.stack([prompt_boxes[i] for i in idx]).float()
        if n_points:
            coords = torch.zeros(len(idx), n_points, 2)
            lab = torch.full((len(idx), n_points), -1, dtype=torch.long)
            for row, i in enumerate(idx):
                for col, p in enumerate(prompt_points[i]):
                    coords[row, col] = torch.tensor([p.x, p.y])
                    lab[row, col] = 1 if p.positive else 0
            if bool((lab >= 0).any()):
                kwargs["point_coords"], kwargs["point_labels"] = coords, lab
        if with_mask:
            kwargs["mask_input"] = torch.stack([predictor.mask_to_logits(prompt_masks[i]) for i in idx])
        pred = predictor.predict(**kwargs, interrupt=interrupt)
        group_logits = predictor.image_logits(pred.low_res_logits[:, 0]).cpu()
        if logits is None:
            logits = torch.zeros(n, *group_logits.shape[1:])
        logits[idx] = group_logits
        for row, i in enumerate(idx):
            masks[i] = pred.masks[row, 0].cpu()
            quality[i] = pred.iou[row, 0].cpu()
            if prompt_boxes[i] is not None and labels[i] != "mask":
                out_boxes[i] = prompt_boxes[i]
            else:
                found = mask_bbox(masks[i])
                out_boxes[i] = found if found is not None else torch.zeros(4)
    return Segments(masks, out_boxes, torch.tensor(scores), quality, labels, (h, w), logits)


def segment(
    predictor: SamPredictorBase,
    images: Any,
    detections: Sequence[Detections | None] | None = None,
    *,
    points: Sequence[Point] | Sequence[Sequence[Point]] = (),
    mask_prompts: Sequence[torch.Tensor | None] | torch.Tensor | None = None,
    multimask: Multimask = "auto",
    progress: Callable[[int, int], None] | None = None,
    interrupt: Callable[[], None] | None = None,
) -> list[Segments]:
    """Segment a batch: ``B`` images in, ``B`` :class:`Segments` out, always aligned.

    Arguments:
        predictor: a loaded SAM predictor (:func:`grounded_inpaint.models.load_segmenter`).
        images: ``[B, H, W, C]`` tensor or list of images.
        detections: one :class:`Detections` (or ``None``) per image, or ``None`` for no boxes.
        points: clicks shared by all images (a flat list), or one list per image.
        mask_prompts: ``[B, H, W]`` / one ``[H, W]`` mask (or ``None``) per image; a single ``[H, W]``
            mask applies to every image.
        multimask: ``"auto"`` (single mask for box prompts, best of 3 otherwise), ``"best"`` or
            ``"single"``.
        progress: ``progress(done, total)`` after each image.
        interrupt: called between images and between the layers of SAM's passes; raise from it to
            stop (ComfyUI's Cancel button).

    Raises:
        ValueError: when the numbers of images, detections or masks differ (the message names both).
    """
    if multimask not in ("auto", "best", "single"):
        raise ValueError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    pictures = to_rgb_list(images)
    b = len(pictures)
    dets: list[Detections | None] = list(detections) if detections is not None else [None] * b
    if len(dets) != b:
        raise ValueError(f"got {b} images but {len(dets)} detection results; they must be one per image")
    if points and all(isinstance(p, Point) for p in points):
        per_image_points: list[Sequence[Point]] = [list(points)] * b  # type: ignore[list-item]
    else:
        per_image_points = [list(p) for p in points] if points else [[] for _ in range(b)]  # type: ignore[arg-type]
        if len(per_image_points) != b:
            raise ValueError(f"got {b} images but {len(per_image_points)} point lists; give one list, or one per image")
    if mask_prompts is None:
        masks: list[torch.Tensor | None] = [None] * b
    elif torch.is_tensor(mask_prompts) and mask_prompts.ndim == 2:
        masks = [mask_prompts] * b
    else:
        masks = list(mask_prompts)
        if len(masks) == 1 and b > 1:
            masks = masks * b
        if len(masks) != b:
            raise ValueError(f"got {b} images but {len(masks)} mask prompts; give one mask, or one per image")
    results: list[Segments] = []
    for i, picture in enumerate(pictures):
        if interrupt is not None:
            interrupt()
        results.append(
            segment_image(predictor, picture, dets[i], points=per_image_points[i], mask_prompt=masks[i],
                          multimask=multimask, interrupt=interrupt)
        )
        if progress is not None:
            progress(i + 1, b)
    return results
