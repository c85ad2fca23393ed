"""Tiny random-weight SAM 2.1 **video** models (image weights + memory modules), in every layout users have.

* :func:`build_tiny_sam2_video_hf`: a transformers ``Sam2VideoModel`` of :data:`TINY_SAM2_VIDEO_ARCH`
  and :data:`TINY_SAM2_VIDEO_SETTINGS`, every tensor seeded;
* :func:`write_tiny_sam2_video_original`: the same weights under Meta's names (``image_encoder.trunk.*``,
  ``memory_attention.*``, ``memory_encoder.*``, ``obj_ptr_proj.*``, ``maskmem_tpos_enc``, …) as
  ``.pt`` (``{"model": ...}``, Meta's files) or ``.safetensors`` (flat, kijai's files);
* :func:`write_tiny_sam2_video_hf`: a transformers folder (``config.json`` with ``model_type``
  ``sam2_video``, as facebook/sam2.1-hiera-* have it) at 64 px.

The image side is the tiny SAM 2 of :mod:`.tiny_sam_extra` (Hiera width 8, stages 1-1-2-1) but with
128-channel features: transformers' memory attention reads 64-channel memories and splits each object
pointer into feature-width / 64 tokens; its code handles that split only for features wider than
64 (real models have 256), so 128 is the narrowest that runs the same code path. Original-layout
files record no input size and are read at 1024 px (as the real ones); the transformers folder says
64 px in its config (fast: a 4x4 feature map). Everything is deterministic given ``seed`` and leaves
the global RNG untouched.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..sam.convert_sam2 import Sam2Arch, hf_sam2_video_config, hf_to_original_sam2_state_dict
from .tiny_sam_extra import TINY_SAM2_ARCH, _perturb

if TYPE_CHECKING:
    from transformers import Sam2VideoModel

__all__ = [
    "TINY_SAM2_VIDEO_ARCH",
    "TINY_SAM2_VIDEO_SETTINGS",
    "build_tiny_sam2_video_hf",
    "tiny_sam2_video_original_state_dict",
    "write_tiny_sam2_video_original",
    "write_tiny_sam2_video_hf",
]

log = logging.getLogger(__name__)

#: The tiny SAM 2 trunk with 128-channel features, decoder and prompt encoder (see the module doc).
TINY_SAM2_VIDEO_ARCH: Sam2Arch = replace(TINY_SAM2_ARCH, fpn_dim=128, decoder_mlp_dim=64, iou_head_hidden_dim=16)

#: The memory modules: 7 memories of 64 channels, 2 memory-attention layers of width 128 (feed-forward
#: 64), a 4-stage mask down-sampler (stride 2, total 16) and a 2-layer fuser of width 128.
TINY_SAM2_VIDEO_SETTINGS: dict[str, Any] = dict(
    num_maskmem=7,
    memory_attention_hidden_size=128,
    memory_attention_num_layers=2,
    memory_attention_feed_forward_hidden_size=64,
    memory_encoder_hidden_size=128,
    memory_encoder_output_channels=64,
    mask_downsampler_embed_dim=128,
    mask_downsampler_kernel_size=3,
    mask_downsampler_stride=2,
    mask_downsampler_padding=1,
    mask_downsampler_total_stride=16,
    memory_fuser_num_layers=2,
    memory_fuser_embed_dim=128,
    memory_fuser_intermediate_dim=64,
    memory_fuser_kernel_size=7,
    memory_fuser_padding=3,
    enable_temporal_pos_encoding_for_object_pointers=True,
    enable_occlusion_spatial_embedding=True,
)


def build_tiny_sam2_video_hf(seed: int = 0, image_size: int = TINY_SAM2_VIDEO_ARCH.image_size) -> "Sam2VideoModel":
    """A transformers ``Sam2VideoModel`` with every tensor seeded (eval, CPU, float32).

    ``image_size`` only changes the input resolution (no tensor depends on it).
    """
    from transformers import Sam2VideoModel

    config = hf_sam2_video_config(replace(TINY_SAM2_VIDEO_ARCH, image_size=image_size), TINY_SAM2_VIDEO_SETTINGS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(config)
    _perturb(model.state_dict().values(), seed)
    with torch.no_grad():  # one positional matrix serves the prompt encoder and the image-wide embedding
        model.shared_image_embedding.positional_embedding.copy_(model.prompt_encoder.shared_embedding.positional_embedding)
        # the SAM 2.1 decoder keeps the object only where its score is positive: lean towards "present"
        # so random weights still track something
        bias = model.mask_decoder.pred_obj_score_head.proj_out.bias
        bias.add_(4.0)
    return model.eval()


def tiny_sam2_video_original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`build_tiny_sam2_video_hf`'s weights under Meta's SAM 2.1 names (video tensors included)."""
    return hf_to_original_sam2_state_dict(build_tiny_sam2_video_hf(seed).state_dict())


def write_tiny_sam2_video_original(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny SAM 2.1 video model in Meta's layout: ``.safetensors`` (flat, kijai's files)
    or ``.pt`` / ``.pth`` (``{"model": state_dict}``, Meta's files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in tiny_sam2_video_original_state_dict(seed).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"model": sd}, path)
    log.debug("wrote tiny SAM 2.1 video model (original layout, seed %d) to %s", seed, path)
    return path


def write_tiny_sam2_video_hf(folder: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """Write a transformers SAM 2.1 video folder (``config.json`` with ``model_type`` ``sam2_video``,
    ``model.safetensors``, ``preprocessor_config.json``) at ``image_size`` px (64 by default; with 1024
    it computes what :func:`write_tiny_sam2_video_original` files compute)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_sam2_video_hf(seed, image_size).save_pretrained(str(folder))
    # What the image processor reads; written by hand because the processor classes need torchvision.
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Sam2ImageProcessorFast",
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
                "size": {"height": image_size, "width": image_size},
                "mask_size": {"height": image_size // 4, "width": image_size // 4},
                "do_resize": True,
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
            },
            indent=2,
        )
    )
    log.debug("wrote tiny transformers SAM 2.1 video model (seed %d) to %s", seed, folder)
    return folder
