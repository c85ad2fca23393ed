"""Tiny random-weight SAM-HQ and SAM 2.1 models, written in the layouts users have.

* :func:`write_tiny_sam_hq_original`: an official SysCV/sam-hq ``.pth`` state dict (Meta SAM names
  plus ``mask_decoder.hf_token`` / ``hf_mlp`` / ``compress_vit_feat`` / ``embedding_encoder`` /
  ``embedding_maskfeature``), with the tiny SAM's architecture (:data:`~.tiny_sam.TINY_SAM_ARCH`);
* :func:`write_tiny_sam_hq_hf`: a transformers ``SamHQModel`` folder holding the same weights
  (converted), so both layouts compute the same masks;
* :func:`write_tiny_sam2_original`: Meta's SAM 2.1 layout (``image_encoder.trunk.*``,
  ``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, plus a few video-only ``memory_*`` tensors the
  image predictor skips) as ``.safetensors`` (kijai's layout) or ``.pt`` (``{"model": ...}``);
* :func:`write_tiny_sam2_hf`: a transformers ``Sam2Model`` folder with the same weights.

The tiny SAM 2 trunk (width 8, stages 1-1-2-1) is none of Meta's variants, so the shape-based
loader uses its documented generic settings for what tensors do not record (heads 1-2-4-8, windows
8-4-14-7, the last block of stage 3 global, **1024 px input**); :data:`TINY_SAM2_ARCH` matches them.
The tiny HF folder records its input size in ``config.json`` and uses 64 px (fast).
Everything is deterministic given ``seed`` and leaves the global RNG untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..sam.convert_hq import hf_sam_hq_model_from_original
from ..sam.convert_sam2 import Sam2Arch, hf_sam2_config_from_arch, hf_to_original_sam2_state_dict
from .tiny_sam import TINY_SAM_ARCH, build_tiny_meta_sam

if TYPE_CHECKING:
    from transformers import Sam2Model, SamHQModel

__all__ = [
    "TINY_SAM2_ARCH",
    "tiny_sam_hq_state_dict",
    "write_tiny_sam_hq_original",
    "build_tiny_sam_hq_hf",
    "write_tiny_sam_hq_hf",
    "build_tiny_sam2_hf",
    "tiny_sam2_original_state_dict",
    "write_tiny_sam2_original",
    "write_tiny_sam2_hf",
]

log = logging.getLogger(__name__)

_PERTURBATION = 0.1

#: The tiny SAM 2: Hiera width 8 (stages 1-1-2-1, widths 8-16-32-64), FPN and decoder width 16,
#: decoder MLP 32, IoU head 16, 1024 px input (a 64x64 image embedding, 256x256 low-res masks).
TINY_SAM2_ARCH = Sam2Arch(
    embed_dim=8,
    stages=(1, 1, 2, 1),
    dims=(8, 16, 32, 64),
    heads=(1, 2, 4, 8),
    window_spec=(8, 4, 14, 7),
    global_att_blocks=(3,),
    pos_embed_size=(7, 7),
    first_window=8,
    mlp_ratio=4.0,
    image_size=1024,
    fpn_dim=16,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=32,
    decoder_num_heads=8,
    iou_head_depth=3,
    iou_head_hidden_dim=16,
    num_multimask_outputs=3,
    name="custom",
)


def _perturb(tensors, seed: int) -> None:
    """Add seeded noise to every tensor so each one matters (inits leave many at 0 or 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in tensors:
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * _PERTURBATION)


# --------------------------------------------------------------------------------------------
# SAM-HQ
# --------------------------------------------------------------------------------------------


