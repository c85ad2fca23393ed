"""The matting stage: trimaps, the three alpha estimators, decontamination, external mattes and the
one entry point — on small synthetic photos whose true alpha and colours are known."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from grounded_inpaint.interrupt import interruptible
from grounded_inpaint.matting import estimate_foreground, fuse_matte, make_trimap, prepare_matte, refine, refine_batch
from grounded_inpaint.matting.closed_form import closed_form_alpha
from grounded_inpaint.matting.guided import guided_alpha
from grounded_inpaint.matting.trimap import default_band, trimap_for_segments, unknown_of
from grounded_inpaint.structures import Segments

from tolerance import assert_close

RED, BLUE = torch.tensor([0.9, 0.15, 0.1]), torch.tensor([0.1, 0.3, 0.85])


def _disc_alpha(h: int = 96, w: int = 128, radius: float = 30.0, soft: float = 0.0) -> torch.Tensor:
    """A disc's alpha; ``soft`` px wide linear ramp at its edge (0: anti-aliased hard edge)."""
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    dist = torch.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2)
    width = max(soft, 1.0)
    return ((radius + width / 2 - dist) / width).clamp(0, 1)


def _composite(alpha: torch.Tensor, fg=RED, bg=BLUE, texture: float = 0.0, seed: int = 0):
    """``I = alpha F + (1 - alpha) B`` with constant (or lightly textured) F and B."""
    g = torch.Generator().manual_seed(seed)
    h, w = alpha.shape
    f = (fg + texture * (torch.rand(h, w, 3, generator=g) - 0.5)).clamp(0, 1)
    b = (bg + texture * (torch.rand(h, w, 3, generator=g) - 0.5)).clamp(0, 1)
    return alpha[..., None] * f + (1 - alpha[..., None]) * b, f, b


def _sad(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().sum())


# ----------------------------------------------------------------------------- trimaps


def test_trimap_band_widths_and_values():
    mask = _disc_alpha() >= 0.5
    trimap = make_trimap(mask, inner=3, outer=5)
    assert set(torch.unique(trimap).tolist()) == {0.0, 0.5, 1.0}
    band = unknown_of(trimap)
    # the known object is the mask eroded by 3 px, the known background lies beyond 5 px outside it
    assert bool((trimap[~mask] != 1.0).all()) and bool((trimap[mask & ~band] == 1.0).all())
    yy, xx = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(128) + 0.5, indexing="ij")
    dist = torch.sqrt((yy - 48) ** 2 + (xx - 64) ** 2)
    assert bool(band[(dist > 28) & (dist < 34)].all())  # 30 - 3 .. 30 + 5, with a pixel of slack
    assert not bool(band[(dist < 26) | (dist > 36)].any())


def test_thin_parts_keep_their_centre_line():
    """A 5 px strap is thinner than a 4 px band on both sides: its centre line stays known object."""
    mask = _disc_alpha() >= 0.5
    mask[46:51, 90:126] = True  # a strap leaving the disc to the right
    trimap = make_trimap(mask, inner=4, outer=4)
    assert bool((trimap[48, 100:120] == 1).all())  # the strap's centre line
    assert bool((trimap[46, 100:120] == 0.5).all()) and bool((trimap[50, 100:120] == 0.5).all())  # its sides: band
    assert bool((trimap[44, 100:120] == 0.5).all())  # and the band outside it


def test_band_zero_gives_the_mask_itself():
    image, _, _ = _composite(_disc_alpha(soft=6))
    mask = _disc_alpha() >= 0.5
    trimap = make_trimap(mask, inner=0, outer=0)
    assert torch.equal(trimap, mask.float())
    for method in ("guided", "closed_form"):
        result = refine(image, mask, method=method, inner=0, outer=0)
        assert torch.equal(result.alpha, mask.float())


def test_all_black_and_all_white_masks():
    image = torch.rand(40, 50, 3)
    black = refine(image, torch.zeros(40, 50))
    assert torch.equal(black.alpha, torch.zeros(40, 50)) and torch.equal(black.trimap, torch.zeros(40, 50))
    white = refine(image, torch.ones(40, 50))
    assert torch.equal(white.alpha, torch.ones(40, 50))  # the frame is not background: no band along it
    assert torch.equal(white.foreground, image)
    assert default_band(torch.zeros(8, 8)) == (0, 0)


