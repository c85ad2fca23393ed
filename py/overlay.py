"""Drawing instances on images, cutting objects out and pasting them into other images.

Images are ``[H, W, 3]`` float32 tensors in ``0..1`` (RGB, channels last); other layouts accepted
by :func:`grounded_inpaint.images.to_rgb` are converted first. Masks are ``[H, W]`` float32 in
``0..1`` (bool is accepted); boxes are XYXY pixels (see :mod:`grounded_inpaint.structures`).
Results are new tensors on the device of the input image; the input is never modified.

Boxes and captions are rendered with Pillow on a transparent layer that is then blended over
the image, so pixels that no annotation touches keep their exact value.

Costs are bounded by the image, never by a parameter: drawing works inside each instance's
bounding box (plus the line width) and blends only the rectangles of boxes and captions;
:func:`composite` resamples only the part of the scaled object that lands in the background. Every
numeric parameter is checked on entry (:mod:`grounded_inpaint.checks`): NaN, infinity, ``bool``
and out-of-range values raise :class:`ValueError` naming the parameter and its valid range.
"""

from __future__ import annotations

import colorsys
import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import masks as _masks
from .checks import count, fraction, number
from .images import to_mask, to_rgb
from .structures import Detections, Segments

__all__ = [
    "ANCHORS",
    "MAX_SCALE",
    "palette",
    "draw_segments",
    "draw_detections",
    "draw_mask",
    "cutout",
    "composite",
    "paste_back",
]

log = logging.getLogger(__name__)

#: Valid values of ``composite(anchor=...)``.
ANCHORS: tuple[str, ...] = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)

# (horizontal, vertical) position of each anchor as a fraction of the object's extent.
_ANCHOR_FRACTIONS: dict[str, tuple[float, float]] = {
    "top-left": (0.0, 0.0),
    "top": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}

_GOLDEN_RATIO_CONJUGATE = (math.sqrt(5.0) - 1.0) / 2.0


# --------------------------------------------------------------------------------------------
# Colours and sizes
# --------------------------------------------------------------------------------------------


def palette(n: int) -> torch.Tensor:
    """``n`` distinct, deterministic colours.

    Hues step by the golden ratio (each new hue falls in the largest gap left by the previous
    ones); saturation and value alternate slightly so neighbouring indices differ in brightness
    too.

    Arguments:
        n: the number of colours, a whole number ``>= 0``.

    Returns:
        ``[n, 3]`` float32 RGB in ``0..1`` (CPU).

    Raises:
        ValueError: ``n`` is negative, not a whole number, NaN, infinite or a ``bool``.
    """
    n = count("n", n)
    colours = []
    for i in range(n):
        hue = (i * _GOLDEN_RATIO_CONJUGATE) % 1.0
        saturation = 0.85 if i % 2 == 0 else 0.65
        value = 0.95 if i % 3 != 2 else 0.8
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return torch.tensor(colours, dtype=torch.float32).reshape(n, 3)


