"""ViTMatte (Yao et al.) through transformers: ``VitMatteForImageMatting``, no remote code.

The model takes the photo and the trimap as one 4-channel input (RGB normalised with the
processor's mean and std, the trimap as 0 / 128⁄255 / 1, padded with zeros to a multiple of 32
at the bottom and right — what ``VitMatteImageProcessor`` does) and predicts alpha for the whole
input; this module keeps its answer only inside the trimap's unknown band.

Large photos are never squashed: the band is worked on in tiles (``tile`` pixels, read with
``margin`` pixels of context on every side), only tiles that hold unknown pixels run, and each
tile's read window starts on the backbone's attention-window grid, so the windowed attention
blocks see exactly the windows they would see on the whole photo. The global attention blocks
of the published models do see only their tile, so a tiled result is close to — not equal to —
a whole-photo pass; a model whose blocks are all windowed and whose reach fits in ``margin``
gives the same alpha tiled and whole (tested). Memory is bounded by the tile: about
``(tile + 2 margin + window)²`` pixels per pass whatever the photo's size.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checks import count
from ..errors import CheckpointError
from ..images import to_mask
from ..interrupt import checkpoint
from ._filters import as_rgb, band_tiles
from .trimap import unknown_of

__all__ = ["VitMatte", "TILE", "MARGIN", "trimap_channel"]

log = logging.getLogger(__name__)

#: Inner tile side and context margin in pixels (the read window is about 512 + 2·128 + one attention window).
TILE, MARGIN = 512, 128
#: What the processor pads to.
_SIZE_DIVISOR = 32


def trimap_channel(trimap: torch.Tensor) -> torch.Tensor:
    """Our trimap (0 / 0.5 / 1) as ViTMatte's trimap channel: 0, 128/255 and 1 (the 8-bit trimap over 255)."""
    return torch.where((trimap > 0) & (trimap < 1), torch.full_like(trimap, 128.0 / 255.0), trimap)


