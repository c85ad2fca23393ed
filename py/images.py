"""Turning whatever the caller has into the image tensors the models use.

The canonical image in this package is a ``[H, W, 3]`` float32 tensor with values in ``0..1``
(RGB, channels last). A batch is a ``[B, H, W, 3]`` tensor or a list of such images, which may
differ in size. :func:`to_rgb` accepts PIL images, numpy arrays and tensors in the layouts people
actually pass around and either converts them or says exactly what is wrong.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["to_rgb", "to_rgb_list", "load_image", "save_image", "save_mask", "to_mask"]

log = logging.getLogger(__name__)


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} with shape {tuple(shape) if shape is not None else '?'} and dtype {dtype}"


def _writable(array: np.ndarray) -> np.ndarray:
    """A C-contiguous array torch may wrap (read-only arrays, e.g. from PIL, are copied)."""
    return np.ascontiguousarray(array) if array.flags.writeable else np.array(array, order="C")


def to_rgb(image: Any, *, name: str = "image") -> torch.Tensor:
    """Convert one image to ``[H, W, 3]`` float32 RGB in ``0..1``.

    Arguments:
        image: a PIL image (any mode), a numpy array or a torch tensor shaped ``[H, W]``,
            ``[H, W, C]`` or ``[1, H, W, C]`` with C in 1, 3 or 4. Integer arrays are read as
            ``0..255``; float arrays as ``0..1`` (values outside are clamped). Grayscale is
            repeated to three channels; an alpha channel is dropped (the colour is kept as it is).
        name: how the image is called in error messages (e.g. ``"image 3 of 8"``).

    Returns:
        ``[H, W, 3]`` float32 tensor in ``0..1``, on the device of a tensor input (CPU otherwise).

    Raises:
        ValueError: zero-size images, unsupported layouts, and images containing NaN or infinity
            (these come from a failed upstream step and would silently yield garbage masks).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with every ComfyUI
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA") if "A" in image.getbands() else image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype == np.bool_:
            image = image.astype(np.float32)
        tensor = torch.from_numpy(_writable(image))
    elif torch.is_tensor(image):
        tensor = image
    else:
        raise TypeError(f"{name}: expected a PIL image, numpy array or torch tensor; got {type(image).__name__}")

    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim == 2:
        tensor = tensor[..., None]
    if tensor.ndim != 3 or tensor.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"{name}: expected [H, W], [H, W, C] or [1, H, W, C] with C in 1, 3 or 4 (channels last); "
            f"got {_describe(image)}"
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name}: the image is empty (size {tensor.shape[1]}x{tensor.shape[0]} pixels)")

    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    elif not tensor.is_floating_point():
        info = torch.iinfo(tensor.dtype)
        tensor = tensor.float() / float(min(info.max, 65535 if info.max > 255 else 255))
    else:
        tensor = tensor.float()
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise ValueError(
                f"{name}: {int(bad.sum())} pixel values are NaN or infinite. This usually means an upstream "
                "step failed (for example a VAE decode in fp16); fix that step or replace the image."
            )
        tensor = tensor.clamp(0.0, 1.0)

    channels = tensor.shape[-1]
    if channels in (1, 2):  # gray, gray + alpha
        tensor = tensor[..., :1].expand(-1, -1, 3)
    elif channels == 4:
        tensor = tensor[..., :3]
    return tensor.contiguous()


def to_rgb_list(images: Any) -> list[torch.Tensor]:
    """Convert a batch to a list of ``[H, W, 3]`` float32 images (see :func:`to_rgb`).

    Arguments:
        images: a ``[B, H, W, C]`` tensor/array, or a sequence of single images (sizes may differ),
            or one single image (PIL, ``[H, W, C]`` or ``[H, W]``).
    """
    if isinstance(images, (list, tuple)):
        n = len(images)
        return [to_rgb(im, name=f"image {i + 1} of {n}") for i, im in enumerate(images)]
    if (torch.is_tensor(images) or isinstance(images, np.ndarray)) and images.ndim == 4:
        n = images.shape[0]
        return [to_rgb(images[i], name=f"image {i + 1} of {n}") for i in range(n)]
    return [to_rgb(images)]


def to_mask(mask: Any, *, name: str = "mask") -> torch.Tensor:
    """Convert a mask to ``[H, W]`` float32 in ``0..1``.

    Accepts ``[H, W]``, ``[1, H, W]``, ``[H, W, 1]`` tensors/arrays (bool, integer 0..255 or float) and
    PIL images (the ``L`` channel, or alpha for ``LA``/``RGBA``).
    """
    try:
        from PIL import Image

        if isinstance(mask, Image.Image):
            mask = np.asarray(mask.getchannel("A") if "A" in mask.getbands() else mask.convert("L"))
    except ImportError:  # pragma: no cover
        pass
    tensor = torch.from_numpy(_writable(mask)) if isinstance(mask, np.ndarray) else mask
    if not torch.is_tensor(tensor):
        raise TypeError(f"{name}: expected a tensor, array or PIL image; got {type(mask).__name__}")
    if tensor.ndim == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    elif tensor.ndim == 3 and tensor.shape[-1] == 1:
        tensor = tensor[..., 0]
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected [H, W] (or [1, H, W]); got {_describe(mask)}")
    if tensor.dtype == torch.bool:
        return tensor.float()
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    tensor = tensor.float()
    return torch.nan_to_num(tensor, nan=0.0).clamp(0.0, 1.0)


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file as ``[H, W, 3]`` float32 RGB in ``0..1`` (EXIF orientation applied).

    Raises:
        FileNotFoundError / ValueError naming the file when it is missing or not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return to_rgb(im, name=str(path))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {path} as an image ({exc})") from None


def _to_uint8(array: torch.Tensor) -> np.ndarray:
    return (array.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) float 0..1 as a PNG/JPEG/WebP by extension."""
    from PIL import Image

    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"save_image expects [H, W, 3] or [H, W, 4]; got {tuple(image.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(image)).save(path)  # mode follows the channel count
    return path


def save_mask(mask: torch.Tensor, path: str | Path) -> Path:
    """Write an ``[H, W]`` float 0..1 mask as an 8-bit grayscale image (1.0 → white)."""
    from PIL import Image

    if mask.ndim != 2:
        raise ValueError(f"save_mask expects [H, W]; got {tuple(mask.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(mask)).save(path)  # 2-D uint8 -> mode "L"
    return path


def stack_or_list(images: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """Stack same-size images into ``[B, H, W, C]``; return the list unchanged when sizes differ."""
    if images and all(im.shape == images[0].shape for im in images):
        return torch.stack(list(images))
    return list(images)
