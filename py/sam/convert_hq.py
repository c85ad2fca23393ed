"""SAM-HQ checkpoints in the official layout (SysCV/sam-hq ``sam_hq_vit_*.pth``) → transformers ``SamHQModel``.

A SAM-HQ ``.pth`` is a Meta SAM state dict (same ``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*`` names, converted by :mod:`.convert`) plus the HQ decoder's own tensors, all
under ``mask_decoder.``:

=====================================================  ============================================
SysCV/sam-hq                                           transformers ``SamHQModel``
=====================================================  ============================================
``mask_decoder.hf_token``                              ``mask_decoder.hq_token``
``mask_decoder.hf_mlp.layers.0 / 1 / 2``               ``mask_decoder.hq_mask_mlp.proj_in / layers.0 / proj_out``
``mask_decoder.compress_vit_feat.0 / 1 / 3``           ``mask_decoder.compress_vit_conv1 / compress_vit_norm / compress_vit_conv2``
``mask_decoder.embedding_encoder.0 / 1 / 3``           ``mask_decoder.encoder_conv1 / encoder_norm / encoder_conv2``
``mask_decoder.embedding_maskfeature.0 / 1 / 3``       ``mask_decoder.mask_conv1 / mask_norm / mask_conv2``
=====================================================  ============================================

The ViT width the HQ decoder reads (``vit_dim``) is the input width of
``compress_vit_feat.0.weight`` (``[vit_dim, C, 2, 2]``); every other size comes from
:func:`~.meta_arch.infer_meta_sam_arch`. The load is strict: an HQ tensor that is missing or left
over is an error, so the HQ decoder is never silently replaced by random weights.

Light HQ-SAM (``sam_hq_vit_tiny.pth``, a TinyViT encoder) is not supported.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Mapping

import torch

from ..checkpoints import fit_problems
from ..errors import CheckpointError
from .meta_arch import MetaSamArch, _few, infer_meta_sam_arch

if TYPE_CHECKING:  # transformers is imported only when a model is built.
    from transformers import SamHQConfig, SamHQModel

__all__ = [
    "HQ_PREFIXES",
    "is_sam_hq_state_dict",
    "split_hq_state_dict",
    "infer_sam_hq_arch",
    "hf_sam_hq_config",
    "original_to_hf_sam_hq_state_dict",
    "hf_to_original_sam_hq_state_dict",
    "hf_sam_hq_model_from_original",
]

log = logging.getLogger(__name__)

#: Prefixes of the tensors SAM-HQ adds to a Meta SAM checkpoint.
HQ_PREFIXES: tuple[str, ...] = (
    "mask_decoder.hf_token.",
    "mask_decoder.hf_mlp.",
    "mask_decoder.compress_vit_feat.",
    "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.",
)

_HQ_RENAMES: tuple[tuple[str, str], ...] = (
    ("mask_decoder.hf_token.", "mask_decoder.hq_token."),
    ("mask_decoder.hf_mlp.layers.0.", "mask_decoder.hq_mask_mlp.proj_in."),
    ("mask_decoder.hf_mlp.layers.1.", "mask_decoder.hq_mask_mlp.layers.0."),
    ("mask_decoder.hf_mlp.layers.2.", "mask_decoder.hq_mask_mlp.proj_out."),
    ("mask_decoder.compress_vit_feat.0.", "mask_decoder.compress_vit_conv1."),
    ("mask_decoder.compress_vit_feat.1.", "mask_decoder.compress_vit_norm."),
    ("mask_decoder.compress_vit_feat.3.", "mask_decoder.compress_vit_conv2."),
    ("mask_decoder.embedding_encoder.0.", "mask_decoder.encoder_conv1."),
    ("mask_decoder.embedding_encoder.1.", "mask_decoder.encoder_norm."),
    ("mask_decoder.embedding_encoder.3.", "mask_decoder.encoder_conv2."),
    ("mask_decoder.embedding_maskfeature.0.", "mask_decoder.mask_conv1."),
    ("mask_decoder.embedding_maskfeature.1.", "mask_decoder.mask_norm."),
    ("mask_decoder.embedding_maskfeature.3.", "mask_decoder.mask_conv2."),
)
_VIT_DIM_KEY = "mask_decoder.compress_vit_feat.0.weight"
_TINY_VIT = re.compile(r"^image_encoder\.(layers|patch_embed\.seq)\.")


def is_sam_hq_state_dict(keys) -> bool:
    """Whether tensor names look like an official SAM-HQ checkpoint (they have ``mask_decoder.hf_token``)."""
    return any(k.startswith("mask_decoder.hf_token.") for k in keys)


def split_hq_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(meta_sam_part, hq_part)``: the tensors a Meta SAM has, and those SAM-HQ adds."""
    base, hq = {}, {}
    for key, tensor in state_dict.items():
        (hq if key.startswith(HQ_PREFIXES) else base)[key] = tensor
    return base, hq


