"""An external matte fused with an instance: the detector picks the object, the matte its edge.

Any soft matte works — from a background-removal node (ComfyUI's own, ComfyUI-RMBG, BiRefNet),
from a file, from another tool — without this pack running that model's code. Inside the
instance's unknown band the matte's alpha is taken; outside it the trimap's known values stay,
so the matte cannot add or remove anything far from the chosen object (another person the
background remover kept, a hole it punched in the product).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from ..images import to_mask
from .trimap import unknown_of

__all__ = ["prepare_matte", "fuse_matte", "check_finite"]

log = logging.getLogger(__name__)


def check_finite(matte: Any, name: str = "matte") -> None:
    """Refuse a float matte holding NaN or infinity (a failed upstream step), naming the count.

    :func:`~grounded_inpaint.images.to_mask` would read NaN as 0: a matte with holes of NaN
    would then silently cut holes into the object.
    """
    if torch.is_tensor(matte) and matte.is_floating_point():
        bad = ~torch.isfinite(matte)
        if bool(bad.any()):
            raise ValueError(
                f"{name} holds {int(bad.sum())} NaN or infinite values; a matte must be numbers in 0..1. The "
                "node or file it came from failed: fix that step, or leave the matte out to use the method's alpha"
            )


def prepare_matte(matte: Any, size: tuple[int, int], *, name: str = "matte") -> torch.Tensor:
    """An external matte as ``[H, W]`` float32 in ``0..1`` at the image's size.

    A matte of another size is **resized** (bilinear, antialiased) to ``size`` with a log line —
    background removers often work at a fixed size such as 1024 × 1024 and hand their matte back
    at that size. Its aspect ratio is not checked beyond the log line, so a matte of a different
    picture is the caller's mistake to avoid.

    Arguments:
        matte: ``[H', W']`` (or ``[1, H', W']``) tensor, array or PIL image; floats in 0..1,
            ``uint8`` as 0..255, ``uint16`` as 0..65535.
        size: ``(H, W)`` of the image.
        name: what the matte is called in messages.

    Raises:
        ValueError: NaN or infinite values (a failed upstream step; the count is given), or a
            shape that is not a single-channel picture.
    """
    check_finite(matte, name)
    tensor = to_mask(matte, name=name)
    height, width = int(size[0]), int(size[1])
    if tuple(tensor.shape) != (height, width):
        log.info("%s is %dx%d; resized to the image's %dx%d", name, tensor.shape[1], tensor.shape[0], width, height)
        tensor = F.interpolate(tensor[None, None], size=(height, width), mode="bilinear", antialias=True,
                               align_corners=False)[0, 0].clamp(0.0, 1.0)
    return tensor


def fuse_matte(trimap: torch.Tensor, matte: Any) -> torch.Tensor:
    """Alpha = the matte inside the trimap's unknown band, the trimap's known 0 / 1 elsewhere.

    Arguments:
        trimap: ``[H, W]`` trimap of the chosen instance (0 / 0.5 / 1).
        matte: the external matte (see :func:`prepare_matte`; resized to the trimap's size).

    Returns:
        ``[H, W]`` float32 alpha in ``0..1`` on the trimap's device.
    """
    values = prepare_matte(matte, tuple(trimap.shape)).to(trimap.device)
    return torch.where(unknown_of(trimap), values, trimap.float())
