"""Detections (and optional clicks or a rough mask) → one SAM instance mask per object.

:func:`segment` encodes each image once and decodes all of its prompts in one batched call:

* every detection box is one prompt (its label and score are carried over);
* user points (:class:`Point`) refine the box that contains them; points outside every box form
  one extra instance labelled ``"points"``; with no boxes at all, the points are that instance;
* named objects from the editor (:mod:`grounded_inpaint.objects`: a box and/or clicks each) become
  one instance each, labelled with their names; the clicks of an object without a box refine the
  detected boxes that contain them, like plain clicks;
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
from .objects import ObjectsSpec, check_objects_on_image
from .sam.predictor import SamPredictorBase
from .structures import Detections, Segments

__all__ = [
    "MAX_POINTS",
    "Multimask",
    "Point",
    "PromptPlan",
    "decode_plan_masks",
    "decode_plans",
    "mask_bbox",
    "parse_points",
    "plan_prompts",
    "segment",
    "segment_image",
]

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


@dataclass(frozen=True)
class PromptPlan:
    """One SAM prompt, i.e. one future instance: what prompts it and where it came from.

    Attributes:
        box: ``[4]`` XYXY pixels, or ``None``.
        points: the clicks prompting it.
        mask: a ``[H, W]`` rough mask prompt, or ``None``.
        label: the instance's label.
        score: the instance's score (the detection's, 1.0 for clicks, objects and the mask).
        source: ``("detection", i)``, ``("object", i)`` (object ``i`` of the ``objects`` input),
            ``("points", 0)`` (the plain click inputs) or ``("mask", 0)``.
    """

    box: torch.Tensor | None
    points: tuple[Point, ...]
    mask: torch.Tensor | None
    label: str
    score: float
    source: tuple[str, int]


def plan_prompts(
    size: tuple[int, int],
    detections: Detections | None = None,
    *,
    points: Sequence[Point] = (),
    objects: ObjectsSpec | None = None,
    mask_prompt: torch.Tensor | None = None,
    warn: bool = True,
) -> list[PromptPlan]:
    """The prompts :func:`segment_image` decodes for an image of ``size`` = ``(height, width)``, in order.

    1. every detection box, with the clicks that lie inside it (plain clicks and the clicks of
       objects without a box);
    2. every object with a box (its box and all its clicks), and every object without a box whose
       clicks outside all detection boxes include a positive one (those clicks), labelled with its name;
    3. the plain clicks outside every box, labelled ``"points"``, when one of them is positive;
    4. the mask prompt (its bounding box and the mask), labelled ``"mask"``, unless it is empty.

    Clicks that are dropped (negative clicks outside every box with no positive click to go with
    them) are logged as a warning unless ``warn`` is false (the editor's live previews).

    Raises:
        ValueError: a point, box or object lies outside the image, the detections were made on an
            image of another size, or the mask prompt has another size.
    """
    h, w = int(size[0]), int(size[1])
    _check_points(points, h, w)
    if objects is not None:
        check_objects_on_image(objects, h, w)
    if detections is not None and tuple(detections.image_size) != (h, w):
        raise ValueError(
            f"the detections were made on a {detections.image_size[1]}x{detections.image_size[0]} image but the "
            f"image to segment is {w}x{h}; run detection and segmentation on the same images"
        )
    boxes = detections.boxes if detections is not None else torch.zeros(0, 4)
    det_labels = list(detections.labels) if detections is not None else []
    det_scores = detections.scores.tolist() if detections is not None else []
    refinements: list[list[Point]] = [[] for _ in det_labels]

    def assign(clicks: Sequence[Point]) -> list[Point]:
        """Add each click to every detection box containing it; return the clicks outside all boxes."""
        loose = []
        for p in clicks:
            owners = [i for i in range(len(det_labels)) if _inside(p, boxes[i])]
            for i in owners:
                refinements[i].append(p)
            if not owners:
                loose.append(p)
        return loose

    loose_points = assign(points)
    object_plans: list[PromptPlan] = []
    for index, obj in enumerate(objects.objects if objects is not None else ()):
        clicks = [Point(x, y, positive) for x, y, positive in obj.points]
        if obj.box is not None:
            object_plans.append(PromptPlan(torch.tensor(obj.box, dtype=torch.float32), tuple(clicks), None, obj.name, 1.0, ("object", index)))
            continue
        own = assign(clicks)
        if own and any(p.positive for p in own):
            object_plans.append(PromptPlan(None, tuple(own), None, obj.name, 1.0, ("object", index)))
        elif own and warn:
            log.warning("object %r: %d negative click(s) lie outside every detected box and were ignored "
                        "(no positive click or box to go with them)", obj.name, len(own))
    plans = [PromptPlan(boxes[i], tuple(refinements[i]), None, det_labels[i], float(det_scores[i]), ("detection", i))
             for i in range(len(det_labels))]
    plans += object_plans
    if loose_points and any(p.positive for p in loose_points):
        plans.append(PromptPlan(None, tuple(loose_points), None, "points", 1.0, ("points", 0)))
    elif loose_points and warn:
        log.warning("%d background point(s) lie outside every box and were ignored (no foreground point to go with them)", len(loose_points))
    if mask_prompt is not None:
        m = to_mask(mask_prompt, name="mask prompt")
        if tuple(m.shape) != (h, w):
            raise ValueError(f"the mask prompt is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
        box = mask_bbox(m)
        if box is not None:
            plans.append(PromptPlan(box, (), m, "mask", 1.0, ("mask", 0)))
    return plans


def segment_image(
    predictor: SamPredictorBase,
    image: torch.Tensor,
    detections: Detections | None = None,
    *,
    points: Sequence[Point] = (),
    objects: ObjectsSpec | None = None,
    mask_prompt: torch.Tensor | None = None,
    multimask: Multimask = "auto",
    interrupt: InterruptCheck | None = None,
) -> Segments:
    """Segment one ``[H, W, 3]`` image; see the module docstring and :func:`plan_prompts` for how
    prompts are formed.

    Arguments:
        objects: named objects from the editor (:func:`grounded_inpaint.objects.parse_objects`).
        interrupt: called between the layers of SAM's encoder and decoder; raise from it to stop.
    """
    if multimask not in ("auto", "best", "single"):
        raise ValueError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    image = to_rgb(image)
    h, w = int(image.shape[0]), int(image.shape[1])
    plans = plan_prompts((h, w), detections, points=points, objects=objects, mask_prompt=mask_prompt)
    if not plans:
        return Segments.empty((h, w))

    predictor.set_image(image, interrupt=interrupt)
    try:
        return decode_plans(predictor, plans, multimask=multimask, interrupt=interrupt)
    finally:
        predictor.reset_image()


def decode_plans(
    predictor: SamPredictorBase,
    plans: Sequence[PromptPlan],
    *,
    multimask: Multimask = "auto",
    interrupt: InterruptCheck | None = None,
) -> Segments:
    """Decode ``plans`` on the image set in ``predictor`` → one instance each, in order.

    The predictor keeps its image (the caller sets and resets it).
    """
    if multimask not in ("auto", "best", "single"):
        raise ValueError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    if predictor.original_size is None:
        raise RuntimeError("an image must be set with .set_image(...) before decoding prompts")
    size = predictor.original_size
    if not plans:
        return Segments.empty(size)
    if predictor.mask_output_size not in (None, tuple(size)):
        raise ValueError("decode_plans gives full-size masks; use decode_plan_masks with a mask_output_size")
    masks, quality, boxes, logits = decode_plan_masks(predictor, plans, multimask=multimask, interrupt=interrupt)
    return Segments(masks, boxes, torch.tensor([p.score for p in plans]), quality, [p.label for p in plans], size,
                    logits=logits)


def decode_plan_masks(
    predictor: SamPredictorBase,
    plans: Sequence[PromptPlan],
    *,
    multimask: Multimask = "auto",
    interrupt: InterruptCheck | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Decode ``plans`` on the image set in ``predictor``, in order.

    Returns:
        ``masks`` ``[N, h, w]`` bool at the predictor's mask size (the original size, or its
        ``mask_output_size``), ``quality`` ``[N]`` SAM's predicted IoU, and ``boxes`` ``[N, 4]`` XYXY in
        pixels of the original image (the prompt's box; for click and mask prompts the box around
        the mask found, zeros when it is empty), and ``logits`` ``[N, h', w']`` float32, SAM's mask
        logits over the whole image at its low resolution (see :attr:`Segments.logits`; ``None``
        only when there is no plan).
    """
    if multimask not in ("auto", "best", "single"):
        raise ValueError(f"multimask must be 'auto', 'best' or 'single'; got {multimask!r}")
    if predictor.original_size is None:
        raise RuntimeError("an image must be set with .set_image(...) before decoding prompts")
    h, w = predictor.original_size
    mh, mw = predictor.mask_output_size or (h, w)
    n = len(plans)
    n_points = max((len(p.points) for p in plans), default=0)
    # Prompts with and without a box (or mask) cannot share one decoder call (different token counts
    # and dense inputs), nor can "single" and "best" outputs: group them, decode each group in one
    # call (usually there is just one group), and put the results back in prompt order.
    groups: dict[tuple[bool, bool, bool], list[int]] = {}
    for i, plan in enumerate(plans):
        with_box = plan.box is not None
        mode = multimask if multimask != "auto" else ("single" if with_box else "best")
        groups.setdefault((with_box, mode == "single", plan.mask is not None), []).append(i)
    masks = torch.zeros(n, mh, mw, dtype=torch.bool)
    quality = torch.zeros(n)
    out_boxes = torch.zeros(n, 4)
    to_original = torch.tensor([w / mw, h / mh, w / mw, h / mh])
    logits: torch.Tensor | None = None
    for (with_box, single, with_mask), idx in groups.items():
        kwargs: dict[str, Any] = {"multimask": "single" if single else "best"}
        if with_box:
            kwargs["boxes"] = torch.stack([plans[i].box for i in idx]).float()  # type: ignore[misc]
        if n_points:
            coords = torch.zeros(len(idx), n_points, 2)
            lab = torch.full((len(idx), n_points), -1, dtype=torch.long)
            for row, i in enumerate(idx):
                for col, p in enumerate(plans[i].points):
                    coords[row, col] = torch.tensor([p.x, p.y])
                    lab[row, col] = 1 if p.positive else 0
            if bool((lab >= 0).any()):
                kwargs["point_coords"], kwargs["point_labels"] = coords, lab
        if with_mask:
            kwargs["mask_input"] = torch.stack([predictor.mask_to_logits(plans[i].mask) for i in idx])  # type: ignore[arg-type]
        pred = predictor.predict(**kwargs, interrupt=interrupt)
        group_logits = predictor.image_logits(pred.low_res_logits[:, 0]).cpu()
        if logits is None:
            logits = torch.zeros(n, *group_logits.shape[1:])
        logits[idx] = group_logits
        for row, i in enumerate(idx):
            masks[i] = pred.masks[row, 0].cpu()
            quality[i] = pred.iou[row, 0].cpu()
            if plans[i].box is not None and plans[i].mask is None:
                out_boxes[i] = plans[i].box  # type: ignore[assignment]
            else:
                found = mask_bbox(masks[i])
                out_boxes[i] = found * to_original if found is not None else torch.zeros(4)
    return masks, quality, out_boxes, logits


def segment(
    predictor: SamPredictorBase,
    images: Any,
    detections: Sequence[Detections | None] | None = None,
    *,
    points: Sequence[Point] | Sequence[Sequence[Point]] = (),
    objects: ObjectsSpec | None = None,
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
        objects: named objects (boxes and clicks) shared by all images, from
            :func:`grounded_inpaint.objects.parse_objects`.
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
            segment_image(predictor, picture, dets[i], points=per_image_points[i], objects=objects, mask_prompt=masks[i],
                          multimask=multimask, interrupt=interrupt)
        )
        if progress is not None:
            progress(i + 1, b)
    return results
