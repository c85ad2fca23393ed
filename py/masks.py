"""Selecting instances and turning instance masks into inpainting masks.

Mask convention used by every function here:

* An **inpainting mask** is a float32 tensor ``[H, W]`` (one image) or ``[B, H, W]`` (a batch) with
  values in ``0..1``. **1.0 ("white") marks the area to repaint**, 0.0 ("black") the area to keep.
* Instance masks (``Segments.masks``) are ``[N, H, W]`` bool, one per detected object.
* "Repaint the shoes" is ``union(shoe masks)``; "keep the shoes, repaint the background" is
  ``invert(union(shoe masks))``.

Unless a docstring says otherwise, the mask operations accept a single mask ``[H, W]`` or a batch
``[B, H, W]`` as bool, float (values outside ``0..1`` are clamped, NaN becomes 0), ``uint8``
(read as ``0..255``, like :func:`grounded_inpaint.images.to_mask`) or another integer type (clamped
to ``0..1``), and return float32 in ``0..1`` with the same shape and on the same device. The
morphological operations (:func:`grow`, :func:`fill_holes`, :func:`remove_small_regions`) work on
the binary mask ``mask >= 0.5`` and run on the CPU with ``scipy.ndimage``; :func:`feather` is pure
torch and runs on the input's device.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import ndimage

from .checks import count, fraction, number
from .structures import Segments

__all__ = [
    "parse_indices",
    "select_instances",
    "select_indices",
    "union",
    "invert",
    "threshold",
    "grow",
    "fill_holes",
    "remove_small_regions",
    "feather",
    "make_inpaint_mask",
    "masks_for_batch",
]

log = logging.getLogger(__name__)

#: The largest number of indices a single range in :func:`parse_indices` may expand to.
MAX_RANGE_LENGTH = 100_000

_INDEX_TOKEN = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")


# --------------------------------------------------------------------------------------------
# Choosing instances
# --------------------------------------------------------------------------------------------


def parse_indices(text: str) -> list[int]:
    """Parse a comma-separated list of instance indices typed by a user.

    Arguments:
        text: e.g. ``"0, 2, -1"`` or ``"1-3, 5"``. Each item is an integer (negative counts from
            the end, as in Python) or an inclusive range ``a-b`` with ``a <= b`` and both ends of
            the same sign (``"1-3"`` is 1, 2, 3; ``"-3--1"`` is -3, -2, -1). Whitespace and empty
            items (``"0,,2,"``) are ignored.

    Returns:
        The indices in the order given, duplicates removed (first occurrence kept). An empty or
        blank string gives ``[]`` (which :func:`select_instances` treats as "no filtering").

    Raises:
        ValueError: an item that is not an integer or a range, a descending range, a range
            mixing negative and non-negative ends, or a range longer than ``MAX_RANGE_LENGTH``.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_indices expects a string such as '0, 2, -1' or '1-3'; got {type(text).__name__}")
    result: list[int] = []
    seen: set[int] = set()
    for item in text.split(","):
        if not item.strip():
            continue
        for index in _parse_index_item(item, text):
            if index not in seen:
                seen.add(index)
                result.append(index)
    return result


def _parse_index_item(item: str, text: str) -> range:
    match = _INDEX_TOKEN.match(item)
    if match is None:
        raise ValueError(
            f"cannot read {item.strip()!r} in indices {text!r}: use integers and inclusive ranges separated "
            "by commas, e.g. '0, 2, -1' or '1-3'"
        )
    start = int(match.group(1))
    if match.group(2) is None:
        return range(start, start + 1)
    stop = int(match.group(2))
    if (start < 0) != (stop < 0):
        raise ValueError(
            f"range {item.strip()!r} in indices {text!r} mixes a negative and a non-negative end; "
            "write both ends from the start (e.g. '1-3') or both from the end (e.g. '-3--1')"
        )
    if stop < start:
        raise ValueError(f"range {item.strip()!r} in indices {text!r} is descending; write it as '{stop}-{start}'")
    if stop - start + 1 > MAX_RANGE_LENGTH:
        raise ValueError(
            f"range {item.strip()!r} in indices {text!r} has {stop - start + 1} items; at most {MAX_RANGE_LENGTH}"
        )
    return range(start, stop + 1)