def _font_size(height: int, width: int) -> int:
    """Caption font size in pixels for an image of this size."""
    return max(10, min(height, width) // 40)


def _line_width(height: int, width: int) -> int:
    """Box and contour line width in pixels for an image of this size."""
    return max(1, min(height, width) // 256)


def _to_uint8_colour(colour: Sequence[float], alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (int(round(float(c) * 255.0)) for c in colour)
    return r, g, b, alpha


def _text_colour(colour: Sequence[float]) -> tuple[int, int, int, int]:
    """Black on light backgrounds, white on dark ones."""
    r, g, b = (float(c) for c in colour)
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0, 255) if luminance > 0.5 else (255, 255, 255, 255)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _size_of(image: torch.Tensor) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def _check_size(image: torch.Tensor, size: Sequence[int], what: str, image_name: str = "image") -> None:
    image_size = _size_of(image)
    other = (int(size[0]), int(size[1]))
    if image_size != other:
        raise ValueError(
            f"{image_name} is {image_size[0]}x{image_size[1]} (height x width) but {what} is "
            f"{other[0]}x{other[1]}; they must match"
        )


def _check_colour(color: Any) -> list[float]:
    """``color`` as three floats in ``0..1``; ValueError naming ``color`` otherwise."""
    message = f"color must be three RGB numbers in 0..1; got {color!r}"
    if isinstance(color, (str, bytes)):
        raise ValueError(message)
    try:
        values = list(color)
    except TypeError:
        raise ValueError(message) from None
    if len(values) != 3:
        raise ValueError(message)
    try:
        return [fraction("color", value) for value in values]  # type: ignore[misc]
    except ValueError:
        raise ValueError(message) from None


def _mask_for(image: torch.Tensor, mask: Any, name: str, image_name: str = "image") -> torch.Tensor:
    """``mask`` as ``[H, W]`` float32 in ``0..1`` on the image's device, checked against its size."""
    mask = to_mask(mask, name=name)
    _check_size(image, mask.shape, name, image_name)
    return mask.to(image.device)


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------


def _pixel_box(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int] | None:
    """Inclusive integer corners of an XYXY box clipped to the image, or None if it is outside.

    A box with a NaN coordinate is None (nothing is drawn for it); infinite coordinates clip to
    the image border.
    """
    values = [float(v) for v in box]
    if any(math.isnan(v) for v in values):
        return None
    # Clip first so that infinities and huge values never reach floor/ceil.
    x0, x1 = (min(max(v, -1.0), width + 1.0) for v in (values[0], values[2]))
    y0, y1 = (min(max(v, -1.0), height + 1.0) for v in (values[1], values[3]))
    left = max(0, int(math.floor(min(x0, x1))))
    top = max(0, int(math.floor(min(y0, y1))))
    right = min(width - 1, int(math.ceil(max(x0, x1))) - 1)
    bottom = min(height - 1, int(math.ceil(max(y0, y1))) - 1)
    if right < left or bottom < top:
        return None
    return left, top, right, bottom


def _caption_parts(label: str, score: float, labels: bool, scores: bool) -> list[str]:
    """The caption's label (whitespace collapsed to single spaces) and score (two decimals), as shown."""
    parts = []
    if labels and label and label.strip():
        parts.append(" ".join(str(label).split()))
    if scores:
        parts.append(f"{score:.2f}")
    return parts


def _caption(label: str, score: float, labels: bool, scores: bool) -> str:
    """The caption text: label and score separated by a space (``"cup 0.87"``)."""
    return " ".join(_caption_parts(label, score, labels, scores))


def _caption_gap(font: Any, font_size: int) -> int:
    """Pixels between a caption's label and its score: a space, but never narrower than about a
    third of the font size (the default font's space is only 2 pixels at size 10, so
    ``"cup 0.87"`` would read as ``"cup0.87"``)."""
    return max(int(math.ceil(font.getlength(" "))), int(math.ceil(0.35 * font_size)))


def _caption_layout(draw: Any, parts: Sequence[str], font: Any, gap: int) -> tuple[tuple[int, int, int, int], list[tuple[int, str]]]:
    """Ink box ``(left, top, right, bottom)`` of the caption drawn at ``(0, 0)`` and its runs
    ``(x offset, text)``: the parts side by side, ``gap`` pixels apart."""
    runs: list[tuple[int, str]] = []
    boxes = []
    offset = 0
    for part in parts:
        runs.append((offset, part))
        boxes.append(draw.textbbox((offset, 0), part, font=font))
        offset += int(math.ceil(draw.textlength(part, font=font))) + gap
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)), runs


#: A rectangle in image pixels, ``(x0, y0, x1, y1)`` with the ends exclusive.
_Rect = tuple[int, int, int, int]


