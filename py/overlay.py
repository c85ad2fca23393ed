"""Drawing instances on images, cutting objects out and pasting them into other images.

Images are ``[H, W, 3]`` float32 tensors in ``0..1`` (RGB, channels last); other layouts accepted
by :func:`grounded_inpaint.images.to_rgb` are converted first. Masks are ``[H, W]`` float32 in
``0..1`` (bool is accepted); boxes are XYXY pixels (see :mod:`grounded_inpaint.structures`).
Results are new tensors on the device of the input image; the input is never modified.

Boxes and captions are rendered with Pillow on a transparent layer that is then blended over
the image, so pixels that no annotation touches keep their exact value.
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
from .images import to_mask, to_rgb
from .structures import Detections, Segments

__all__ = [
    "ANCHORS",
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
        n: the number of colours, ``>= 0``.

    Returns:
        ``[n, 3]`` float32 RGB in ``0..1`` (CPU).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"palette size must be >= 0; got {n}")
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


def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in 0..1; got {value}")
    return value


def _mask_for(image: torch.Tensor, mask: Any, name: str, image_name: str = "image") -> torch.Tensor:
    """``mask`` as ``[H, W]`` float32 in ``0..1`` on the image's device, checked against its size."""
    mask = to_mask(mask, name=name)
    _check_size(image, mask.shape, name, image_name)
    return mask.to(image.device)


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------


def _pixel_box(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int] | None:
    """Inclusive integer corners of an XYXY box clipped to the image, or None if it is outside."""
    x0, y0, x1, y1 = (float(v) for v in box)
    left = max(0, int(math.floor(min(x0, x1))))
    top = max(0, int(math.floor(min(y0, y1))))
    right = min(width - 1, int(math.ceil(max(x0, x1))) - 1)
    bottom = min(height - 1, int(math.ceil(max(y0, y1))) - 1)
    if right < left or bottom < top:
        return None
    return left, top, right, bottom


def _caption(label: str, score: float, labels: bool, scores: bool) -> str:
    parts = []
    if labels and label:
        parts.append(label)
    if scores:
        parts.append(f"{score:.2f}")
    return " ".join(parts)


def _caption_origin(
    anchor: tuple[int, int], size: tuple[int, int], height: int, width: int
) -> tuple[int, int]:
    """Top-left corner of a caption of ``size = (w, h)`` for a box whose top-left is ``anchor``.

    The caption sits just above the box; when there is no room above, just inside its top edge.
    It is then shifted so that it lies inside the image (as far as it fits).
    """
    box_left, box_top = anchor
    caption_w, caption_h = size
    x, y = box_left, box_top - caption_h
    if y < 0:
        y = box_top
    x = min(max(x, 0), max(width - caption_w, 0))
    y = min(max(y, 0), max(height - caption_h, 0))
    return x, y


