"""Tests for grounded_inpaint.overlay: drawing, cut-outs, compositing and paste-back."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from grounded_inpaint import masks as M
from grounded_inpaint import overlay as O
from grounded_inpaint.structures import Detections, Segments

FAST = settings(max_examples=30, deadline=None)


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[H, W] bool: pixels where the two images differ in any channel."""
    return (a != b).any(dim=-1)


def bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """XYXY (end exclusive) of the non-zero pixels."""
    nz = torch.nonzero(mask)
    return int(nz[:, 1].min()), int(nz[:, 0].min()), int(nz[:, 1].max()) + 1, int(nz[:, 0].max()) + 1


def rect_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def segments_of(masks: list[torch.Tensor], labels: list[str], scores: list[float]) -> Segments:
    boxes = torch.tensor([list(map(float, bbox(m))) for m in masks])
    return Segments(torch.stack(masks), boxes, torch.tensor(scores), torch.ones(len(masks)), labels)


@pytest.fixture
def image() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(120, 160, 3) * 0.5


# ------------------------------------------------------------------------------------------
# palette
# ------------------------------------------------------------------------------------------


def test_palette_is_deterministic_distinct_and_in_range():
    colours = O.palette(12)
    assert colours.shape == (12, 3) and colours.dtype == torch.float32
    assert float(colours.min()) >= 0 and float(colours.max()) <= 1
    assert torch.equal(colours, O.palette(12))
    assert torch.equal(O.palette(5), colours[:5])  # a prefix does not depend on n
    distances = torch.cdist(colours, colours) + torch.eye(12) * 10
    assert float(distances.min()) > 0.1
    assert O.palette(0).shape == (0, 3)
    with pytest.raises(ValueError, match=">= 0"):
        O.palette(-1)


# ------------------------------------------------------------------------------------------
# draw_segments / draw_detections / draw_mask
# ------------------------------------------------------------------------------------------


def test_draw_segments_fills_inside_masks_only(image):
    a = rect_mask(120, 160, 10, 20, 60, 70)
    b = torch.zeros(120, 160, dtype=torch.bool)
    b[80:110, 100:150] = True
    b[95, 120] = False  # a hole
    segments = segments_of([a, b], ["shoes", "bag"], [0.9, 0.4])
    out = O.draw_segments(image, segments, opacity=0.4, boxes=False, labels=False, scores=False, contours=False)
    colours = O.palette(2)
    for mask, colour in ((a, colours[0]), (b, colours[1])):
        assert torch.allclose(out[mask], image[mask] * 0.6 + colour * 0.4, atol=1e-6)
    outside = ~(a | b)
    assert torch.equal(out[outside], image[outside])
    assert out[95, 120].tolist() == image[95, 120].tolist()


def test_draw_segments_contours_stay_inside_the_mask(image):
    a = rect_mask(120, 160, 30, 30, 90, 80)
    segments = segments_of([a], ["x"], [1.0])
    out = O.draw_segments(image, segments, opacity=0.0, boxes=False, labels=False, scores=False, contours=True)
    edge = changed(out, image)
    assert edge.any() and not (edge & ~a).any()
    assert torch.allclose(out[30, 50], O.palette(1)[0])  # the top edge is drawn in the colour
    assert torch.equal(out[55, 60], image[55, 60])  # the middle is not


def test_draw_segments_boxes_and_captions_do_not_touch_far_pixels(image):
    a = rect_mask(120, 160, 60, 60, 100, 100)
    segments = segments_of([a], ["shoes"], [0.87])
    out = O.draw_segments(image, segments)
    diff = changed(out, image)
    # everything drawn lies in the box or in the caption strip just above it
    x0, y0, x1, y1 = bbox(diff)
    assert x0 >= 60 and x1 <= 160 and y1 <= 100 and y0 >= 60 - 30
    assert y0 < 60  # the caption is above the box
    assert torch.equal(out[:, :60], image[:, :60])
    assert torch.equal(out[100:], image[100:])


def caption_extent(image: torch.Tensor, box: tuple[int, int, int, int], label: str) -> tuple[int, int, int, int]:
    h, w = image.shape[:2]
    segments = segments_of([rect_mask(h, w, *box)], [label], [0.5])
    out = O.draw_segments(image, segments, opacity=0.0, boxes=False, contours=False)
    diff = changed(out, image)
    assert diff.any()
    return bbox(diff)


def test_captions_stay_inside_the_image_at_every_border(image):
    label = "a rather long label"
    cx0, cy0, cx1, cy1 = caption_extent(image, (60, 60, 100, 100), label)
    width, height = cx1 - cx0, cy1 - cy0
    assert width > 40  # longer than the box, so it would overflow at the right border
    for box in [(0, 0, 30, 30), (130, 90, 160, 120), (140, 0, 160, 120), (0, 100, 20, 120)]:
        x0, y0, x1, y1 = caption_extent(image, box, label)
        assert (x1 - x0, y1 - y0) == (width, height), box  # not clipped
        assert 0 <= x0 and x1 <= 160 and 0 <= y0 and y1 <= 120
    # a box touching the top gets its caption inside, at the top
    assert caption_extent(image, (20, 0, 80, 60), label)[1] == 0


