"""Foreground colour estimation ("decontamination"): the object's own colours at its soft edge.

A photo's edge pixel is a mix ``I = alpha F + (1 - alpha) B`` of the object's colour ``F`` and
the old background ``B``. Cutting it out with the photo's colours keeps ``(1 - alpha) B`` — the
halo a user sees when the object is pasted onto a new picture. This module estimates ``F``.

The estimator is blur fusion (Forte and Pitié, "Approximate fast foreground colour estimation",
ICIP 2021), generalised to a coarse-to-fine series of passes: each pass takes weighted local
means of the current foreground and background colours around every pixel (weights
``alpha^p`` and ``(1 - alpha)^p``, so nearly pure pixels count most), then applies the
per-pixel correction that makes ``alpha F + (1 - alpha) B`` equal the photo again. Wide passes
find pure object colours far inside the object; narrow ones restore detail. Box filters make
each pass a few sweeps over the image whatever its radius, and wide passes run on a reduced
copy (their blur is smooth), so the cost stays near that of the narrowest pass. Plain torch,
any device. Only the region around the object's soft edge is computed.

``benchmarks/matting_bench.py`` scores it against the photo's own colours and pymatting's
multi-level and closed-form estimators on composites with a known foreground.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checks import count, number
from ..images import to_mask
from ..interrupt import checkpoint
from ._filters import as_rgb, band_tiles, bounding_box, box_mean

__all__ = ["estimate_foreground", "default_radii", "REFERENCE_SIDE", "DEFAULT_POWER"]

#: The default radii are given for this long side (pixels) and scale with the image.
REFERENCE_SIDE = 1024
_RADII = (180, 60, 20, 6, 2)
#: Weight exponent: pixels count with ``alpha^p`` (foreground) and ``(1 - alpha)^p`` (background).
DEFAULT_POWER = 3.0
#: A pass whose radius is at least this many pixels runs on a copy reduced so its radius is about 8.
_REDUCE_FROM = 16
#: The narrow passes run in tiles of this many pixels around the soft edge (bounded memory).
TILE = 512
_TINY = 1e-6


def default_radii(height: int, width: int) -> tuple[int, ...]:
    """Blur-fusion radii for an image: ``(180, 60, 20, 6, 2)`` at a 1024-px long side, scaled with it (each at least 1)."""
    scale = max(height, width) / REFERENCE_SIDE
    return tuple(max(1, int(round(r * scale))) for r in _RADII)


def _blur(planes: torch.Tensor, radius: int) -> torch.Tensor:
    """Box mean of ``[C, H, W]``; wide radii on a reduced copy, brought back bilinearly."""
    if radius < _REDUCE_FROM:
        return box_mean(planes, radius)
    factor = radius // 8
    h, w = planes.shape[-2:]
    small = F.avg_pool2d(planes[None], factor, ceil_mode=True)
    small = box_mean(small[0], max(1, int(round(radius / factor))))
    return F.interpolate(small[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def _pass(image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor, radius: int, power: float):
    """One blur-fusion pass on planar ``[3, H, W]`` colours and ``[1, H, W]`` alpha."""
    weight_f = alpha.pow(power)
    weight_b = (1.0 - alpha).pow(power)
    sums = _blur(torch.cat([fg * weight_f, weight_f, bg * weight_b, weight_b]), radius)
    mean_f = sums[0:3] / (sums[3:4] + _TINY)
    mean_b = sums[4:7] / (sums[7:8] + _TINY)
    residual = image - alpha * mean_f - (1.0 - alpha) * mean_b
    # the next pass refines F from these colours and reuses the smooth background estimate
    return (mean_f + alpha * residual).clamp(0.0, 1.0), mean_b.clamp(0.0, 1.0)


def estimate_foreground(
    image: Any,
    alpha: Any,
    *,
    radii: Sequence[int] | None = None,
    power: float = DEFAULT_POWER,
    return_background: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The object's colours ``F`` such that ``alpha F + (1 - alpha) B`` is the photo.

    The wide passes (radius >= 16) run on a copy of the region around the soft edge reduced so
    that their narrowest radius is about 8 px; the narrow passes run at full resolution in tiles
    around the soft pixels. So memory stays bounded by the tile and the reduced copy whatever
    the photo's size.

    Arguments:
        image: ``[H, W, 3]`` float RGB in ``0..1`` (the photo).
        alpha: ``[H, W]`` float in ``0..1`` (the refined alpha, or any soft mask).
        radii: the passes' radii in pixels, widest first, each ``>= 1``; ``None``:
            :func:`default_radii` for the image's size.
        power: weight exponent ``p >= 0`` (0: Forte and Pitié's plain means; larger trusts nearly
            pure pixels more).
        return_background: also return the estimated background colours.

    Returns:
        ``[H, W, 3]`` float32 in ``0..1`` on the image's device (and the background, if asked):

        * where ``alpha == 1`` exactly the photo's colours,
        * where ``0 < alpha < 1`` the estimated object colours,
        * where ``alpha == 0`` within a few pixels of a soft pixel, the colours of the object
          nearby, so that resampling or feathering the cut-out later never pulls in the old
          background; black farther away.
    """
    rgb = as_rgb(image)
    a = to_mask(alpha, name="alpha").to(rgb.device)
    if tuple(a.shape) != tuple(rgb.shape[:2]):
        raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} but alpha is {a.shape[1]}x{a.shape[0]}; give one of the image's size")
    height, width = a.shape
    radii = tuple(radii) if radii is not None else default_radii(height, width)
    if len(radii) == 0:
        raise ValueError("radii must name at least one radius, e.g. (180, 60, 20, 6, 2)")
    radii = tuple(count(f"radii[{i}]", r, low=1) for i, r in enumerate(radii))  # type: ignore[misc]
    power = number("power", power, low=0.0)  # type: ignore[assignment]
    fg_out = torch.zeros_like(rgb)
    bg_out = rgb.clone() if return_background else None
    fg_out[a >= 1.0] = rgb[a >= 1.0]
    soft = (a > 0.0) & (a < 1.0)
    box = bounding_box(soft)
    if box is None:
        return (fg_out, bg_out) if return_background else fg_out
    wide = [r for r in radii if r >= _REDUCE_FROM]
    narrow = [r for r in radii if r < _REDUCE_FROM]
    factor = max(1, min(wide) // 8) if wide else 1
    reach = max(radii)
    # the region the passes read: the soft edge and the widest radius around it, on the factor grid
    y0, x0 = max(0, box[0] - reach) // factor * factor, max(0, box[2] - reach) // factor * factor
    y1, x1 = min(height, box[1] + reach), min(width, box[3] + reach)
    low_fg = low_bg = None
    if wide:
        planar = rgb[y0:y1, x0:x1].permute(2, 0, 1)
        small = F.avg_pool2d(planar[None], factor, ceil_mode=True)[0]
        small_a = F.avg_pool2d(a[y0:y1, x0:x1][None, None], factor, ceil_mode=True)[0]
        low_fg, low_bg = small, small
        for radius in wide:
            checkpoint()
            low_fg, low_bg = _pass(small, low_fg, low_bg, small_a, max(1, int(round(radius / factor))), power)
    margin = sum(narrow) + 2 * factor + 2
    extension = max(2, narrow[-1] if narrow else 2)  # beyond the soft edge, for resampling later
    wanted = F.max_pool2d(soft.float()[None, None], 2 * extension + 1, stride=1, padding=extension)[0, 0] > 0
    for piece in band_tiles(wanted, tile=TILE, margin=margin, align=factor):
        checkpoint()
        oy0, oy1, ox0, ox1 = piece.outer
        oy0, ox0 = max(y0, oy0 // factor * factor), max(x0, ox0 // factor * factor)
        oy1, ox1 = min(y1, oy1), min(x1, ox1)
        planar = rgb[oy0:oy1, ox0:ox1].permute(2, 0, 1)
        weights = a[oy0:oy1, ox0:ox1][None]
        if low_fg is not None:
            fg = _upsample_window(low_fg, factor, (oy0 - y0, oy1 - y0), (ox0 - x0, ox1 - x0))
            bg = _upsample_window(low_bg, factor, (oy0 - y0, oy1 - y0), (ox0 - x0, ox1 - x0))
        else:
            fg = bg = planar
        for radius in narrow:
            fg, bg = _pass(planar, fg, bg, weights, radius, power)
        if not narrow:  # the last (wide) pass's correction at full resolution
            residual = planar - weights * fg - (1.0 - weights) * bg
            fg = (fg + weights * residual).clamp(0.0, 1.0)
        fg = torch.where(weights >= 1.0, planar, fg)
        bg = torch.where(weights <= 0.0, planar, bg)
        iy0, iy1, ix0, ix1 = piece.inner
        iy1, ix1 = min(iy1, oy1), min(ix1, ox1)  # nothing wanted lies beyond the region read
        rows, cols = slice(iy0 - oy0, iy1 - oy0), slice(ix0 - ox0, ix1 - ox0)
        keep = wanted[iy0:iy1, ix0:ix1][..., None]
        fg_out[iy0:iy1, ix0:ix1] = torch.where(keep, fg[:, rows, cols].permute(1, 2, 0), fg_out[iy0:iy1, ix0:ix1])
        if bg_out is not None:
            bg_out[iy0:iy1, ix0:ix1] = torch.where(keep, bg[:, rows, cols].permute(1, 2, 0), bg_out[iy0:iy1, ix0:ix1])
    if return_background:
        return fg_out, bg_out
    return fg_out


def _upsample_window(low: torch.Tensor, factor: int, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Rows ``rows`` and columns ``cols`` (full-resolution offsets, starts multiples of ``factor``) of
    the bilinear ``factor``-times upsampling of ``[C, h, w]`` — equal to that window of upsampling
    the whole, computed from the low-resolution pixels it needs (one extra on each side)."""
    if factor == 1:
        return low[:, rows[0]:rows[1], cols[0]:cols[1]]
    h, w = low.shape[-2:]
    ly0, lx0 = rows[0] // factor, cols[0] // factor
    ly1, lx1 = min(h, -(-rows[1] // factor)), min(w, -(-cols[1] // factor))
    py0, px0 = min(1, ly0), min(1, lx0)  # one low-resolution pixel of context, where there is one
    py1, px1 = min(1, h - ly1), min(1, w - lx1)
    part = low[:, ly0 - py0:ly1 + py1, lx0 - px0:lx1 + px1]
    pads = (int(px0 == 0), int(px1 == 0), int(py0 == 0), int(py1 == 0))
    part = F.pad(part[None], pads, mode="replicate")[0]  # the border repeats, as in the whole
    up = F.interpolate(part[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]
    top, left = factor, factor
    return up[:, top:top + rows[1] - rows[0], left:left + cols[1] - cols[0]]
