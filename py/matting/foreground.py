"""Foreground colour estimation ("decontamination"): the object's own colours at its soft edge.

A photo's edge pixel is a mix ``I = alpha F + (1 - alpha) B`` of the object's colour ``F`` and
the old background ``B``. Cutting it out with the photo's colours keeps ``(1 - alpha) B`` — the
halo a user sees when the object is pasted onto a new picture. This module estimates ``F``.

The estimator is blur fusion (Forte and Pitié, "Approximate fast foreground colour estimation",
ICIP 2021), run twice: local alpha-weighted means of the foreground and background colours
around each pixel, then the per-pixel correction that makes ``alpha F + (1 - alpha) B`` equal
the photo again. A wide first pass finds pure object colours a few dozen pixels inside the
object; a narrow second pass sharpens them. Box filters make the cost independent of the radii
(a few passes over the image, plain torch, any device).

``benchmarks/matting_bench.py`` compares it with pymatting's multi-level estimator and with the
photo's own colours, on composites with a known foreground.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..checks import count
from ..images import to_mask, to_rgb
from ..interrupt import checkpoint
from ._filters import box_mean

__all__ = ["estimate_foreground", "default_radii", "REFERENCE_SIDE"]

#: The radii (first, second pass) are scaled from ``(90, 6)`` at this image side (long side, pixels).
REFERENCE_SIDE = 1024
_RADII = (90, 6)
_TINY = 1e-5


def default_radii(height: int, width: int) -> tuple[int, int]:
    """Blur-fusion radii for an image: ``(90, 6)`` at a 1024-px long side, scaled with it (at least ``(8, 2)``)."""
    scale = max(height, width) / REFERENCE_SIDE
    return max(8, int(round(_RADII[0] * scale))), max(2, int(round(_RADII[1] * scale)))


def _fuse(image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One blur-fusion pass on planar ``[3, H, W]`` colours and ``[1, H, W]`` alpha."""
    weight_f = box_mean(alpha, radius)
    weight_b = box_mean(1.0 - alpha, radius)
    mean_f = box_mean(fg * alpha, radius) / (weight_f + _TINY)
    mean_b = box_mean(bg * (1.0 - alpha), radius) / (weight_b + _TINY)
    residual = image - alpha * mean_f - (1.0 - alpha) * mean_b
    # the next pass refines F from these colours and reuses the smooth background estimate
    return (mean_f + alpha * residual).clamp(0.0, 1.0), mean_b.clamp(0.0, 1.0)


def estimate_foreground(
    image: Any,
    alpha: Any,
    *,
    radii: Sequence[int] | None = None,
    return_background: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The object's colours ``F`` such that ``alpha F + (1 - alpha) B`` is the photo.

    Arguments:
        image: ``[H, W, 3]`` float RGB in ``0..1`` (the photo).
        alpha: ``[H, W]`` float in ``0..1`` (the refined alpha, or any soft mask).
        radii: the blur-fusion radii in pixels, first (wide) pass then second (narrow) pass, each
            ``>= 1``; ``None``: :func:`default_radii` for the image's size.
        return_background: also return the estimated background colours.

    Returns:
        ``[H, W, 3]`` float32 in ``0..1`` on the image's device (and the background, if asked):

        * where ``alpha == 1`` exactly the photo's colours,
        * where ``0 < alpha < 1`` the estimated object colours,
        * where ``alpha == 0`` the colours of the object nearby (within the first radius;
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
        raise ValueError("radii must name at least one radius, e.g. (90, 6)")
    radii = tuple(count(f"radii[{i}]", r, low=1) for i, r in enumerate(radii))  # type: ignore[misc]
    planar = rgb.permute(2, 0, 1)
    weights = a[None]
    fg, bg = planar, planar
    for radius in radii:
        checkpoint()
        fg, bg = _fuse(planar, fg, bg, weights, radius)
    fg = torch.where(weights >= 1.0, planar, fg).permute(1, 2, 0).contiguous()
    if return_background:
        bg = torch.where(weights <= 0.0, planar, bg).permute(1, 2, 0).contiguous()
        return fg, bg
    return fg