# The drawing formulas as they were before drawing worked per instance box (full-image boolean
# indexing, one max-pool over the whole image, one full-size annotation layer). The new code must
# give the same pixels. Deliberate changes, not part of this reference: captions are laid out so
# that they never overlap, label and score are drawn a visible gap apart, and all boxes are drawn
# before all captions (the reference does that too, so that the tests compare the rest).


def old_inner_contour(mask: torch.Tensor, width: int) -> torch.Tensor:
    background = (~mask).float()[None, None]
    near_background = F.max_pool2d(background, kernel_size=2 * width + 1, stride=1, padding=width)
    return mask & (near_background[0, 0] > 0)


def old_caption_origin(anchor, size, height, width):
    box_left, box_top = anchor
    caption_w, caption_h = size
    x, y = box_left, box_top - caption_h
    if y < 0:
        y = box_top
    return min(max(x, 0), max(width - caption_w, 0)), min(max(y, 0), max(height - caption_h, 0))


def old_draw_segments(image, segments, *, opacity=0.5, boxes=True, labels=True, scores=True, contours=True):
    """Returns the image and the caption rectangles it drew (XYXY, ends exclusive)."""
    from PIL import Image, ImageDraw, ImageFont

    out = image.clone()
    n = len(segments)
    colours = O.palette(n)
    for i in range(n):
        if opacity > 0:
            region = segments.masks[i]
            out[region] = out[region] * (1.0 - opacity) + colours[i] * opacity
    height, width = out.shape[:2]
    if contours:
        for i in range(n):
            out[old_inner_contour(segments.masks[i], O._line_width(height, width))] = colours[i]
    captions = [O._caption(lab, s, labels, scores) for lab, s in zip(segments.labels, segments.scores.tolist())]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=O._font_size(height, width))
    line, pad = O._line_width(height, width), max(1, O._font_size(height, width) // 5)
    rects = []
    if boxes:
        for box, colour in zip(segments.boxes.tolist(), colours.tolist()):
            corners = O._pixel_box(box, height, width)
            if corners is not None:
                draw.rectangle(corners, outline=O._to_uint8_colour(colour), width=line)
    for box, caption, colour in zip(segments.boxes.tolist(), captions, colours.tolist()):
        corners = O._pixel_box(box, height, width)
        if corners is None:
            continue
        fill = O._to_uint8_colour(colour)
        if not caption:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        size = (right - left + 2 * pad, bottom - top + 2 * pad)
        x, y = old_caption_origin((corners[0], corners[1]), size, height, width)
        draw.rectangle((x, y, x + size[0] - 1, y + size[1] - 1), fill=fill)
        draw.text((x + pad - left, y + pad - top), caption, font=font, fill=O._text_colour(colour))
        rects.append((x, y, x + size[0], y + size[1]))
    rgba = torch.from_numpy(np.array(layer)).float() / 255.0
    alpha = rgba[..., 3:]
    blended = torch.where(alpha > 0, out * (1.0 - alpha) + rgba[..., :3] * alpha, out)
    return blended, rects


def random_segments(generator: torch.Generator, h: int, w: int, n: int, labels: list[str]) -> Segments:
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    boxes = []
    for i in range(n):
        y0, x0 = int(torch.randint(0, h, (1,), generator=generator)), int(torch.randint(0, w, (1,), generator=generator))
        y1 = int(torch.randint(y0 + 1, h + 1, (1,), generator=generator))
        x1 = int(torch.randint(x0 + 1, w + 1, (1,), generator=generator))
        masks[i, y0:y1, x0:x1] = torch.rand(y1 - y0, x1 - x0, generator=generator) > 0.3
        boxes.append([x0, y0, x1, y1])
    if n > 1:
        masks[-1] = False  # an empty instance (its box is still drawn)
    return Segments(masks, torch.tensor(boxes, dtype=torch.float32), torch.rand(n, generator=generator), torch.ones(n), labels[:n])


@pytest.mark.parametrize("seed", range(12))
def test_draw_segments_equals_the_old_full_image_formula(seed):
    generator = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(2, 700, (2,), generator=generator))  # line width 1 and 2
    n = 1 + seed % 4
    image = torch.rand(h, w, 3, generator=generator)
    segments = random_segments(generator, h, w, n, ["cup", "a long label", "x", ""])
    opacity = [0.0, 0.35, 0.5, 1.0][seed % 4]
    # captions of one part (label or score): those were drawn as one text before and now
    single = (dict(boxes=False, labels=False, scores=False), dict(labels=False, scores=False), dict(contours=False, scores=False), dict(labels=False))
    for kwargs in single:
        expected, rects = old_draw_segments(image, segments, opacity=opacity, **kwargs)
        if any(O._overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :]):
            continue  # the old layout let these captions cover each other; the new one moves them
        out = O.draw_segments(image, segments, opacity=opacity, **kwargs)
        assert torch.equal(out, expected), (seed, kwargs, int(changed(out, expected).sum()))