def tiny_sam_hq_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """An official-layout SAM-HQ state dict: the tiny Meta SAM plus seeded HQ decoder tensors.

    Shapes follow SysCV's ``MaskDecoderHQ`` for ``transformer_dim`` C = 16 and ``vit_dim`` 16:
    ``hf_token [1, C]``, ``hf_mlp`` 3 linear layers C→C→C→C/8, ``compress_vit_feat`` ConvT(vit, C) /
    LayerNorm2d(C) / ConvT(C, C/8), ``embedding_encoder`` ConvT(C, C/4) / LN(C/4) / ConvT(C/4, C/8),
    ``embedding_maskfeature`` Conv3x3(C/8, C/4) / LN(C/4) / Conv3x3(C/4, C/8).
    """
    sd = {k: v.detach().clone() for k, v in build_tiny_meta_sam(seed).state_dict().items()}
    c, vit = TINY_SAM_ARCH.out_chans, TINY_SAM_ARCH.encoder_embed_dim
    shapes = {
        "mask_decoder.hf_token.weight": (1, c),
        "mask_decoder.hf_mlp.layers.0.weight": (c, c),
        "mask_decoder.hf_mlp.layers.0.bias": (c,),
        "mask_decoder.hf_mlp.layers.1.weight": (c, c),
        "mask_decoder.hf_mlp.layers.1.bias": (c,),
        "mask_decoder.hf_mlp.layers.2.weight": (c // 8, c),
        "mask_decoder.hf_mlp.layers.2.bias": (c // 8,),
        "mask_decoder.compress_vit_feat.0.weight": (vit, c, 2, 2),
        "mask_decoder.compress_vit_feat.0.bias": (c,),
        "mask_decoder.compress_vit_feat.1.weight": (c,),
        "mask_decoder.compress_vit_feat.1.bias": (c,),
        "mask_decoder.compress_vit_feat.3.weight": (c, c // 8, 2, 2),
        "mask_decoder.compress_vit_feat.3.bias": (c // 8,),
        "mask_decoder.embedding_encoder.0.weight": (c, c // 4, 2, 2),
        "mask_decoder.embedding_encoder.0.bias": (c // 4,),
        "mask_decoder.embedding_encoder.1.weight": (c // 4,),
        "mask_decoder.embedding_encoder.1.bias": (c // 4,),
        "mask_decoder.embedding_encoder.3.weight": (c // 4, c // 8, 2, 2),
        "mask_decoder.embedding_encoder.3.bias": (c // 8,),
        "mask_decoder.embedding_maskfeature.0.weight": (c // 4, c // 8, 3, 3),
        "mask_decoder.embedding_maskfeature.0.bias": (c // 4,),
        "mask_decoder.embedding_maskfeature.1.weight": (c // 4,),
        "mask_decoder.embedding_maskfeature.1.bias": (c // 4,),
        "mask_decoder.embedding_maskfeature.3.weight": (c // 8, c // 4, 3, 3),
        "mask_decoder.embedding_maskfeature.3.bias": (c // 8,),
    }
    generator = torch.Generator().manual_seed(seed + 17)
    for key, shape in shapes.items():
        value = torch.randn(shape, generator=generator) * 0.3
        if key.endswith(".1.weight"):  # LayerNorm2d gains around 1
            value += 1.0
        sd[key] = value
    sd["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    sd["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    return sd


def write_tiny_sam_hq_original(path: str | Path, seed: int = 0) -> Path:
    """Save :func:`tiny_sam_hq_state_dict` with ``torch.save`` (the ``sam_hq_vit_*.pth`` layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in tiny_sam_hq_state_dict(seed).items()}, path)
    log.debug("wrote tiny SAM-HQ .pth (seed %d) to %s", seed, path)
    return path


def build_tiny_sam_hq_hf(seed: int = 0) -> "SamHQModel":
    """The transformers ``SamHQModel`` holding :func:`tiny_sam_hq_state_dict` (eval, CPU, float32)."""
    return hf_sam_hq_model_from_original(tiny_sam_hq_state_dict(seed), source="tiny SAM-HQ")


def write_tiny_sam_hq_hf(folder: str | Path, seed: int = 0) -> Path:
    """Write a transformers SAM-HQ folder (``config.json``, ``model.safetensors``,
    ``preprocessor_config.json`` resizing to 64 px) with the weights of :func:`tiny_sam_hq_state_dict`."""
    from transformers import SamImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_sam_hq_hf(seed).save_pretrained(str(folder))
    side = TINY_SAM_ARCH.img_size
    mask_side = TINY_SAM_ARCH.image_embedding_size * 4
    SamImageProcessor(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    ).save_pretrained(str(folder))
    log.debug("wrote tiny transformers SAM-HQ (seed %d) to %s", seed, folder)
    return folder


# --------------------------------------------------------------------------------------------
# SAM 2.1
# --------------------------------------------------------------------------------------------


def build_tiny_sam2_hf(seed: int = 0, image_size: int = TINY_SAM2_ARCH.image_size) -> "Sam2Model":
    """A transformers ``Sam2Model`` of :data:`TINY_SAM2_ARCH`, every tensor seeded (eval, CPU, float32).

    ``image_size`` only changes the input resolution (no tensor depends on it): the original-layout
    files are read at 1024 px (nothing in them records the size), the tiny HF folder uses 64 px.
    """
    from dataclasses import replace

    from transformers import Sam2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2Model(hf_sam2_config_from_arch(replace(TINY_SAM2_ARCH, image_size=image_size)))
    _perturb(model.state_dict().values(), seed)
    # One positional matrix serves both the prompt encoder and the image-wide embedding.
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(model.prompt_encoder.shared_embedding.positional_embedding)
    return model.eval()


def _video_only_tensors(seed: int) -> dict[str, torch.Tensor]:
    """A few stand-ins for the video-tracking tensors real SAM 2.1 files carry (skipped on load)."""
    generator = torch.Generator().manual_seed(seed + 29)
    d = TINY_SAM2_ARCH.fpn_dim
    return {
        "maskmem_tpos_enc": torch.randn(7, 1, 1, 8, generator=generator),
        "no_mem_pos_enc": torch.randn(1, 1, d, generator=generator),
        "no_obj_ptr": torch.randn(1, d, generator=generator),
        "no_obj_embed_spatial": torch.randn(1, 8, generator=generator),
        "mask_downsample.weight": torch.randn(1, 1, 4, 4, generator=generator),
        "mask_downsample.bias": torch.randn(1, generator=generator),
        "memory_attention.norm.weight": torch.randn(d, generator=generator),
        "memory_attention.norm.bias": torch.randn(d, generator=generator),
        "memory_encoder.out_proj.weight": torch.randn(8, d, 1, 1, generator=generator),
        "memory_encoder.out_proj.bias": torch.randn(8, generator=generator),
        "obj_ptr_proj.layers.0.weight": torch.randn(d, d, generator=generator),
        "obj_ptr_proj.layers.0.bias": torch.randn(d, generator=generator),
        "obj_ptr_tpos_proj.weight": torch.randn(8, d, generator=generator),
        "obj_ptr_tpos_proj.bias": torch.randn(8, generator=generator),
    }


def tiny_sam2_original_state_dict(seed: int = 0, video_tensors: bool = True) -> dict[str, torch.Tensor]:
    """:func:`build_tiny_sam2_hf`'s weights under Meta's SAM 2.1 names (plus video-only stand-ins)."""
    sd = hf_to_original_sam2_state_dict(build_tiny_sam2_hf(seed).state_dict())
    if video_tensors:
        sd.update(_video_only_tensors(seed))
    return sd


def write_tiny_sam2_original(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny SAM 2.1 in Meta's layout: ``.safetensors`` (flat, kijai's files) or
    ``.pt`` / ``.pth`` (``{"model": state_dict}``, Meta's files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in tiny_sam2_original_state_dict(seed).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"model": sd}, path)
    log.debug("wrote tiny SAM 2.1 (original layout, seed %d) to %s", seed, path)
    return path


def write_tiny_sam2_hf(folder: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """Write a transformers SAM 2.1 folder (``config.json``, ``model.safetensors``,
    ``preprocessor_config.json``) with the weights of :func:`build_tiny_sam2_hf`, at ``image_size``
    px (64 by default, for speed; with 1024 it computes the same masks as
    :func:`write_tiny_sam2_original`)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_sam2_hf(seed, image_size).save_pretrained(str(folder))
    # What Sam2ImageProcessor reads; written by hand because the processor class needs torchvision.
    size = image_size
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Sam2ImageProcessorFast",
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
                "size": {"height": size, "width": size},
                "mask_size": {"height": size // 4, "width": size // 4},
                "do_resize": True,
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
            },
            indent=2,
        )
    )
    log.debug("wrote tiny transformers SAM 2.1 (seed %d) to %s", seed, folder)
    return folder
