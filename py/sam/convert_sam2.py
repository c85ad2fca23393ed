"""SAM 2 / 2.1 checkpoints in Meta's original layout turned into transformers ``Sam2Model`` weights.

Users keep SAM 2.1 as single files in ``models/sam2`` (``sam2.1_hiera_tiny.pt`` from Meta, or the
``.safetensors`` copies kijai's ComfyUI-segment-anything-2 downloads). Those hold Meta's
``SAM2Base`` state dict; this module reads it without Meta's ``sam2`` package:

* :func:`infer_sam2_arch` reads the architecture (:class:`Sam2Arch`) from tensor shapes only;
* :func:`hf_sam2_config_from_arch` builds the matching transformers ``Sam2Config``;
* :func:`original_to_hf_sam2_state_dict` renames the tensors (and its inverse
  :func:`hf_to_original_sam2_state_dict`, used to write test files in the original layout);
* :func:`hf_sam2_model_from_original` does all of it and loads strictly.

Only the **image** predictor is built. The video-tracking weights (memory attention, memory encoder,
object pointers, temporal encodings; see :data:`VIDEO_ONLY_PREFIXES`) are skipped *by name*: any
other key that does not fit the model is an error, so real weights are never silently dropped.

Key mapping (original → transformers):

=================================================================  ==================================================
original (``SAM2Base``)                                            transformers (``Sam2Model``)
=================================================================  ==================================================
``image_encoder.trunk.``                                           ``vision_encoder.backbone.``
``…trunk.patch_embed.proj``                                        ``…backbone.patch_embed.projection``
``…blocks.N.norm1`` / ``norm2``                                    ``…blocks.N.layer_norm1`` / ``layer_norm2``
``image_encoder.neck.convs.N.conv``                                ``vision_encoder.neck.convs.N``
``sam_prompt_encoder.``                                            ``prompt_encoder.``
``…pe_layer.positional_encoding_gaussian_matrix``                  ``prompt_encoder.shared_embedding.positional_embedding``
                                                                   and ``shared_image_embedding.positional_embedding``
``…point_embeddings.0`` … ``3`` (each ``[1, C]``)                  ``prompt_encoder.point_embed.weight`` (``[4, C]``)
``…mask_downscaling.0/1/3/4/6``                                    ``…mask_embed.conv1/layer_norm1/conv2/layer_norm2/conv3``
``sam_mask_decoder.``                                              ``mask_decoder.``
``…output_upscaling.0/1/3``                                        ``…upscale_conv1/upscale_layer_norm/upscale_conv2``
attention ``out_proj``                                             ``o_proj``
``norm1`` … ``norm4``, ``norm_final_attn`` (decoder)               ``layer_norm1`` … ``layer_norm4``, ``layer_norm_final_attn``
MLP ``layers.0`` / ``layers.1..n-2`` / ``layers.n-1``              ``proj_in`` / ``layers.0..n-3`` / ``proj_out``
``no_mem_embed``                                                   ``no_memory_embedding``
=================================================================  ==================================================
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

from ..checkpoints import fit_problems
from ..errors import CheckpointError
from .meta_arch import _few

if TYPE_CHECKING:  # transformers is imported only when a model is built.
    from transformers import Sam2Config, Sam2Model

__all__ = [
    "Sam2Arch",
    "SAM2_ARCHS",
    "VIDEO_ONLY_PREFIXES",
    "is_sam2_state_dict",
    "infer_sam2_arch",
    "hf_sam2_config_from_arch",
    "original_to_hf_sam2_state_dict",
    "hf_to_original_sam2_state_dict",
    "hf_sam2_model_from_original",
]

log = logging.getLogger(__name__)

#: Prefixes (or exact names) of the video-tracking tensors of ``SAM2Base``. The image predictor does
#: not use them, so they are skipped on purpose; everything else must fit the model.
VIDEO_ONLY_PREFIXES: tuple[str, ...] = (
    "memory_attention.",
    "memory_encoder.",
    "mask_downsample.",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
)

_TRUNK = "image_encoder.trunk."
_GAUSSIAN = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_GAUSSIANS = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_POINT_EMBED = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")

_REQUIRED_KEYS = (
    _TRUNK + "patch_embed.proj.weight",
    _TRUNK + "pos_embed",
    _TRUNK + "pos_embed_window",
    _TRUNK + "blocks.0.attn.qkv.weight",
    "image_encoder.neck.convs.0.conv.weight",
    _GAUSSIAN,
    "sam_prompt_encoder.mask_downscaling.3.weight",
    "sam_mask_decoder.mask_tokens.weight",
    "sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight",
    "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
    "sam_mask_decoder.iou_prediction_head.layers.0.weight",
    "no_mem_embed",
)


@dataclass(frozen=True)
class Sam2Arch:
    """Hyper-parameters of a SAM 2 image model (Hiera trunk + FPN neck + SAM heads).

    Attributes read from tensor shapes: ``embed_dim``, ``stages``, ``dims`` (channels per stage),
    ``mlp_ratio``, ``pos_embed_size`` (background positional embedding), ``first_window``
    (``pos_embed_window`` side), ``fpn_dim``, ``mask_in_chans``, ``decoder_depth``,
    ``decoder_mlp_dim``, ``iou_head_depth``, ``iou_head_hidden_dim``, ``num_multimask_outputs``.

    Attributes tensors do not record (attention heads split projections; windows, global blocks
    and the input size leave no trace): ``heads`` (per stage), ``window_spec``,
    ``global_att_blocks``, ``image_size``, ``decoder_num_heads``. They come from the published
    variant with the same shapes (:data:`SAM2_ARCHS`), or from :func:`_generic_unrecorded`.
    """

    embed_dim: int
    stages: tuple[int, ...]
    dims: tuple[int, ...]
    heads: tuple[int, ...]
    window_spec: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    pos_embed_size: tuple[int, int]
    first_window: int
    mlp_ratio: float = 4.0
    image_size: int = 1024
    fpn_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    name: str = "custom"

    @property
    def shape_key(self) -> tuple[int, tuple[int, ...]]:
        """What identifies a published variant: trunk width and blocks per stage."""
        return self.embed_dim, self.stages


def _variant(name: str, embed_dim: int, stages: tuple[int, ...], heads0: int, window_spec: tuple[int, ...],
             global_att_blocks: tuple[int, ...], pos_embed_size: tuple[int, int]) -> Sam2Arch:
    dims = tuple(embed_dim * 2**i for i in range(len(stages)))
    heads = tuple(heads0 * 2**i for i in range(len(stages)))
    return Sam2Arch(embed_dim, stages, dims, heads, window_spec, global_att_blocks, pos_embed_size, window_spec[0], name=name)


#: Meta's published SAM 2 / 2.1 image models (the 2.1 files have the same shapes as 2.0).
SAM2_ARCHS: dict[str, Sam2Arch] = {
    a.name: a
    for a in (
        _variant("hiera_tiny", 96, (1, 2, 7, 2), 1, (8, 4, 14, 7), (5, 7, 9), (7, 7)),
        _variant("hiera_small", 96, (1, 2, 11, 2), 1, (8, 4, 14, 7), (7, 10, 13), (7, 7)),
        _variant("hiera_base_plus", 112, (2, 3, 16, 3), 2, (8, 4, 14, 7), (12, 16, 20), (14, 14)),
        _variant("hiera_large", 144, (2, 6, 36, 4), 2, (8, 4, 16, 8), (23, 33, 43), (7, 7)),
    )
}


def _generic_unrecorded(stages: tuple[int, ...]) -> dict[str, Any]:
    """Unrecorded settings for a trunk that is none of Meta's variants (documented fallback).

    Heads double per stage from 1, windows are Meta's default ``(8, 4, 14, 7)`` and the one global
    block is the last block of the third stage (every published variant has that one), at 1024 px.
    """
    ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
    stage = min(2, len(stages) - 1)
    return dict(
        heads=tuple(2**i for i in range(len(stages))),
        window_spec=(8, 4, 14, 7)[: len(stages)] + (7,) * max(0, len(stages) - 4),
        global_att_blocks=(ends[stage],),
        image_size=1024,
    )


def is_sam2_state_dict(keys: Iterable[str]) -> bool:
    """Whether tensor names look like an original-layout SAM 2 checkpoint (``image_encoder.trunk.*``)."""
    return any(k.startswith(_TRUNK) for k in keys)


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{source}: SAM 2 checkpoint has no {key!r}")
    shape = tuple(int(s) for s in sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: {key} should have {ndim} dimensions in a SAM 2 checkpoint, but has shape {shape}")
    return shape


def _count(keys: Iterable[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    if found and found != set(range(len(found))):
        raise CheckpointError(f"the {prefix}N indices should run 0..{len(found) - 1} without gaps, got {sorted(found)}")
    return len(found)


def infer_sam2_arch(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> Sam2Arch:
    """Read a SAM 2 architecture from the shapes of an original-layout state dict.

    The trunk width comes from ``patch_embed.proj.weight`` (``[C, 3, 7, 7]``), the stage boundaries
    from the blocks that carry a ``proj`` (the first block of every later stage changes width), the
    widths from ``norm2``, the FPN width from the neck convolutions, the decoder sizes from its
    layers. Settings tensors do not record are taken from the published variant with the same trunk
    (tiny, small, base+, large), else from a documented generic rule (logged as a warning).

    Raises:
        CheckpointError: required keys are missing (the message names the format the keys look like
            when it can tell) or the shapes are inconsistent.
    """
    keys = list(state_dict.keys())
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if missing:
        hint = ""
        if any(k.startswith("vision_encoder.backbone.") for k in keys):
            hint = " It looks like a transformers Sam2Model state dict: load its folder (config.json) instead."
        elif any(k.startswith("image_encoder.blocks.") for k in keys):
            hint = " It looks like a SAM / SAM-HQ (ViT) checkpoint, not SAM 2."
        raise CheckpointError(
            f"{source} is not a SAM 2 checkpoint in Meta's layout: missing {_few(missing)}.{hint} "
            f"It has {len(keys)} keys, e.g. {_few(keys, 3)}."
        )
    embed_dim = _shape(state_dict, _TRUNK + "patch_embed.proj.weight", 4, source)[0]
    try:
        depth = _count(keys, _TRUNK + "blocks.")
        decoder_depth = _count(keys, "sam_mask_decoder.transformer.layers.")
        iou_depth = _count(keys, "sam_mask_decoder.iou_prediction_head.layers.")
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    starts = [0] + [i for i in range(depth) if f"{_TRUNK}blocks.{i}.proj.weight" in state_dict]
    stages = tuple(b - a for a, b in zip(starts, starts[1:] + [depth]))
    dims = tuple(_shape(state_dict, f"{_TRUNK}blocks.{s}.norm2.weight", 1, source)[0] for s in starts)
    if dims[0] != embed_dim or any(b <= a for a, b in zip(dims, dims[1:])):
        raise CheckpointError(f"{source}: SAM 2 trunk widths per stage {dims} should start at {embed_dim} and grow")
    mlp_hidden = _shape(state_dict, f"{_TRUNK}blocks.0.mlp.layers.0.weight", 2, source)[0]
    _, _, ph, pw = _shape(state_dict, _TRUNK + "pos_embed", 4, source)
    first_window = _shape(state_dict, _TRUNK + "pos_embed_window", 4, source)[-1]
    neck = _count(keys, "image_encoder.neck.convs.")
    fpn_dim = _shape(state_dict, "image_encoder.neck.convs.0.conv.weight", 4, source)[0]
    neck_in = tuple(_shape(state_dict, f"image_encoder.neck.convs.{i}.conv.weight", 4, source)[1] for i in range(neck))
    if neck_in != dims[::-1]:
        raise CheckpointError(f"{source}: the FPN neck reads {neck_in} channels but the trunk stages give {dims[::-1]}")
    prompt_dim = _shape(state_dict, "sam_prompt_encoder.no_mask_embed.weight", 2, source)[1]
    if prompt_dim != fpn_dim:
        raise CheckpointError(f"{source}: prompt embeddings have {prompt_dim} channels, the image features {fpn_dim}")
    measured = dict(
        embed_dim=embed_dim,
        stages=stages,
        dims=dims,
        mlp_ratio=mlp_hidden / embed_dim,
        pos_embed_size=(ph, pw),
        first_window=first_window,
        fpn_dim=fpn_dim,
        mask_in_chans=_shape(state_dict, "sam_prompt_encoder.mask_downscaling.3.weight", 4, source)[0],
        decoder_depth=decoder_depth,
        decoder_mlp_dim=_shape(state_dict, "sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight", 2, source)[0],
        iou_head_depth=iou_depth,
        iou_head_hidden_dim=_shape(state_dict, "sam_mask_decoder.iou_prediction_head.layers.0.weight", 2, source)[0],
        num_multimask_outputs=_shape(state_dict, "sam_mask_decoder.mask_tokens.weight", 2, source)[0] - 1,
    )
    known = next((a for a in SAM2_ARCHS.values() if a.shape_key == (embed_dim, stages)), None)
    if known is not None:
        arch = replace(known, **measured)
        if (arch.pos_embed_size, arch.first_window) != (known.pos_embed_size, known.first_window):
            log.warning("%s: positional embedding sizes differ from Meta's %s", source, known.name)
    else:
        unrecorded = _generic_unrecorded(stages)
        log.warning(
            "%s: SAM 2 trunk (width %d, stages %s) is none of Meta's variants; assuming heads %s, windows %s, "
            "global attention in blocks %s and %d px input",
            source, embed_dim, stages, unrecorded["heads"], unrecorded["window_spec"],
            unrecorded["global_att_blocks"], unrecorded["image_size"],
        )  # fmt: skip
        arch = Sam2Arch(**measured, **unrecorded, name="custom")
    if arch.first_window != arch.window_spec[0]:
        raise CheckpointError(
            f"{source}: pos_embed_window is {arch.first_window}x{arch.first_window} but the first stage's window is "
            f"{arch.window_spec[0]}"
        )
    log.debug("%s: SAM 2 architecture %s: %s", source, arch.name, arch)
    return arch


def hf_sam2_config_from_arch(arch: Sam2Arch) -> "Sam2Config":
    """The transformers ``Sam2Config`` of ``arch`` (the image predictor's settings of SAM 2.1:
    high-resolution features, dynamic multimask via stability 0.05 / 0.98)."""
    from transformers import Sam2Config

    size = arch.image_size
    num_stages = len(arch.stages)
    backbone = dict(
        model_type="sam2_hiera_det_model",
        hidden_size=arch.embed_dim,
        num_attention_heads=arch.heads[0],
        image_size=[size, size],
        patch_kernel_size=[7, 7],
        patch_stride=[4, 4],
        patch_padding=[3, 3],
        query_stride=[2, 2],
        window_positional_embedding_background_size=list(arch.pos_embed_size),
        num_query_pool_stages=num_stages - 1,
        blocks_per_stage=list(arch.stages),
        embed_dim_per_stage=list(arch.dims),
        num_attention_heads_per_stage=list(arch.heads),
        window_size_per_stage=list(arch.window_spec),
        global_attention_blocks=list(arch.global_att_blocks),
        mlp_ratio=arch.mlp_ratio,
        layer_norm_eps=1e-6,
    )
    vision = dict(
        model_type="sam2_vision_model",
        backbone_config=backbone,
        backbone_channel_list=list(arch.dims[::-1]),
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]],
        fpn_hidden_size=arch.fpn_dim,
        fpn_top_down_levels=[2, 3],
        num_feature_levels=3,
    )
    prompt = dict(hidden_size=arch.fpn_dim, image_size=size, patch_size=16, mask_input_channels=arch.mask_in_chans)
    decoder = dict(
        hidden_size=arch.fpn_dim,
        mlp_dim=arch.decoder_mlp_dim,
        num_hidden_layers=arch.decoder_depth,
        num_attention_heads=arch.decoder_num_heads,
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


#: (original regex, transformers replacement), applied in order after the MLP renames.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.trunk\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^sam_mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^sam_mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.out_proj\.", ".o_proj."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"^no_mem_embed$", "no_memory_embedding"),
)
_COMPILED = tuple((re.compile(p), r) for p, r in _RENAMES)

#: Original MLPs (``MLP`` with ``layers.i``): trunk block MLPs, the decoder's two-way MLPs and heads.
_MLP_KEY = re.compile(
    r"^(image_encoder\.trunk\.blocks\.\d+\.mlp|sam_mask_decoder\.transformer\.layers\.\d+\.mlp|"
    r"sam_mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\.layers\.(\d+)\.(\w+)$"
)


def _is_video_only(key: str) -> bool:
    return any(key == p or key.startswith(p) for p in VIDEO_ONLY_PREFIXES)


def original_to_hf_sam2_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an original-layout SAM 2 state dict to transformers ``Sam2Model`` names.

    Returns:
        ``(tensors, skipped)``: the renamed tensors (shared, not copied, except the four point
        embeddings, which are stacked into one ``[4, C]`` matrix) and the names of the skipped
        video-only tensors (:data:`VIDEO_ONLY_PREFIXES`). Keys outside the known modules are *not*
        skipped: they come back under their own names so the strict load reports them.
    """
    depths: dict[str, int] = {}
    for key in state_dict:
        if m := _MLP_KEY.match(key):
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    converted: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    points: dict[int, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if _is_video_only(key):
            skipped.append(key)
            continue
        if key == _GAUSSIAN:
            for name in _HF_GAUSSIANS:
                converted[name] = tensor
            continue
        if m := _POINT_EMBED.match(key):
            points[int(m.group(1))] = tensor
            continue
        new = key
        if m := _MLP_KEY.match(key):
            head, index, leaf = m.group(1), int(m.group(2)), m.group(3)
            last = depths[head] - 1
            layer = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
            new = f"{head}.{layer}.{leaf}"
        for pattern, replacement in _COMPILED:
            new = pattern.sub(replacement, new)
        converted[new] = tensor
    if points:
        if sorted(points) != list(range(len(points))):
            raise CheckpointError(f"{source}: point_embeddings indices {sorted(points)} should run 0..{len(points) - 1}")
        converted["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return converted, skipped


#: transformers → original, for the names a plain substitution maps back.
_INVERSE: tuple[tuple[str, str], ...] = (
    (r"^vision_encoder\.backbone\.patch_embed\.projection\.", "image_encoder.trunk.patch_embed.proj."),
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "sam_prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "sam_prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "sam_prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "sam_prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "sam_prompt_encoder.mask_downscaling.6."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"^mask_decoder\.upscale_conv1\.", "sam_mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "sam_mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "sam_mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"\.o_proj\.", ".out_proj."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"^no_memory_embedding$", "no_mem_embed"),
)
_INVERSE_COMPILED = tuple((re.compile(p), r) for p, r in _INVERSE)
_HF_MLP_KEY = re.compile(
    r"^(vision_encoder\.backbone\.blocks\.\d+\.mlp|mask_decoder\.transformer\.layers\.\d+\.mlp|"
    r"mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\."
    r"(proj_in|proj_out|layers\.(\d+))\.(\w+)$"
)


def hf_to_original_sam2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_hf_sam2_state_dict` (without the video-only tensors).

    Used to write test checkpoints in Meta's layout from a transformers model. Tensors are cloned.
    """
    depths: dict[str, int] = {}
    for key in state_dict:
        if (m := _HF_MLP_KEY.match(key)) and m.group(3) is not None:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(3)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().clone().contiguous()
        if key == _HF_GAUSSIANS[1]:
            continue  # the same matrix as the prompt encoder's
        if key == _HF_GAUSSIANS[0]:
            out[_GAUSSIAN] = tensor
            continue
        if key == "prompt_encoder.point_embed.weight":
            for i in range(tensor.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = tensor[i : i + 1].clone()
            continue
        new = key
        if m := _HF_MLP_KEY.match(key):
            head, kind, leaf = m.group(1), m.group(2), m.group(4)
            hidden = depths.get(head, 0)
            index = 0 if kind == "proj_in" else hidden + 1 if kind == "proj_out" else int(m.group(3)) + 1
            new = f"{head}.layers.{index}.{leaf}"
        for pattern, replacement in _INVERSE_COMPILED:
            new = pattern.sub(replacement, new)
        out[new] = tensor
    return out


def hf_sam2_model_from_original(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> "Sam2Model":
    """A transformers ``Sam2Model`` (eval mode, CPU) holding an original-layout SAM 2 checkpoint.

    Infers the architecture (:func:`infer_sam2_arch`), builds the config, renames the tensors,
    skips the video-only ones by name (logged) and loads the rest strictly.

    Raises:
        CheckpointError: the tensors are not a SAM 2 checkpoint, or do not fit the model (the message
            lists missing / unexpected keys and shape mismatches).
    """
    from transformers import Sam2Model

    arch = infer_sam2_arch(state_dict, source)
    config = hf_sam2_config_from_arch(arch)
    tensors, skipped = original_to_hf_sam2_state_dict(state_dict, source)
    with torch.device("meta"):
        model = Sam2Model(config)
    expected = model.state_dict()
    problems = fit_problems(expected, tensors)
    if problems:
        raise CheckpointError(
            f"{source}: the SAM 2 weights do not fit the {arch.name} model inferred from them: {'; '.join(problems)}"
        )
    model.load_state_dict({k: v.clone() for k, v in tensors.items()}, strict=True, assign=True)
    if skipped:
        log.info("%s: skipped %d video-tracking tensors (memory attention/encoder, object pointers)", source, len(skipped))
    log.debug("%s: converted %d SAM 2 tensors to transformers Sam2Model (%s)", source, len(tensors), arch.name)
    return model.eval()
