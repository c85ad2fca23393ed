"""Trimaps: which pixels are surely the object, surely background, or to be worked out.

A trimap is an ``[H, W]`` float32 tensor with three values:

* ``1.0`` — known foreground (the object; its alpha stays exactly 1),
* ``0.0`` — known background (alpha stays exactly 0),
* ``0.5`` — unknown: the band around the object's edge where a matting method estimates alpha.

:func:`make_trimap` builds one from a binary mask (SAM's cut-out): the mask eroded by ``inner``
pixels is known foreground, everything farther than ``outer`` pixels outside it is known
background. SAM predicts on a 256 × 256 logit grid (one cell is ``max(H, W) / 256`` pixels of the
image), so its edges are off by up to about a cell; the default widths are one cell (at least
2 px), capped by the object's own size so that a small object is not swallowed by its band. Where
SAM's logits say it was unsure (hair, fur, lace, a blurred edge: ``|logit| < 4.5``) the band
widens to cover them, and any region can be marked wholly unknown (glass, a veil, a net).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import masks as _masks
from ..checks import count, number
from ..images import to_mask
from ..structures import Segments

__all__ = [
    "FOREGROUND",
    "BACKGROUND",
    "UNKNOWN",
    "SAM_GRID",
    "DEFAULT_LOGIT_MARGIN",
    "default_band",
    "make_trimap",
    "trimap_for_segments",
    "logits_to_image",
    "union_logits",
    "unknown_of",
]

log = logging.getLogger(__name__)

FOREGROUND, BACKGROUND, UNKNOWN = 1.0, 0.0, 0.5
#: The side of SAM's low-resolution logit grid (SAM, SAM-HQ, SAM 2.1): one cell is ``max(H, W) / 256`` pixels.
SAM_GRID = 256
#: Pixels whose SAM logit lies within ``±DEFAULT_LOGIT_MARGIN`` (probability 0.011..0.989: SAM was
#: not sure) join the band (``benchmarks/matting_bench.py`` measured 2, 3 and 4.5).
DEFAULT_LOGIT_MARGIN = 4.5
#: The default band is this many SAM grid cells wide on each side of the edge (1, 1.5 and 2.5 measured:
#: wider bands help blurred edges a little and damage clean ones).
BAND_CELLS = 1.0
#: The widest the band may be (inside, outside) relative to the object's equivalent radius.
_INNER_OF_RADIUS, _OUTER_OF_RADIUS = 0.2, 0.35
#: Uncertain SAM pixels farther than this many SAM grid cells from the mask are left alone.
UNCERTAIN_REACH_CELLS = 12


def default_band(mask: torch.Tensor) -> tuple[int, int]:
    """The default ``(inner, outer)`` band widths in pixels for an object mask.

    One SAM grid cell (``max(H, W) / 256``, at least 2 px) on each side of the edge, capped at a fifth (inside) and about a third (outside) of the object's equivalent radius
    ``sqrt(area / pi)``, and at least 1 px. An empty mask gives ``(0, 0)``.

    Arguments:
        mask: ``[H, W]`` bool or float (``>= 0.5`` is the object).
    """
    binary = to_mask(mask, name="mask") >= 0.5
    area = int(binary.sum())
    if area == 0:
        return 0, 0
    height, width = binary.shape
    cell = max(height, width) / SAM_GRID
    band = max(2, int(round(BAND_CELLS * cell)))
    radius = math.sqrt(area / math.pi)
    inner = max(1, min(band, int(_INNER_OF_RADIUS * radius)))
    outer = max(1, min(band, int(math.ceil(_OUTER_OF_RADIUS * radius))))
    return inner, outer


def logits_to_image(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Low-resolution mask logits covering the whole image → ``[H, W]`` logits (bilinear).

    Arguments:
        logits: ``[h, w]`` float: SAM's logits over the image (``Segments.logits[i]``), any size.
        size: ``(H, W)`` of the image.
    """
    if tuple(logits.shape) == tuple(size):
        return logits.float()
    up = F.interpolate(logits.float()[None, None], size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    return up[0, 0]


def _check_band(name: str, value: Any) -> int | None:
    return count(name, value, allow_none=True, meaning="(pixels; None = the default that scales with the image)")


def make_trimap(
    mask: Any,
    *,
    inner: int | None = None,
    outer: int | None = None,
    logits: torch.Tensor | None = None,
    logit_margin: float = DEFAULT_LOGIT_MARGIN,
    unknown: Any = None,
) -> torch.Tensor:
    """A trimap from an object mask.

    Known foreground is the mask eroded by ``inner`` pixels, known background everything farther
    than ``outer`` pixels outside the mask, and the ring between them is unknown. Distances are
    Euclidean (discs). Parts of the mask thinner than the band (straps, laces, stems) keep their
    centre line as known foreground, so the matting can sharpen them but not dissolve them
    (measured on the benchmark's straps: SAD 0.79 → 0.46 of the hard mask's, hair 0.66 → 0.53). The image border is not background: an object cut off by the frame gets
    no band along it, and an all-white mask stays all known foreground.

    Arguments:
        mask: ``[H, W]`` bool or float in ``0..1``; ``>= 0.5`` is the object (SAM's cut-out).
        inner: band width inside the edge in pixels (``>= 0``); ``None`` = :func:`default_band`.
        outer: band width outside the edge in pixels (``>= 0``); ``None`` = :func:`default_band`.
            ``inner = outer = 0`` gives no band: alpha will equal the mask.
        logits: optional ``[h, w]`` logits of the segmenter over the whole image (any resolution,
            upsampled bilinearly): pixels with ``|logit| < logit_margin`` within 12 SAM grid
            cells (``12 * max(H, W) / 256`` px) of the mask's edge, inside or outside, become
            unknown too.
        logit_margin: a number ``>= 0``; ``0`` ignores ``logits``.
        unknown: optional ``[H, W]`` mask of regions to mark wholly unknown (``>= 0.5``), e.g.
            a glass or a veil whose alpha the matting method should estimate everywhere.

    Returns:
        ``[H, W]`` float32 with values 0 (background), 0.5 (unknown) and 1 (foreground), on the
        mask's device.

    Raises:
        ValueError: a negative or non-integer width, a bad ``logit_margin``, or an ``unknown``
            mask or ``logits`` that contain NaN (named).
    """
    inner = _check_band("inner", inner)
    outer = _check_band("outer", outer)
    logit_margin = number("logit_margin", logit_margin, low=0.0)  # type: ignore[assignment]
    binary_t = to_mask(mask, name="mask") >= 0.5
    device = binary_t.device
    auto_inner, auto_outer = default_band(binary_t) if inner is None or outer is None else (0, 0)
    inner = auto_inner if inner is None else inner
    outer = auto_outer if outer is None else outer
    binary = binary_t.cpu().numpy()
    known_fg = _masks._erode(binary, inner) if inner > 0 else binary.copy()
    reach = _masks._dilate(binary, outer) if outer > 0 else binary.copy()
    band = reach & ~known_fg
    if logits is not None and logit_margin > 0:
        if not torch.is_tensor(logits) or logits.ndim != 2:
            raise ValueError(f"logits must be a [h, w] tensor of mask logits; got {getattr(logits, 'shape', type(logits).__name__)}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits hold NaN or infinite values; pass the segmenter's finite mask logits (or None)")
        full = logits_to_image(logits.detach().cpu(), binary.shape).numpy()
        distance = max(outer, int(round(UNCERTAIN_REACH_CELLS * max(binary.shape) / SAM_GRID)), 1)
        # only near the edge, on both sides: deep inside or far outside the object SAM's word stands
        near = (_masks._dilate(binary, distance) & ~_masks._erode(binary, distance)) if binary.any() else np.zeros_like(binary)
        band |= (np.abs(full) < logit_margin) & near
    if inner > 0 and binary.any():  # thin parts keep their centre line: the band would swallow them whole
        core = _thin_cores(binary, inner)
        band &= ~core
        known_fg |= core
    if unknown is not None:
        region = unknown
        if torch.is_tensor(region) and region.is_floating_point() and not bool(torch.isfinite(region).all()):
            raise ValueError("unknown holds NaN or infinite values; give a mask in 0..1 (white = mark unknown)")
        region_t = to_mask(region, name="unknown")
        if tuple(region_t.shape) != binary.shape:
            raise ValueError(
                f"the unknown mask is {region_t.shape[1]}x{region_t.shape[0]} but the mask is "
                f"{binary.shape[1]}x{binary.shape[0]}; give one of the image's size"
            )
        band |= (region_t >= 0.5).cpu().numpy()
    trimap = np.where(binary, FOREGROUND, BACKGROUND).astype(np.float32)
    trimap[known_fg] = FOREGROUND
    trimap[~reach & ~binary] = BACKGROUND
    trimap[band] = UNKNOWN
    return torch.from_numpy(trimap).to(device)


def _thin_cores(binary: np.ndarray, inner: int) -> np.ndarray:
    """The centre lines of the parts of the mask thinner than the band (straps, laces, stems).

    Eroding by ``inner`` removes them whole, so nothing there would be known object and the
    matting could dissolve them. Their medial axis (the ridge of the distance to the background,
    at least 1.5 px from it) stays known object.
    """
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(binary)
    ridge = (distance >= ndimage.maximum_filter(distance, size=3)) & (distance >= 1.5)
    return ridge & (distance <= inner)


def union_logits(segments: Segments) -> torch.Tensor | None:
    """``[H, W]``: the maximum over instances of their SAM logits at the image's size (the union's
    logits), or ``None`` when there is no instance or the segmenter gave no logits."""
    if not len(segments) or getattr(segments, "logits", None) is None:
        return None
    return torch.stack([logits_to_image(segments.logits[i], segments.image_size) for i in range(len(segments))]).amax(0)


def trimap_for_segments(
    segments: Segments,
    *,
    inner: int | None = None,
    outer: int | None = None,
    use_logits: bool = True,
    logit_margin: float = DEFAULT_LOGIT_MARGIN,
    unknown: Any = None,
) -> torch.Tensor:
    """The trimap of the union of all instances of ``segments`` (see :func:`make_trimap`).

    SAM's logits (``segments.logits``, when the segmenter provided them and ``use_logits``) are
    combined with the maximum over instances, like the masks. No instance gives an all-background
    trimap (alpha 0 everywhere).
    """
    union = segments.union()
    logits = union_logits(segments) if use_logits else None
    return make_trimap(union, inner=inner, outer=outer, logits=logits, logit_margin=logit_margin, unknown=unknown)


def unknown_of(trimap: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` bool: the unknown pixels of a trimap (neither 0 nor 1)."""
    return (trimap > BACKGROUND) & (trimap < FOREGROUND)