def test_default_band_scales_with_the_image_and_the_object():
    small = torch.zeros(512, 512)
    small[100:400, 100:400] = 1
    big = torch.nn.functional.interpolate(small[None, None], scale_factor=4, mode="nearest")[0, 0]
    inner_s, outer_s = default_band(small)
    inner_b, outer_b = default_band(big)
    assert (inner_s, outer_s) == (2, 2)  # one cell of 2 px
    assert inner_b == outer_b == 8  # one cell of 8 px
    tiny = torch.zeros(2048, 2048)
    tiny[1000:1010, 1000:1010] = 1  # a 10 px object is not swallowed by an 8 px band
    inner_t, outer_t = default_band(tiny)
    assert inner_t <= 1 and outer_t <= 2


def test_unknown_region_and_sam_uncertainty_widen_the_band():
    mask = _disc_alpha() >= 0.5
    glass = torch.zeros(96, 128)
    glass[10:30, 80:120] = 1
    trimap = make_trimap(mask, inner=2, outer=2, unknown=glass)
    assert bool(unknown_of(trimap)[10:30, 80:120].all())
    # logits near 0 (SAM unsure) over a ring 2..5 px outside the disc widen the 2 px band there
    yy, xx = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(128) + 0.5, indexing="ij")
    dist = torch.sqrt((yy - 48) ** 2 + (xx - 64) ** 2)
    logits = torch.where(dist < 30, 8.0, -8.0)
    logits[(dist > 31.5) & (dist < 35)] = -0.5
    logits[(dist > 60)] = 0.0  # unsure far away from the object: not the object's edge, ignored
    plain = make_trimap(mask, inner=2, outer=2, logits=logits)
    assert bool(unknown_of(plain)[(dist > 32) & (dist < 34.5)].all())
    assert not bool(unknown_of(plain)[dist > 40].any())
    ignored = make_trimap(mask, inner=2, outer=2, logits=logits, logit_margin=0)
    assert not bool(unknown_of(ignored)[(dist > 32.5) & (dist < 34.5)].any())


def test_trimap_for_segments_uses_all_instances_and_their_logits():
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 5:25, 5:25] = True
    masks[1, 35:60, 30:60] = True
    logits = torch.nn.functional.avg_pool2d(masks.float()[:, None], 4)[:, 0] * 20 - 10  # 16 x 16 grid of 4 px cells
    logits[0, 1:3, 1:3] = 0.0  # unsure at instance 0's top-left corner
    seg = Segments(masks, torch.tensor([[5.0, 5, 25, 25], [30, 35, 60, 60]]), torch.ones(2), torch.ones(2), ["a", "b"],
                   logits=logits)
    trimap = trimap_for_segments(seg, inner=1, outer=1)
    assert bool((trimap[14:20, 14:20] == 1).all()) and bool((trimap[40:55, 35:55] == 1).all())
    assert bool(unknown_of(trimap)[6:8, 6:8].all())  # within 3 px (12 cells of 0.25 px) of the edge
    assert bool((trimap_for_segments(seg, inner=1, outer=1, use_logits=False)[6:8, 6:8] == 1).all())
    empty = trimap_for_segments(Segments.empty((64, 64)))
    assert torch.equal(empty, torch.zeros(64, 64))


@pytest.mark.parametrize("kwargs, name", [({"inner": -1}, "inner"), ({"outer": 2.5}, "outer"), ({"outer": float("nan")}, "outer"),
                                          ({"logit_margin": -1.0}, "logit_margin")])