def infer_sam_hq_arch(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> tuple[MetaSamArch, int]:
    """``(arch, vit_dim)`` of an official-layout SAM-HQ state dict, from tensor shapes only.

    Raises:
        CheckpointError: not a SAM-HQ checkpoint (no HQ tensors, a Light HQ-SAM TinyViT encoder, or
            the SAM part is not a Meta SAM), or ``vit_dim`` disagrees with the encoder width.
    """
    keys = list(state_dict)
    if any(_TINY_VIT.match(k) for k in keys):
        raise CheckpointError(
            f"{source} is a Light HQ-SAM checkpoint (TinyViT encoder, sam_hq_vit_tiny.pth), which is not supported; "
            "use sam_hq_vit_b.pth, sam_hq_vit_l.pth or sam_hq_vit_h.pth"
        )
    base, hq = split_hq_state_dict(state_dict)
    if not hq:
        raise CheckpointError(
            f"{source} is not a SAM-HQ checkpoint: it has none of the HQ decoder tensors "
            f"({', '.join(p + '*' for p in HQ_PREFIXES[:2])}, ...); load it as plain SAM instead"
        )
    arch = infer_meta_sam_arch(base, source)
    if _VIT_DIM_KEY not in hq or hq[_VIT_DIM_KEY].ndim != 4:
        raise CheckpointError(f"{source}: SAM-HQ checkpoint without a 4-d {_VIT_DIM_KEY!r}; the file is incomplete")
    vit_dim = int(hq[_VIT_DIM_KEY].shape[0])
    if vit_dim != arch.encoder_embed_dim:
        raise CheckpointError(
            f"{source}: the HQ decoder reads {vit_dim}-channel ViT features but the encoder is "
            f"{arch.encoder_embed_dim} wide; the file mixes two models"
        )
    return arch, vit_dim


def hf_sam_hq_config(arch: MetaSamArch, vit_dim: int) -> "SamHQConfig":
    """The transformers ``SamHQConfig`` of a SAM-HQ with SAM architecture ``arch`` (see
    :func:`~.convert.hf_sam_config_from_meta` for the SAM part) and HQ decoder input width ``vit_dim``."""
    from transformers import SamHQConfig

    from .convert import hf_sam_config_from_meta

    sam = hf_sam_config_from_meta(arch)
    decoder = sam.mask_decoder_config.to_dict()
    decoder["vit_dim"] = vit_dim
    return SamHQConfig(
        vision_config=_sub_dict(sam.vision_config),
        prompt_encoder_config=_sub_dict(sam.prompt_encoder_config),
        mask_decoder_config=_strip(decoder),
    )


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("model_type", "transformers_version", "architectures")}


def _sub_dict(config) -> dict:
    return _strip(config.to_dict())


def original_to_hf_sam_hq_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> dict[str, torch.Tensor]:
    """Rename an official SAM-HQ state dict to transformers ``SamHQModel`` names (tensors shared).

    Raises:
        CheckpointError: an HQ tensor has a name outside the known HQ modules.
    """
    from .convert import meta_to_hf_sam_state_dict

    base, hq = split_hq_state_dict(state_dict)
    converted = meta_to_hf_sam_state_dict(base, source)
    unknown = []
    for key, tensor in hq.items():
        for old, new in _HQ_RENAMES:
            if key.startswith(old):
                converted[new + key[len(old):]] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: unknown SAM-HQ decoder tensors {_few(unknown)}")
    return converted


def hf_to_original_sam_hq_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official SAM-HQ layout of a transformers ``SamHQModel`` state dict (tensors cloned).

    The SAM part is written with Meta's names (the inverse of :mod:`.convert`), the HQ part with
    SysCV's; ``pixel_mean`` / ``pixel_std`` are added as in the official files.
    """
    from .convert import _HF_GAUSSIANS as SAM_GAUSSIANS, _GAUSSIAN as SAM_GAUSSIAN

    inverse_hq = [(new, old) for old, new in _HQ_RENAMES]
    inverse_sam = (
        (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
        (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
        (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
        (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
        (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
        (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
        (r"^vision_encoder\.", "image_encoder."),
        (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
        (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
        (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
        (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
        (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
        (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
        (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
        (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
        (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
        (r"\.layer_norm(\d)\.", r".norm\1."),
        (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    )
    mlp = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|proj_out|layers\.(\d+))\.(\w+)$")
    depths: dict[str, int] = {}
    for key in state_dict:
        if (m := mlp.match(key)) and m.group(3) is not None:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(3)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().clone().contiguous()
        if key == SAM_GAUSSIANS[1]:
            continue
        if key == SAM_GAUSSIANS[0]:
            out[SAM_GAUSSIAN] = tensor
            continue
        hq_name = next((old + key[len(new):] for new, old in inverse_hq if key.startswith(new)), None)
        if hq_name is not None:
            out[hq_name] = tensor
            continue
        new_key = key
        if m := mlp.match(key):
            index = 0 if m.group(2) == "proj_in" else depths.get(m.group(1), 0) + 1 if m.group(2) == "proj_out" else int(m.group(3)) + 1
            new_key = f"{m.group(1)}.layers.{index}.{m.group(4)}"
        for pattern, replacement in inverse_sam:
            new_key = re.sub(pattern, replacement, new_key)
        out[new_key] = tensor
    out["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    out["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    return out


def hf_sam_hq_model_from_original(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> "SamHQModel":
    """A transformers ``SamHQModel`` (eval mode, CPU) holding an official SAM-HQ checkpoint, loaded strictly.

    Raises:
        CheckpointError: not a SAM-HQ checkpoint, or tensors missing / left over / of the wrong shape.
    """
    from transformers import SamHQModel

    arch, vit_dim = infer_sam_hq_arch(state_dict, source)
    config = hf_sam_hq_config(arch, vit_dim)
    tensors = original_to_hf_sam_hq_state_dict(state_dict, source)
    with torch.device("meta"):
        model = SamHQModel(config)
    expected = model.state_dict()
    problems = fit_problems(expected, tensors)
    if problems:
        raise CheckpointError(
            f"{source}: the SAM-HQ weights do not fit transformers' SamHQModel: {'; '.join(problems)}"
        )
    model.load_state_dict({k: v.clone() for k, v in tensors.items()}, strict=True, assign=True)
    model.tie_weights()
    log.debug("%s: converted %d SAM-HQ tensors to transformers SamHQModel (%s)", source, len(tensors), arch.name)
    return model.eval()
