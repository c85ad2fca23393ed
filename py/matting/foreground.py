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
from ..images import to_mask, to_rgb
from ..interrupt import checkpoint
from ._filters import bounding_box, box_mean

__all__ = ["estimate_foreground", "default_radii", "REFERENCE_SIDE", "DEFAULT_POWER"]

#: The default radii are given for this long side (pixels) and scale with the image.
REFERENCE_SIDE = 1024
_RADII = (180, 60, 20, 6, 2)
#: Weight exponent: pixels count with ``alpha^p`` (foreground) and ``(1 - alpha)^p`` (background).
DEFAULT_POWER = 3.0
#: A pass whose radius is at least this many pixels runs on a copy reduced so its radius is about 8.
_REDUCE_FROM = 16
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
        * where ``alpha == 0`` the colours of the object nearby (within the widest radius;
          black farther away), so that resampling or feathering the cut-out later never pulls
          in the old background.
    """
    rgb = to_rgb(image, name="image")
    a = to_mask(alpha, name="alpha").to(rgb.device)
    if tuple(a.shape) != tuple(rgb.shape[:2]):
        raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} but alpha is {a.shape[1]}x{a.shape[0]}; give one of the image's size")
    height, width = a.shape
    radii = tuple(radii) if radii is not None else default_radii(height, width)
    if len(radii) == 0:
        raise ValueError("radii must name at least one radius, e.g. (180, 60, 20, 6)")
    radii = tuple(count(f"radii[{i}]", r, low=1) for i, r in enumerate(radii))  # type: ignore[misc]
    power = number("power", power, low=0.0)  # type: ignore[assignment]
    fg_out = torch.zeros_like(rgb)
    bg_out = rgb.clone()
    fg_out[a >= 1.0] = rgb[a >= 1.0]
    box = bounding_box((a > 0.0) & (a < 1.0))
    if box is not None:
        reach = max(radii)
        y0, y1 = max(0, box[0] - reach), min(height, box[1] + reach)
        x0, x1 = max(0, box[2] - reach), min(width, box[3] + reach)
        planar = rgb[y0:y1, x0:x1].permute(2, 0, 1)
        weights = a[y0:y1, x0:x1][None]
        fg, bg = planar, planar
        for radius in radii:
            checkpoint()
            fg, bg = _pass(planar, fg, bg, weights, radius, power)
        fg = torch.where(weights >= 1.0, planar, fg)
        bg = torch.where(weights <= 0.0, planar, bg)
        fg_out[y0:y1, x0:x1] = fg.permute(1, 2, 0)
        bg_out[y0:y1, x0:x1] = bg.permute(1, 2, 0)
    if return_background:
        return fg_out, bg_out
    return fg_out