def test_trimap_refuses_bad_widths(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_trimap(torch.ones(8, 8), **kwargs)


# ----------------------------------------------------------------------------- alpha estimators


@pytest.mark.parametrize("estimate", [guided_alpha, closed_form_alpha], ids=["guided", "closed_form"])
def test_estimators_keep_known_pixels_and_beat_the_hard_mask_on_a_soft_edge(estimate):
    truth = _disc_alpha(soft=8)
    image, _, _ = _composite(truth, texture=0.04)
    coarse = (_disc_alpha(radius=32) >= 0.5).float()  # SAM's edge, 2 px off and hard
    trimap = make_trimap(coarse, inner=8, outer=8)
    alpha = estimate(image, trimap, coarse)
    known = ~unknown_of(trimap)
    assert torch.equal(alpha[known], trimap[known])  # exactly 0 or 1 outside the band
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 and bool(torch.isfinite(alpha).all())
    assert _sad(alpha, truth) < 0.75 * _sad(coarse, truth)


def test_closed_form_recovers_a_colour_line_ramp():
    """With a constant foreground and background, alpha is an affine function of the colour: the
    closed-form solution is exact up to the solver's tolerance."""
    truth = _disc_alpha(soft=10)
    image, _, _ = _composite(truth)
    trimap = make_trimap(truth >= 0.5, inner=8, outer=8)
    alpha = closed_form_alpha(image, trimap)
    assert float((alpha - truth).abs().max()) < 0.02


def test_guided_tiles_equal_one_pass():
    truth = _disc_alpha(h=150, w=170, radius=50, soft=6)
    image, _, _ = _composite(truth, texture=0.2)
    coarse = (truth >= 0.5).float()
    trimap = make_trimap(coarse, inner=4, outer=4)
    whole = guided_alpha(image, trimap, coarse, radius=3, tile=4096)
    tiled = guided_alpha(image, trimap, coarse, radius=3, tile=40)
    assert_close(tiled, whole)


def test_closed_form_tiles_are_close_to_one_system():
    truth = _disc_alpha(h=120, w=140, radius=40, soft=6)
    image, _, _ = _composite(truth, texture=0.1)
    trimap = make_trimap(truth >= 0.5, inner=4, outer=4)
    whole = closed_form_alpha(image, trimap, tile=4096)
    tiled = closed_form_alpha(image, trimap, tile=48, margin=16)
    assert float((tiled - whole).abs().mean()) < 2e-3 and float((tiled - whole).abs().max()) < 0.1


def test_cancel_stops_the_solver_and_the_tiles():
    truth = _disc_alpha(h=120, w=140, radius=40, soft=6)
    image, _, _ = _composite(truth, texture=0.1)
    trimap = make_trimap(truth >= 0.5, inner=6, outer=6)

    class Stop(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) > 2:
            raise Stop

    for method in ("closed_form", "guided"):
        calls.clear()
        with pytest.raises(Stop):
            refine(image, truth >= 0.5, method=method, inner=6, outer=6, options={"tile": 32}, interrupt=check)
        assert len(calls) == 3
    assert bool(unknown_of(trimap).any())


# ----------------------------------------------------------------------------- decontamination


def test_foreground_estimate_removes_the_old_background():
    truth = _disc_alpha(soft=10)
    image, fg, _ = _composite(truth, texture=0.02)
    estimate = estimate_foreground(image, truth, radii=(30, 3))
    band = (truth > 0.05) & (truth < 0.95)
    photo_error = float((image - fg)[band].abs().mean())
    our_error = float((estimate - fg)[band].abs().mean())
    assert our_error < 0.25 * photo_error
    assert torch.equal(estimate[truth >= 1], image[truth >= 1])  # the object's own pixels stay exactly
    nothing = estimate_foreground(image, torch.zeros(96, 128))
    assert bool(torch.isfinite(nothing).all()) and float(nothing.min()) >= 0


def test_foreground_refuses_bad_radii_and_sizes():
    with pytest.raises(ValueError, match="radii"):
        estimate_foreground(torch.rand(8, 8, 3), torch.rand(8, 8), radii=(0,))
    with pytest.raises(ValueError, match="alpha is 9x8"):
        estimate_foreground(torch.rand(8, 8, 3), torch.rand(8, 9))


# ----------------------------------------------------------------------------- external mattes


def test_matte_is_used_only_inside_the_band():
    truth = _disc_alpha(soft=6)
    mask = truth >= 0.5
    trimap = make_trimap(mask, inner=4, outer=4)
    matte = truth.clone()
    matte[:, :10] = 1.0  # the background remover kept something far away: ignored
    matte[40:56, 56:72] = 0.0  # and punched a hole inside the object: ignored
    alpha = fuse_matte(trimap, matte)
    band = unknown_of(trimap)
    assert torch.equal(alpha[band], matte[band])
    assert torch.equal(alpha[~band], trimap[~band])


def test_matte_of_another_size_is_resized_with_a_log_line(caplog):
    matte = torch.zeros(48, 64)
    matte[12:36, 16:48] = 1
    with caplog.at_level(logging.INFO, logger="grounded_inpaint.matting.fuse"):
        resized = prepare_matte(matte, (96, 128))
    assert resized.shape == (96, 128) and "resized to the image's 128x96" in caplog.text
    assert float(resized[48, 64]) == pytest.approx(1.0) and float(resized[2, 2]) == 0.0


def test_matte_with_nan_is_refused():
    matte = torch.rand(16, 16)
    matte[3, 4] = float("nan")
    with pytest.raises(ValueError, match="matte holds 1 NaN"):
        refine(torch.rand(16, 16, 3), torch.ones(16, 16), matte=matte)


# ----------------------------------------------------------------------------- the entry point


def test_refine_with_segments_and_an_empty_instance_list():
    image, _, _ = _composite(_disc_alpha(soft=4))
    empty = refine(image, Segments.empty((96, 128)))
    assert torch.equal(empty.alpha, torch.zeros(96, 128)) and not bool(torch.isnan(empty.foreground).any())
    mask = (_disc_alpha() >= 0.5)[None]
    seg = Segments(mask, torch.tensor([[30.0, 15, 95, 80]]), torch.ones(1), torch.ones(1), ["disc"])
    result = refine(image, seg, method="guided")
    assert result.alpha.shape == (96, 128) and result.rgba().shape == (96, 128, 4)
    with pytest.raises(ValueError, match="segments belong to a 128x96 image"):
        refine(torch.rand(50, 60, 3), seg)


def test_refine_refuses_bad_settings():
    with pytest.raises(ValueError, match="unknown matting method 'magic'"):
        refine(torch.rand(8, 8, 3), torch.ones(8, 8), method="magic")
    with pytest.raises(ValueError, match="needs a matting model"):
        refine(torch.rand(8, 8, 3), torch.ones(8, 8), method="vitmatte")
    with pytest.raises(ValueError, match="mask is 9x8"):
        refine(torch.rand(8, 8, 3), torch.ones(8, 9))


def test_refine_batch_keeps_the_batch_aligned():
    alpha = _disc_alpha(soft=4)
    images = torch.stack([_composite(alpha, seed=i)[0] for i in range(3)])
    masks = [alpha >= 0.5, torch.zeros(96, 128), alpha >= 0.5]
    seen = []
    results = refine_batch(images, masks, method="guided", progress=lambda d, t: seen.append((d, t)))
    assert len(results) == 3 and torch.equal(results[1].alpha, torch.zeros(96, 128))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert len(refine_batch(images, [alpha >= 0.5], method="none")) == 3  # one mask for all
    with pytest.raises(ValueError, match="got 3 image"):
        refine_batch(images, masks[:2])


def test_decontaminated_cutout_has_less_halo_on_a_new_background():
    truth = _disc_alpha(soft=8)
    image, fg, _ = _composite(truth, texture=0.03)
    result = refine(image, truth >= 0.5, method="closed_form", inner=6, outer=6)
    new = torch.tensor([0.2, 0.9, 0.2])
    true = truth[..., None] * fg + (1 - truth[..., None]) * new
    ours = result.alpha[..., None] * result.foreground + (1 - result.alpha[..., None]) * new
    hard = (truth >= 0.5).float()[..., None] * image + (1 - (truth >= 0.5).float()[..., None]) * new
    band = unknown_of(result.trimap)
    assert float((ours - true)[band].abs().mean()) < 0.5 * float((hard - true)[band].abs().mean())
    assert math.isfinite(float(ours.sum()))
    assert np.isfinite(result.alpha.numpy()).all()
