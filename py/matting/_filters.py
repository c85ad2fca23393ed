"""Small numeric building blocks of the matting stage: box filters, 3×3 solves, band tiles.

Everything here is plain torch and runs on the input's device. Images are planar here:
``[C, H, W]`` float32 (the public functions take channels-last images and convert).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

__all__ = ["box_mean", "box_mean_at", "inverse_3x3", "band_tiles", "Tile", "bounding_box", "as_rgb"]

#: Up to this radius a box filter is two separable average pools; above it, cumulative sums in float64.
_POOL_RADIUS = 12


def as_rgb(image: object, name: str = "image") -> torch.Tensor:
    """``image`` as ``[H, W, 3]`` float32 in ``0..1`` without copying one that already is.

    :func:`grounded_inpaint.images.to_rgb` always returns a new tensor; on a 33-megapixel photo
    every copy is 400 MB, and the matting stage hands its image from step to step. A float32
    ``[H, W, 3]`` tensor that is finite and within ``0..1`` is returned as it is; anything else
    goes through ``to_rgb`` (which explains what is wrong with it).
    """
    from ..images import to_rgb

    if torch.is_tensor(image) and image.dtype == torch.float32 and image.ndim == 3 and image.shape[-1] == 3 and image.numel():
        if bool(torch.isfinite(image).all()) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0:
            return image
    return to_rgb(image, name=name)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over the ``(2r+1) × (2r+1)`` window around each pixel, windows clipped at the border.

    Near the border only the pixels inside the image count (the divisor is the number of pixels
    actually in the window), so a constant image stays exactly constant.

    Arguments:
        x: ``[C, H, W]`` float32.
        radius: ``r >= 0`` in pixels; ``0`` returns ``x`` unchanged.

    Returns:
        ``[C, H, W]`` float32 on ``x``'s device. Cost per pixel is ``O(r)`` for ``r <= 12`` and
        ``O(1)`` above (prefix sums in float64, exact enough for any image size).
    """
    if radius <= 0:
        return x
    if radius <= _POOL_RADIUS:
        k = 2 * radius + 1
        y = F.avg_pool2d(x[None], (1, k), stride=1, padding=(0, radius), count_include_pad=False)
        y = F.avg_pool2d(y, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)
        return y[0]
    return _box_mean_cumsum(_box_mean_cumsum(x, radius, 2), radius, 1)