class VitMatte:
    """A loaded ViTMatte: :meth:`estimate_alpha` fills a trimap's unknown band.

    Attributes:
        model: the ``VitMatteForImageMatting`` (eval mode).
        mean, std: the processor's normalisation of the RGB channels.
        align: tile read windows start on multiples of this many pixels (the attention window
            in pixels, and the padding multiple).
        source: where it was loaded from.
    """

    def __init__(self, model: torch.nn.Module, *, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), size_divisor: int = _SIZE_DIVISOR,
                 source: str = "") -> None:
        self.model = model.eval()
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32)
        self.size_divisor = int(size_divisor)
        backbone = getattr(model.config, "backbone_config", None)
        window = int(getattr(backbone, "window_size", 0) or 0) * _patch(backbone)
        self.align = math.lcm(self.size_divisor, window) if window else self.size_divisor
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "VitMatte":
        """Load a transformers ViTMatte folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``).

        Only ``model.safetensors`` is read (a folder with a pickle ``pytorch_model.bin`` alone
        is refused); nothing from the folder is executed.

        Raises:
            CheckpointError: not a folder, no or unreadable ``config.json``, another model type,
                no ``model.safetensors``, or weights that do not fit the configuration (named).
        """
        from transformers import VitMatteForImageMatting

        path = Path(path)
        config_file = path / "config.json"
        if not path.is_dir():
            raise CheckpointError(
                f"{path} is a single file; ViTMatte is loaded from a transformers folder with config.json, "
                "model.safetensors and preprocessor_config.json, such as hustvl/vitmatte-small-composition-1k"
            )
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{config_file} could not be read as JSON ({exc}); download the folder again") from None
        if config.get("model_type") != "vitmatte":
            raise CheckpointError(
                f"{path} holds a {config.get('model_type') or 'unknown'!r} model (config.json model_type), not ViTMatte; "
                "matting models are transformers ViTMatte folders such as hustvl/vitmatte-small-composition-1k"
            )
        if not (path / "model.safetensors").is_file():
            raise CheckpointError(
                f"{path} has no model.safetensors; only safetensors weights are read (a pickle pytorch_model.bin is not). "
                "Download model.safetensors of the same model into that folder"
            )
        try:
            model = VitMatteForImageMatting.from_pretrained(str(path), use_safetensors=True, dtype=dtype) if _new_api() else \
                VitMatteForImageMatting.from_pretrained(str(path), use_safetensors=True, torch_dtype=dtype)
        except Exception as exc:  # corrupt file, shapes that do not fit the config, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path} could not be loaded as ViTMatte ({type(exc).__name__}: {first}); the download is probably "
                "damaged or the folder mixes files of different models: delete it and download it again"
            ) from None
        processor = {}
        processor_file = path / "preprocessor_config.json"
        if processor_file.is_file():
            try:
                processor = json.loads(processor_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{processor_file} could not be read as JSON ({exc}); download the folder again") from None
        return cls(
            model.to(device),
            mean=processor.get("image_mean", (0.5, 0.5, 0.5)),
            std=processor.get("image_std", (0.5, 0.5, 0.5)),
            size_divisor=int(processor.get("size_divisor", processor.get("size_divisibility", _SIZE_DIVISOR))),
            source=str(path),
        )

    # ---------------------------------------------------------------- one pass

    def pixel_values(self, rgb: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """``[h, w, 3]`` image and ``[h, w]`` trimap → the model's ``[1, 4, h', w']`` input (padded to /32)."""
        x = rgb.permute(2, 0, 1).float()
        x = (x - self.mean.to(x.device)[:, None, None]) / self.std.to(x.device)[:, None, None]
        x = torch.cat([x, trimap_channel(trimap.float())[None]], dim=0)[None]
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.size_divisor, (-w) % self.size_divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x

    @torch.inference_mode()
    def predict(self, image: Any, trimap: torch.Tensor) -> torch.Tensor:
        """The model's alpha for the whole input in one pass: ``[H, W]`` float32 in ``0..1``.

        No tiling and no known-pixel handling (see :meth:`estimate_alpha`); the padding is cropped.
        """
        rgb = as_rgb(image)
        tri = to_mask(trimap, name="trimap")
        h, w = rgb.shape[:2]
        x = self.pixel_values(rgb.to(self.device), tri.to(self.device)).to(self.dtype)
        alphas = self.model(pixel_values=x).alphas
        return alphas[0, 0, :h, :w].float()

    # ---------------------------------------------------------------- the band, in tiles

    def estimate_alpha(self, image: Any, trimap: torch.Tensor, *, tile: int = TILE, margin: int = MARGIN) -> torch.Tensor:
        """Alpha in the trimap's unknown band, tile by tile; known pixels keep their exact 0 or 1.

        Arguments:
            image: ``[H, W, 3]`` float RGB in ``0..1``.
            trimap: ``[H, W]`` trimap (0 / 0.5 / 1).
            tile: inner tile side in pixels (rounded up to a multiple of :attr:`align`); a band
                whose bounding box fits in one tile takes one pass.
            margin: context in pixels read around each tile (on top of the window alignment).

        Returns:
            ``[H, W]`` float32 alpha in ``0..1`` on the image's device.
        """
        tile = count("tile", tile, low=32)  # type: ignore[assignment]
        margin = count("margin", margin)  # type: ignore[assignment]
        rgb = as_rgb(image)
        tri = to_mask(trimap, name="trimap").to(rgb.device)
        if tuple(tri.shape) != tuple(rgb.shape[:2]):
            raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} but the trimap is {tri.shape[1]}x{tri.shape[0]}")
        unknown = unknown_of(tri)
        alpha = tri.clone()
        for piece in band_tiles(unknown, tile=tile, margin=margin, align=self.align):
            checkpoint()
            oy0, oy1, ox0, ox1 = piece.outer
            oy0, ox0 = (oy0 // self.align) * self.align, (ox0 // self.align) * self.align  # on the window grid
            crop = self.predict(rgb[oy0:oy1, ox0:ox1], tri[oy0:oy1, ox0:ox1]).to(rgb.device)
            iy0, iy1, ix0, ix1 = piece.inner
            band = unknown[iy0:iy1, ix0:ix1]
            values = crop[iy0 - oy0:iy1 - oy0, ix0 - ox0:ix1 - ox0]
            alpha[iy0:iy1, ix0:ix1] = torch.where(band, values.clamp(0.0, 1.0), alpha[iy0:iy1, ix0:ix1])
        return alpha


def _patch(backbone: Any) -> int:
    patch = getattr(backbone, "patch_size", 16) if backbone is not None else 16
    return int(patch[0] if isinstance(patch, (list, tuple)) else patch)


def _new_api() -> bool:
    """transformers 4.56 and later name the precision argument ``dtype``; earlier ones ``torch_dtype``."""
    import re

    import transformers

    major, minor = (int(v) for v in re.findall(r"\d+", transformers.__version__)[:2])
    return (major, minor) >= (4, 56)
