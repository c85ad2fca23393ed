"""Batch-level helpers: ComfyUI-style tensors in, aligned batches out.

ComfyUI passes images as ``[B, H, W, C]`` float32 in ``0..1`` (channels last) and masks as
``[B, H, W]`` float32 in ``0..1``. These helpers accept the variants people actually wire up
(a 2-D mask, RGBA or single-channel images), check that batches line up, and build the batch
outputs the nodes return, so the node classes stay thin.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .images import to_mask, to_rgb
from .structures import Detections, Segments

__all__ = [
    "as_image_batch",
    "as_mask_batch",
    "batch_size_for",
    "pick",
    "union_masks",
    "instance_masks",
    "describe_segments",
    "map_images",
    "check_detections",
    "cutout_batch",
]


def as_image_batch(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    """``[B, H, W, C]`` (C in 1, 3, 4), ``[H, W, C]`` or ``[H, W]`` → ``[B, H, W, 3]`` float32 0..1.

    Alpha is dropped and gray is repeated to RGB; NaN pixels are an error naming the image.
    """
    if not torch.is_tensor(images):
        raise TypeError(f"{name}: expected an IMAGE tensor [B, H, W, C]; got {type(images).__name__}")
    if images.ndim in (2, 3):
        images = images[None] if images.ndim == 3 else images[None, ..., None]
    if images.ndim != 4:
        raise ValueError(f"{name}: expected an IMAGE tensor [B, H, W, C]; got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (0 images)")
    b = images.shape[0]
    if images.shape[-1] == 3 and images.dtype == torch.float32 and bool(torch.isfinite(images).all()):
        return images.clamp(0, 1)
    return torch.stack([to_rgb(images[i], name=f"{name} {i + 1} of {b}") for i in range(b)])


def as_mask_batch(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """``[B, H, W]``, ``[H, W]`` or ``[B, 1, H, W]`` → ``[B, H, W]`` float32 in 0..1."""
    if not torch.is_tensor(mask):
        raise TypeError(f"{name}: expected a MASK tensor [B, H, W]; got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None]
    elif mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"{name}: expected a MASK tensor [B, H, W] or [H, W]; got shape {tuple(mask.shape)}")
    return torch.stack([to_mask(mask[i], name=f"{name} {i + 1}") for i in range(mask.shape[0])]) if mask.shape[0] else mask.float()


def batch_size_for(**batches: int) -> int:
    """The common batch size of inputs that may each have 1 item (broadcast) or ``N`` items.

    ``batch_size_for(image=4, mask=2)`` raises ``ValueError("... image has 4 ... mask has 2 ...")``.
    """
    sizes = {name: int(n) for name, n in batches.items()}
    many = {n for n in sizes.values() if n != 1}
    if len(many) > 1:
        listing = ", ".join(f"{name} has {n}" for name, n in sizes.items())
        raise ValueError(f"batch sizes do not match: {listing}; give each input either 1 item or the same number")
    return many.pop() if many else 1


def pick(batch: torch.Tensor | Sequence, index: int):
    """Item ``index`` of a batch, or its only item when it holds one (broadcast)."""
    return batch[0] if len(batch) == 1 else batch[index]


def union_masks(segments: Sequence[Segments]) -> torch.Tensor:
    """``[B, H, W]`` float32: per image, the union of all its instances (zeros where none)."""
    if not segments:
        raise ValueError("no segmentation results (an empty batch)")
    sizes = {s.image_size for s in segments}
    if len(sizes) > 1:
        raise ValueError(f"the images have different sizes {sorted(sizes)}; a MASK batch needs one size")
    return torch.stack([s.union().cpu() for s in segments])


def instance_masks(segments: Sequence[Segments]) -> torch.Tensor:
    """``[N, H, W]`` float32: every instance of every image, in order; ``[1, H, W]`` zeros if none."""
    union = union_masks(segments)  # checks sizes
    masks = [s.masks.float().cpu() for s in segments if len(s)]
    if not masks:
        return torch.zeros_like(union[:1])
    return torch.cat(masks)


def describe_segments(segments: Sequence[Segments]) -> str:
    """One line per instance: ``image 1 #0 shoes score 0.87 quality 0.93 box [x0, y0, x1, y1]``
    (``image 1 #0 id 3 shoes ...`` for tracked instances, which carry object ids)."""
    lines = []
    for b, seg in enumerate(segments):
        if not len(seg):
            lines.append(f"image {b + 1}: nothing found")
        ids = [f"id {i} " for i in seg.ids.tolist()] if getattr(seg, "ids", None) is not None else [""] * len(seg)
        for i, (label, score, q, box) in enumerate(zip(seg.labels, seg.scores.tolist(), seg.quality.tolist(), seg.boxes.tolist())):
            coords = ", ".join(f"{v:.0f}" for v in box)
            lines.append(f"image {b + 1} #{i} {ids[i]}{label} score {score:.2f} quality {q:.2f} box [{coords}]")
    return "\n".join(lines)


def map_images(fn: Callable[[int], torch.Tensor], count: int) -> torch.Tensor:
    """``torch.stack([fn(0), ..., fn(count - 1)])`` — per-image results back into one batch."""
    return torch.stack([fn(i) for i in range(count)])


def check_detections(detections: Sequence[Detections], images: torch.Tensor) -> None:
    """Detections must be one per image of ``images [B, H, W, C]``, each made on an ``H × W`` image."""
    if len(detections) != images.shape[0]:
        raise ValueError(
            f"the DETECTIONS hold {len(detections)} result(s) but the IMAGE batch has {images.shape[0]} image(s); "
            "connect the same images to the detector and to this node"
        )
    size = (int(images.shape[1]), int(images.shape[2]))
    for i, det in enumerate(detections):
        if tuple(det.image_size) != size:
            raise ValueError(
                f"DETECTIONS entry {i + 1} was made on a {det.image_size[1]}x{det.image_size[0]} image but the "
                f"images are {size[1]}x{size[0]}; connect the same images to the detector and to this node"
            )


def cutout_batch(images: torch.Tensor, masks: torch.Tensor, *, crop: bool = False, padding: int = 0) -> torch.Tensor:
    """RGBA cut-outs ``[B, h, w, 4]`` of ``images [B, H, W, 3]`` with alpha = ``masks [B, H, W]``.

    With ``crop`` every image is cut to the same box — the bounding box of all the masks together
    (plus ``padding``) — so the batch stays one tensor. When every mask is empty the result is one
    transparent pixel per image (see :func:`grounded_inpaint.overlay.cutout`).
    """
    from .overlay import cutout

    if images.shape[:3] != masks.shape[:3]:
        raise ValueError(f"the images are {tuple(images.shape[:3])} [B, H, W] but the masks are {tuple(masks.shape)}")
    if not crop:
        return torch.stack([cutout(images[i], masks[i])[0] for i in range(images.shape[0])])
    _, (x0, y0, x1, y1) = cutout(images[0], masks.amax(dim=0), crop=True, padding=padding)
    if masks.amax() <= 0:
        return torch.zeros(images.shape[0], 1, 1, 4, dtype=torch.float32, device=images.device)
    return torch.cat([images, masks[..., None].to(images.dtype)], dim=-1)[:, y0:y1, x0:x1].contiguous()