def _overlaps(a: _Rect, b: _Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_caption(
    anchor: tuple[int, int], size: tuple[int, int], height: int, width: int, placed: Sequence[_Rect]
) -> tuple[int, int]:
    """Top-left corner of a caption of ``size = (w, h)`` for a box whose top-left is ``anchor``.

    The first choice is just above the box; when there is no room above, just inside its top
    edge. The caption is shifted so that it lies inside the image (as far as it fits). When that
    spot overlaps a caption in ``placed``, the caption moves down to just below the captions it
    hits, again and again, until it is free; if it reaches the bottom of the image, the next
    choice (inside the box) is tried the same way, and when no free spot exists the first choice
    is kept (the image is too small for all the captions).

    Arguments:
        anchor: ``(x, y)`` of the box's top-left pixel.
        size: ``(width, height)`` of the caption in pixels.
        height, width: the image size.
        placed: the rectangles of the captions drawn so far.

    Returns:
        ``(x, y)`` of the caption's top-left pixel.
    """
    box_left, box_top = anchor
    caption_w, caption_h = size
    x = min(max(box_left, 0), max(width - caption_w, 0))
    lowest = max(height - caption_h, 0)
    choices = [box_top - caption_h] if box_top - caption_h >= 0 else []
    choices.append(box_top)
    for choice in choices:
        y = min(max(choice, 0), lowest)
        while True:
            hits = [rect for rect in placed if _overlaps((x, y, x + caption_w, y + caption_h), rect)]
            if not hits:
                return x, y
            y = max(rect[3] for rect in hits)
            if y > lowest:
                break
    log.debug("overlay: no free spot for a %dx%d caption; it overlaps another one", caption_w, caption_h)
    return x, min(max(choices[0], 0), lowest)


def _outline_rects(corners: tuple[int, int, int, int], line: int) -> list[_Rect]:
    """The four strips (XYXY, ends exclusive) that hold a box outline ``line`` pixels wide.

    Pillow draws a rectangle's outline inside its inclusive corners, so the strips cover every
    pixel it paints, except for boxes at most ``line`` pixels wide or high: those it draws up to
    ``line`` pixels outside the corners, so for boxes up to ``2 * line`` pixels the whole box grown
    by ``line`` is returned. (The caller clips to the image.)
    """
    left, top, right, bottom = corners
    x1, y1 = right + 1, bottom + 1
    if min(x1 - left, y1 - top) <= 2 * line:
        return [(left - line, top - line, x1 + line, y1 + line)]
    return [
        (left, top, x1, min(top + line, y1)),
        (left, max(y1 - line, top), x1, y1),
        (left, top, min(left + line, x1), y1),
        (max(x1 - line, left), top, x1, y1),
    ]


def _annotation_layer(
    height: int,
    width: int,
    boxes: torch.Tensor,
    captions: Sequence[Sequence[str]],
    colours: torch.Tensor,
    draw_boxes: bool,
) -> tuple[np.ndarray, tuple[int, int], list[_Rect]]:
    """Render boxes and captions on a transparent RGBA layer that covers only what is drawn.

    ``captions`` holds each box's caption parts (label, score; see :func:`_caption_parts`),
    drawn side by side :func:`_caption_gap` pixels apart. Captions are laid out with
    :func:`_place_caption` so that no two of them overlap (when the image has room). The layer spans the bounding rectangle of everything drawn, not the whole
    image; drawing in it at shifted integer coordinates paints exactly the pixels a full-size
    layer would. All boxes are drawn before all captions, so no box line crosses a caption.

    Returns:
        ``(layer, origin, rects)``: ``layer`` is ``[h, w, 4]`` uint8 RGBA whose pixel ``(0, 0)``
        is the image pixel ``origin = (x, y)``; ``rects`` are the image rectangles (XYXY, ends
        exclusive, inside the image) that contain every drawn pixel: outside them the layer is
        transparent. Nothing to draw gives a ``[0, 0, 4]`` layer and no rectangle.
    """
    from PIL import Image, ImageDraw, ImageFont

    font_size = _font_size(height, width)
    font = ImageFont.load_default(size=font_size)
    line = _line_width(height, width)
    pad = max(1, font_size // 5)
    gap = _caption_gap(font, font_size)
    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    placed: list[_Rect] = []
    rects: list[_Rect] = []
    plan: list[tuple[tuple[int, int, int, int], list[tuple[int, str]], _Rect | None, tuple[int, int], tuple[float, ...]]] = []
    for box, caption, colour in zip(boxes.tolist(), captions, colours.tolist()):
        corners = _pixel_box(box, height, width)
        if corners is None:
            continue
        if draw_boxes:
            rects.extend(_outline_rects(corners, line))
        caption_rect, text_at, runs = None, (0, 0), []
        if caption:
            (left, top, right, bottom), runs = _caption_layout(measure, caption, font, gap)
            size = (right - left + 2 * pad, bottom - top + 2 * pad)
            x, y = _place_caption((corners[0], corners[1]), size, height, width, placed)
            caption_rect = (x, y, x + size[0], y + size[1])
            text_at = (x + pad - left, y + pad - top)
            placed.append(caption_rect)
            rects.append(caption_rect)
        plan.append((corners, runs, caption_rect, text_at, tuple(colour)))
    rects = [(max(r[0], 0), max(r[1], 0), min(r[2], width), min(r[3], height)) for r in rects]
    rects = [r for r in rects if r[2] > r[0] and r[3] > r[1]]
    if not rects:
        return np.zeros((0, 0, 4), dtype=np.uint8), (0, 0), []
    ox, oy = min(r[0] for r in rects), min(r[1] for r in rects)
    layer_w, layer_h = max(r[2] for r in rects) - ox, max(r[3] for r in rects) - oy
    layer = Image.new("RGBA", (layer_w, layer_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # All boxes first, then all captions, so that no box line crosses a caption.
    if draw_boxes:
        for corners, _, _, _, colour in plan:
            draw.rectangle(
                (corners[0] - ox, corners[1] - oy, corners[2] - ox, corners[3] - oy),
                outline=_to_uint8_colour(colour),
                width=line,
            )
    for corners, runs, caption_rect, text_at, colour in plan:
        fill = _to_uint8_colour(colour)
        if caption_rect is not None:
            x0, y0, x1, y1 = caption_rect
            draw.rectangle((x0 - ox, y0 - oy, x1 - 1 - ox, y1 - 1 - oy), fill=fill)
            for offset, text in runs:
                draw.text((text_at[0] + offset - ox, text_at[1] - oy), text, font=font, fill=_text_colour(colour))
    return np.asarray(layer), (ox, oy), rects


def _blend_layer(image: torch.Tensor, layer: np.ndarray, origin: tuple[int, int], rects: Sequence[_Rect]) -> torch.Tensor:
    """Blend an RGBA uint8 layer over ``image`` **in place**, inside ``rects`` only.

    ``out = image * (1 - a) + rgb * a`` where the layer's alpha ``a > 0``; pixels with zero alpha
    and pixels outside ``rects`` stay bit-identical. Every blend reads the image as it was on
    entry, so overlapping rectangles blend their shared pixels once.

    Arguments:
        image: ``[H, W, 3]`` float32, modified and returned.
        layer, origin, rects: as returned by :func:`_annotation_layer`.
    """
    ox, oy = origin
    blended = []
    for x0, y0, x1, y1 in rects:
        rgba = torch.from_numpy(np.array(layer[y0 - oy : y1 - oy, x0 - ox : x1 - ox]))  # a writable copy
        rgba = rgba.to(image.device).float() / 255.0
        alpha = rgba[..., 3:]
        base = image[y0:y1, x0:x1]
        mixed = base * (1.0 - alpha) + rgba[..., :3] * alpha
        blended.append(((x0, y0, x1, y1), torch.where(alpha > 0, mixed, base)))
    for (x0, y0, x1, y1), values in blended:
        image[y0:y1, x0:x1] = values
    return image


def _annotate(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[str],
    scores: torch.Tensor,
    colours: torch.Tensor,
    *,
    draw_boxes: bool,
    show_labels: bool,
    show_scores: bool,
) -> torch.Tensor:
    """Draw boxes and captions on ``image`` (which the caller owns: it is modified in place)."""
    captions = [_caption_parts(lab, s, show_labels, show_scores) for lab, s in zip(labels, scores.tolist())]
    if not draw_boxes and not any(captions):
        return image
    height, width = _size_of(image)
    layer, origin, rects = _annotation_layer(height, width, boxes, captions, colours, draw_boxes)
    return _blend_layer(image, layer, origin, rects)


def _any_within(values: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """``out[i] = any(values[i - radius .. i + radius])`` along ``dim`` of a bool tensor; outside is False.

    Computed by doubling (windows of 1, 2, 4, … pixels, then two overlapping ones), so the cost is
    ``O(log radius)`` per pixel.
    """
    if radius <= 0:
        return values.clone()
    length = values.shape[dim]
    pad_shape = list(values.shape)
    pad_shape[dim] = radius
    pad = torch.zeros(pad_shape, dtype=torch.bool, device=values.device)
    window = 2 * radius + 1
    spans = torch.cat([pad, values, pad], dim=dim)
    span = 1
    while span * 2 <= window:
        n = spans.shape[dim]
        spans = spans.narrow(dim, 0, n - span) | spans.narrow(dim, span, n - span)
        span *= 2
    # spans[j] = any(padded[j : j + span]); two such windows cover padded[i : i + window].
    return spans.narrow(dim, 0, length) | spans.narrow(dim, window - span, length)


def _inner_contour(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels of a bool ``[H, W]`` mask within ``width`` pixels (chessboard distance) of its background.

    Outside the array does not count as background, so objects cut by the frame get no line
    along the image border. The square neighbourhood is separable: a row pass, then a column pass.
    """
    near_background = _any_within(_any_within(~mask, width, 1), width, 0)
    return mask & near_background


#: The colour fill works on blocks of about this many pixels of an instance's bounding box.
_FILL_BLOCK_PIXELS = 1 << 18


def _own_rgb(image: Any) -> torch.Tensor:
    """``to_rgb(image)`` as a tensor that shares no memory with ``image`` (so it may be drawn on).

    :func:`to_rgb` already returns a new tensor; the copy is made only if it ever did not.
    """
    out = to_rgb(image, name="image")
    if torch.is_tensor(image) and out.untyped_storage().data_ptr() == image.untyped_storage().data_ptr():
        out = out.clone()
    return out


def _instance_boxes(masks: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
    """``(y0, y1, x0, x1)`` (ends exclusive) of the True pixels of each ``[N, H, W]`` mask, or None."""
    rows = masks.any(dim=2).cpu()
    cols = masks.any(dim=1).cpu()
    out: list[tuple[int, int, int, int] | None] = []
    for row, col in zip(rows, cols):
        ys, xs = torch.nonzero(row).flatten(), torch.nonzero(col).flatten()
        out.append(None if ys.numel() == 0 else (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1))
    return out


def draw_segments(
    image: torch.Tensor,
    segments: Segments,
    *,
    opacity: float = 0.5,
    boxes: bool = True,
    labels: bool = True,
    scores: bool = True,
    contours: bool = True,
) -> torch.Tensor:
    """Visualise instance masks: colour fill, outline, box and caption per instance.

    Instance ``i`` uses ``palette(len(segments))[i]``. Its mask is blended with that colour at
    ``opacity``; with ``contours`` the mask's inner edge is drawn opaque; with ``boxes`` its box is
    drawn; with ``labels``/``scores`` a caption such as ``"shoes 0.87"`` (label and score a
    space apart, the space at least a third of the font size wide so it shows at small sizes) is drawn on a filled background just above the box (inside it when the box touches the top),
    shifted to stay inside the image. Captions never cover each other: a caption whose spot is
    taken by an earlier one moves down, just below it (see :func:`_place_caption`); only an image
    too small for all of them makes them overlap. Font size and line width grow with the image
    (``max(10, min(H, W) // 40)`` and ``max(1, min(H, W) // 256)`` pixels).

    The work per instance is confined to its mask's bounding box (plus the line width), and the
    annotations are blended only in the rectangles of boxes and captions, so a 24-megapixel photo
    costs about as much as its instances' areas.

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        segments: instances of this image (``segments.image_size == (H, W)``).
        opacity: fill opacity in ``0..1``.
        boxes, labels, scores, contours: which annotations to draw.

    Returns:
        A new ``[H, W, 3]`` float32 image on the image's device. With zero instances, a copy of
        ``image``. Pixels outside every mask, box and caption are unchanged.

    Raises:
        ValueError: the image and the segments differ in size, or ``opacity`` is not a number in
            ``0..1`` (NaN and infinity included).
    """
    opacity = fraction("opacity", opacity)  # type: ignore[assignment]
    out = _own_rgb(image)
    _check_size(out, segments.image_size, "segments.image_size")
    n = len(segments)
    if n == 0:
        return out
    colours = palette(n).to(out.device)
    instance_masks = segments.masks.to(out.device)
    extents = _instance_boxes(instance_masks)
    if opacity > 0:
        for i, extent in enumerate(extents):
            if extent is None:
                continue
            y0, y1, x0, x1 = extent
            # Blocks of rows keep the temporaries small (the same arithmetic, pixel for pixel).
            step = max(1, _FILL_BLOCK_PIXELS // (x1 - x0))
            for top in range(y0, y1, step):
                bottom = min(y1, top + step)
                region = instance_masks[i, top:bottom, x0:x1, None]
                window = out[top:bottom, x0:x1]
                window.copy_(torch.where(region, window * (1.0 - opacity) + colours[i] * opacity, window))
    if contours:
        height, width = _size_of(out)
        line = _line_width(height, width)
        for i, extent in enumerate(extents):
            if extent is None:
                continue
            # The bounding box grown by the line width holds every background pixel that matters.
            y0, y1, x0, x1 = extent
            y0, y1, x0, x1 = max(0, y0 - line), min(height, y1 + line), max(0, x0 - line), min(width, x1 + line)
            edge = _inner_contour(instance_masks[i, y0:y1, x0:x1], line)
            out[y0:y1, x0:x1][edge] = colours[i]
    return _annotate(
        out,
        segments.boxes,
        segments.labels,
        segments.scores,
        colours,
        draw_boxes=boxes,
        show_labels=labels,
        show_scores=scores,
    )


def draw_detections(
    image: torch.Tensor, detections: Detections, *, labels: bool = True, scores: bool = True
) -> torch.Tensor:
    """Draw detection boxes and their captions (``"label 0.87"``), one palette colour each.

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        detections: boxes of this image (``detections.image_size == (H, W)``).
        labels, scores: what the captions show (no caption when both are False).

    Returns:
        A new ``[H, W, 3]`` float32 image; a copy of ``image`` when there is no detection.

    Raises:
        ValueError: the image and the detections differ in size.
    """
    out = _own_rgb(image)
    _check_size(out, detections.image_size, "detections.image_size")
    if len(detections) == 0:
        return out
    colours = palette(len(detections)).to(out.device)
    return _annotate(
        out,
        detections.boxes,
        detections.labels,
        detections.scores,
        colours,
        draw_boxes=True,
        show_labels=labels,
        show_scores=scores,
    )


def draw_mask(
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    color: Sequence[float] = (1.0, 0.0, 0.0),
    opacity: float = 0.5,
) -> torch.Tensor:
    """Tint the masked area of an image: ``out = image * (1 - a) + color * a``, ``a = opacity * mask``.

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        mask: ``[H, W]`` bool or float in ``0..1`` (soft masks tint proportionally).
        color: RGB, three numbers in ``0..1`` (a sequence or a tensor).
        opacity: a number in ``0..1``.

    Returns:
        A new ``[H, W, 3]`` float32 image; pixels where the mask is 0 are unchanged.

    Raises:
        ValueError: size mismatch (both sizes named), a colour that is not three numbers in
            ``0..1``, or ``opacity`` that is not a number in ``0..1`` (NaN and infinity included).
    """
    opacity = fraction("opacity", opacity)  # type: ignore[assignment]
    colour = _check_colour(color)
    image = to_rgb(image, name="image")
    mask = _mask_for(image, mask, "mask")
    alpha = (mask * opacity)[..., None]
    tint = torch.tensor(colour, dtype=torch.float32, device=image.device)
    return image * (1.0 - alpha) + tint * alpha


# --------------------------------------------------------------------------------------------
# Cut-outs and compositing
# --------------------------------------------------------------------------------------------


def _mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """XYXY integer box (end exclusive) of the pixels where ``mask > 0``, or None if there is none."""
    rows = torch.nonzero(mask.gt(0).any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.gt(0).any(dim=0)).flatten()
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _pad_box(
    box: tuple[int, int, int, int], padding: int, height: int, width: int
) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return max(0, x0 - padding), max(0, y0 - padding), min(width, x1 + padding), min(height, y1 + padding)


def cutout(
    image: torch.Tensor, mask: torch.Tensor, *, crop: bool = False, padding: int = 0
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Cut an object out as an RGBA image whose alpha is the mask.

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        mask: ``[H, W]`` bool or float in ``0..1`` (1 = the object).
        crop: cut the result to the bounding box of ``mask > 0``, enlarged by ``padding`` pixels on
            each side and clipped to the image.
        padding: a whole number ``>= 0`` (any size: the crop is clipped to the image); only
            used with ``crop``.

    Returns:
        ``(rgba, box)``: ``rgba`` is ``[h, w, 4]`` float32 in ``0..1`` with the image's colours
        unchanged (also where the alpha is 0) and alpha = mask; ``box = (x0, y0, x1, y1)`` are the
        integer XYXY pixel bounds (end exclusive) of ``rgba`` in the original image,
        ``(0, 0, W, H)`` without ``crop``. An **empty mask with ``crop``** yields a single fully
        transparent black pixel, ``[1, 1, 4]`` zeros, with box ``(0, 0, 1, 1)`` (and a warning),
        so that downstream nodes get a valid, invisible image instead of an error.

    Raises:
        ValueError: size mismatch (both sizes named), or ``padding`` that is negative, not a whole
            number, NaN, infinite or a ``bool``.
    """
    padding = count("padding", padding)  # type: ignore[assignment]
    image = to_rgb(image, name="image")
    mask = _mask_for(image, mask, "mask")
    height, width = _size_of(image)
    rgba = torch.cat([image, mask[..., None]], dim=-1)
    if not crop:
        return rgba, (0, 0, width, height)
    box = _mask_bbox(mask)
    if box is None:
        log.warning("cutout: the mask is empty; returning a 1x1 transparent image")
        return torch.zeros((1, 1, 4), dtype=torch.float32, device=image.device), (0, 0, 1, 1)
    x0, y0, x1, y1 = _pad_box(box, padding, height, width)
    return rgba[y0:y1, x0:x1].clone(), (x0, y0, x1, y1)


def _foreground_and_alpha(foreground: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the compositing input into ``[h, w, 3]`` colours and ``[h, w]`` alpha, both float32 0..1."""
    tensor = foreground
    if not torch.is_tensor(tensor):
        tensor = torch.from_numpy(np.array(tensor))
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim == 3 and tensor.shape[-1] == 4:
        colours = to_rgb(tensor[..., :3], name="foreground")
        if mask is None:
            alpha = to_mask(tensor[..., 3], name="foreground alpha").to(colours.device)
        else:
            alpha = _mask_for(colours, mask, "mask", "foreground")
        return colours, alpha
    colours = to_rgb(tensor, name="foreground")
    if mask is None:
        return colours, torch.ones(_size_of(colours), dtype=torch.float32, device=colours.device)
    return colours, _mask_for(colours, mask, "mask", "foreground")


def _resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``[h, w, C]`` to ``size = (h', w')``, clamped to ``0..1``."""
    if tuple(tensor.shape[:2]) == size:
        return tensor
    planar = tensor.permute(2, 0, 1)[None]
    resized = F.interpolate(planar, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).clamp(0.0, 1.0)


def _source_taps(
    in_size: int, out_size: int, start: int, stop: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where output pixels ``start..stop-1`` of a bilinear upsampling read their source.

    The rule of ``F.interpolate(mode="bilinear", align_corners=False, size=...)``: output pixel
    ``i`` samples source position ``max(0, (i + 0.5) * in_size / out_size - 0.5)`` between source
    pixels ``floor`` and ``floor + 1`` (the last pixel repeats). Positions are computed in float64.

    Returns:
        ``(first, second, weight)``: int64 indices ``[stop - start]`` of the two source pixels and
        the float32 weight of the second one.
    """
    position = (torch.arange(start, stop, dtype=torch.float64, device=device) + 0.5) * (in_size / out_size) - 0.5
    position.clamp_(min=0.0)
    first = position.floor().long().clamp_(max=in_size - 1)
    second = (first + 1).clamp_(max=in_size - 1)
    weight = (position - first).clamp_(0.0, 1.0).float()
    return first, second, weight


def _upsample_window(
    tensor: torch.Tensor, size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> torch.Tensor:
    """Rows ``rows[0]..rows[1]-1`` and columns ``cols[0]..cols[1]-1`` of the bilinear upsampling of
    ``tensor`` (``[h, w, C]``) to ``size = (h', w')`` with ``h' >= h`` and ``w' >= w``, clamped to
    ``0..1``.

    Equals the same window of :func:`_resize` (antialiasing does nothing when upsampling) within
    float rounding, but reads only the source pixels the window needs and allocates only the
    window, whatever the scale.
    """
    height, width = _size_of(tensor)
    top, bottom, down = _source_taps(height, size[0], rows[0], rows[1], tensor.device)
    left, right, across = _source_taps(width, size[1], cols[0], cols[1], tensor.device)
    row0, row1 = int(top[0]), int(bottom[-1]) + 1
    col0, col1 = int(left[0]), int(right[-1]) + 1
    part = tensor[row0:row1, col0:col1]
    upper, lower = part.index_select(0, top - row0), part.index_select(0, bottom - row0)
    down = down[:, None, None]
    mixed = upper * (1.0 - down) + lower * down
    west, east = mixed.index_select(1, left - col0), mixed.index_select(1, right - col0)
    across = across[None, :, None]
    return (west * (1.0 - across) + east * across).clamp_(0.0, 1.0)


#: The largest ``composite(scale=...)``: beyond it the scaled object's pixel positions would lose
#: float64 precision long before any use.
MAX_SCALE = 10_000.0


def _check_placement(anchor: Any, scale: Any, feather: Any, x: Any, y: Any) -> tuple[float, float, float, float]:
    """The checked ``(scale, feather, x, y)``; ValueError naming the bad parameter."""
    if not isinstance(anchor, str) or anchor not in _ANCHOR_FRACTIONS:
        raise ValueError(f"unknown anchor {anchor!r}; valid anchors are {', '.join(ANCHORS)}")
    checked_scale = number("scale", scale, low=0.0, low_open=True, high=MAX_SCALE)
    checked_feather = number("feather", feather, meaning="(<= 0 for a hard edge)")
    checked_x = number("x", x, meaning="(a background column; may lie outside the background)")
    checked_y = number("y", y, meaning="(a background row; may lie outside the background)")
    return checked_scale, checked_feather, checked_x, checked_y  # type: ignore[return-value]


def _clip_span(start: int, length: int, limit: int) -> tuple[int, int, int]:
    """Overlap of ``[start, start + length)`` with ``[0, limit)``: (dst_start, dst_end, src_start)."""
    dst_start = max(start, 0)
    dst_end = min(start + length, limit)
    return dst_start, dst_end, dst_start - start


def composite(
    background: torch.Tensor,
    foreground: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    x: float = 0,
    y: float = 0,
    scale: float = 1.0,
    anchor: str = "top-left",
    feather: float = 0.0,
    crop_to_mask: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a masked object into a background (product placement).

    Steps:

    1. With ``crop_to_mask`` the object is the bounding box of ``mask > 0`` in ``foreground``;
       otherwise the whole foreground.
    2. It is resized by ``scale`` (bilinear, antialiased; the mask likewise) to
       ``round(h * scale) x round(w * scale)`` pixels (at least 1). ``scale == 1`` does not resample.
    3. It is placed so that its ``anchor`` pixel lands on background pixel ``(x, y)``: for
       ``"top-left"`` the object's first pixel, for ``"bottom-right"`` its last pixel (so
       ``x = W - 1, y = H - 1`` puts the object flush in the corner), for ``"center"`` its centre
       ``((w - 1) / 2, (h - 1) / 2)``. The position is rounded to whole pixels (halves round up),
       so nothing is resampled by the placement.
    4. Parts outside the background are clipped. An object entirely outside leaves the
       background unchanged, returns an all-zero ``placed_mask`` and logs a warning (so does an
       empty mask).
    5. With ``feather > 0`` the object's mask is softened with :func:`grounded_inpaint.masks.feather`
       (in background pixels, after resizing). With ``crop_to_mask`` the crop is enlarged so the
       soft edge uses the foreground's real pixels around the object; the anchor still refers to
       the mask's bounding box. Widths beyond the background's diagonal act as the diagonal.
    6. ``out = background * (1 - a) + foreground * a`` where ``a`` is the placed mask.

    With ``scale == 1``, ``feather == 0`` and a binary mask, pasted pixels equal the foreground
    exactly and all other pixels equal the background exactly.

    Cost: only the part of the scaled object that lands inside the background (plus the feather
    radius around it) is resampled and feathered, so time and memory stay near the background's
    size at any scale. For ``scale > 1`` that window is computed directly from the source pixels
    it needs, with the sampling positions of ``F.interpolate(bilinear, align_corners=False)``
    (in float64); for ``scale <= 1`` the scaled object is no larger than the foreground and is
    resized whole. Either way the result equals resizing the whole object first, within float
    rounding.

    Arguments:
        background: ``[H, W, 3]`` float32 RGB in ``0..1``.
        foreground: ``[h, w, 3]`` RGB, or ``[h, w, 4]`` RGBA whose alpha is the mask when ``mask``
            is None (for example the output of :func:`cutout`).
        mask: ``[h, w]`` bool or float in ``0..1``, 1 = the object. Takes precedence over an alpha
            channel. None with an RGB foreground pastes the whole foreground rectangle.
        x, y: background pixel (column, row) where the anchor lands; any finite number (may be
            fractional or lie outside the background).
        scale: a number in ``(0, MAX_SCALE]`` (``MAX_SCALE = 10000``).
        anchor: one of :data:`ANCHORS`.
        feather: soft edge width in pixels, a finite number; ``<= 0`` for a hard edge.
        crop_to_mask: crop the foreground to the mask's bounding box before scaling and placing.

    Returns:
        ``(image, placed_mask)``: the new ``[H, W, 3]`` float32 image and the ``[H, W]`` float32
        alpha actually used (0 where nothing was pasted), both on the background's device.

    Raises:
        ValueError: unknown anchor (the valid ones are listed), ``scale`` outside
            ``(0, MAX_SCALE]``, NaN or infinite ``x``, ``y``, ``scale`` or ``feather`` (each named),
            or a mask whose size differs from the foreground (both sizes named).
    """
    scale, feather, x, y = _check_placement(anchor, scale, feather, x, y)
    background = to_rgb(background, name="background")
    colours, alpha = _foreground_and_alpha(foreground, mask)
    colours, alpha = colours.to(background.device), alpha.to(background.device)
    height, width = _size_of(background)
    out = background.clone()
    placed = torch.zeros((height, width), dtype=torch.float32, device=background.device)
    fg_h, fg_w = _size_of(colours)
    feather = min(max(feather, 0.0), math.hypot(height, width))
    radius = int(math.ceil(feather)) if feather > 0 else 0

    box = _mask_bbox(alpha) if crop_to_mask else (0, 0, fg_w, fg_h)
    if box is None:
        log.warning("composite: the foreground mask is empty; nothing was pasted")
        return out, placed
    margin = 0
    if crop_to_mask and feather > 0:
        # Foreground pixels within the feather radius (in background pixels) of the object.
        needed = (radius + 1) / scale
        margin = int(math.ceil(needed)) if needed < max(fg_h, fg_w) else max(fg_h, fg_w)
    fx0, fy0, fx1, fy1 = _pad_box(box, margin, fg_h, fg_w)

    frame_h, frame_w = fy1 - fy0, fx1 - fx0
    size = (max(1, int(round(frame_h * scale))), max(1, int(round(frame_w * scale))))

    # Where the (scaled) object box lies inside the (scaled) frame, and how big it is.
    sy, sx = size[0] / frame_h, size[1] / frame_w
    offset_x, offset_y = (box[0] - fx0) * sx, (box[1] - fy0) * sy
    object_w, object_h = (box[2] - box[0]) * sx, (box[3] - box[1]) * sy
    ax, ay = _ANCHOR_FRACTIONS[anchor]
    left = int(math.floor(x - ax * (object_w - 1) - offset_x + 0.5))
    top = int(math.floor(y - ay * (object_h - 1) - offset_y + 0.5))

    dx0, dx1, sx0 = _clip_span(left, size[1], width)
    dy0, dy1, sy0 = _clip_span(top, size[0], height)
    if dx1 <= dx0 or dy1 <= dy0:
        log.warning(
            "composite: the object (%dx%d at x=%d, y=%d) lies entirely outside the %dx%d background; "
            "nothing was pasted",
            size[1], size[0], left, top, width, height,
        )
        return out, placed
    # The visible part of the scaled object, and the larger window its soft edge depends on.
    visible_rows, visible_cols = (sy0, sy0 + dy1 - dy0), (sx0, sx0 + dx1 - dx0)
    window_rows = (max(0, sy0 - radius), min(size[0], visible_rows[1] + radius))
    window_cols = (max(0, sx0 - radius), min(size[1], visible_cols[1] + radius))
    frame_rgb, frame_alpha = colours[fy0:fy1, fx0:fx1], alpha[fy0:fy1, fx0:fx1, None]
    if scale > 1.0:
        rgb = _upsample_window(frame_rgb, size, visible_rows, visible_cols)
        window_alpha = _upsample_window(frame_alpha, size, window_rows, window_cols)[..., 0]
    else:
        rgb = _resize(frame_rgb, size)[slice(*visible_rows), slice(*visible_cols)]
        window_alpha = _resize(frame_alpha, size)[slice(*window_rows), slice(*window_cols), 0]
    if feather > 0:
        # Outputs within `radius` of the window's inner edges are never kept, so the replicated
        # padding there changes nothing; at the object's own edges the window ends where it does.
        window_alpha = _masks._feather_uncapped(window_alpha, feather)
    a = window_alpha[
        visible_rows[0] - window_rows[0] : visible_rows[1] - window_rows[0],
        visible_cols[0] - window_cols[0] : visible_cols[1] - window_cols[0],
    ]
    region = out[dy0:dy1, dx0:dx1]
    out[dy0:dy1, dx0:dx1] = region * (1.0 - a[..., None]) + rgb * a[..., None]
    placed[dy0:dy1, dx0:dx1] = a
    return out, placed


def paste_back(generated: torch.Tensor, original: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
    """Restore the kept object from the original image after inpainting.

    ``out = generated * (1 - keep_mask) + original * keep_mask``: where ``keep_mask`` is 1 the
    result equals ``original`` exactly, where it is 0 it equals ``generated`` exactly, and soft
    values blend the two.

    Arguments:
        generated: ``[H, W, 3]`` float32 RGB in ``0..1`` (the inpainted image).
        original: ``[H, W, 3]`` float32 RGB in ``0..1``.
        keep_mask: ``[H, W]`` bool or float in ``0..1``, 1 = restore from ``original``.

    Returns:
        A new ``[H, W, 3]`` float32 image on the device of ``generated``.

    Raises:
        ValueError: the three inputs do not all have the same size (the sizes are named).
    """
    generated = to_rgb(generated, name="generated")
    original = to_rgb(original, name="original").to(generated.device)
    _check_size(generated, _size_of(original), "original", "generated")
    keep = _mask_for(generated, keep_mask, "keep_mask", "generated")[..., None]
    return generated * (1.0 - keep) + original * keep