def test_box_outlines_of_thin_boxes_equal_the_old_formula():
    # Pillow paints the outline of a box at most `line` pixels wide or high outside its corners.
    image = torch.rand(600, 600, 3)  # line width 2
    boxes = [[100, 100, 101, 101], [200, 50, 201, 90], [300, 40, 340, 42], [0, 0, 2, 600], [598, 10, 600, 13]]
    masks = torch.zeros(len(boxes), 600, 600, dtype=torch.bool)
    segments = Segments(masks, torch.tensor(boxes, dtype=torch.float32), torch.ones(len(boxes)), torch.ones(len(boxes)), ["x"] * len(boxes))
    out = O.draw_segments(image, segments, labels=False, scores=False)
    expected, _ = old_draw_segments(image, segments, labels=False, scores=False)
    assert torch.equal(out, expected)


def test_inner_contour_is_the_chessboard_edge():
    generator = torch.Generator().manual_seed(5)
    for width in (1, 2, 3, 7, 23):
        mask = torch.rand(61, 47, generator=generator) > 0.35
        assert torch.equal(O._inner_contour(mask, width), old_inner_contour(mask, width)), width
    full = torch.ones(9, 9, dtype=torch.bool)
    assert not O._inner_contour(full, 2).any()  # the image border is not background


def test_pixel_box_skips_nan_and_clips_infinite_boxes():
    # Segments refuse such boxes nowadays; the drawing still never ends in "cannot convert NaN".
    assert O._pixel_box([float("nan"), 0, 10, 10], 120, 160) is None
    assert O._pixel_box([-float("inf"), 20, float("inf"), 30], 120, 160) == (0, 20, 159, 29)
    assert O._pixel_box([1e30, 1e30, 2e30, 2e30], 120, 160) is None
    assert O._pixel_box([10.5, 20.2, 30.0, 40.9], 120, 160) == (10, 20, 29, 40)


def caption_rects(out: torch.Tensor, image: torch.Tensor, n: int) -> list[tuple[int, int, int, int]]:
    """The rectangle of each instance's caption, found from its background colour (8-bit)."""
    colours = O.palette(n)
    rects = []
    for i in range(n):
        near = ((out - colours[i]).abs() <= 1.0 / 255 + 1e-6).all(dim=-1) & changed(out, image)
        assert near.any(), i
        rects.append(bbox(near))
    return rects


def test_crowded_captions_at_the_top_edge_do_not_overlap(tmp_path):
    torch.manual_seed(7)
    image = torch.rand(240, 320, 3) * 0.3
    boxes = [[10 + 12 * i, 0, 70 + 12 * i, 60 + 8 * i] for i in range(8)]  # touching the top, overlapping
    labels = ["cup", "saucer", "spoon", "cup", "teapot", "sugar bowl", "lid", "cup"]
    masks = torch.zeros(8, 240, 320, dtype=torch.bool)
    segments = Segments(masks, torch.tensor(boxes, dtype=torch.float32), torch.linspace(0.9, 0.3, 8), torch.ones(8), labels)
    out = O.draw_segments(image, segments, boxes=False, contours=False, opacity=0.0)
    rects = caption_rects(out, image, 8)
    for i, a in enumerate(rects):
        for j, b in enumerate(rects[i + 1 :], start=i + 1):
            assert not O._overlaps(a, b), (i, j, a, b)
        assert 0 <= a[0] and a[2] <= 320 and 0 <= a[1] and a[3] <= 240
    assert rects[0][1] == 0  # the first keeps its spot inside the box at the top
    assert all(rect[0] == min(max(box[0], 0), 320 - (rect[2] - rect[0])) for rect, box in zip(rects, boxes))
    # with boxes too (the picture a user sees); written for a look
    from PIL import Image

    picture = O.draw_segments(image, segments)
    Image.fromarray((picture * 255).round().byte().numpy()).save(tmp_path / "crowded.png")


def test_captions_are_label_space_score():
    assert O._caption("cup", 0.871, True, True) == "cup 0.87"
    assert O._caption(" red\n shoes ", 0.5, True, True) == "red shoes 0.50"
    assert O._caption("cup", 0.5, False, True) == "0.50"
    assert O._caption("cup", 0.5, True, False) == "cup"
    assert O._caption("  ", 0.5, True, False) == ""


