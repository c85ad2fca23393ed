"""Tests for grounded_inpaint.masks: instance selection and inpainting-mask operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from grounded_inpaint import masks as M
from grounded_inpaint.structures import Segments

FAST = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------------------------------
# helpers and strategies
# ------------------------------------------------------------------------------------------


def make_segments(masks: list[torch.Tensor], labels: list[str], scores: list[float]) -> Segments:
    stacked = torch.stack([m.bool() for m in masks])
    boxes = torch.zeros(len(masks), 4)
    return Segments(stacked, boxes, torch.tensor(scores), torch.ones(len(masks)), labels)


def disc(size: int, radius: float, centre: tuple[float, float] | None = None) -> torch.Tensor:
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).float()


def disc_structure(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2


@st.composite
def binary_masks(draw, max_side: int = 12, batch: bool = False) -> torch.Tensor:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    shape = (draw(st.integers(1, 3)), h, w) if batch else (h, w)
    n = int(np.prod(shape))
    bits = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return torch.tensor(bits, dtype=torch.bool).reshape(shape)


@st.composite
def soft_masks(draw, max_side: int = 12) -> torch.Tensor:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    values = draw(st.lists(st.floats(0.0, 1.0, width=32), min_size=h * w, max_size=h * w))
    mask = torch.tensor(values, dtype=torch.float32).reshape(h, w)
    if draw(st.booleans()):
        mask = mask[None].expand(2, h, w).clone()
    return mask


any_masks = st.one_of(binary_masks(), binary_masks(batch=True), soft_masks())


# ------------------------------------------------------------------------------------------
# parse_indices
# ------------------------------------------------------------------------------------------


def test_parse_indices_lists_and_ranges():
    assert M.parse_indices("0, 2, -1") == [0, 2, -1]
    assert M.parse_indices("1-3") == [1, 2, 3]
    assert M.parse_indices(" 5 , 1 - 3 ,") == [5, 1, 2, 3]
    assert M.parse_indices("-3--1") == [-3, -2, -1]
    assert M.parse_indices("2, 2, 1-2") == [2, 1]
    assert M.parse_indices("") == []
    assert M.parse_indices("  ,  ") == []


@pytest.mark.parametrize("text", ["a,b", "1.5", "1-", "1-2-3", "0x1", "one"])
def test_parse_indices_rejects_garbage(text):
    with pytest.raises(ValueError, match="indices"):
        M.parse_indices(text)


def test_parse_indices_rejects_bad_ranges():
    with pytest.raises(ValueError, match="descending"):
        M.parse_indices("3-1")
    with pytest.raises(ValueError, match="negative"):
        M.parse_indices("1--1")
    with pytest.raises(ValueError, match="at most"):
        M.parse_indices("0-100000000")


# ------------------------------------------------------------------------------------------
# select_instances
# ------------------------------------------------------------------------------------------


@pytest.fixture
def five() -> Segments:
    masks = []
    for i in range(5):
        m = torch.zeros(8, 10)
        m[i, i] = 1
        masks.append(m)
    labels = ["red shoes", "Shoes", "shoe box", "bag", "handbag"]
    scores = [0.9, 0.3, 0.6, 0.6, 0.8]
    return make_segments(masks, labels, scores)


def test_select_no_filter_keeps_everything(five):
    out = M.select_instances(five)
    assert out.labels == five.labels
    assert torch.equal(out.masks, five.masks)
    assert M.select_instances(five, indices=[], labels=[], top_k=0).labels == five.labels


def test_select_labels_whole_words_case_insensitive(five):
    assert M.select_instances(five, labels=["shoes"]).labels == ["red shoes", "Shoes"]
    assert M.select_instances(five, labels=["SHOE"]).labels == ["shoe box"]
    assert M.select_instances(five, labels=["bag"]).labels == ["bag"]
    assert M.select_instances(five, labels=["red shoes", "handbag"]).labels == ["red shoes", "handbag"]
    assert M.select_instances(five, labels="bag, shoe box").labels == ["shoe box", "bag"]
    assert M.select_instances(five, labels=["hat"]).labels == []


def test_select_min_score(five):
    assert M.select_instances(five, min_score=0.6).labels == ["red shoes", "shoe box", "bag", "handbag"]
    with pytest.raises(ValueError, match="min_score"):
        M.select_instances(five, min_score=1.5)


def test_select_indices_refer_to_original_positions(five):
    assert M.select_instances(five, indices=[-1, 0]).labels == ["red shoes", "handbag"]
    # index 1 ("Shoes") is removed by the label filter, index 0 survives
    assert M.select_instances(five, labels=["shoes"], indices=[0, 3]).labels == ["red shoes"]
    # out-of-range indices are skipped, not an error
    assert M.select_instances(five, indices=[2, 7, -9]).labels == ["shoe box"]


def test_select_top_k_ties_and_order(five):
    # scores 0.9, 0.3, 0.6, 0.6, 0.8: top 3 are 0 (0.9), 4 (0.8), 2 (0.6, lower index wins the tie)
    assert M.select_instances(five, top_k=3).labels == ["red shoes", "shoe box", "handbag"]
    assert M.select_instances(five, top_k=99).labels == five.labels
    # top_k runs last: the best of the bags
    assert M.select_instances(five, labels=["bag", "handbag"], top_k=1).labels == ["handbag"]
    with pytest.raises(ValueError, match="top_k"):
        M.select_instances(five, top_k=-1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(top_k=-1), "top_k"),
        (dict(top_k=float("nan")), "top_k"),
        (dict(top_k=float("inf")), "top_k"),
        (dict(top_k=1.5), "top_k"),
        (dict(top_k=True), "top_k"),
        (dict(min_score=float("nan")), "min_score"),
        (dict(min_score=-0.01), "min_score"),
        (dict(min_score=float("inf")), "min_score"),
        (dict(min_score=False), "min_score"),
        (dict(indices=[0, float("nan")]), "indices"),
        (dict(indices=[0.5]), "indices"),
        (dict(indices=[True]), "indices"),
    ],
)
def test_select_rejects_bad_numbers_by_name(five, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be") as info:
        M.select_indices(five, **kwargs)
    assert "got" in str(info.value)


def test_select_documented_no_filter_values(five):
    everything = list(range(len(five)))
    assert M.select_indices(five, top_k=0) == everything
    assert M.select_indices(five, top_k=None) == everything
    assert M.select_indices(five, top_k=2.0) == M.select_indices(five, top_k=2)  # whole floats are fine
    assert M.select_indices(five, min_score=0) == everything
    assert M.select_indices(five, indices=[]) == everything
    assert M.select_indices(five, indices=torch.tensor([4, 0])) == [0, 4]


def test_select_result_is_consistent(five):
    out = M.select_instances(five, indices=[3, 1])
    assert len(out) == 2
    assert torch.equal(out.masks, five.masks[[1, 3]])
    assert torch.equal(out.scores, five.scores[[1, 3]])
    assert out.image_size == five.image_size


def test_select_on_empty_segments():
    empty = Segments.empty((4, 5))
    out = M.select_instances(empty, indices=[0, -1], top_k=2, labels=["x"])
    assert len(out) == 0 and out.image_size == (4, 5)


# ------------------------------------------------------------------------------------------
# union / invert / threshold
# ------------------------------------------------------------------------------------------


def test_union_of_instances():
    a = torch.zeros(3, 4, 5, dtype=torch.bool)
    a[0, 0, 0] = a[2, 3, 4] = True
    u = M.union(a)
    assert u.shape == (4, 5) and u.dtype == torch.float32
    assert u.sum() == 2 and u[0, 0] == 1 and u[3, 4] == 1
    soft = torch.tensor([[[0.2, 0.9]], [[0.5, 0.1]]])
    assert torch.allclose(M.union(soft), torch.tensor([[0.5, 0.9]]))


def test_union_of_nothing_needs_a_size():
    with pytest.raises(ValueError, match="image_size"):
        M.union(torch.zeros(0, 4, 5))
    u = M.union(torch.zeros(0, 1, 1), image_size=(4, 5))
    assert u.shape == (4, 5) and u.sum() == 0
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(6, 7\)"):
        M.union(torch.ones(1, 4, 5), image_size=(6, 7))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        M.union(torch.ones(4, 5))


@FAST
@given(any_masks)
def test_invert_is_an_involution(mask):
    once = M.invert(mask)
    assert once.shape == mask.shape and once.dtype == torch.float32
    assert torch.allclose(M.invert(once), mask.float(), atol=1e-6)


@FAST
@given(any_masks, st.floats(0.0, 1.0))
def test_threshold_is_binary_and_idempotent(mask, value):
    once = M.threshold(mask, value)
    assert once.shape == mask.shape and once.dtype == torch.float32
    assert set(torch.unique(once).tolist()) <= {0.0, 1.0}
    assert torch.equal(once, (mask.float() >= value).float())
    assert torch.equal(M.threshold(once, value), once)


def test_threshold_rejects_out_of_range():
    for bad in (1.5, -0.1, float("nan"), float("inf"), -float("inf"), True, "0.5", None):
        with pytest.raises(ValueError, match=r"value must be a number in 0\.\.1; got") as info:
            M.threshold(torch.zeros(2, 2), bad)
        assert repr(bad) in str(info.value)
    assert torch.equal(M.threshold(torch.tensor([[0.0, 1.0]]), 0), torch.ones(1, 2))
    assert torch.equal(M.threshold(torch.tensor([[0.0, 1.0]]), 1), torch.tensor([[0.0, 1.0]]))


def test_bad_shapes_and_types_are_explained():
    with pytest.raises(ValueError, match=r"\[H, W\] or \[B, H, W\].*\(1, 1, 4, 4\)"):
        M.grow(torch.zeros(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        M.invert(torch.zeros(5))
    with pytest.raises(TypeError, match="list"):
        M.feather([[0.0, 1.0]], 2)


def test_input_dtypes_are_normalised():
    assert torch.equal(M.invert(torch.tensor([[True, False]])), torch.tensor([[0.0, 1.0]]))
    assert torch.equal(M.invert(torch.tensor([[255, 0]], dtype=torch.uint8)), torch.tensor([[0.0, 1.0]]))
    clamped = M.grow(torch.tensor([[2.0, -1.0, float("nan")]]), 0)
    assert torch.equal(clamped, torch.tensor([[1.0, 0.0, 0.0]]))
    assert M.grow(np.ones((3, 3), dtype=bool), 1).dtype == torch.float32


# ------------------------------------------------------------------------------------------
# grow / shrink
# ------------------------------------------------------------------------------------------


def test_grow_disc_geometry():
    # The pixel disc of radius 10 reaches each direction only up to ~0.71 px (half a diagonal)
    # short of radius 10, so growing by 3 covers the disc of radius 13 - 0.75 at least, and
    # never goes beyond radius 13 (each new pixel is within 3 of a pixel within 10).
    base = disc(61, 10)
    grown = M.grow(base, 3)
    assert torch.all(grown >= disc(61, 12.25))
    assert torch.all(grown <= disc(61, 13))
    assert not torch.all(grown <= disc(61, 12))
    shrunk = M.grow(base, -3)
    assert torch.all(shrunk >= disc(61, 7))  # every pixel within 3 of these is within 10
    assert torch.all(shrunk <= disc(61, 8))


def test_grow_single_pixel_is_the_euclidean_disc():
    mask = torch.zeros(21, 21)
    mask[10, 10] = 1
    for radius in (1, 3, 7):
        expected = torch.from_numpy(np.pad(disc_structure(radius), 10 - radius)).float()
        assert torch.equal(M.grow(mask, radius), expected)


@FAST
@given(binary_masks(max_side=14), st.integers(1, 4))
def test_grow_and_shrink_match_morphology_with_a_disc(mask, radius):
    structure = disc_structure(radius)
    array = mask.numpy()
    dilated = ndimage.binary_dilation(array, structure=structure)
    eroded = ndimage.binary_erosion(array, structure=structure, border_value=1)
    assert np.array_equal(M.grow(mask, radius).numpy().astype(bool), dilated)
    assert np.array_equal(M.grow(mask, -radius).numpy().astype(bool), eroded)


@FAST
@given(any_masks, st.integers(-5, 5))
def test_grow_never_loses_and_shrink_never_adds(mask, pixels):
    out = M.grow(mask, pixels)
    assert out.shape == mask.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    binary = (mask.float() >= 0.5).float()
    if pixels > 0:
        assert torch.all(out >= binary)
    elif pixels < 0:
        assert torch.all(out <= binary)
    else:
        assert torch.equal(out, mask.float())


@FAST
@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 20))
def test_grow_empty_stays_empty_and_shrink_full_stays_full(h, w, pixels):
    assert M.grow(torch.zeros(h, w), pixels).sum() == 0
    assert M.grow(torch.ones(2, h, w), -pixels).min() == 1


def test_shrink_does_not_treat_the_border_as_background():
    mask = torch.zeros(10, 20)
    mask[:, :8] = 1  # touches the top, bottom and left borders
    shrunk = M.grow(mask, -2)
    expected = torch.zeros(10, 20)
    expected[:, :6] = 1  # only the inner edge (x = 8) moves
    assert torch.equal(shrunk, expected)


def test_grow_binarises_soft_masks_at_half():
    soft = torch.tensor([[0.49, 0.0, 0.0, 0.0, 0.5]])
    assert torch.equal(M.grow(soft, 1), torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]]))


def test_grow_batch_equals_per_image():
    batch = torch.stack([disc(15, 3), torch.zeros(15, 15), torch.ones(15, 15)])
    out = M.grow(batch, 2)
    for i in range(3):
        assert torch.equal(out[i], M.grow(batch[i], 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 2.5, True, "3", None, 2**70])
def test_grow_rejects_what_is_not_a_whole_number(bad):
    with pytest.raises(ValueError, match="pixels must be a finite integer") as info:
        M.grow(torch.zeros(4, 4), bad)
    assert repr(bad) in str(info.value)


def test_grow_by_huge_amounts_is_bounded_by_the_image():
    mask = torch.zeros(300, 400)
    mask[150, 200] = 1
    assert torch.equal(M.grow(mask, 2**40), torch.ones(300, 400))  # a distance transform of the image
    assert torch.equal(M.grow(mask, -(2**40)), torch.zeros(300, 400))
    assert torch.equal(M.grow(torch.ones(300, 400), -(2**40)), torch.ones(300, 400))  # the border is not background
    assert torch.equal(M.grow(mask, 3.0), M.grow(mask, 3))


# ------------------------------------------------------------------------------------------
# fill_holes / remove_small_regions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, True, "4"])
def test_remove_small_regions_rejects_bad_min_area(bad):
    with pytest.raises(ValueError, match="min_area must be"):
        M.remove_small_regions(torch.zeros(4, 4), bad)


def test_fill_holes_fills_enclosed_background_only():
    ring = disc(21, 8) - disc(21, 4)
    filled = M.fill_holes(ring)
    assert torch.equal(filled, disc(21, 8))
    # a "hole" open to the border is not a hole
    cup = torch.zeros(6, 6)
    cup[2:, 1] = cup[2:, 4] = cup[5, 1:5] = 1
    assert torch.equal(M.fill_holes(cup), cup)
    # batch and shape kept
    assert M.fill_holes(torch.stack([ring, cup.new_zeros(21, 21)])).shape == (2, 21, 21)


def test_remove_small_regions_uses_8_connectivity():
    mask = torch.zeros(12, 12)
    mask[0:4, 0:4] = 1  # 16 pixels
    mask[8, 8] = mask[9, 9] = mask[10, 10] = 1  # 3 pixels, diagonally connected
    mask[6, 0] = 1  # 1 pixel
    out = M.remove_small_regions(mask, 3)
    expected = mask.clone()
    expected[6, 0] = 0
    assert torch.equal(out, expected)
    only_big = M.remove_small_regions(mask, 4)
    assert only_big.sum() == 16
    assert torch.equal(M.remove_small_regions(mask, 0), mask)
    assert torch.equal(M.remove_small_regions(mask, -5), mask)


@FAST
@given(any_masks, st.integers(0, 6))
def test_remove_small_regions_only_removes(mask, min_area):
    out = M.remove_small_regions(mask, min_area)
    assert out.shape == mask.shape and out.dtype == torch.float32
    if min_area > 0:
        assert torch.all(out <= (mask.float() >= 0.5).float())


# ------------------------------------------------------------------------------------------
# feather
# ------------------------------------------------------------------------------------------


@FAST
@given(any_masks, st.floats(0.0, 20.0))
def test_feather_keeps_shape_and_range(mask, pixels):
    out = M.feather(mask, pixels)
    assert out.shape == mask.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    if pixels <= 0:
        assert torch.equal(out, mask.float())


def test_feather_softens_the_edge_and_leaves_far_pixels():
    mask = torch.zeros(40, 40)
    mask[:, 20:] = 1
    out = M.feather(mask, 6)
    row = out[20]
    assert torch.all(row[1:] >= row[:-1])  # monotone ramp
    assert 0.0 < row[19] < 0.5 < row[20] < 1.0
    assert torch.allclose(row[:13], torch.zeros(13))  # beyond radius = ceil(6)
    assert torch.allclose(row[27:], torch.ones(13))
    assert torch.allclose(out.sum(), mask.sum(), rtol=1e-5)  # symmetric kernel


def test_feather_handles_masks_smaller_than_the_kernel():
    assert torch.allclose(M.feather(torch.ones(1, 1), 50), torch.ones(1, 1))
    tiny = M.feather(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), 30)
    assert tiny.shape == (2, 2) and 0 < float(tiny.min()) <= float(tiny.max()) <= 1


def test_feather_rejects_non_finite():
    for bad in (float("inf"), float("-inf"), float("nan"), True, "3", None):
        with pytest.raises(ValueError, match="pixels must be a finite number") as info:
            M.feather(torch.zeros(3, 3), bad)
        assert repr(bad) in str(info.value)


def reference_blur(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """The feather written out in float64: every tap of the truncated gaussian, replicate padding."""
    radius = int(np.ceil(pixels))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / max(pixels / 3.0, 1e-3)) ** 2)
    weights /= weights.sum()
    data = mask.double().numpy()
    for axis in (-1, -2):
        length = data.shape[axis]
        index = np.clip(np.arange(-radius, length + radius), 0, length - 1)
        padded = np.take(data, index, axis=axis)
        data = sum(w * np.take(padded, np.arange(k, k + length), axis=axis) for k, w in enumerate(weights))
    return torch.from_numpy(np.clip(data, 0.0, 1.0)).float()


@pytest.mark.parametrize("pixels", [0.4, 1.0, 3.0, 7.5, 19.0, 20.5, 45.0, 200.0])
@pytest.mark.parametrize("shape", [(1, 1), (3, 50), (37, 23), (2, 16, 64)])
def test_feather_equals_the_written_out_blur(pixels, shape):
    """Both the shifted-sum path (short kernels) and the FFT path (long ones) match the formula,
    also when the kernel is much longer than the mask."""
    torch.manual_seed(int(pixels * 10) + len(shape))
    mask = (torch.rand(shape) > 0.6).float()
    mask[..., 0, :] = torch.rand(shape[-1])  # soft values too
    radius = int(np.ceil(pixels))
    # no cap at the diagonal here: it only applies beyond sqrt(H**2 + W**2)
    expected = reference_blur(mask, min(pixels, float(np.hypot(*shape[-2:]))))
    out = M.feather(mask, pixels)
    assert out.shape == mask.shape and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=2e-6), (2 * radius + 1, float((out - expected).abs().max()))


def test_feather_fft_and_direct_paths_agree_around_the_switch():
    torch.manual_seed(3)
    mask = (torch.rand(40, 90) > 0.5).float()
    for radius in (5, 20, 21, 40, 95, 300):
        taps = M._gaussian_taps(radius / 3.0, radius)
        rows = mask.clone()
        direct, fft = M._blur_rows_direct(rows, taps), M._blur_rows_fft(rows, taps)
        assert torch.allclose(direct, fft, atol=2e-6), radius
        assert torch.equal(rows, mask)  # the input is not modified


def test_feather_keeps_far_pixels_exactly_in_both_paths():
    mask = torch.zeros(60, 300)
    mask[:, 150:] = 1.0
    for pixels in (4.0, 30.0):  # 9 taps (shifted sums) and 61 taps (FFT)
        out = M.feather(mask, pixels)
        radius = int(np.ceil(pixels))
        assert torch.all(out[:, : 150 - radius] == 0.0)
        assert torch.all(out[:, 150 + radius :] == 1.0)
        assert 0.0 < float(out[0, 149]) < 0.5 < float(out[0, 150]) < 1.0
    assert torch.equal(M.feather(torch.ones(5, 7), 1e5), torch.ones(5, 7))
    assert torch.equal(M.feather(torch.zeros(5, 7), 1e5), torch.zeros(5, 7))


def test_feather_beyond_the_diagonal_acts_as_the_diagonal():
    torch.manual_seed(4)
    mask = (torch.rand(30, 40) > 0.7).float()
    diagonal = 50.0  # sqrt(30**2 + 40**2)
    at_diagonal = M.feather(mask, diagonal)
    for pixels in (50.0001, 60.0, 1e5, 1e300):
        assert torch.equal(M.feather(mask, pixels), at_diagonal), pixels
    assert not torch.equal(M.feather(mask, 49.0), at_diagonal)
    # a batch has the diagonal of its images
    batch = torch.stack([mask, 1 - mask])
    assert torch.equal(M.feather(batch, 1e9)[0], at_diagonal)


# ------------------------------------------------------------------------------------------
# make_inpaint_mask / masks_for_batch
# ------------------------------------------------------------------------------------------


@FAST
@given(st.integers(1, 16), st.integers(1, 16), st.booleans(), st.integers(-3, 3), st.floats(0, 4))
def test_make_inpaint_mask_of_nothing(h, w, inverted, grow, feather):
    out = M.make_inpaint_mask(Segments.empty((h, w)), invert=inverted, grow=grow, feather=feather, fill_holes=True)
    assert out.shape == (h, w) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((h, w), 1.0 if inverted else 0.0))


def test_make_inpaint_mask_union_and_invert():
    a, b = torch.zeros(10, 10), torch.zeros(10, 10)
    a[1:3, 1:3] = 1
    b[6:9, 6:9] = 1
    segments = make_segments([a, b], ["shoes", "shoes"], [0.9, 0.8])
    repaint = M.make_inpaint_mask(segments)
    assert torch.equal(repaint, a + b)
    keep = M.make_inpaint_mask(segments, invert=True)
    assert torch.equal(keep, 1 - (a + b))


def test_make_inpaint_mask_grows_the_kept_object_before_inverting():
    obj = disc(41, 8)
    out = M.make_inpaint_mask(obj, grow=4, invert=True)
    # the kept area (0) is the object grown by 4: a safety margin that is not repainted
    assert torch.equal(out, 1 - M.grow(obj, 4))
    assert torch.all(out[obj.bool()] == 0)
    assert out.sum() < (1 - obj).sum()


def test_make_inpaint_mask_step_order():
    ring = disc(31, 10) - disc(31, 5)
    speck = torch.zeros(31, 31)
    speck[0, 30] = 1
    soft = (ring + speck) * 0.7  # below 1 but above the threshold
    out = M.make_inpaint_mask(soft, fill_holes=True, min_area=4, grow=2, invert=True, feather=3)
    expected = M.feather(1 - M.grow(disc(31, 10), 2), 3)
    assert torch.allclose(out, expected)
    # threshold removes the soft mask when above the values
    assert M.make_inpaint_mask(soft, threshold=0.8).sum() == 0
    assert torch.allclose(M.make_inpaint_mask(soft, threshold=None), soft)


def test_make_inpaint_mask_checks_sizes():
    with pytest.raises(ValueError, match=r"\(10, 10\).*\(8, 8\)"):
        M.make_inpaint_mask(torch.zeros(10, 10), image_size=(8, 8))
    with pytest.raises(ValueError, match="image_size"):
        M.make_inpaint_mask(None)
    assert M.make_inpaint_mask(None, image_size=(3, 4), invert=True).sum() == 12


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(threshold=float("nan")), "threshold"),
        (dict(threshold=1.01), "threshold"),
        (dict(min_area=float("nan")), "min_area"),
        (dict(min_area=2.5), "min_area"),
        (dict(grow=float("inf")), "grow"),
        (dict(grow=float("nan")), "grow"),
        (dict(grow=1.5), "grow"),
        (dict(feather=float("nan")), "feather"),
        (dict(feather=float("-inf")), "feather"),
        (dict(feather=True), "feather"),
        (dict(image_size=(float("nan"), 4)), "image_size"),
        (dict(image_size=(-1, 4)), "image_size"),
        (dict(image_size=(4,)), "image_size"),
    ],
)
def test_make_inpaint_mask_names_the_bad_setting(kwargs, name):
    # checked up front: also settings whose step would be skipped (grow nan on an empty mask)
    with pytest.raises(ValueError, match=rf"^{name}") as info:
        M.make_inpaint_mask(None, **{"image_size": (4, 4), **kwargs})
    assert "got" in str(info.value)
    with pytest.raises(ValueError, match=rf"^{name}"):
        M.masks_for_batch([torch.zeros(4, 4)], **kwargs)


def test_make_inpaint_mask_documented_off_values():
    mask = disc(20, 5)
    assert torch.equal(M.make_inpaint_mask(mask, min_area=-5, grow=0, feather=-1.0), mask)
    assert torch.equal(M.make_inpaint_mask(mask, feather=1e9), M.feather(mask, float(np.hypot(20, 20))))


def test_masks_for_batch_stacks_and_checks_sizes():
    a = make_segments([disc(12, 3)], ["a"], [1.0])
    b = Segments.empty((12, 12))
    out = M.masks_for_batch([a, b], invert=True, grow=1)
    assert out.shape == (2, 12, 12) and out.dtype == torch.float32
    assert torch.equal(out[0], 1 - M.grow(disc(12, 3), 1))
    assert torch.all(out[1] == 1)
    with pytest.raises(ValueError, match=r"12x12.*7x9"):
        M.masks_for_batch([a, Segments.empty((7, 9))])
    assert M.masks_for_batch([], image_size=(5, 6)).shape == (0, 5, 6)
    with pytest.raises(ValueError, match="image_size"):
        M.masks_for_batch([])
