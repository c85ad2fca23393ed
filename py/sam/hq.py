"""SAM-HQ predictor over transformers' ``SamHQModel``, with the SAM predictor interface.

SAM-HQ (Ke et al., "Segment Anything in High Quality", SysCV/sam-hq) is SAM with an extra output
token and a small fusion head that mixes the final image embedding with an **early** ViT feature
(the output of the first global-attention block). Its pre- and post-processing are SAM's
(longest side 1024, zero padding), so only the encoder output and the decoder call differ from
:class:`~.predictor.HFSamPredictor`:

* features are a tuple ``(image_embeddings [1, C, S/16, S/16], early_vit_features [1, S/16, S/16, D])``
  (``D`` = ViT width, channels last as the encoder produces them);
* the decoder returns SAM's mask logits **plus** the HQ token's mask logits, as the official
  predictor does with ``hq_token_only=False`` (set :attr:`HFSamHQPredictor.hq_token_only` to use the
  HQ mask alone).

Multimask modes: ``"single"`` = SAM's single-mask token + HQ; ``"best"`` = the multimask output with
the highest predicted IoU + HQ (what the official predictor returns for ``multimask_output=True``);
``"all"`` = the three multimask outputs, each + HQ, sorted by predicted IoU (highest first).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError
from .predictor import _IMAGENET_MEAN, _IMAGENET_STD, HFSamPredictor, lean_vision_attention, load_transformers_sam

__all__ = ["HFSamHQPredictor", "SamHQFeatures", "hq_mask_decoder_forward"]

log = logging.getLogger(__name__)

#: ``(image_embeddings, early_vit_features)``, see the module docstring.
SamHQFeatures = tuple[torch.Tensor, torch.Tensor]


class HFSamHQPredictor(HFSamPredictor):
    """Predictor over transformers' ``SamHQModel`` (HF folders such as ``syscv-community/sam-hq-vit-base``,
    or the official ``sam_hq_vit_b/l/h.pth`` converted in memory by :meth:`from_checkpoint`).

    Attributes:
        hq_token_only: return only the HQ token's mask (the official ``hq_token_only=True``) instead
            of SAM's mask + the HQ mask (default ``False``, as the official predictor).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        mean: Sequence[float] = _IMAGENET_MEAN,
        std: Sequence[float] = _IMAGENET_STD,
        source: str = "<model>",
        hq_token_only: bool = False,
    ) -> None:
        super().__init__(model, mean=mean, std=std, source=source)
        self.hq_token_only = bool(hq_token_only)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "HFSamHQPredictor":
        """Load a transformers SAM-HQ folder (``config.json`` with ``model_type`` ``sam_hq``,
        ``model.safetensors``, optionally ``preprocessor_config.json`` for mean/std)."""
        from transformers import SamHQModel

        model, mean, std = load_transformers_sam(
            SamHQModel, path, kind="SAM-HQ", example="syscv-community/sam-hq-vit-base",
            hint=f"Download it again or put the official sam_hq_vit_*.pth file into {Path(path).parent}",
        )
        return cls(model.to(device=device, dtype=dtype), mean=mean, std=std, source=str(path))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "HFSamHQPredictor":
        """Load an official SAM-HQ ``.pth`` (or ``.safetensors`` with the same names), converted in memory.

        The architecture (ViT-B/L/H) is read from tensor shapes; the load is strict, HQ decoder included.
        """
        from ..checkpoints import load_state_dict
        from .convert_hq import hf_sam_hq_model_from_original

        state_dict = load_state_dict(path)
        model = hf_sam_hq_model_from_original(state_dict, source=str(path))
        mean = (state_dict["pixel_mean"].flatten() / 255.0).tolist() if "pixel_mean" in state_dict else _IMAGENET_MEAN
        std = (state_dict["pixel_std"].flatten() / 255.0).tolist() if "pixel_std" in state_dict else _IMAGENET_STD
        log.info("loaded %s as SAM-HQ (converted in memory)", path)
        return cls(model.to(device=device, dtype=dtype), mean=mean, std=std, source=str(path))

    # ---------------------------------------------------------------- back end

    def _encode(self, pixels: torch.Tensor) -> SamHQFeatures:
        """``[1, 3, S, S]`` → ``(image_embeddings, early_vit_features)`` (see module docstring)."""
        with lean_vision_attention(self.model.vision_encoder, self.lean_attention):
            embeddings, intermediate = self.model.get_image_embeddings(pixels)
        if not intermediate:
            raise CheckpointError(
                f"{self.source}: the SAM-HQ encoder has no global-attention block, so there is no early ViT "
                "feature for the HQ decoder; check global_attn_indexes in config.json"
            )
        return embeddings, intermediate[0]

    def _decode(self, boxes, points, labels, masks, multimask_output):
        model = self.model
        dtype = self.dtype
        embeddings, early = self.features
        n = next(t.shape[0] for t in (boxes, points, masks) if t is not None)
        sparse, dense = model.prompt_encoder(
            input_points=points[:, None].to(dtype) if points is not None else None,
            input_labels=labels[:, None] if labels is not None else None,
            input_boxes=boxes[:, None].to(dtype) if boxes is not None else None,
            input_masks=masks[:, None].to(dtype) if masks is not None else None,
        )
        if dense.shape[0] != n:
            dense = dense.expand(n, -1, -1, -1)
        pos = model.get_image_wide_positional_embeddings().to(dtype).expand(n, -1, -1, -1)
        low_res, iou = hq_mask_decoder_forward(
            model.mask_decoder,
            image_embeddings=embeddings,
            image_positional_embeddings=pos,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            early_vit_features=early,
            multimask_output=multimask_output,
            hq_token_only=self.hq_token_only,
        )
        return low_res, iou


