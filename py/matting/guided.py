"""The guided filter (He, Sun and Tang) as an alpha estimator: no model, plain torch, any device.

The filter fits, in every ``(2r+1)²`` window, the coarse mask as a linear function of the
image's colours (``alpha ≈ a · rgb + b``, ridge-regularised by ``eps``) and averages the fits.
Where the object's colours differ from the background's, the mask's edge snaps to the image's
edge and thin or soft structures inherit the colour transition; where the colours do not
separate, the mask stays (smoothed). Only the trimap's unknown band is computed (in tiles around
it), and known pixels keep their exact 0 or 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..checks import count, number
from ..images import to_mask
from ..interrupt import checkpoint
from ._filters import as_rgb, band_tiles, box_mean_at, inverse_3x3
from .trimap import unknown_of

__all__ = ["guided_filter", "guided_alpha", "DEFAULT_EPS", "TILE"]

#: Ridge regularisation of the per-window colour fit, for colours in 0..1: larger is smoother.
DEFAULT_EPS = 3e-4
#: Tiles of this many pixels (plus the filter's reach) bound the memory on large images.
TILE = 1024


def guided_filter(
    guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float, where: torch.Tensor | None = None
) -> torch.Tensor:
    """Filter ``source`` guided by the colours of ``guide`` (the colour-guide form of the filter).

    Arguments:
        guide: ``[3, H, W]`` float32 RGB in ``0..1``.
        source: ``[H, W]`` float32 (here: the coarse mask).
        radius: window radius ``r >= 1``; the result at a pixel depends on pixels within ``2r``.
        eps: ridge regularisation ``> 0``.
        where: optional ``[H, W]`` bool: compute only these pixels (others are 0). The window
            statistics are then evaluated only within ``r`` of them, by integral images, so a
            thin band costs little more than two prefix sums of the image; the values equal the
            full filter's within float rounding.

    Returns:
        ``[H, W]`` float32 (not clamped).
    """
    h, w = source.shape
    if where is None:
        where = torch.ones(h, w, dtype=torch.bool, device=source.device)
    # the windows that cover a wanted pixel, and the wanted pixels themselves
    k = 2 * radius + 1  # a square max filter, separably (a k x k pool costs k² per pixel)
    near = F.max_pool2d(where.float()[None, None], (1, k), stride=1, padding=(0, radius))
    near = F.max_pool2d(near, (k, 1), stride=1, padding=(radius, 0))[0, 0] > 0
    ky, kx = torch.nonzero(near, as_tuple=True)
    r, g, b = guide
    p = source
    planes = torch.stack([r, g, b, p, r * p, g * p, b * p, r * r, r * g, r * b, g * g, g * b, b * b])
    stats = box_mean_at(planes, radius, ky, kx)
    mean_i, mean_p, corr_ip, corr_ii = stats[0:3], stats[3], stats[4:7], stats[7:13]
    cov_ip = corr_ip - mean_i * mean_p
    mr, mg, mb = mean_i
    var = corr_ii - torch.stack([mr * mr, mr * mg, mr * mb, mg * mg, mg * mb, mb * mb])
    var[0] += eps
    var[3] += eps
    var[5] += eps
    xx, xy, xz, yy, yz, zz = inverse_3x3(var)
    cr, cg, cb = cov_ip
    coef = torch.zeros(4, h, w, dtype=source.dtype, device=source.device)
    coef[0, ky, kx] = xx * cr + xy * cg + xz * cb
    coef[1, ky, kx] = xy * cr + yy * cg + yz * cb
    coef[2, ky, kx] = xz * cr + yz * cg + zz * cb
    coef[3, ky, kx] = mean_p - (coef[:3, ky, kx] * mean_i).sum(0)
    qy, qx = torch.nonzero(where, as_tuple=True)
    mean_coef = box_mean_at(coef, radius, qy, qx)
    out = torch.zeros(h, w, dtype=source.dtype, device=source.device)
    out[qy, qx] = (mean_coef[:3] * guide[:, qy, qx]).sum(0) + mean_coef[3]
    return out


def guided_alpha(
    image: Any,
    trimap: torch.Tensor,
    mask: Any,
    *,
    radius: int | None = None,
    eps: float = DEFAULT_EPS,
    tile: int = TILE,
) -> torch.Tensor:
    """Alpha in the trimap's unknown band by guided-filtering the coarse ``mask`` with the image.

    Arguments:
        image: ``[H, W, 3]`` float RGB in ``0..1`` (anything :func:`~grounded_inpaint.images.to_rgb` takes).
        trimap: ``[H, W]`` trimap (0 / 0.5 / 1, see :mod:`.trimap`).
        mask: ``[H, W]`` the coarse mask (SAM's cut-out, 0..1) the filter refines.
        radius: window radius in pixels (``>= 1``); ``None``: the band's half width, at least 2
            (estimated from the trimap).
        eps: ridge regularisation ``> 0`` for colours in ``0..1`` (default 3e-4).
        tile: side of the tiles the band is computed in (memory: a few float64 planes of
            ``(tile + 4 r)²`` pixels; the work grows with the band's pixels, plus two prefix sums of
            each tile).

    Returns:
        ``[H, W]`` float32 alpha in ``0..1`` on the image's device: the trimap's known values
        exactly (0 or 1) and the filtered mask, clamped, in the band. Computing in tiles gives
        the same result as one pass over the whole image (each tile reads ``2 r`` pixels around it).
    """
    rgb = as_rgb(image)
    trimap = to_mask(trimap, name="trimap").to(rgb.device)
    coarse = to_mask(mask, name="mask").to(rgb.device)
    _same_size(rgb, trimap, coarse)
    eps = number("eps", eps, low=0.0, low_open=True)  # type: ignore[assignment]
    tile = count("tile", tile, low=16)  # type: ignore[assignment]
    unknown = unknown_of(trimap)
    if radius is None:
        radius = band_radius(unknown)
    radius = count("radius", radius, low=1)  # type: ignore[assignment]
    alpha = trimap.clone()
    guide = rgb.permute(2, 0, 1)
    for piece in band_tiles(unknown, tile=tile, margin=2 * radius):
        checkpoint()
        oy0, oy1, ox0, ox1 = piece.outer
        rows, cols = piece.inner_in_outer()
        iy0, iy1, ix0, ix1 = piece.inner
        band = unknown[iy0:iy1, ix0:ix1]
        wanted = torch.zeros(oy1 - oy0, ox1 - ox0, dtype=torch.bool, device=rgb.device)
        wanted[rows, cols] = band
        filtered = guided_filter(guide[:, oy0:oy1, ox0:ox1], coarse[oy0:oy1, ox0:ox1], radius, eps, where=wanted)
        alpha[iy0:iy1, ix0:ix1] = torch.where(band, filtered[rows, cols].clamp(0.0, 1.0), alpha[iy0:iy1, ix0:ix1])
    return alpha


def band_radius(unknown: torch.Tensor) -> int:
    """About half the width of the unknown band (at least 2 px): twice its area over its length.

    The band's length is estimated by its boundary pixels; an empty band gives 2.
    """
    area = int(unknown.sum())
    if area == 0:
        return 2
    u = unknown.float()[None, None]
    inside = -torch.nn.functional.max_pool2d(-u, 3, stride=1, padding=1)[0, 0]
    boundary = int((unknown & (inside < 1)).sum())
    width = 2.0 * area / max(boundary, 1)  # area / (boundary / 2)
    return max(2, int(round(width / 2)))


def _same_size(rgb: torch.Tensor, *planes: torch.Tensor) -> None:
    size = tuple(rgb.shape[:2])
    for plane in planes:
        if tuple(plane.shape) != size:
            raise ValueError(
                f"the image is {size[1]}x{size[0]} but a trimap or mask is {plane.shape[1]}x{plane.shape[0]}; "
                "give them at the image's size"
            )