def test_label_and_score_are_visibly_apart():
    """At the smallest font (10 px) a plain space is 2 px; the gap is at least 4 px of background."""
    image = torch.zeros(200, 200, 3)
    segments = segments_of([rect_mask(200, 200, 20, 60, 120, 120)], ["cup"], [0.87])
    out = O.draw_segments(image, segments, opacity=0.0, boxes=False, contours=False)
    colour = O.palette(1)[0]
    x0, y0, x1, y1 = bbox(changed(out, image))
    caption = out[y0:y1, x0:x1]
    ink = ~((caption - colour).abs() <= 1.0 / 255 + 1e-6).all(dim=-1)  # text pixels
    columns = ink.any(dim=0).tolist()
    runs, current = [], 0  # widths of the empty column runs between ink
    first, last = columns.index(True), len(columns) - 1 - columns[::-1].index(True)
    for has_ink in columns[first : last + 1]:
        if has_ink:
            if current:
                runs.append(current)
            current = 0
        else:
            current += 1
    assert max(runs) >= 4, runs  # the gap between "cup" and "0.87"
    label_only = O.draw_segments(image, segments, opacity=0.0, boxes=False, contours=False, scores=False)
    lx0, _, lx1, _ = bbox(changed(label_only, image))
    assert x1 - x0 > lx1 - lx0


def test_place_caption_moves_down_below_taken_spots():
    placed = [(0, 0, 50, 20)]
    assert O._place_caption((10, 0), (40, 20), 100, 200, placed) == (10, 20)
    placed.append((10, 20, 50, 40))
    assert O._place_caption((5, 0), (40, 20), 100, 200, placed) == (5, 40)
    assert O._place_caption((100, 50), (40, 20), 100, 200, placed) == (100, 30)  # free above its box
    # no room anywhere: the first choice, overlapping
    assert O._place_caption((0, 0), (200, 60), 100, 200, [(0, 0, 200, 60)]) == (0, 0)


def test_draw_segments_without_instances_returns_a_copy(image):
    out = O.draw_segments(image, Segments.empty((120, 160)))
    assert torch.equal(out, image) and out.data_ptr() != image.data_ptr()


def test_draw_segments_checks_size_and_opacity(image):
    segments = segments_of([rect_mask(100, 90, 0, 0, 5, 5)], ["x"], [1.0])
    with pytest.raises(ValueError, match=r"120x160.*100x90"):
        O.draw_segments(image, segments)
    ok = segments_of([rect_mask(120, 160, 0, 0, 5, 5)], ["x"], [1.0])
    with pytest.raises(ValueError, match="opacity"):
        O.draw_segments(image, ok, opacity=1.5)


def test_draw_detections_draws_box_edges_and_captions(image):
    detections = Detections(torch.tensor([[40.0, 50.0, 120.0, 110.0]]), torch.tensor([0.5]), ["cat"], (120, 160))
    plain = O.draw_detections(image, detections, labels=False, scores=False)
    colour = O.palette(1)[0]
    # boxes are rendered in 8 bits: the colour matches to within one step
    assert torch.allclose(plain[80, 40], colour, atol=1 / 255) and torch.allclose(plain[50, 80], colour, atol=1 / 255)
    assert torch.equal(plain[80, 80], image[80, 80])  # inside the box
    assert torch.equal(plain[:, :40], image[:, :40])
    captioned = O.draw_detections(image, detections)
    assert changed(captioned, plain)[:50].any()  # caption above the box
    assert torch.equal(O.draw_detections(image, Detections.empty((120, 160))), image)
    with pytest.raises(ValueError, match=r"120x160.*10x10"):
        O.draw_detections(image, Detections.empty((10, 10)))