def _normalise_phrase(text: str) -> str:
    return " ".join(str(text).lower().split())


def _wanted_labels(labels: Sequence[str] | str | None) -> list[str]:
    """The non-empty, normalised label phrases to keep; a string is split at commas and periods."""
    if labels is None:
        return []
    items = re.split(r"[,.]", labels) if isinstance(labels, str) else list(labels)
    phrases = [_normalise_phrase(item) for item in items]
    return [phrase for phrase in phrases if phrase]


def _label_matches(label: str, wanted: Sequence[str]) -> bool:
    """Whether ``label`` equals one of ``wanted`` or contains it as a whole word or phrase."""
    label = _normalise_phrase(label)
    for phrase in wanted:
        if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", label):
            return True
    return False


def _top_k(candidates: list[int], scores: Sequence[float], k: int) -> list[int]:
    """The ``k`` highest-scoring of ``candidates`` (ties: lower index first), in index order."""
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))
    return sorted(ranked[:k])


def select_instances(
    segments: Segments,
    *,
    indices: Sequence[int] | None = None,
    top_k: int | None = None,
    labels: Sequence[str] | str | None = None,
    min_score: float = 0.0,
    ids: Sequence[int] | None = None,
) -> Segments:
    """The instances that pass all the given filters, as a new :class:`Segments`.

    See :func:`select_indices` for the filters.
    """
    return segments.take(
        select_indices(segments, indices=indices, top_k=top_k, labels=labels, min_score=min_score, ids=ids)
    )


def select_indices(
    segments: Segments,
    *,
    indices: Sequence[int] | None = None,
    top_k: int | None = None,
    labels: Sequence[str] | str | None = None,
    min_score: float = 0.0,
    ids: Sequence[int] | None = None,
) -> list[int]:
    """Positions of the instances that pass all the given filters.

    The filters combine as an intersection and are applied in this order: ``ids``, ``labels``,
    ``min_score``, ``indices``, ``top_k``. The result keeps the original order of the instances.

    Arguments:
        segments: the instances of one image.
        indices: positions in the **original** instance list, Python style (``-1`` is the last
            instance). Indices out of range for this image are skipped (logged at debug level),
            so one index list can be used for a batch whose images found different numbers of
            objects. The order and repetition of ``indices`` do not matter. ``None`` or empty:
            no filtering.
        top_k: keep the ``top_k`` highest-scoring instances among those left by the previous
            filters (ties: lower index first). ``None`` or 0: no filtering.
        labels: label phrases to keep, case-insensitive. An instance matches a wanted phrase when
            its label equals it or contains it as a whole word or phrase: ``"shoes"`` matches
            ``"red shoes"``, but ``"shoe"`` does not match ``"shoes"``. A single string is split at
            commas and periods (``"shoes, bag"``). ``None`` or empty: no filtering.
        min_score: keep instances whose score is ``>= min_score``; in ``0..1`` (0 keeps all).
        ids: object ids to keep (video tracks, :attr:`Segments.ids`): the same object keeps its id
            in every frame, so one list picks it through a whole clip; ids a frame does not have are
            skipped. ``None`` or empty: no filtering.

    Returns:
        The kept positions in increasing order (possibly none).

    Raises:
        ValueError: ``top_k`` is not a whole number ``>= 0`` (or None), ``min_score`` is not a
            number in ``0..1``, an index or id is not a whole number (NaN, infinity and ``bool``
            are refused everywhere), or ``ids`` are given for instances that have no object ids
            (single images); the message names the parameter and its valid range.
    """
    n = len(segments)
    top_k = count("top_k", top_k, allow_none=True, meaning="(0 or None keeps all instances)")
    min_score = fraction("min_score", min_score, meaning="(0 keeps all)")
    if indices is not None:
        indices = [number("indices", index, integer=True, meaning="(negative counts from the end)") for index in indices]

    if ids is not None:
        ids = [number("ids", obj_id, integer=True, meaning="(object ids of tracked instances)") for obj_id in ids]

    scores = segments.scores.tolist()
    keep = list(range(n))
    if ids:
        if segments.ids is None:
            raise ValueError(
                "ids must name tracked objects, but these instances have no object ids (they come from single images, "
                "not from a tracked clip); choose them by index or label instead"
            )
        wanted_ids = {int(i) for i in ids}
        own = segments.ids.tolist()
        keep = [i for i in keep if own[i] in wanted_ids]
    wanted = _wanted_labels(labels)
    if wanted:
        keep = [i for i in keep if _label_matches(segments.labels[i], wanted)]
    if min_score > 0.0:
        keep = [i for i in keep if scores[i] >= min_score]
    if indices is not None and len(indices) > 0:
        chosen = _resolve_indices(indices, n)
        keep = [i for i in keep if i in chosen]
    if top_k:
        keep = _top_k(keep, scores, int(top_k))
    return keep


