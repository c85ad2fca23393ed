"""Meta ``segment_anything`` SAM checkpoints turned into transformers ``SamModel`` weights.

A Meta ``.pth`` holds the same tensors as a transformers ``SamModel``; only names differ:

==========================================================  ===========================================
Meta                                                        transformers
==========================================================  ===========================================
``image_encoder.``                                          ``vision_encoder.``
``image_encoder.patch_embed.proj``                          ``vision_encoder.patch_embed.projection``
``image_encoder.blocks.N``                                  ``vision_encoder.layers.N``
``norm1`` … ``norm4`` (encoder and decoder blocks)          ``layer_norm1`` … ``layer_norm4``
``image_encoder.neck.0/1/2/3``                              ``neck.conv1/layer_norm1/conv2/layer_norm2``
``prompt_encoder.pe_layer.positional_encoding_gaussian…``   ``prompt_encoder.shared_embedding.positional_embedding``
                                                            and ``shared_image_embedding.positional_embedding``
``prompt_encoder.point_embeddings.N``                       ``prompt_encoder.point_embed.N``
``prompt_encoder.mask_downscaling.0/1/3/4/6``               ``prompt_encoder.mask_embed.conv1/layer_norm1/conv2/layer_norm2/conv3``
``mask_decoder.output_upscaling.0/1/3``                     ``mask_decoder.upscale_conv1/upscale_layer_norm/upscale_conv2``
``mask_decoder.transformer.norm_final_attn``                ``mask_decoder.transformer.layer_norm_final_attn``
MLP ``layers.0`` / ``layers.1..n-2`` / ``layers.n-1``       ``proj_in`` / ``layers.0..n-3`` / ``proj_out``
``pixel_mean``, ``pixel_std``                               dropped (the image processor normalises)
==========================================================  ===========================================

Inputs for ``SamModel.forward(image_embeddings=...)`` are in the same frame as Meta's prompts: pixel
coordinates of the resized (longest side ``img_size``), not yet padded image.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Mapping

import torch

from ..errors import CheckpointError
from .meta_arch import MetaSamArch, _few, infer_meta_sam_arch

if TYPE_CHECKING:  # transformers is imported only when a model is converted.
    from transformers import SamConfig, SamModel

__all__ = ["hf_sam_config_from_meta", "meta_to_hf_sam_state_dict", "hf_sam_model_from_meta"]

log = logging.getLogger(__name__)

#: Meta's LayerNorm eps: 1e-6 in the ViT and in every LayerNorm2d, PyTorch's default 1e-5 in the
#: mask decoder's two-way transformer (transformers' own SAM configs use 1e-6 there).
_ENCODER_EPS = 1e-6
_PROMPT_EPS = 1e-6
_DECODER_EPS = 1e-5

_DROPPED = ("pixel_mean", "pixel_std")
_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_GAUSSIANS = (
    "prompt_encoder.shared_embedding.positional_embedding",
    "shared_image_embedding.positional_embedding",
)

#: (pattern, replacement) applied in order to every key (after the MLP renames).
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^image_encoder\.", "vision_encoder."),
        (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
        (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
        (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
        (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
        (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
        (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
        (r"\.norm(\d)\.", r".layer_norm\1."),
        (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
        (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
        (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
        (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
        (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    )
)

#: Meta's ``MLP`` heads: ``<head>.layers.<i>.<weight|bias>``.
_MLP_KEY = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(\w+)$"
)


def hf_sam_config_from_meta(arch: MetaSamArch) -> "SamConfig":
    """The transformers ``SamConfig`` with the same architecture as a Meta SAM.

    Sizes that transformers derives from defaults meant for 256-channel models are set explicitly:
    the random-Fourier positional embedding has ``out_chans // 2`` features (``num_pos_feats``,
    default 128) and the ViT MLP width is given as ``mlp_dim``. LayerNorm eps values follow Meta
    (1e-5 in the two-way transformer, where transformers defaults to 1e-6).

    Raises:
        ValueError: the IoU head has a single layer, which transformers' ``SamFeedForward`` cannot
            represent.
    """
    from transformers import SamConfig

    if arch.iou_head_depth < 2:
        raise ValueError(
            f"transformers' SamModel needs an IoU head of at least 2 layers; this SAM has {arch.iou_head_depth}"
        )
    vision = dict(
        hidden_size=arch.encoder_embed_dim,
        output_channels=arch.out_chans,
        num_hidden_layers=arch.encoder_depth,
        num_attention_heads=arch.encoder_num_heads,
        image_size=arch.img_size,
        patch_size=arch.patch_size,
        mlp_dim=arch.encoder_mlp_dim,
        window_size=arch.window_size,
        global_attn_indexes=list(arch.encoder_global_attn_indexes),
        use_abs_pos=True,
        use_rel_pos=True,
        qkv_bias=True,
        num_pos_feats=arch.out_chans // 2,
        layer_norm_eps=_ENCODER_EPS,
    )
    prompt = dict(
        hidden_size=arch.out_chans,
        image_size=arch.img_size,
        patch_size=arch.patch_size,
        mask_input_channels=arch.mask_in_chans,
        layer_norm_eps=_PROMPT_EPS,
    )
    decoder = dict(
        hidden_size=arch.out_chans,
        num_hidden_layers=arch.decoder_depth,
        num_attention_heads=arch.decoder_num_heads,
        mlp_dim=arch.decoder_mlp_dim,
        attention_downsample_rate=2,
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
        layer_norm_eps=_DECODER_EPS,
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _mlp_depths(keys: list[str]) -> dict[str, int]:
    """Number of linear layers of each Meta MLP head, by head prefix."""
    depths: dict[str, int] = {}
    for key in keys:
        if m := _MLP_KEY.match(key):
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    return depths


def _rename(key: str, mlp_depths: Mapping[str, int]) -> str:
    """The transformers name of one Meta key (``pixel_mean`` etc. are handled by the caller)."""
    if m := _MLP_KEY.match(key):
        head, index, leaf = m.group(1), int(m.group(2)), m.group(3)
        last = mlp_depths[head] - 1
        layer = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
        return f"{head}.{layer}.{leaf}"
    for pattern, replacement in _RENAMES:
        key = pattern.sub(replacement, key)
    return key


def meta_to_hf_sam_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> dict[str, torch.Tensor]:
    """Rename a Meta SAM state dict to transformers ``SamModel`` names.

    The tensors themselves are shared, not copied (the positional Gaussian matrix appears under two
    names, as ``SamModel`` ties them). ``pixel_mean`` / ``pixel_std`` are dropped. The result loads
    into ``SamModel(hf_sam_config_from_meta(arch))`` with ``strict=True``.

    Args:
        state_dict: a Meta-format SAM state dict (``image_encoder.*``, ``prompt_encoder.*``,
            ``mask_decoder.*``).
        source: how to name the tensors in error messages.

    Raises:
        CheckpointError: some keys are outside the three Meta SAM modules, or the positional
            Gaussian matrix is missing.
    """
    keys = [k for k in state_dict if k not in _DROPPED]
    foreign = [k for k in keys if not k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder."))]
    if foreign or _GAUSSIAN not in state_dict:
        what = f"unexpected keys {_few(foreign)}" if foreign else f"no {_GAUSSIAN!r}"
        raise CheckpointError(
            f"{source} is not a Segment Anything (Meta format) state dict: {what}; expected only "
            "image_encoder.*, prompt_encoder.* and mask_decoder.* keys"
        )
    depths = _mlp_depths(keys)
    converted: dict[str, torch.Tensor] = {}
    for key in keys:
        if key == _GAUSSIAN:
            for name in _HF_GAUSSIANS:
                converted[name] = state_dict[key]
        else:
            converted[_rename(key, depths)] = state_dict[key]
    return converted


def hf_sam_model_from_meta(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> "SamModel":
    """A transformers ``SamModel`` (eval mode, CPU, float32 unless the tensors are not) holding a
    Meta SAM checkpoint's weights.

    Infers the architecture (:func:`~.meta_arch.infer_meta_sam_arch`), builds the config
    (:func:`hf_sam_config_from_meta`), renames the tensors (:func:`meta_to_hf_sam_state_dict`) and
    loads them strictly.

    Raises:
        CheckpointError: the tensors are not a Meta SAM checkpoint or do not fit the model.
    """
    from transformers import SamModel

    arch = infer_meta_sam_arch(state_dict, source)
    config = hf_sam_config_from_meta(arch)
    tensors = meta_to_hf_sam_state_dict(state_dict, source)
    with torch.device("meta"):
        model = SamModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source}: the converted Segment Anything weights do not fit transformers' SamModel: "
            f"missing {_few(missing)}; unexpected {_few(unexpected)}; shape mismatches {_few(mismatched)}"
        )
    model.load_state_dict({k: v.clone() for k, v in tensors.items()}, strict=True, assign=True)
    model.tie_weights()
    log.debug("%s: converted %d Meta SAM tensors to transformers SamModel", source, len(tensors))
    return model.eval()
