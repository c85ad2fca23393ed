"""Pictures of a matting result: the trimap over the photo, and the cut-out over a checkerboard."""

from __future__ import annotations

import torch

from .trimap import unknown_of

__all__ = ["trimap_overlay", "checkerboard", "over_checkerboard"]

_BAND_COLOUR = (1.0, 0.85, 0.0)


def trimap_overlay(image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """The photo with the known background dimmed to 35 % and the unknown band tinted yellow.

    Arguments:
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        trimap: ``[H, W]`` (0 / 0.5 / 1).

    Returns:
        ``[H, W, 3]`` float32 in ``0..1``; the known object is the photo unchanged.
    """
    out = image.clone()
    tri = trimap.to(image.device)
    out[tri <= 0] *= 0.35
    band = unknown_of(tri)
    colour = torch.tensor(_BAND_COLOUR, dtype=image.dtype, device=image.device)
    out[band] = out[band] * 0.5 + colour * 0.5
    return out


def checkerboard(height: int, width: int, *, cell: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[H, W, 3]`` light and dark grey squares (``cell`` px, default about 1/40 of the long side)."""
    cell = cell or max(4, max(height, width) // 40)
    ys = (torch.arange(height, device=device) // cell)[:, None]
    xs = (torch.arange(width, device=device) // cell)[None, :]
    tone = torch.where((ys + xs) % 2 == 0, 0.8, 0.55).float()
    return tone[..., None].expand(height, width, 3).contiguous()


def over_checkerboard(foreground: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The cut-out ``alpha F + (1 - alpha) checkerboard``: how the transparent result looks.

    Arguments:
        foreground: ``[H, W, 3]`` float32 in ``0..1``.
        alpha: ``[H, W]`` float32 in ``0..1``.
    """
    board = checkerboard(*alpha.shape, device=foreground.device)
    a = alpha.to(foreground.device)[..., None]
    return foreground * a + board * (1.0 - a)
