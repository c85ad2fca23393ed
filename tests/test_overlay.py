"""Tests for grounded_inpaint.overlay: drawing, cut-outs, compositing and paste-back."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