def _annotation_layer(
    height: int,
    width: int,
    boxes: torch.Tensor,
    captions: Sequence[str],
    colours: torch.Tensor,
    draw_boxes: bool,
) -> np.ndarray:
    """Render boxes and captions on a transparent ``[H, W, 4]`` uint8 RGBA layer."""
    from PIL import Image, ImageDraw, ImageFont

    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=_font_size(height, width))
    line = _line_width(height, width)
    pad = max(1, _font_size(height, width) // 5)
    for box, caption, colour in zip(boxes.tolist(), captions, colours.tolist()):
        corners = _pixel_box(box, height, width)
        if corners is None:
            continue
        fill = _to_uint8_colour(colour)
        if draw_boxes:
            draw.rectangle(corners, outline=fill, width=line)
        if not caption:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        size = (right - left + 2 * pad, bottom - top + 2 * pad)
        x, y = _caption_origin((corners[0], corners[1]), size, height, width)
        draw.rectangle((x, y, x + size[0] - 1, y + size[1] - 1), fill=fill)
        draw.text((x + pad - left, y + pad - top), caption, font=font, fill=_text_colour(colour))
    return np.array(layer)


def _blend_layer(image: torch.Tensor, layer: np.ndarray) -> torch.Tensor:
    """Blend an RGBA uint8 layer over ``image``; pixels with zero alpha stay bit-identical."""
    rgba = torch.from_numpy(np.ascontiguousarray(layer)).to(image.device).float() / 255.0
    alpha = rgba[..., 3:]
    blended = image * (1.0 - alpha) + rgba[..., :3] * alpha
    return torch.where(alpha > 0, blended, image)


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
    captions = [_caption(lab, s, show_labels, show_scores) for lab, s in zip(labels, scores.tolist())]
    if not draw_boxes and not any(captions):
        return image
    height, width = _size_of(image)
    layer = _annotation_layer(height, width, boxes, captions, colours, draw_boxes)
    return _blend_layer(image, layer)


def _inner_contour(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels of a bool ``[H, W]`` mask within ``width`` pixels (chessboard distance) of its background.

    Outside the image does not count as background, so objects cut by the frame get no line
    along the image border.
    """
    background = (~mask).float()[None, None]
    near_background = F.max_pool2d(background, kernel_size=2 * width + 1, stride=1, padding=width)
    return mask & (near_background[0, 0] > 0)


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
    drawn; with ``labels``/``scores`` a caption such as ``"shoes 0.87"`` is drawn on a filled
    background just above the box (inside it when the box touches the top), shifted to stay inside
    the image. Font size and line width grow with the image (``max(10, min(H, W) // 40)`` and
    ``max(1, min(H, W) // 256)`` pixels).

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        segments: instances of this image (``segments.image_size == (H, W)``).
        opacity: fill opacity in ``0..1``.
        boxes, labels, scores, contours: which annotations to draw.

    Returns:
        A new ``[H, W, 3]`` float32 image on the image's device. With zero instances, a copy of
        ``image``. Pixels outside every mask, box and caption are unchanged.

    Raises:
        ValueError: the image and the segments differ in size, or ``opacity`` is outside ``0..1``.
    """
    image = to_rgb(image, name="image")
    _check_size(image, segments.image_size, "segments.image_size")
    opacity = _check_fraction(opacity, "opacity")
    out = image.clone()
    n = len(segments)
    if n == 0:
        return out
    colours = palette(n).to(out.device)
    instance_masks = segments.masks.to(out.device)
    for i in range(n):
        if opacity > 0:
            region = instance_masks[i]
            out[region] = out[region] * (1.0 - opacity) + colours[i] * opacity
    if contours:
        width = _line_width(*_size_of(out))
        for i in range(n):
            out[_inner_contour(instance_masks[i], width)] = colours[i]
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
    image = to_rgb(image, name="image")
    _check_size(image, detections.image_size, "detections.image_size")
    out = image.clone()
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
        color: RGB, three values in ``0..1``.
        opacity: in ``0..1``.

    Returns:
        A new ``[H, W, 3]`` float32 image; pixels where the mask is 0 are unchanged.

    Raises:
        ValueError: size mismatch (both sizes named), a bad colour, or ``opacity`` outside ``0..1``.
    """
    image = to_rgb(image, name="image")
    mask = _mask_for(image, mask, "mask")
    opacity = _check_fraction(opacity, "opacity")
    colour = [float(c) for c in color]
    if len(colour) != 3 or not all(0.0 <= c <= 1.0 for c in colour):
        raise ValueError(f"color must be three RGB values in 0..1; got {tuple(color)}")
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
        padding: ``>= 0``; only used with ``crop``.

    Returns:
        ``(rgba, box)``: ``rgba`` is ``[h, w, 4]`` float32 in ``0..1`` with the image's colours
        unchanged (also where the alpha is 0) and alpha = mask; ``box = (x0, y0, x1, y1)`` are the
        integer XYXY pixel bounds (end exclusive) of ``rgba`` in the original image,
        ``(0, 0, W, H)`` without ``crop``. An **empty mask with ``crop``** yields a single fully
        transparent black pixel, ``[1, 1, 4]`` zeros, with box ``(0, 0, 1, 1)`` (and a warning),
        so that downstream nodes get a valid, invisible image instead of an error.

    Raises:
        ValueError: size mismatch (both sizes named) or negative ``padding``.
    """
    image = to_rgb(image, name="image")
    mask = _mask_for(image, mask, "mask")
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
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


def _check_placement(anchor: str, scale: float, feather: float, x: float, y: float) -> None:
    if anchor not in _ANCHOR_FRACTIONS:
        raise ValueError(f"unknown anchor {anchor!r}; valid anchors are {', '.join(ANCHORS)}")
    if not (math.isfinite(float(scale)) and float(scale) > 0):
        raise ValueError(f"scale must be a positive number; got {scale}")
    if not math.isfinite(float(feather)):
        raise ValueError(f"feather must be a finite number of pixels; got {feather}")
    if not (math.isfinite(float(x)) and math.isfinite(float(y))):
        raise ValueError(f"x and y must be finite pixel positions; got x={x}, y={y}")


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
       the mask's bounding box.
    6. ``out = background * (1 - a) + foreground * a`` where ``a`` is the placed mask.

    With ``scale == 1``, ``feather == 0`` and a binary mask, pasted pixels equal the foreground
    exactly and all other pixels equal the background exactly.

    Arguments:
        background: ``[H, W, 3]`` float32 RGB in ``0..1``.
        foreground: ``[h, w, 3]`` RGB, or ``[h, w, 4]`` RGBA whose alpha is the mask when ``mask``
            is None (for example the output of :func:`cutout`).
        mask: ``[h, w]`` bool or float in ``0..1``, 1 = the object. Takes precedence over an alpha
            channel. None with an RGB foreground pastes the whole foreground rectangle.
        x, y: background pixel (column, row) where the anchor lands; may be fractional or lie
            outside the background.
        scale: ``> 0``.
        anchor: one of :data:`ANCHORS`.
        feather: soft edge width in pixels; ``<= 0`` for a hard edge.
        crop_to_mask: crop the foreground to the mask's bounding box before scaling and placing.

    Returns:
        ``(image, placed_mask)``: the new ``[H, W, 3]`` float32 image and the ``[H, W]`` float32
        alpha actually used (0 where nothing was pasted), both on the background's device.

    Raises:
        ValueError: unknown anchor (the valid ones are listed), ``scale <= 0``, non-finite
            numbers, or a mask whose size differs from the foreground (both sizes named).
    """
    _check_placement(anchor, scale, feather, x, y)
    background = to_rgb(background, name="background")
    colours, alpha = _foreground_and_alpha(foreground, mask)
    colours, alpha = colours.to(background.device), alpha.to(background.device)
    height, width = _size_of(background)
    out = background.clone()
    placed = torch.zeros((height, width), dtype=torch.float32, device=background.device)
    fg_h, fg_w = _size_of(colours)
    feather = max(float(feather), 0.0)

    box = _mask_bbox(alpha) if crop_to_mask else (0, 0, fg_w, fg_h)
    if box is None:
        log.warning("composite: the foreground mask is empty; nothing was pasted")
        return out, placed
    margin = 0
    if crop_to_mask and feather > 0:
        margin = int(math.ceil((math.ceil(feather) + 1) / float(scale)))
    fx0, fy0, fx1, fy1 = _pad_box(box, margin, fg_h, fg_w)

    frame_h, frame_w = fy1 - fy0, fx1 - fx0
    size = (max(1, int(round(frame_h * scale))), max(1, int(round(frame_w * scale))))
    obj_rgb = _resize(colours[fy0:fy1, fx0:fx1], size)
    obj_alpha = _resize(alpha[fy0:fy1, fx0:fx1, None], size)[..., 0]
    if feather > 0:
        obj_alpha = _masks.feather(obj_alpha, feather)

    # Where the (scaled) object box lies inside the (scaled) frame, and how big it is.
    sy, sx = size[0] / frame_h, size[1] / frame_w
    offset_x, offset_y = (box[0] - fx0) * sx, (box[1] - fy0) * sy
    object_w, object_h = (box[2] - box[0]) * sx, (box[3] - box[1]) * sy
    ax, ay = _ANCHOR_FRACTIONS[anchor]
    left = int(math.floor(float(x) - ax * (object_w - 1) - offset_x + 0.5))
    top = int(math.floor(float(y) - ay * (object_h - 1) - offset_y + 0.5))

    dx0, dx1, sx0 = _clip_span(left, size[1], width)
    dy0, dy1, sy0 = _clip_span(top, size[0], height)
    if dx1 <= dx0 or dy1 <= dy0:
        log.warning(
            "composite: the object (%dx%d at x=%d, y=%d) lies entirely outside the %dx%d background; "
            "nothing was pasted",
            size[1], size[0], left, top, width, height,
        )
        return out, placed
    a = obj_alpha[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    rgb = obj_rgb[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
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