def hq_mask_decoder_forward(
    decoder: torch.nn.Module,
    *,
    image_embeddings: torch.Tensor,
    image_positional_embeddings: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    early_vit_features: torch.Tensor,
    multimask_output: bool,
    hq_token_only: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM-HQ's mask decoder computed as the official SysCV/sam-hq code does, with the weights of
    transformers' ``SamHQMaskDecoder``.

    transformers' own ``SamHQMaskDecoder.forward`` (checked with 5.24) upscales the image embedding
    from *before* the two-way transformer (and transposes it), so its masks differ from the official
    model's; this function follows the official computation instead (tests/test_sam_hq.py compares
    it with outputs of the official code).

    Arguments:
        decoder: a transformers ``SamHQMaskDecoder``.
        image_embeddings: ``[1, C, h, w]`` image embedding (a batch of identical rows also works).
        image_positional_embeddings: ``[N, C, h, w]``.
        sparse_prompt_embeddings: ``[N, 1, T, C]`` prompt tokens.
        dense_prompt_embeddings: ``[N, C, h, w]``.
        early_vit_features: ``[1, h, w, D]`` output of the encoder's first global-attention block.
        multimask_output: the 3 multimask outputs instead of the single-mask one.
        hq_token_only: the HQ mask alone (repeated over the K outputs) instead of SAM's + HQ.

    Returns:
        ``(low_res_logits [N, K, 4h, 4w], iou [N, K])``, ``K = 3`` for multimask, else 1.
    """
    act = decoder.activation
    n = sparse_prompt_embeddings.shape[0]
    image = image_embeddings[:1]
    # HQ features: the image embedding and the early ViT feature, each upsampled 4x, summed.
    encoded = decoder.encoder_conv2(act(decoder.encoder_norm(decoder.encoder_conv1(image))))
    vit = early_vit_features.permute(0, 3, 1, 2)
    compressed = decoder.compress_vit_conv2(act(decoder.compress_vit_norm(decoder.compress_vit_conv1(vit))))
    hq_features = encoded + compressed
    # Two-way transformer over [iou, SAM mask tokens, HQ token, prompt tokens] and the image.
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight, decoder.hq_token.weight], dim=0)
    tokens = torch.cat([out_tokens.expand(n, 1, -1, -1), sparse_prompt_embeddings.to(out_tokens.dtype)], dim=2)
    src = image.expand(n, -1, -1, -1) + dense_prompt_embeddings
    _, c, h, w = src.shape
    queries, keys = decoder.transformer(
        point_embeddings=tokens,
        image_embeddings=src,
        image_positional_embeddings=image_positional_embeddings,
        attention_similarity=None,
    )
    num_sam_tokens = decoder.mask_tokens.weight.shape[0]
    iou_token = queries[:, 0, 0]
    mask_tokens = queries[:, 0, 1 : 2 + num_sam_tokens]
    src = keys[:, 0].transpose(1, 2).reshape(n, c, h, w)
    upscaled = act(decoder.upscale_conv2(act(decoder.upscale_layer_norm(decoder.upscale_conv1(src)))))
    upscaled_hq = decoder.mask_conv2(act(decoder.mask_norm(decoder.mask_conv1(upscaled)))) + hq_features
    hyper = [decoder.output_hypernetworks_mlps[i](mask_tokens[:, i]) for i in range(num_sam_tokens)]
    hyper.append(decoder.hq_mask_mlp(mask_tokens[:, num_sam_tokens]))
    hyper_in = torch.stack(hyper, dim=1)  # [N, num_sam_tokens + 1, C/8]
    up_c, up_h, up_w = upscaled.shape[1:]
    masks_sam = (hyper_in[:, :num_sam_tokens] @ upscaled.reshape(n, up_c, up_h * up_w)).reshape(n, -1, up_h, up_w)
    masks_hq = (hyper_in[:, num_sam_tokens:] @ upscaled_hq.reshape(n, up_c, up_h * up_w)).reshape(n, 1, up_h, up_w)
    iou = decoder.iou_prediction_head(iou_token)
    chosen = slice(1, num_sam_tokens) if multimask_output else slice(0, 1)
    masks_sam, iou = masks_sam[:, chosen], iou[:, chosen]
    masks = masks_hq.expand_as(masks_sam) if hq_token_only else masks_sam + masks_hq
    return masks, iou
