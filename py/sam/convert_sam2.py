"""SAM 2 / 2.1 checkpoints in Meta's original layout turned into transformers ``Sam2Model`` weights.

Users keep SAM 2.1 as single files in ``models/sam2`` (``sam2.1_hiera_tiny.pt`` from Meta, or the
``.safetensors`` copies kijai's ComfyUI-segment-anything-2 downloads). Those hold Meta's
``SAM2Base`` state dict; this module reads it without Meta's ``sam2`` package:

* :func:`infer_sam2_arch` reads the architecture (:class:`Sam2Arch`) from tensor shapes only;
* :func:`hf_sam2_config_from_arch` builds the matching transformers ``Sam2Config``;
* :func:`original_to_hf_sam2_state_dict` renames the tensors (and its inverse
  :func:`hf_to_original_sam2_state_dict`, used to write test files in the original layout);
* :func:`hf_sam2_model_from_original` does all of it and loads strictly.

The **image** predictor (``Sam2Model``) skips the video-tracking weights (memory attention, memory
encoder, object pointers, temporal encodings; see :data:`VIDEO_ONLY_PREFIXES`) *by name*: any other
key that does not fit the model is an error, so real weights are never silently dropped.

The **video** model (transformers ``Sam2VideoModel``, used by :mod:`grounded_inpaint.video`) loads
every tensor, the video-tracking ones included: :func:`infer_sam2_video_settings` reads the memory
modules' sizes from their shapes, :func:`hf_sam2_video_config` builds the ``Sam2VideoConfig`` and
:func:`hf_sam2_video_model_from_original` loads strictly (no key missing, none left over, every
shape equal), so a file without its video weights is refused with the list of what is missing.

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

Video-tracking tensors (original → transformers ``Sam2VideoModel``):

=================================================================  ==================================================
``maskmem_tpos_enc`` / ``no_mem_pos_enc`` / ``no_obj_ptr``         ``memory_temporal_positional_encoding`` /
                                                                   ``no_memory_positional_encoding`` / ``no_object_pointer``
``no_obj_embed_spatial``                                           ``occlusion_spatial_embedding_parameter``
``obj_ptr_proj.layers.0/1/2``                                      ``object_pointer_proj.proj_in/layers.0/proj_out``
``obj_ptr_tpos_proj``                                              ``temporal_positional_encoding_projection_layer``
``memory_attention.layers.N.{self_attn,cross_attn_image}.*``       the same, ``out_proj`` → ``o_proj``
``memory_attention.layers.N.norm1..3`` / ``memory_attention.norm`` ``…layer_norm1..3`` / ``memory_attention.layer_norm``
``memory_encoder.mask_downsampler.encoder.{3i, 3i+1, last}``       ``…mask_downsampler.layers.i.conv / .layers.i.layer_norm / final_conv``
``memory_encoder.pix_feat_proj`` / ``memory_encoder.out_proj``     ``memory_encoder.feature_projection`` / ``memory_encoder.projection``
``memory_encoder.fuser.layers.N.dwconv/norm/pwconv1/pwconv2/gamma``  ``…memory_fuser.layers.N.depthwise_conv/layer_norm/pointwise_conv1/pointwise_conv2/scale``
``mask_downsample``                                                ``mask_downsample``
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
    from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel

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
    "has_sam2_video_weights",
    "infer_sam2_video_settings",
    "hf_sam2_video_config",
    "hf_sam2_video_model_from_original",
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


#: Video-tracking tensors, original → transformers ``Sam2VideoModel`` (applied in order, before the
#: shared renames; the object-pointer MLP and the mask down-sampler indices are handled apart).
_VIDEO_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.", r"memory_encoder.memory_fuser.layers.\1.depthwise_conv."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.norm\.", r"memory_encoder.memory_fuser.layers.\1.layer_norm."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.pwconv(\d)\.", r"memory_encoder.memory_fuser.layers.\1.pointwise_conv\2."),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.gamma$", r"memory_encoder.memory_fuser.layers.\1.scale"),
)
_VIDEO_COMPILED = tuple((re.compile(p), r) for p, r in _VIDEO_RENAMES)
_OBJ_PTR_MLP = re.compile(r"^obj_ptr_proj\.layers\.(\d+)\.(\w+)$")
_MASK_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(\w+)$")


def _video_key(key: str, obj_ptr_depth: int, downsampler_last: int) -> str:
    """The transformers ``Sam2VideoModel`` name of a video-tracking tensor (see the module table)."""
    if m := _OBJ_PTR_MLP.match(key):
        index, leaf = int(m.group(1)), m.group(2)
        layer = "proj_in" if index == 0 else "proj_out" if index == obj_ptr_depth - 1 else f"layers.{index - 1}"
        return f"object_pointer_proj.{layer}.{leaf}"
    if m := _MASK_DOWNSAMPLER.match(key):
        index, leaf = int(m.group(1)), m.group(2)
        # Meta's down-sampler is a Sequential of (conv, LayerNorm2d, GELU) per stage, then one 1x1 conv
        if index == downsampler_last:
            return f"memory_encoder.mask_downsampler.final_conv.{leaf}"
        part = "conv" if index % 3 == 0 else "layer_norm"
        return f"memory_encoder.mask_downsampler.layers.{index // 3}.{part}.{leaf}"
    for pattern, replacement in _VIDEO_COMPILED:
        key = pattern.sub(replacement, key)
    return key


def original_to_hf_sam2_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>", *, video: bool = False
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an original-layout SAM 2 state dict to transformers ``Sam2Model`` names
    (``video=True``: ``Sam2VideoModel`` names, the video-tracking tensors included).

    Returns:
        ``(tensors, skipped)``: the renamed tensors (shared, not copied, except the four point
        embeddings, which are stacked into one ``[4, C]`` matrix) and the names of the skipped
        video-only tensors (:data:`VIDEO_ONLY_PREFIXES`; none with ``video=True``). Keys outside the
        known modules are *not* skipped: they come back under their own names so the strict load
        reports them.
    """
    depths: dict[str, int] = {}
    for key in state_dict:
        if m := _MLP_KEY.match(key):
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    obj_ptr_depth = 1 + max((int(m.group(1)) for k in state_dict if (m := _OBJ_PTR_MLP.match(k))), default=-1)
    downsampler_last = max((int(m.group(1)) for k in state_dict if (m := _MASK_DOWNSAMPLER.match(k))), default=-1)
    converted: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    points: dict[int, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if _is_video_only(key):
            if not video:
                skipped.append(key)
                continue
            key = _video_key(key, obj_ptr_depth, downsampler_last)
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


#: transformers ``Sam2VideoModel`` → original, for the video-tracking tensors (see :func:`_video_key`).
_VIDEO_INVERSE: tuple[tuple[str, str], ...] = (
    (r"^memory_temporal_positional_encoding$", "maskmem_tpos_enc"),
    (r"^no_memory_positional_encoding$", "no_mem_pos_enc"),
    (r"^no_object_pointer$", "no_obj_ptr"),
    (r"^occlusion_spatial_embedding_parameter$", "no_obj_embed_spatial"),
    (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
    (r"^memory_attention\.layer_norm\.", "memory_attention.norm."),
    (r"^memory_attention\.(layers\.\d+\.\w+)\.o_proj\.", r"memory_attention.\1.out_proj."),
    (r"^memory_attention\.(layers\.\d+)\.layer_norm(\d)\.", r"memory_attention.\1.norm\2."),
    (r"^memory_encoder\.feature_projection\.", "memory_encoder.pix_feat_proj."),
    (r"^memory_encoder\.projection\.", "memory_encoder.out_proj."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.depthwise_conv\.", r"memory_encoder.fuser.layers.\1.dwconv."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.layer_norm\.", r"memory_encoder.fuser.layers.\1.norm."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.pointwise_conv(\d)\.", r"memory_encoder.fuser.layers.\1.pwconv\2."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.scale$", r"memory_encoder.fuser.layers.\1.gamma"),
)
_VIDEO_INVERSE_COMPILED = tuple((re.compile(p), r) for p, r in _VIDEO_INVERSE)
_HF_VIDEO_PREFIXES = (
    "memory_attention.", "memory_encoder.", "mask_downsample.", "object_pointer_proj.",
    "temporal_positional_encoding_projection_layer.", "memory_temporal_positional_encoding",
    "no_memory_positional_encoding", "no_object_pointer", "occlusion_spatial_embedding_parameter",
)
_HF_OBJ_PTR_MLP = re.compile(r"^object_pointer_proj\.(proj_in|proj_out|layers\.(\d+))\.(\w+)$")
_HF_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|(final_conv))\.(\w+)$")


def _original_video_key(key: str, obj_ptr_hidden: int, downsampler_stages: int) -> str:
    """The original name of a transformers ``Sam2VideoModel`` video-tracking tensor."""
    if m := _HF_OBJ_PTR_MLP.match(key):
        kind, leaf = m.group(1), m.group(3)
        index = 0 if kind == "proj_in" else obj_ptr_hidden + 1 if kind == "proj_out" else int(m.group(2)) + 1
        return f"obj_ptr_proj.layers.{index}.{leaf}"
    if m := _HF_DOWNSAMPLER.match(key):
        leaf = m.group(4)
        if m.group(3):
            return f"memory_encoder.mask_downsampler.encoder.{3 * downsampler_stages}.{leaf}"
        return f"memory_encoder.mask_downsampler.encoder.{3 * int(m.group(1)) + (0 if m.group(2) == 'conv' else 1)}.{leaf}"
    for pattern, replacement in _VIDEO_INVERSE_COMPILED:
        key = pattern.sub(replacement, key)
    return key


def hf_to_original_sam2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_hf_sam2_state_dict`: a ``Sam2Model`` or ``Sam2VideoModel``
    state dict under Meta's names (a video model's tracking tensors included).

    Used to write test checkpoints in Meta's layout from a transformers model. Tensors are cloned.
    """
    depths: dict[str, int] = {}
    for key in state_dict:
        if (m := _HF_MLP_KEY.match(key)) and m.group(3) is not None:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(3)) + 1)
    obj_ptr_hidden = 1 + max((int(m.group(2)) for k in state_dict if (m := _HF_OBJ_PTR_MLP.match(k)) and m.group(2)), default=-1)
    downsampler_stages = 1 + max((int(m.group(1)) for k in state_dict if (m := _HF_DOWNSAMPLER.match(k)) and m.group(1)), default=-1)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().clone().contiguous()
        if any(key == p or key.startswith(p) for p in _HF_VIDEO_PREFIXES):
            out[_original_video_key(key, obj_ptr_hidden, downsampler_stages)] = tensor
            continue
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


# --------------------------------------------------------------------------------------------
# The video model (transformers Sam2VideoModel): image weights plus the video-tracking tensors
# --------------------------------------------------------------------------------------------

#: Video-tracking tensors every SAM 2.1 video model has (the memory modules' sizes are read from them).
_VIDEO_REQUIRED = (
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "mask_downsample.weight",
    "obj_ptr_proj.layers.0.weight",
    "memory_attention.norm.weight",
    "memory_attention.layers.0.linear1.weight",
    "memory_attention.layers.0.cross_attn_image.k_proj.weight",
    "memory_encoder.pix_feat_proj.weight",
    "memory_encoder.out_proj.weight",
    "memory_encoder.mask_downsampler.encoder.0.weight",
    "memory_encoder.fuser.layers.0.dwconv.weight",
    "memory_encoder.fuser.layers.0.pwconv1.weight",
)

#: transformers' memory attention reads memories of this many channels (a constant in its code).
HF_MEMORY_CHANNELS = 64


def has_sam2_video_weights(keys: Iterable[str]) -> bool:
    """Whether an original-layout SAM 2 state dict carries the video-tracking tensors."""
    keys = set(keys)
    return all(k in keys for k in _VIDEO_REQUIRED)


def infer_sam2_video_settings(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> dict[str, Any]:
    """The ``Sam2VideoConfig`` settings of the memory modules, read from the video-tracking tensors.

    Returns:
        Keyword arguments for ``Sam2VideoConfig`` (``num_maskmem``, the memory attention's width,
        depth and feed-forward size, the memory encoder's widths, the mask down-sampler's stride and
        width, the fuser's depth, width and kernel, and whether object pointers get a temporal
        encoding and occluded frames a spatial embedding — SAM 2.1 files have both, SAM 2.0 files
        neither).

    Raises:
        CheckpointError: the video tensors are missing (the file holds the image model only: the
            message says so and names what is missing) or their shapes do not fit together.
    """
    missing = [k for k in _VIDEO_REQUIRED if k not in state_dict]
    if missing:
        raise CheckpointError(
            f"{source} has no SAM 2 video-tracking weights (missing {_few(missing)}): it holds the image model only, "
            "which cannot track through a video. Use Meta's full checkpoint (sam2.1_hiera_*.pt), kijai's "
            "sam2.1_hiera_*.safetensors or a facebook/sam2.1-hiera-* transformers folder"
        )
    keys = list(state_dict)
    try:
        attention_layers = _count(keys, "memory_attention.layers.")
        fuser_layers = _count(keys, "memory_encoder.fuser.layers.")
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    stages = sorted({int(m.group(1)) // 3 for k in keys if (m := _MASK_DOWNSAMPLER.match(k))})
    last = max(int(m.group(1)) for k in keys if (m := _MASK_DOWNSAMPLER.match(k)))
    if last % 3 != 0 or stages != list(range(last // 3 + 1)):
        raise CheckpointError(f"{source}: the memory encoder's mask down-sampler layers do not follow (conv, norm, act) x N, conv")
    num_stages = last // 3
    first = _shape(state_dict, "memory_encoder.mask_downsampler.encoder.0.weight", 4, source)
    stride_sq = first[0]  # 1 input channel -> stride**2 channels at the first stage
    stride = int(round(stride_sq ** 0.5))
    if stride * stride != stride_sq:
        raise CheckpointError(f"{source}: the mask down-sampler's first stage has {stride_sq} channels, not a square")
    hidden = _shape(state_dict, "memory_attention.norm.weight", 1, source)[0]
    mem_dim = _shape(state_dict, "memory_encoder.out_proj.weight", 4, source)[0]
    if mem_dim != HF_MEMORY_CHANNELS:
        raise CheckpointError(
            f"{source}: the memory encoder writes {mem_dim}-channel memories; transformers' SAM 2 video model "
            f"reads {HF_MEMORY_CHANNELS} (every published SAM 2 / 2.1 model has {HF_MEMORY_CHANNELS})"
        )
    encoder_hidden = _shape(state_dict, "memory_encoder.pix_feat_proj.weight", 4, source)[0]
    kernel = _shape(state_dict, "memory_encoder.fuser.layers.0.dwconv.weight", 4, source)[-1]
    settings = dict(
        num_maskmem=_shape(state_dict, "maskmem_tpos_enc", 4, source)[0],
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=attention_layers,
        memory_attention_feed_forward_hidden_size=_shape(state_dict, "memory_attention.layers.0.linear1.weight", 2, source)[0],
        memory_encoder_hidden_size=encoder_hidden,
        memory_encoder_output_channels=mem_dim,
        mask_downsampler_embed_dim=_shape(state_dict, f"memory_encoder.mask_downsampler.encoder.{last}.weight", 4, source)[0],
        mask_downsampler_kernel_size=first[-1],
        mask_downsampler_stride=stride,
        mask_downsampler_padding=first[-1] // 2,
        mask_downsampler_total_stride=stride**num_stages,
        memory_fuser_num_layers=fuser_layers,
        memory_fuser_embed_dim=_shape(state_dict, "memory_encoder.fuser.layers.0.dwconv.weight", 4, source)[0],
        memory_fuser_intermediate_dim=_shape(state_dict, "memory_encoder.fuser.layers.0.pwconv1.weight", 2, source)[0],
        memory_fuser_kernel_size=kernel,
        memory_fuser_padding=kernel // 2,
        enable_temporal_pos_encoding_for_object_pointers="obj_ptr_tpos_proj.weight" in state_dict,
        enable_occlusion_spatial_embedding="no_obj_embed_spatial" in state_dict,
    )
    fpn_dim = _shape(state_dict, "no_mem_embed", 3, source)[-1]
    if not (hidden == encoder_hidden == fpn_dim):
        raise CheckpointError(
            f"{source}: the memory attention ({hidden}), the memory encoder ({encoder_hidden}) and the image features "
            f"({fpn_dim}) should have the same width"
        )
    return settings


def hf_sam2_video_config(arch: Sam2Arch, video_settings: Mapping[str, Any]) -> "Sam2VideoConfig":
    """The transformers ``Sam2VideoConfig`` of ``arch`` plus the memory modules' ``video_settings``
    (:func:`infer_sam2_video_settings`); the tracking settings are SAM 2.1's (7 memories, 16 object
    pointers, multimask for tracking, mask memories scaled by 20 and shifted by -10)."""
    from transformers import Sam2VideoConfig

    image = hf_sam2_config_from_arch(arch)
    side = arch.image_size // 16
    return Sam2VideoConfig(
        vision_config=image.vision_config.to_dict(),
        prompt_encoder_config=image.prompt_encoder_config.to_dict(),
        mask_decoder_config=image.mask_decoder_config.to_dict(),
        image_size=arch.image_size,
        memory_attention_rope_feat_sizes=[side, side],
        **dict(video_settings),
    )


def hf_sam2_video_model_from_original(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> "Sam2VideoModel":
    """A transformers ``Sam2VideoModel`` (eval mode, CPU) holding every tensor of an original-layout
    SAM 2 / 2.1 checkpoint, the video-tracking ones included.

    Raises:
        CheckpointError: not a SAM 2 checkpoint, no video-tracking tensors (an image-only file), or
            tensors that do not fit the model exactly (missing / unexpected keys and shape
            mismatches are listed): nothing is skipped.
    """
    from transformers import Sam2VideoModel

    arch = infer_sam2_arch(state_dict, source)
    config = hf_sam2_video_config(arch, infer_sam2_video_settings(state_dict, source))
    tensors, skipped = original_to_hf_sam2_state_dict(state_dict, source, video=True)
    assert not skipped
    with torch.device("meta"):
        model = Sam2VideoModel(config)
    expected = model.state_dict()
    problems = fit_problems(expected, tensors)
    if problems:
        raise CheckpointError(
            f"{source}: the SAM 2 video weights do not fit the {arch.name} video model inferred from them: {'; '.join(problems)}"
        )
    model.load_state_dict({k: v.clone() for k, v in tensors.items()}, strict=True, assign=True)
    _restore_buffers(model, config)
    log.debug("%s: converted %d SAM 2 tensors to transformers Sam2VideoModel (%s)", source, len(tensors), arch.name)
    return model.eval()


def _restore_buffers(model: torch.nn.Module, config: Any) -> None:
    """Non-persistent buffers (the memory attention's rotary positions and frequencies) are in no
    state dict: a model built on the meta device gets them from a CPU copy of the module that owns them."""
    persistent = set(model.state_dict())
    owners = {name.rpartition(".")[0].split(".")[0] for name, _ in model.named_buffers() if name not in persistent}
    for owner_name in sorted(owners):
        owner = model.get_submodule(owner_name)
        with torch.device("cpu"):
            fresh = type(owner)(config)
        for name, buffer in fresh.named_buffers():
            if f"{owner_name}.{name}" in persistent:
                continue
            module_name, _, leaf = name.rpartition(".")
            target = owner.get_submodule(module_name) if module_name else owner
            target._buffers[leaf] = buffer.clone()
