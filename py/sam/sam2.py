"""SAM 2 / 2.1 image predictor over transformers' ``Sam2Model``, with the SAM predictor interface.

Same workflow as :class:`~.predictor.SamPredictorBase` (encode once with ``set_image``, then any
number of box / point / mask prompts decoded in one batched call), but SAM 2's own geometry, as in
Meta's ``SAM2ImagePredictor``:

* the image is resized to a **square** ``image_size × image_size`` (1024 for released models;
  bilinear, antialiased; aspect ratio not kept, no padding) and normalised with ImageNet mean/std;
* prompt coordinates are scaled by ``(S / W, S / H)``;
* the decoder's ``S/4`` low-resolution logits are upsampled straight to the original size
  (bilinear) and thresholded at 0.

The image features are a tuple ``(image_embeddings [1, C, S/16, S/16], high_res_s0 [1, C/8, S/4,
S/4], high_res_s1 [1, C/4, S/8, S/8])``: the FPN's lowest level (with the "no memory" embedding
already added, as for a single image) and the two high-resolution levels projected by the decoder's
``conv_s0`` / ``conv_s1``.

Everything here is plain torch: torchvision (which transformers' ``Sam2Processor`` needs) is not
used, so the predictor also works where torchvision is missing or broken.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .predictor import _IMAGENET_MEAN, _IMAGENET_STD, MASK_PROMPT_LOGIT, SamPredictorBase, load_transformers_sam

__all__ = ["Sam2Predictor", "Sam2Features"]

log = logging.getLogger(__name__)

#: ``(image_embeddings, high_res_s0, high_res_s1)``, see the module docstring.
Sam2Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Sam2Predictor(SamPredictorBase):
    """Predictor over transformers' ``Sam2Model`` (SAM 2 / 2.1, hiera tiny / small / base+ / large).

    Load with :meth:`from_pretrained` (a transformers folder such as ``facebook/sam2.1-hiera-tiny``)
    or :meth:`from_checkpoint` (Meta's ``sam2.1_hiera_*.pt`` or its ``.safetensors`` copy).
    ``predict`` takes prompts in original-image pixels, like every predictor here.

    ``multimask="single"`` uses SAM 2's single-mask output with its dynamic fallback (when the
    single mask is unstable, the best of the three multimask outputs is returned), as Meta's image
    predictor does.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        mean: Sequence[float] = _IMAGENET_MEAN,
        std: Sequence[float] = _IMAGENET_STD,
        source: str = "<model>",
    ) -> None:
        size = model.config.prompt_encoder_config.image_size
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        super().__init__(model, image_size=size, mean=mean, std=std, source=source)

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam2Predictor":
        """Load a transformers SAM 2 folder (``config.json`` with ``model_type`` ``sam2``,
        ``model.safetensors``, optionally ``preprocessor_config.json`` for mean/std)."""
        from transformers import Sam2Model

        model, mean, std = load_transformers_sam(
            Sam2Model, path, kind="SAM 2", example="facebook/sam2.1-hiera-tiny",
            hint=f"Download it again or put the single-file checkpoint (sam2.1_hiera_*.safetensors) into {Path(path).parent}",
        )
        return cls(model.to(device=device, dtype=dtype), mean=mean, std=std, source=str(path))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam2Predictor":
        """Load Meta's original-layout SAM 2 / 2.1 file (``.pt`` with ``{"model": ...}`` or ``.safetensors``).

        The architecture is read from tensor shapes; video-tracking tensors are skipped by name
        (see :data:`~.convert_sam2.VIDEO_ONLY_PREFIXES`); everything else loads strictly.
        """
        from ..checkpoints import load_state_dict
        from .convert_sam2 import hf_sam2_model_from_original

        state_dict = load_state_dict(path)
        model = hf_sam2_model_from_original(state_dict, source=str(path))
        log.info("loaded %s as SAM 2 (converted in memory)", path)
        return cls(model.to(device=device, dtype=dtype), source=str(path))

    # ---------------------------------------------------------------- geometry (square resize)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(S, S)`` once an image is set: SAM 2 always resizes to a square (no padding)."""
        return None if self.original_size is None else (self.image_size, self.image_size)

    @input_size.setter
    def input_size(self, value: object) -> None:  # the base class assigns its longest-side size; not used here
        pass

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` float 0..1 → normalised ``[1, 3, S, S]`` (square resize) in the model's dtype/device."""
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean.to(self.device)[None, :, None, None]) / self.std.to(self.device)[None, :, None, None]
        return x.to(self.dtype)

    def _coord_scale(self) -> torch.Tensor:
        assert self.original_size is not None
        h, w = self.original_size
        return torch.tensor([self.image_size / w, self.image_size / h], dtype=torch.float32)

    def mask_to_logits(self, mask: torch.Tensor) -> torch.Tensor:
        """A ``[H, W]`` mask (0..1, original size) → ``[m, m]`` logits (``m = S / 4``) for ``mask_input``."""
        side = self.image_size // 4
        m = mask.to(self.device, torch.float32)[None, None]
        m = F.interpolate(m, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return ((m[0, 0] > 0.5).float() * 2 - 1) * MASK_PROMPT_LOGIT

    def postprocess_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        """``[N, K, m, m]`` logits → ``[N, K, H, W]`` bool masks at the original size (or
        :attr:`mask_output_size`), chunked."""
        assert self.original_size is not None
        h, w = self.mask_output_size or self.original_size
        n, k = low_res.shape[:2]
        out = torch.empty(n, k, h, w, dtype=torch.bool, device=low_res.device)
        flat = low_res.reshape(n * k, 1, *low_res.shape[-2:]).float()
        out_flat = out.view(n * k, h, w)
        for start in range(0, n * k, self.upsample_chunk):
            part = F.interpolate(flat[start : start + self.upsample_chunk], size=(h, w), mode="bilinear", align_corners=False)
            out_flat[start : start + part.shape[0]] = part[:, 0] > 0.0
        return out

    def image_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """``[N, m, m]`` logits → ``[N, m, m]``: SAM 2's low-resolution grid already covers the whole image."""
        return low_res.float()

    # ---------------------------------------------------------------- back end

    def _encode(self, pixels: torch.Tensor) -> Sam2Features:
        """``[1, 3, S, S]`` → ``(image_embeddings, high_res_s0, high_res_s1)`` (see module docstring)."""
        s0, s1, embeddings = self.model.get_image_embeddings(pixels)
        return embeddings, s0, s1

    def _decode(self, boxes, points, labels, masks, multimask_output):
        model = self.model
        dtype = self.dtype
        embeddings, s0, s1 = self.features
        n = next(t.shape[0] for t in (boxes, points, masks) if t is not None)
        if points is None and boxes is None:
            # Mask prompt only: no sparse tokens at all, as in Meta's predictor.
            sparse = torch.zeros(n, 1, 0, model.config.prompt_encoder_config.hidden_size, device=self.device, dtype=dtype)
            _, dense = model.prompt_encoder(input_points=None, input_labels=None, input_boxes=None, input_masks=masks[:, None].to(dtype))
        else:
            sparse, dense = model.prompt_encoder(
                input_points=points[:, None].to(dtype) if points is not None else None,
                input_labels=labels[:, None] if labels is not None else None,
                input_boxes=boxes[:, None].to(dtype) if boxes is not None else None,
                input_masks=masks[:, None].to(dtype) if masks is not None else None,
            )
        if dense.shape[0] != n:
            dense = dense.expand(n, -1, -1, -1)
        pos = model.get_image_wide_positional_embeddings().to(dtype).expand(n, -1, -1, -1)
        low_res, iou = model.mask_decoder(
            image_embeddings=embeddings.expand(n, -1, -1, -1),
            image_positional_embeddings=pos,
            sparse_prompt_embeddings=sparse.to(dtype),
            dense_prompt_embeddings=dense.to(dtype),
            multimask_output=multimask_output,
            high_resolution_features=[s0.expand(n, -1, -1, -1), s1.expand(n, -1, -1, -1)],
        )[:2]
        return low_res[:, 0], iou[:, 0]