def test_draw_mask_tints_proportionally(image):
    mask = torch.zeros(120, 160)
    mask[10:20, 10:20] = 1.0
    mask[30, 30] = 0.5
    out = O.draw_mask(image, mask, color=(0.0, 1.0, 0.0), opacity=0.5)
    green = torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(out[15, 15], image[15, 15] * 0.5 + green * 0.5)
    assert torch.allclose(out[30, 30], image[30, 30] * 0.75 + green * 0.25)
    assert torch.equal(out[mask == 0], image[mask == 0])
    with pytest.raises(ValueError, match="color"):
        O.draw_mask(image, mask, color=(2.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"120x160.*5x5"):
        O.draw_mask(image, torch.zeros(5, 5))


# ------------------------------------------------------------------------------------------
# cutout
# ------------------------------------------------------------------------------------------


def test_cutout_alpha_is_the_mask(image):
    mask = torch.zeros(120, 160)
    mask[30:50, 40:90] = 1.0
    mask[35, 45] = 0.25
    rgba, box = O.cutout(image, mask)
    assert rgba.shape == (120, 160, 4) and box == (0, 0, 160, 120)
    assert torch.equal(rgba[..., 3], mask)
    assert torch.equal(rgba[..., :3], image)


def test_cutout_crop_padding_and_clipping(image):
    mask = rect_mask(120, 160, 40, 30, 90, 50)
    rgba, box = O.cutout(image, mask, crop=True, padding=5)
    assert box == (35, 25, 95, 55) and rgba.shape == (30, 60, 4)
    assert torch.equal(rgba[..., :3], image[25:55, 35:95])
    assert torch.equal(rgba[..., 3], mask[25:55, 35:95].float())
    corner = rect_mask(120, 160, 0, 110, 10, 120)
    rgba, box = O.cutout(image, corner, crop=True, padding=20)
    assert box == (0, 90, 30, 120) and rgba.shape == (30, 30, 4)


def test_cutout_of_an_empty_mask(image, caplog):
    with caplog.at_level(logging.WARNING):
        rgba, box = O.cutout(image, torch.zeros(120, 160), crop=True)
    assert rgba.shape == (1, 1, 4) and torch.all(rgba == 0) and box == (0, 0, 1, 1)
    assert "empty" in caplog.text
    with pytest.raises(ValueError, match="padding"):
        O.cutout(image, torch.ones(120, 160), crop=True, padding=-1)
    with pytest.raises(ValueError, match=r"120x160.*12x16"):
        O.cutout(image, torch.ones(12, 16))


# ------------------------------------------------------------------------------------------
# composite
# ------------------------------------------------------------------------------------------

FG_H, FG_W = 20, 30
OBJ = (10, 5, 20, 11)  # XYXY of the object inside the foreground: 10 wide, 6 high


@pytest.fixture
def product() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    foreground = torch.rand(FG_H, FG_W, 3)
    mask = rect_mask(FG_H, FG_W, *OBJ).float()
    return foreground, mask


ANCHOR_POINTS = {
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


def expected_origin(anchor: str, x: float, y: float, w: int, h: int) -> tuple[int, int]:
    """Top-left pixel of a w x h object whose anchor pixel lands on (x, y), halves rounded up."""
    fx, fy = ANCHOR_POINTS[anchor]
    return math.floor(x - fx * (w - 1) + 0.5), math.floor(y - fy * (h - 1) + 0.5)


@pytest.mark.parametrize(
    "anchor, origin",
    [
        ("top-left", (30, 25)),
        ("top", (26, 25)),
        ("top-right", (21, 25)),
        ("left", (30, 23)),
        ("center", (26, 23)),
        ("right", (21, 23)),
        ("bottom-left", (30, 20)),
        ("bottom", (26, 20)),
        ("bottom-right", (21, 20)),
    ],
)
def test_composite_anchor_places_the_object(product, anchor, origin):
    foreground, mask = product
    background = torch.zeros(50, 60, 3)
    out, placed = O.composite(background, foreground, mask, x=30, y=25, anchor=anchor)
    assert origin == expected_origin(anchor, 30, 25, 10, 6)
    ox, oy = origin
    assert bbox(placed) == (ox, oy, ox + 10, oy + 6)
    assert placed.sum() == 60
    assert torch.equal(out[oy : oy + 6, ox : ox + 10], foreground[5:11, 10:20])


def test_composite_corner_anchor_is_flush_with_the_corner(product):
    foreground, mask = product
    _, placed = O.composite(torch.zeros(50, 60, 3), foreground, mask, x=59, y=49, anchor="bottom-right")
    assert bbox(placed) == (50, 44, 60, 50)


def test_composite_clips_at_the_borders(product):
    foreground, mask = product
    background = torch.rand(50, 60, 3)
    out, placed = O.composite(background, foreground, mask, x=-3, y=-2)
    assert bbox(placed) == (0, 0, 7, 4)
    assert torch.equal(out[0:4, 0:7], foreground[7:11, 13:20])
    assert torch.equal(out[4:], background[4:]) and torch.equal(out[:, 7:], background[:, 7:])
    out, placed = O.composite(background, foreground, mask, x=57, y=47)
    assert bbox(placed) == (57, 47, 60, 50)
    assert torch.equal(out[47:, 57:], foreground[5:8, 10:13])


def test_composite_fully_outside_leaves_the_background(product, caplog):
    foreground, mask = product
    background = torch.rand(50, 60, 3)
    with caplog.at_level(logging.WARNING):
        out, placed = O.composite(background, foreground, mask, x=200, y=10)
    assert torch.equal(out, background) and placed.shape == (50, 60) and placed.sum() == 0
    assert "outside" in caplog.text
    out, placed = O.composite(background, foreground, torch.zeros(FG_H, FG_W))
    assert torch.equal(out, background) and placed.sum() == 0


@FAST
@given(
    st.integers(-25, 60),
    st.integers(-25, 50),
    st.sampled_from(O.ANCHORS),
    st.booleans(),
    st.lists(st.booleans(), min_size=6 * 7, max_size=6 * 7),
)
def test_composite_is_pixel_exact(x, y, anchor, crop, bits):
    torch.manual_seed(x * 1000 + y)
    background = torch.rand(40, 50, 3)
    foreground = torch.rand(6, 7, 3)
    mask = torch.tensor(bits, dtype=torch.float32).reshape(6, 7)
    out, placed = O.composite(background, foreground, mask, x=x, y=y, anchor=anchor, crop_to_mask=crop)
    assert set(torch.unique(placed).tolist()) <= {0.0, 1.0}
    keep = placed == 0
    assert torch.equal(out[keep], background[keep])
    if not bool(mask.any()):
        assert placed.sum() == 0
        return
    # expected placement, written out independently
    bx0, by0, bx1, by1 = bbox(mask) if crop else (0, 0, 7, 6)
    ox, oy = expected_origin(anchor, x, y, bx1 - bx0, by1 - by0)
    expected = torch.zeros(40, 50)
    for r in range(by0, by1):
        for c in range(bx0, bx1):
            tr, tc = oy + r - by0, ox + c - bx0
            if mask[r, c] > 0 and 0 <= tr < 40 and 0 <= tc < 50:
                expected[tr, tc] = 1
                assert torch.equal(out[tr, tc], foreground[r, c])
    assert torch.equal(placed, expected)


def test_composite_without_cropping_uses_the_whole_foreground(product):
    foreground, mask = product
    _, placed = O.composite(torch.zeros(50, 60, 3), foreground, mask, x=0, y=0, crop_to_mask=False)
    assert bbox(placed) == (10, 5, 20, 11)  # the mask keeps its offset in the foreground
    _, placed = O.composite(torch.zeros(50, 60, 3), foreground, None, x=5, y=5)
    assert bbox(placed) == (5, 5, 35, 25) and placed.sum() == FG_H * FG_W


def test_composite_scales(product):
    foreground, mask = product
    out, placed = O.composite(torch.zeros(50, 60, 3), foreground, mask, x=10, y=10, scale=2.0)
    assert bbox(placed) == (10, 10, 30, 22)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    _, placed = O.composite(torch.zeros(50, 60, 3), foreground, mask, x=10, y=10, scale=0.5)
    assert bbox(placed) == (10, 10, 15, 13)
    _, placed = O.composite(torch.zeros(50, 60, 3), foreground, mask, x=30, y=25, scale=2.0, anchor="center")
    x0, y0, x1, y1 = bbox(placed)
    assert (x1 - x0, y1 - y0) == (20, 12) and abs((x0 + x1 - 1) / 2 - 30) <= 0.5 and abs((y0 + y1 - 1) / 2 - 25) <= 0.5


def test_composite_feather_softens_with_real_foreground_pixels():
    foreground = torch.full((40, 40, 3), 0.8)
    mask = rect_mask(40, 40, 15, 15, 25, 25).float()
    background = torch.zeros(60, 60, 3)
    out, placed = O.composite(background, foreground, mask, x=20, y=20, feather=4)
    assert float(placed.min()) >= 0 and float(placed.max()) <= 1
    soft = (placed > 0) & (placed < 1)
    assert soft.any()
    x0, y0, x1, y1 = bbox(placed)
    assert (x0, y0) == (20 - 4, 20 - 4) and (x1, y1) == (30 + 4, 30 + 4)  # radius ceil(4)
    # the soft edge blends the foreground's own pixels, everywhere: out = 0.8 * a
    assert torch.allclose(out, 0.8 * placed[..., None].expand(-1, -1, 3), atol=1e-6)


def test_composite_accepts_rgba_from_cutout(image):
    mask = torch.zeros(120, 160)
    mask[40:70, 50:90] = 1
    mask[45, 55] = 0
    rgba, (x0, y0, _, _) = O.cutout(image, mask, crop=True, padding=3)
    background = torch.zeros(120, 160, 3)
    out, placed = O.composite(background, rgba, x=x0 + 3, y=y0 + 3)
    assert torch.equal(placed, mask)
    assert torch.equal(out[mask.bool()], image[mask.bool()])
    assert torch.all(out[~mask.bool()] == 0)


def reference_composite(background, foreground, mask, *, x, y, scale, anchor, feather, crop_to_mask=True):
    """composite() written the straightforward way: resize the whole (cropped) object with
    F.interpolate, feather it whole, then paste the part that lands in the background."""
    height, width = background.shape[:2]
    fg_h, fg_w = mask.shape
    nz = torch.nonzero(mask > 0)
    box = (int(nz[:, 1].min()), int(nz[:, 0].min()), int(nz[:, 1].max()) + 1, int(nz[:, 0].max()) + 1) if crop_to_mask else (0, 0, fg_w, fg_h)
    margin = math.ceil((math.ceil(feather) + 1) / scale) if (crop_to_mask and feather > 0) else 0
    fx0, fy0 = max(0, box[0] - margin), max(0, box[1] - margin)
    fx1, fy1 = min(fg_w, box[2] + margin), min(fg_h, box[3] + margin)
    frame = torch.cat([foreground, mask[..., None]], dim=-1)[fy0:fy1, fx0:fx1]
    size = (max(1, round((fy1 - fy0) * scale)), max(1, round((fx1 - fx0) * scale)))
    if size != tuple(frame.shape[:2]):
        planar = frame.permute(2, 0, 1)[None].double()
        frame = F.interpolate(planar, size=size, mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0).clamp(0, 1).float()
    rgb, alpha = frame[..., :3], frame[..., 3]
    if feather > 0:
        alpha = M.feather(alpha, feather)  # the whole object: its diagonal is larger than these feathers
    sy, sx = size[0] / (fy1 - fy0), size[1] / (fx1 - fx0)
    fx, fy = ANCHOR_POINTS[anchor]
    left = math.floor(x - fx * ((box[2] - box[0]) * sx - 1) - (box[0] - fx0) * sx + 0.5)
    top = math.floor(y - fy * ((box[3] - box[1]) * sy - 1) - (box[1] - fy0) * sy + 0.5)
    out, placed = background.clone(), torch.zeros(height, width)
    for r in range(size[0]):
        for c in range(size[1]):
            tr, tc = top + r, left + c
            if 0 <= tr < height and 0 <= tc < width:
                a = alpha[r, c]
                out[tr, tc] = background[tr, tc] * (1 - a) + rgb[r, c] * a
                placed[tr, tc] = a
    return out, placed


@pytest.mark.parametrize("scale", [0.3, 0.5, 1.0, 1.7, 2.0, 3.0, 4.6, 7.0])
@pytest.mark.parametrize("feather", [0.0, 1.5, 4.0])
def test_composite_equals_resizing_the_whole_object(scale, feather):
    torch.manual_seed(int(scale * 10 + feather))
    background = torch.rand(23, 31, 3)
    foreground = torch.rand(9, 11, 3)
    mask = torch.zeros(9, 11)
    mask[2:7, 3:9] = torch.rand(5, 6).round()
    mask[4, 5] = 0.6
    mask[3, 4] = 1.0
    cases = [
        ("top-left", -7.0, -5.0),  # half outside at the top left
        ("center", 30.0, 11.0),  # half outside on the right
        ("bottom-right", 12.0, 24.5),  # half outside at the bottom
        ("top", 15.3, 2.0),
        ("left", 0.0, 11.7),
    ]
    for anchor, x, y in cases:
        for crop in (True, False):
            out, placed = O.composite(background, foreground, mask, x=x, y=y, scale=scale, anchor=anchor, feather=feather, crop_to_mask=crop)
            ref_out, ref_placed = reference_composite(background, foreground, mask, x=x, y=y, scale=scale, anchor=anchor, feather=feather, crop_to_mask=crop)
            assert torch.allclose(placed, ref_placed, atol=2e-6), (anchor, crop, float((placed - ref_placed).abs().max()))
            assert torch.allclose(out, ref_out, atol=2e-6), (anchor, crop)
            assert torch.equal(out[placed == 0], background[placed == 0])


def test_composite_at_a_huge_scale_only_resamples_the_visible_window():
    # Whole, the scaled object would be 40000 x 40000 pixels (19 GB of float32 RGBA).
    ramp = torch.linspace(0.0, 1.0, 40)
    foreground = torch.stack([ramp[None, :].expand(40, 40), ramp[:, None].expand(40, 40), torch.full((40, 40), 0.25)], dim=-1)
    background = torch.zeros(64, 48, 3)
    out, placed = O.composite(background, foreground, None, x=24, y=32, scale=1000.0, anchor="center", feather=3.0)
    assert torch.equal(placed, torch.ones(64, 48))  # the object covers the background everywhere
    # The background sits at the object's centre, where output pixel i samples source position
    # (i + 0.5) / 1000 - 0.5: between columns 19 and 20 of the ramp.
    # The object's pixel at background column 0 (row 0): its centre (39999 / 2) lands on x (y).
    left = -math.floor(24 - 39999 / 2 + 0.5)
    top = -math.floor(32 - 39999 / 2 + 0.5)
    assert (left, top) == (19975, 19967)
    for row, col in ((0, 0), (10, 47), (63, 5)):
        sx, sy = (left + col + 0.5) / 1000 - 0.5, (top + row + 0.5) / 1000 - 0.5
        expected_r = float(ramp[19]) + (sx - 19) * float(ramp[20] - ramp[19])
        expected_g = float(ramp[19]) + (sy - 19) * float(ramp[20] - ramp[19])
        assert abs(float(out[row, col, 0]) - expected_r) < 1e-5 and abs(float(out[row, col, 1]) - expected_g) < 1e-5
        assert abs(float(out[row, col, 2]) - 0.25) < 1e-6


def test_composite_feather_beyond_the_background_diagonal_acts_as_the_diagonal(product):
    foreground, mask = product
    background = torch.rand(30, 40, 3)  # diagonal 50
    at_diagonal = O.composite(background, foreground, mask, x=5, y=5, feather=50.0)
    for feather in (60.0, 1e6, 1e300):
        out, placed = O.composite(background, foreground, mask, x=5, y=5, feather=feather)
        assert torch.equal(out, at_diagonal[0]) and torch.equal(placed, at_diagonal[1])


def test_composite_accepts_extreme_but_valid_numbers(product):
    foreground, mask = product
    background = torch.rand(30, 40, 3)
    out, placed = O.composite(background, foreground, mask, x=1e300, y=-1e300)
    assert torch.equal(out, background) and placed.sum() == 0
    out, placed = O.composite(background, foreground, mask, x=3, y=3, scale=1e-300, feather=5.0)
    assert placed.shape == (30, 40) and float(placed.max()) <= 1.0
    out, placed = O.composite(background, foreground, mask, x=0, y=0, scale=O.MAX_SCALE)
    assert torch.equal(placed, torch.ones(30, 40))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(scale=0), "scale"),
        (dict(scale=-1.0), "scale"),
        (dict(scale=float("nan")), "scale"),
        (dict(scale=float("inf")), "scale"),
        (dict(scale=O.MAX_SCALE * 2), "scale"),
        (dict(scale=True), "scale"),
        (dict(feather=float("nan")), "feather"),
        (dict(feather=float("inf")), "feather"),
        (dict(x=float("inf")), "x"),
        (dict(x=float("nan")), "x"),
        (dict(y=-float("inf")), "y"),
        (dict(y="3"), "y"),
    ],
)
def test_composite_names_the_bad_number(product, kwargs, name):
    foreground, mask = product
    with pytest.raises(ValueError, match=rf"^{name} must be") as info:
        O.composite(torch.zeros(50, 60, 3), foreground, mask, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("bad", [-1, 2.0, float("nan"), float("inf"), True, "0.5", None])
def test_opacities_are_checked_by_name(image, bad):
    segments = segments_of([rect_mask(120, 160, 0, 0, 5, 5)], ["x"], [1.0])
    with pytest.raises(ValueError, match=r"^opacity must be a number in 0\.\.1"):
        O.draw_segments(image, segments, opacity=bad)
    with pytest.raises(ValueError, match=r"^opacity must be a number in 0\.\.1"):
        O.draw_mask(image, torch.zeros(120, 160), opacity=bad)


@pytest.mark.parametrize("bad", [(2.0, 0, 0), (0, -0.1, 0), (float("nan"), 0, 0), (0, 0, float("inf")), (1, 1), (1, 1, 1, 1), "red", 0.5, (True, 0, 0)])
def test_draw_mask_colour_is_checked(image, bad):
    with pytest.raises(ValueError, match=r"^color must be three RGB numbers in 0\.\.1"):
        O.draw_mask(image, torch.zeros(120, 160), color=bad)


def test_draw_mask_accepts_a_tensor_colour(image):
    out = O.draw_mask(image, torch.ones(120, 160), color=torch.tensor([0.0, 1.0, 0.0]), opacity=1.0)
    assert torch.equal(out, torch.tensor([0.0, 1.0, 0.0]).expand(120, 160, 3))


@pytest.mark.parametrize("bad", [-1, 1.5, float("nan"), float("inf"), True])
def test_cutout_padding_and_palette_size_are_checked(image, bad):
    with pytest.raises(ValueError, match="^padding must be an integer >= 0"):
        O.cutout(image, torch.ones(120, 160), crop=True, padding=bad)
    with pytest.raises(ValueError, match="^n must be an integer >= 0"):
        O.palette(bad)


def test_cutout_with_huge_padding_is_the_whole_image(image):
    rgba, box = O.cutout(image, rect_mask(120, 160, 50, 50, 60, 60), crop=True, padding=2**60)
    assert box == (0, 0, 160, 120) and rgba.shape == (120, 160, 4)


def test_composite_errors(product):
    foreground, mask = product
    background = torch.zeros(50, 60, 3)
    with pytest.raises(ValueError, match="top-left.*bottom-right") as info:
        O.composite(background, foreground, mask, anchor="middle")
    assert "middle" in str(info.value)
    for scale in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            O.composite(background, foreground, mask, scale=scale)
    with pytest.raises(ValueError, match=r"20x30.*10x10"):
        O.composite(background, foreground, torch.ones(10, 10))


# ------------------------------------------------------------------------------------------
# paste_back
# ------------------------------------------------------------------------------------------


def test_paste_back_restores_exactly(image):
    generated = torch.rand(120, 160, 3)
    keep = torch.zeros(120, 160)
    keep[20:60, 30:100] = 1
    keep[70, 70] = 0.25
    out = O.paste_back(generated, image, keep)
    hard = keep == 1
    assert torch.equal(out[hard], image[hard])
    assert torch.equal(out[keep == 0], generated[keep == 0])
    assert torch.allclose(out[70, 70], generated[70, 70] * 0.75 + image[70, 70] * 0.25)


def test_paste_back_checks_sizes(image):
    with pytest.raises(ValueError, match=r"100x160.*120x160"):
        O.paste_back(torch.zeros(100, 160, 3), image, torch.zeros(100, 160))
    with pytest.raises(ValueError, match=r"120x160.*12x16"):
        O.paste_back(image, image, torch.zeros(12, 16))