def _box_mean_cumsum(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Windowed mean along ``dim`` of ``[C, H, W]`` by prefix sums (float64), border-clipped."""
    n = x.shape[dim]
    wide = x.double()
    zeros = torch.zeros_like(wide.narrow(dim, 0, 1))
    prefix = torch.cat([zeros, wide.cumsum(dim)], dim=dim)  # prefix[i] = sum of the first i values
    idx = torch.arange(n, device=x.device)
    hi = (idx + radius + 1).clamp(max=n)
    lo = (idx - radius).clamp(min=0)
    total = prefix.index_select(dim, hi) - prefix.index_select(dim, lo)
    count = (hi - lo).to(torch.float64)
    shape = [1, 1, 1]
    shape[dim] = n
    return (total / count.reshape(shape)).to(x.dtype)


def box_mean_at(x: torch.Tensor, radius: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`box_mean` of ``x`` evaluated only at the pixels ``(ys, xs)``, by integral images.

    Costs two prefix sums over the planes (float64, exact enough for any image size) and four
    look-ups per requested pixel, whatever the radius — the way to filter a thin band of a large
    image without filtering the whole image.

    Arguments:
        x: ``[C, H, W]`` float.
        radius: ``r >= 0``; windows are clipped at the border, as in :func:`box_mean`.
        ys, xs: ``[K]`` int64 pixel coordinates.

    Returns:
        ``[C, K]`` in ``x``'s dtype.
    """
    c, h, w = x.shape
    integral = torch.zeros(c, h + 1, w + 1, dtype=torch.float64, device=x.device)
    integral[:, 1:, 1:] = x.double().cumsum(1).cumsum(2)
    y0, y1 = (ys - radius).clamp(min=0), (ys + radius + 1).clamp(max=h)
    x0, x1 = (xs - radius).clamp(min=0), (xs + radius + 1).clamp(max=w)
    flat = integral.reshape(c, -1)
    stride = w + 1
    total = (flat[:, y1 * stride + x1] - flat[:, y0 * stride + x1] - flat[:, y1 * stride + x0] + flat[:, y0 * stride + x0])
    count = ((y1 - y0) * (x1 - x0)).to(torch.float64)
    return (total / count).to(x.dtype)


def inverse_3x3(a: torch.Tensor) -> torch.Tensor:
    """The inverse of many symmetric 3×3 matrices at once, by the adjugate.

    Arguments:
        a: ``[6, ...]`` float: the entries ``xx, xy, xz, yy, yz, zz`` of each symmetric matrix
            (positive definite here: a covariance plus ``eps`` on the diagonal).

    Returns:
        ``[6, ...]``: the same six entries of each inverse.
    """
    xx, xy, xz, yy, yz, zz = a.unbind(0)
    c_xx = yy * zz - yz * yz
    c_xy = xz * yz - xy * zz
    c_xz = xy * yz - xz * yy
    c_yy = xx * zz - xz * xz
    c_yz = xy * xz - xx * yz
    c_zz = xx * yy - xy * xy
    det = xx * c_xx + xy * c_xy + xz * c_xz
    return torch.stack([c_xx, c_xy, c_xz, c_yy, c_yz, c_zz]) / det


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` (end exclusive) of the true pixels of a ``[H, W]`` bool tensor, or None."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@dataclass(frozen=True)
class Tile:
    """One piece of work: the ``inner`` rectangle is written, the ``outer`` one is read.

    Both are ``(y0, y1, x0, x1)`` in image pixels, end exclusive; ``inner`` lies inside ``outer``.
    """

    inner: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    def inner_in_outer(self) -> tuple[slice, slice]:
        """Where ``inner`` sits inside the ``outer`` crop."""
        (iy0, iy1, ix0, ix1), (oy0, _, ox0, _) = self.inner, self.outer
        return slice(iy0 - oy0, iy1 - oy0), slice(ix0 - ox0, ix1 - ox0)


def _starts(lo: int, hi: int, size: int, align: int) -> list[int]:
    """Starts of consecutive pieces of ``size`` covering ``[lo, hi)``, each start a multiple of ``align``."""
    start = (lo // align) * align
    starts = [start]
    while starts[-1] + size < hi:
        starts.append(starts[-1] + size)
    return starts


def band_tiles(
    unknown: torch.Tensor, *, tile: int, margin: int, align: int = 1
) -> Iterator[Tile]:
    """Tiles covering every unknown pixel: inner squares of ``tile`` px (aligned), read with ``margin``.

    Inner rectangles partition the bounding box of ``unknown`` (tiles without an unknown pixel are
    skipped); each is read with ``margin`` extra pixels on every side (clipped to the image), so a
    method whose result at a pixel depends only on pixels within ``margin`` gives the same result
    tiled as on the whole image. Inner starts are multiples of ``align`` (and ``tile`` is rounded
    up to one), and so are the outer starts when ``margin`` is.

    Arguments:
        unknown: ``[H, W]`` bool, the pixels to compute.
        tile: inner tile side in pixels (``>= 1``).
        margin: context read around each tile, in pixels (``>= 0``).
        align: inner tile starts are multiples of this.
    """
    box = bounding_box(unknown)
    if box is None:
        return
    height, width = unknown.shape
    tile = -(-max(1, tile) // align) * align
    y0, y1, x0, x1 = box
    for ty in _starts(y0, y1, tile, align):
        for tx in _starts(x0, x1, tile, align):
            inner = (ty, min(ty + tile, height), tx, min(tx + tile, width))
            if not bool(unknown[inner[0]:inner[1], inner[2]:inner[3]].any()):
                continue
            outer = (max(0, inner[0] - margin), min(height, inner[1] + margin),
                     max(0, inner[2] - margin), min(width, inner[3] + margin))
            yield Tile(inner, outer)