def _resolve_indices(indices: Sequence[int], n: int) -> set[int]:
    """Map Python-style indices to positions in ``0..n-1``, skipping those out of range."""
    chosen: set[int] = set()
    for index in indices:
        index = int(index)
        position = index + n if index < 0 else index
        if 0 <= position < n:
            chosen.add(position)
        else:
            log.debug("instance index %d skipped: this image has %d instances", index, n)
    return chosen


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_float_mask(mask: Any, name: str = "mask") -> torch.Tensor:
    """Validate ``mask`` (``[H, W]`` or ``[B, H, W]``) and return it as float32 in ``0..1``."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not torch.is_tensor(mask):
        raise TypeError(f"{name}: expected a torch tensor [H, W] or [B, H, W]; got {type(mask).__name__}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"{name}: expected [H, W] or [B, H, W]; got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask.float()
    if mask.dtype == torch.uint8:
        return mask.float() / 255.0
    if mask.is_complex():
        raise ValueError(f"{name}: expected a real-valued mask; got dtype {mask.dtype}")
    if not mask.is_floating_point():
        return mask.clamp(0, 1).float()
    return torch.nan_to_num(mask.float(), nan=0.0).clamp(0.0, 1.0)


def _binary(mask: torch.Tensor) -> torch.Tensor:
    """``mask >= 0.5`` as bool (same shape and device)."""
    return mask >= 0.5


def _per_image_cpu(mask: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply ``fn`` (bool ``[H, W]`` array -> bool ``[H, W]`` array) to each binarised image.

    Arguments:
        mask: float32 ``[H, W]`` or ``[B, H, W]`` in ``0..1``.

    Returns:
        float32 tensor of the same shape and device with values 0 or 1.
    """
    binary = _binary(mask).cpu().numpy()
    if binary.size == 0:
        return torch.zeros_like(mask)
    if binary.ndim == 2:
        out = fn(binary)
    else:
        out = np.stack([fn(image) for image in binary])
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=mask.device, dtype=torch.float32)


def _image_size(image_size: Any) -> tuple[int, int]:
    """``(height, width)`` as two whole numbers ``>= 0``; ValueError naming ``image_size`` otherwise."""
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") or len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), two integers >= 0; got {image_size!r}")
    return count("image_size height", image_size[0]), count("image_size width", image_size[1])  # type: ignore[return-value]


def _bbox(binary: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` (end exclusive) of the True pixels of a 2-D array, or None if none."""
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(binary.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _expand(box: tuple[int, int, int, int], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    y0, y1, x0, x1 = box
    return (
        slice(max(0, y0 - margin), min(shape[0], y1 + margin)),
        slice(max(0, x0 - margin), min(shape[1], x1 + margin)),
    )


# --------------------------------------------------------------------------------------------
# Elementary operations
# --------------------------------------------------------------------------------------------


def union(masks: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """The union of instance masks.

    Arguments:
        masks: ``[N, H, W]`` bool or float (soft masks are combined with the maximum); a
            :class:`Segments` is accepted too (its masks are used).
        image_size: ``(height, width)``; required when ``N == 0`` (the result is then all zero),
            checked against ``masks`` otherwise.

    Returns:
        ``[H, W]`` float32 in ``0..1``, 1.0 where any instance is, on the device of ``masks``.

    Raises:
        ValueError: ``masks`` is not 3-D, ``N == 0`` without ``image_size``, or ``image_size`` does
            not match the masks.
    """
    if isinstance(masks, Segments):
        masks = masks.masks
    if not torch.is_tensor(masks) or masks.ndim != 3:
        shape = tuple(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
        raise ValueError(f"union expects instance masks [N, H, W]; got {shape}")
    size = (int(masks.shape[1]), int(masks.shape[2]))
    if image_size is not None:
        wanted = _image_size(image_size)
        if masks.shape[0] > 0 and wanted != size:
            raise ValueError(f"union: masks are {size} (height, width) but image_size is {wanted}")
        size = wanted
    if masks.shape[0] == 0:
        if image_size is None:
            raise ValueError("union of zero masks needs image_size=(height, width) to know the mask size")
        return torch.zeros(size, dtype=torch.float32, device=masks.device)
    return _as_float_mask(masks, "masks").amax(dim=0)


def invert(mask: torch.Tensor) -> torch.Tensor:
    """``1 - mask``: swap the area to repaint and the area to keep.

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.

    Returns:
        float32 of the same shape and device, in ``0..1``.
    """
    return 1.0 - _as_float_mask(mask)


def threshold(mask: torch.Tensor, value: float) -> torch.Tensor:
    """Binarise a soft mask: 1.0 where ``mask >= value``, 0.0 elsewhere.

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.
        value: the threshold, in ``0..1`` (0 makes everything 1).

    Returns:
        float32 of the same shape and device with values 0 or 1.

    Raises:
        ValueError: ``value`` is not a number in ``0..1`` (NaN, infinity and ``bool`` included).
    """
    value = fraction("value", value)
    return (_as_float_mask(mask) >= value).float()


def _dilate(binary: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a 2-D bool array by the disc of ``radius`` pixels (exact Euclidean distance)."""
    box = _bbox(binary)
    if box is None:
        return binary.copy()
    # Only pixels within `radius` of the foreground's bounding box can change.
    region = _expand(box, radius, binary.shape)
    distance = ndimage.distance_transform_edt(~binary[region])
    out = np.zeros_like(binary)
    out[region] = distance <= radius
    return out


def _erode(binary: np.ndarray, radius: int) -> np.ndarray:
    """Erode a 2-D bool array by the disc of ``radius``; outside the array counts as foreground."""
    box = _bbox(~binary)
    if box is None:
        return binary.copy()
    # Only pixels within `radius` of the background's bounding box can change.
    region = _expand(box, radius, binary.shape)
    distance = ndimage.distance_transform_edt(binary[region])
    out = binary.copy()
    out[region] = distance > radius
    return out


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow (dilate) or shrink (erode) a mask by a disc of ``|pixels|`` pixels.

    The mask is first binarised at 0.5 (``mask >= 0.5``). Growing turns on every pixel whose
    centre lies within Euclidean distance ``pixels`` of a foreground pixel centre; shrinking turns
    off every foreground pixel within ``-pixels`` of a background pixel. Distances come from an
    exact Euclidean distance transform restricted to the region that can change, so the cost does
    not depend on ``pixels`` (no large convolution kernel).

    The image border is **not** background: shrinking a mask that touches the border does not
    pull it away from the border, and a full mask stays full. (An object cut off by the frame
    continues outside it; treating the border as background would open a gap along the edge.)

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.
        pixels: a whole number of pixels (``3.0`` is accepted, ``3.5`` is not): positive grows,
            negative shrinks, 0 returns a float copy (not binarised). Any size is fine: growing by
            more than the image's diagonal fills every image that has a foreground pixel, and the
            cost never exceeds one distance transform of the image.

    Returns:
        float32 of the same shape and device with values 0 or 1 (a float copy when ``pixels == 0``).
        Growing never removes a pixel of the binarised mask and shrinking never adds one.

    Raises:
        ValueError: ``pixels`` is NaN, infinite, a ``bool``, not a whole number, or beyond
            ``±2**62``.
    """
    pixels = count("pixels", pixels, low=None, meaning="(positive grows, negative shrinks)")
    mask = _as_float_mask(mask)
    if pixels == 0:
        return mask.clone()
    if pixels > 0:
        return _per_image_cpu(mask, lambda image: _dilate(image, pixels))
    return _per_image_cpu(mask, lambda image: _erode(image, -pixels))


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Fill the holes of a mask: background regions not connected to the image border.

    The mask is binarised at 0.5 first. Background connectivity is 4-connected (the dual of the
    8-connected foreground), so a background region touching the border only diagonally through
    a foreground corner is still a hole.

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.

    Returns:
        float32 of the same shape and device with values 0 or 1.
    """
    return _per_image_cpu(_as_float_mask(mask), ndimage.binary_fill_holes)


def _remove_small(binary: np.ndarray, min_area: int) -> np.ndarray:
    labelled, regions = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    if regions == 0:
        return binary.copy()
    areas = np.bincount(labelled.ravel(), minlength=regions + 1)
    keep = areas >= min_area
    keep[0] = False
    return keep[labelled]


def remove_small_regions(mask: torch.Tensor, min_area: int) -> torch.Tensor:
    """Drop connected foreground regions smaller than ``min_area`` pixels.

    The mask is binarised at 0.5 first; regions are 8-connected.

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.
        min_area: a whole number; regions with fewer pixels are removed; ``<= 0`` returns a
            float copy.

    Returns:
        float32 of the same shape and device (0 or 1 unless ``min_area <= 0``).

    Raises:
        ValueError: ``min_area`` is NaN, infinite, a ``bool`` or not a whole number.
    """
    min_area = count("min_area", min_area, low=None, meaning="(<= 0 keeps every region)")
    mask = _as_float_mask(mask)
    if min_area <= 0:
        return mask.clone()
    return _per_image_cpu(mask, lambda image: _remove_small(image, min_area))


def _gaussian_taps(sigma: float, radius: int) -> list[float]:
    """Normalised 1-D gaussian weights for offsets ``-radius..radius``."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    sigma = max(sigma, 1e-3)  # tinier widths are the identity anyway; avoid 0/0
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).tolist()


#: On the CPU the direct blur works on blocks of about this many elements, so that each block and
#: its padded copy stay in cache while all the taps are accumulated.
_BLUR_BLOCK_ELEMENTS = 1 << 19

#: The FFT blur transforms blocks of rows of about this many (padded) elements at a time, which
#: bounds its working memory (a few times 16 MiB) whatever the image size.
_FFT_BLOCK_ELEMENTS = 1 << 22

#: A pass with more taps than this is computed with an FFT, whose cost does not depend on the
#: number of taps; fewer taps are cheaper as shifted multiply-adds. Measured on a 2000x3000 mask
#: (benchmarks/preview_bench.py): both take about the same time near 40 taps on the CPU.
_FFT_MIN_TAPS = 41


def _fft_size(n: int) -> int:
    """The smallest ``2**a * 3**b * 5**c >= n`` (sizes the FFT handles fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def _keep_constant_windows(rows: torch.Tensor, out: torch.Tensor, radius: int) -> torch.Tensor:
    """``out`` with the input value restored wherever the ``2 * radius + 1`` window is constant.

    The blur of a constant run is that constant; sums of float32 products (and the FFT) only
    approach it. Restoring it makes pixels further than ``radius`` from any edge keep their value
    exactly (zeros stay zero, ones stay one), as the docstring of :func:`feather` promises.

    Arguments:
        rows: ``[R, L]`` float32, the input of the pass.
        out: ``[R, L]`` float32, the blurred rows (modified and returned).
        radius: the half width of the window, ``>= 1``.
    """
    length = rows.shape[-1]
    if length == 1:
        return out.copy_(rows)
    changes = torch.zeros(rows.shape, dtype=torch.int32, device=rows.device)
    torch.cumsum(rows[:, 1:] != rows[:, :-1], dim=1, out=changes[:, 1:])
    position = torch.arange(length, device=rows.device)
    first = (position - radius).clamp_(0, length - 1)
    last = (position + radius).clamp_(0, length - 1)
    constant = changes.index_select(1, first) == changes.index_select(1, last)
    return out.copy_(torch.where(constant, rows, out))


def _blur_rows_direct(rows: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Convolve each row with ``taps`` as ``len(taps)`` shifted multiply-adds (see :func:`_blur_rows`)."""
    radius = len(taps) // 2
    length = rows.shape[-1]
    # Replicate padding by indexing works for any size, even when radius > length.
    index = torch.arange(-radius, length + radius, device=rows.device).clamp_(0, length - 1)
    out = torch.empty_like(rows)
    block = rows.shape[0] if rows.is_cuda else max(1, _BLUR_BLOCK_ELEMENTS // (length + 2 * radius))
    for start in range(0, rows.shape[0], block):
        padded = rows[start : start + block].index_select(1, index)
        target = out[start : start + block]
        torch.mul(padded[:, 0:length], taps[0], out=target)
        for i in range(1, len(taps)):
            target.add_(padded[:, i : i + length], alpha=taps[i])
        _keep_constant_windows(rows[start : start + block], target, radius)
    return out


def _blur_rows_fft(rows: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Convolve each row with ``taps`` through an FFT (see :func:`_blur_rows`).

    With replicate padding, taps further than the row length from the centre always read the
    first or the last pixel of the row, so they are summed into two edge weights: the FFT works
    on rows padded by at most their own length, and the cost is ``O(L log L)`` per row whatever
    the radius.
    """
    radius = len(taps) // 2
    length = rows.shape[-1]
    pad = min(radius, length)
    weights = np.asarray(taps, dtype=np.float64)
    core = weights[radius - pad : radius + pad + 1]
    tail = float(weights[: radius - pad].sum())  # the taps beyond `pad` on one side (symmetric)
    size = _fft_size(length + 4 * pad)  # no circular wrap-around into the kept outputs
    kernel = torch.fft.rfft(torch.tensor(core, dtype=torch.float32, device=rows.device), n=size)
    index = torch.arange(-pad, length + pad, device=rows.device).clamp_(0, length - 1)
    out = torch.empty_like(rows)
    block = max(1, _FFT_BLOCK_ELEMENTS // size)
    for start in range(0, rows.shape[0], block):
        chunk = rows[start : start + block]
        spectrum = torch.fft.rfft(chunk.index_select(1, index), n=size)
        spectrum.mul_(kernel)
        target = out[start : start + block]
        # Full linear convolution y; the output for pixel i is y[i + 2 * pad].
        target.copy_(torch.fft.irfft(spectrum, n=size)[:, 2 * pad : 2 * pad + length])
        if tail > 0.0:
            target.add_(chunk[:, :1], alpha=tail).add_(chunk[:, -1:], alpha=tail)
        _keep_constant_windows(chunk, target, radius)
    return out


def _blur_rows(rows: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Convolve each row of a 2-D tensor with symmetric ``taps`` (odd length), replicating the row ends.

    Short kernels use shifted multiply-adds, long ones an FFT (:data:`_FFT_MIN_TAPS`); both give
    the same result within float32 rounding, and outputs whose whole window is constant equal
    the input exactly.

    Arguments:
        rows: ``[R, L]`` float32.
        taps: ``2 * radius + 1`` weights, symmetric around the centre.

    Returns:
        ``[R, L]`` float32, a new tensor.
    """
    if len(taps) > _FFT_MIN_TAPS:
        return _blur_rows_fft(rows, taps)
    return _blur_rows_direct(rows, taps)


def _blur_2d(mask: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Separable blur of the last two dimensions of ``[..., H, W]`` with the same taps."""
    height, width = mask.shape[-2:]
    horizontal = _blur_rows(mask.reshape(-1, width), taps).reshape(mask.shape)
    columns = horizontal.transpose(-1, -2).contiguous()
    vertical = _blur_rows(columns.reshape(-1, height), taps).reshape(columns.shape)
    return vertical.transpose(-1, -2).contiguous()


def _feather_uncapped(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """:func:`feather` of a float32 mask in ``0..1`` with ``pixels > 0`` (finite), without the cap
    at the image's diagonal (callers that work on a window of a larger image cap it themselves)."""
    taps = _gaussian_taps(pixels / 3.0, int(math.ceil(pixels)))
    return _blur_2d(mask, taps).clamp_(0.0, 1.0)


def feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """Soften the edges of a mask with a gaussian blur about ``pixels`` wide.

    The blur is a separable gaussian with ``sigma = pixels / 3`` truncated at
    ``radius = ceil(pixels)`` (3 sigma): a hard edge becomes a ramp that goes from about 0 to 1
    over roughly ``2 * pixels`` pixels centred on the edge (about ``pixels`` on each side), and
    pixels further than ``radius`` from any edge keep their value exactly. The image border is
    extended by replicating the edge pixels (no reflection, so masks smaller than the kernel work
    and a mask touching the border does not fade there). Soft masks are blurred as they are (no
    binarisation).

    **Widths beyond the image's diagonal** ``sqrt(H**2 + W**2)`` **act as the diagonal**: such a
    blur already spreads every pixel over the whole image, and the cap keeps the cost bounded by
    the image whatever the parameter. The cost does not depend on ``pixels`` otherwise either:
    short kernels are two passes of ``2 * radius + 1`` shifted multiply-adds (done block by block
    on the CPU to stay in cache), long ones (more than 41 taps) two FFT passes of
    ``O(H W log(max(H, W)))``; both agree within float32 rounding.

    Arguments:
        mask: ``[H, W]`` or ``[B, H, W]``, bool or float in ``0..1``.
        pixels: the softening width in pixels, a finite number; ``<= 0`` returns a float copy.

    Returns:
        float32 of the same shape and device, in ``0..1``.

    Raises:
        ValueError: ``pixels`` is NaN, infinite, a ``bool`` or not a number.
    """
    pixels = number("pixels", pixels, meaning="(<= 0 returns a copy)")
    mask = _as_float_mask(mask)
    if pixels <= 0 or mask.numel() == 0:
        return mask.clone()
    height, width = mask.shape[-2:]
    return _feather_uncapped(mask, min(pixels, math.hypot(height, width)))


# The pipeline's keyword arguments shadow the operation names inside make_inpaint_mask.
_threshold_op, _fill_holes_op, _grow_op, _invert_op, _feather_op = threshold, fill_holes, grow, invert, feather


# --------------------------------------------------------------------------------------------
# The inpainting-mask pipeline
# --------------------------------------------------------------------------------------------


def _single_mask(mask_or_segments: Any, image_size: Sequence[int] | None) -> torch.Tensor:
    """Reduce the pipeline input to one ``[H, W]`` float32 mask in ``0..1``."""
    size = None if image_size is None else _image_size(image_size)
    if mask_or_segments is None:
        if size is None:
            raise ValueError("make_inpaint_mask needs a mask, Segments, or image_size=(height, width)")
        return torch.zeros(size, dtype=torch.float32)
    if isinstance(mask_or_segments, Segments):
        if size is not None and size != mask_or_segments.image_size:
            raise ValueError(
                f"make_inpaint_mask: the segments are {mask_or_segments.image_size} (height, width) "
                f"but image_size is {size}"
            )
        return union(mask_or_segments.masks, mask_or_segments.image_size)
    mask = mask_or_segments
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if torch.is_tensor(mask) and mask.ndim == 3:
        return union(mask, size)
    mask = _as_float_mask(mask)
    if size is not None and tuple(mask.shape) != size:
        raise ValueError(f"make_inpaint_mask: the mask is {tuple(mask.shape)} (height, width) but image_size is {size}")
    return mask


def make_inpaint_mask(
    mask_or_segments: Segments | torch.Tensor | None,
    *,
    image_size: Sequence[int] | None = None,
    threshold: float | None = 0.5,
    fill_holes: bool = False,
    min_area: int = 0,
    grow: int = 0,
    invert: bool = False,
    feather: float = 0.0,
) -> torch.Tensor:
    """Build the inpainting mask for one image (1.0 = repaint) from instances or a mask.

    The steps run in this fixed order:

    1. union of the instances (when given :class:`Segments` or ``[N, H, W]`` masks);
    2. ``threshold`` (binarise a soft mask);
    3. ``fill_holes``;
    4. ``remove_small_regions(min_area)``;
    5. ``grow`` (positive) or shrink (negative);
    6. ``invert``;
    7. ``feather``.

    Why this order: cleaning and growing act on the *selected objects*, before the inversion.
    So with ``invert=True`` ("keep the object, repaint everything else") a positive ``grow``
    enlarges the kept object, leaving a safety margin around it that is not repainted; without
    ``invert`` it enlarges the repainted area. Feathering comes last so that the soft edge is
    symmetric around the final boundary, whatever the other settings.

    Arguments:
        mask_or_segments: :class:`Segments` (their union is used), instance masks ``[N, H, W]``,
            one mask ``[H, W]`` (bool or float in ``0..1``), or None (an empty mask of
            ``image_size``).
        image_size: ``(height, width)``; needed for None, checked against the input otherwise.
        threshold: binarise at ``>= threshold`` (in ``0..1``); None keeps a soft mask soft (the
            morphological steps still binarise at 0.5 when they are enabled).
        fill_holes: fill enclosed background regions (see :func:`fill_holes`).
        min_area: remove foreground regions smaller than this many pixels; ``<= 0`` disables.
        grow: pixels to grow (positive) or shrink (negative) the objects; see :func:`grow`.
        invert: repaint everything except the objects.
        feather: soften the final edge over about this many pixels; see :func:`feather`.

    Returns:
        ``[H, W]`` float32 in ``0..1`` on the device of the input. Empty segments give all zero
        (all one with ``invert=True``).

    Raises:
        ValueError: a size mismatch, or a numeric setting that is NaN, infinite, a ``bool`` or out
            of its range (``threshold`` in ``0..1`` or None; ``min_area`` and ``grow`` whole numbers;
            ``feather`` a finite number); the message names the setting. Every setting is checked
            before any work is done, also the ones a disabled step would not use.
    """
    if threshold is not None:
        threshold = fraction("threshold", threshold, allow_none=True, meaning="(None keeps a soft mask soft)")
    min_area = count("min_area", min_area, low=None, meaning="(<= 0 keeps every region)")
    grow = count("grow", grow, low=None, meaning="(positive grows, negative shrinks)")
    feather = number("feather", feather, meaning="(<= 0 for a hard edge)")
    mask = _single_mask(mask_or_segments, image_size)
    if threshold is not None:
        mask = _threshold_op(mask, threshold)
    if fill_holes:
        mask = _fill_holes_op(mask)
    if min_area > 0:
        mask = remove_small_regions(mask, min_area)
    if grow:
        mask = _grow_op(mask, grow)
    if invert:
        mask = _invert_op(mask)
    if feather > 0:
        mask = _feather_op(mask, feather)
    return mask


def masks_for_batch(segments_list: Sequence[Segments | torch.Tensor], **kwargs: Any) -> torch.Tensor:
    """Apply :func:`make_inpaint_mask` to each image of a batch and stack the results.

    Arguments:
        segments_list: one :class:`Segments` (or mask accepted by :func:`make_inpaint_mask`) per
            image; all images must have the same size.
        **kwargs: the keyword arguments of :func:`make_inpaint_mask`, the same for every image.

    Returns:
        ``[B, H, W]`` float32 in ``0..1``, on the device of the first mask (``[0, H, W]`` for an
        empty list when ``image_size`` is given).

    Raises:
        ValueError: the images differ in size (the message lists the sizes), or the list is empty
            and no ``image_size`` was given.
    """
    if len(segments_list) == 0:
        size = kwargs.get("image_size")
        if size is None:
            raise ValueError("masks_for_batch got no segments; pass image_size=(height, width) for an empty batch")
        return torch.zeros((0, *_image_size(size)), dtype=torch.float32)
    masks = [make_inpaint_mask(item, **kwargs) for item in segments_list]
    sizes = [tuple(m.shape) for m in masks]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"image {i + 1}: {h}x{w}" for i, (h, w) in enumerate(sizes))
        raise ValueError(
            f"masks_for_batch needs images of one size to stack them; got (height x width) {listed}"
        )
    device = masks[0].device
    return torch.stack([m.to(device) for m in masks])
