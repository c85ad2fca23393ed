"""Meta's Segment Anything (``segment_anything`` package) models rebuilt from a bare state dict.

Meta's builders (``sam_model_registry``) hard-code a 1024 px input and 256-dim prompts and pick the
encoder size from the name the caller gives. A ``.pth`` file carries no such name, and users rename
files, so this module reads the architecture from the tensors themselves:

* :func:`infer_meta_sam_arch` turns a state dict into a :class:`MetaSamArch` using only tensor
  shapes and key counts (never the file name);
* :func:`build_meta_sam` constructs a ``segment_anything.modeling.Sam`` of that architecture (also
  on the ``meta`` device, which costs no memory);
* :func:`load_meta_sam_state_dict` loads the tensors strictly and explains any mismatch.

Every error is a :class:`~..errors.CheckpointError` that names the source and, when the tensors
look like another known format (transformers ``SamModel``, SAM-HQ, SAM 2, GroundingDINO), says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

from ..checkpoints import _few, fit_problems
from ..errors import CheckpointError

if TYPE_CHECKING:  # segment_anything is imported only when a model is built.
    from segment_anything.modeling import Sam

__all__ = [
    "META_SAM_ARCHS",
    "MetaSamArch",
    "infer_meta_sam_arch",
    "build_meta_sam",
    "load_meta_sam_state_dict",
]

log = logging.getLogger(__name__)

#: Buffers that some Meta-format files carry but ``Sam`` does not persist (they are constants).
_IGNORED_KEYS = ("pixel_mean", "pixel_std")

#: Keys every Meta SAM state dict has; the architecture is read from their shapes.
_REQUIRED_KEYS = (
    "image_encoder.patch_embed.proj.weight",
    "image_encoder.pos_embed",
    "image_encoder.blocks.0.attn.rel_pos_h",
    "image_encoder.blocks.0.mlp.lin1.weight",
    "image_encoder.neck.0.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "prompt_encoder.no_mask_embed.weight",
    "prompt_encoder.mask_downscaling.0.weight",
    "prompt_encoder.mask_downscaling.3.weight",
    "mask_decoder.mask_tokens.weight",
    "mask_decoder.transformer.layers.0.mlp.lin1.weight",
    "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
    "mask_decoder.iou_prediction_head.layers.0.weight",
)

#: (description, test on the set of keys) for formats that are *not* a Meta SAM checkpoint.
_OTHER_FORMATS: tuple[tuple[str, Any], ...] = (
    (
        "a SAM-HQ checkpoint (it has 'mask_decoder.hf_token'); load it as SAM-HQ, not as SAM",
        lambda keys: any(k.endswith("mask_decoder.hf_token.weight") or ".hf_token." in k for k in keys),
    ),
    (
        "a SAM 2 checkpoint (it has 'image_encoder.trunk.*' keys); load it as SAM 2",
        lambda keys: any(k.startswith("image_encoder.trunk.") for k in keys),
    ),
    (
        "a transformers SamModel checkpoint (keys start with 'vision_encoder.'); load its folder "
        "with transformers' SamModel.from_pretrained instead",
        lambda keys: any(k.startswith(("vision_encoder.", "sam.vision_encoder.")) for k in keys),
    ),
    (
        "a transformers GroundingDINO checkpoint (keys start with 'model.backbone.' / "
        "'model.text_backbone.'); that is a detector, not a segmenter",
        lambda keys: any(k.startswith(("model.backbone.", "model.text_backbone.")) for k in keys),
    ),
    (
        "an original GroundingDINO checkpoint (keys start with 'backbone.', 'transformer.' or "
        "'bert.'); that is a detector, not a segmenter",
        lambda keys: any(
            re.match(r"^(module\.)?(backbone|transformer|bert)\.", k) is not None for k in keys
        ),
    ),
)


@dataclass(frozen=True)
class MetaSamArch:
    """The hyper-parameters of a Meta ``segment_anything`` SAM model.

    The defaults are those Meta's builders hard-code; only the four encoder fields differ between
    the published ViT-B, ViT-L and ViT-H models (see :data:`META_SAM_ARCHS`).

    Attributes:
        encoder_embed_dim: width of the ViT image encoder.
        encoder_depth: number of ViT blocks.
        encoder_num_heads: attention heads per ViT block.
        encoder_global_attn_indexes: the blocks that attend globally (the others use windows).
        window_size: side of the attention window of the windowed blocks, in patches (0 when every
            block is global).
        patch_size: side of a patch in pixels.
        img_size: side of the square (padded) encoder input in pixels.
        mlp_ratio: ViT MLP width divided by ``encoder_embed_dim``.
        out_chans: channels of the image embedding; also the prompt and mask-decoder width.
        mask_in_chans: hidden channels of the mask-prompt downscaling convolutions.
        decoder_depth: number of two-way attention blocks in the mask decoder.
        decoder_mlp_dim: MLP width of those blocks.
        decoder_num_heads: attention heads in the mask decoder. Meta's builder hard-codes 8 and the
            tensors do not record it (heads only split the projections), so inference always gives 8.
        iou_head_depth: layers of the IoU prediction MLP.
        iou_head_hidden_dim: hidden width of the IoU prediction MLP.
        num_multimask_outputs: masks predicted in multimask mode (one more mask token exists).
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    img_size: int = 1024
    mlp_ratio: float = 4.0
    out_chans: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    def __post_init__(self) -> None:
        indexes = tuple(sorted(int(i) for i in self.encoder_global_attn_indexes))
        object.__setattr__(self, "encoder_global_attn_indexes", indexes)
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))

    @property
    def image_embedding_size(self) -> int:
        """Side of the image embedding grid (``img_size // patch_size``), e.g. 64 for 1024 / 16."""
        return self.img_size // self.patch_size

    @property
    def encoder_mlp_dim(self) -> int:
        """Width of the ViT MLP hidden layer (``encoder_embed_dim * mlp_ratio``)."""
        return int(round(self.encoder_embed_dim * self.mlp_ratio))

    @property
    def name(self) -> str:
        """``"vit_b"``, ``"vit_l"`` or ``"vit_h"`` for Meta's published models, else ``"custom"``."""
        for name, arch in META_SAM_ARCHS.items():
            if arch == self:
                return name
        return "custom"


#: Meta's three published SAM configurations (``build_sam_vit_b/l/h``).
META_SAM_ARCHS: dict[str, MetaSamArch] = {
    "vit_b": MetaSamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": MetaSamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": MetaSamArch(1280, 32, 16, (7, 15, 23, 31)),
}


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------


def _other_format(keys: Iterable[str]) -> str | None:
    """Describe the known non-Meta-SAM format ``keys`` look like, or ``None``."""
    keys = list(keys)
    for description, matches in _OTHER_FORMATS:
        if matches(keys):
            return description
    return None


def _not_meta_sam(source: str, state_dict: Mapping[str, Any], missing: list[str]) -> CheckpointError:
    """The error for tensors that are not a Meta-format SAM checkpoint."""
    keys = list(state_dict.keys())
    message = f"{source} is not a Segment Anything (Meta format) checkpoint"
    hint = _other_format(keys)
    if hint:
        message += f": it looks like {hint}"
    if missing:
        message += f". Missing keys: {_few(missing)}"
    message += f". It has {len(keys)} keys" + (f", e.g. {_few(keys, 3)}" if keys else "")
    return CheckpointError(message + ".")


def _check_tensors(state_dict: Any, source: str) -> None:
    """Raise unless ``state_dict`` maps strings to tensors (catches ``{"model": {...}}`` wrappers)."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{source} is not a Segment Anything (Meta format) checkpoint: expected a state dict "
            f"(a mapping of names to tensors), got {type(state_dict).__name__}"
        )
    nested = [k for k, v in state_dict.items() if isinstance(v, Mapping)]
    if nested:
        raise CheckpointError(
            f"{source} is not a plain Segment Anything (Meta format) state dict: the tensors are "
            f"nested under {_few(nested)}; pass that inner dict instead"
        )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    """Shape of ``state_dict[key]``, checked to have ``ndim`` dimensions."""
    shape = tuple(int(s) for s in state_dict[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(
            f"{source}: {key} should have {ndim} dimensions in a Segment Anything (Meta format) "
            f"checkpoint, but has shape {shape}"
        )
    return shape


def _indices(keys: Iterable[str], prefix: str, source: str) -> list[int]:
    """The sorted indices ``i`` of keys ``prefix + "{i}." + ...``, checked to be ``0..n-1``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})
    if found != list(range(len(found))):
        raise CheckpointError(
            f"{source}: the {prefix}N indices should run 0..{len(found) - 1} without gaps, got {found}"
        )
    return found


def _infer_encoder(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """Encoder fields of :class:`MetaSamArch` from the ``image_encoder.*`` tensors."""
    dim, in_chans, patch, patch_w = _shape(sd, "image_encoder.patch_embed.proj.weight", 4, source)
    if patch != patch_w:
        raise CheckpointError(f"{source}: expected square patches, got {patch}x{patch_w}")
    _, grid_h, grid_w, pos_dim = _shape(sd, "image_encoder.pos_embed", 4, source)
    if grid_h != grid_w or pos_dim != dim:
        raise CheckpointError(
            f"{source}: image_encoder.pos_embed should be [1, S, S, {dim}], got {(1, grid_h, grid_w, pos_dim)}"
        )
    blocks = _indices(sd.keys(), "image_encoder.blocks.", source)
    global_indexes, windows, head_dims = [], set(), set()
    for i in blocks:
        key = f"image_encoder.blocks.{i}.attn.rel_pos_h"
        if key not in sd:
            raise CheckpointError(
                f"{source}: block {i} has no {key}; this loader needs relative position tensors "
                "(all Meta SAM checkpoints have them)"
            )
        length, head_dim = _shape(sd, key, 2, source)
        head_dims.add(head_dim)
        if length == 2 * grid_h - 1:
            global_indexes.append(i)
        else:
            windows.add((length + 1) // 2)
    if len(head_dims) != 1 or dim % next(iter(head_dims)):
        raise CheckpointError(
            f"{source}: attention head sizes {sorted(head_dims)} (from rel_pos_h) do not divide "
            f"the encoder width {dim}"
        )
    if len(windows) > 1:
        raise CheckpointError(f"{source}: windowed blocks disagree on the window size: {sorted(windows)}")
    mlp_dim, _ = _shape(sd, "image_encoder.blocks.0.mlp.lin1.weight", 2, source)
    out_chans = _shape(sd, "image_encoder.neck.0.weight", 4, source)[0]
    return dict(
        encoder_embed_dim=dim,
        encoder_depth=len(blocks),
        encoder_num_heads=dim // next(iter(head_dims)),
        encoder_global_attn_indexes=tuple(global_indexes),
        window_size=windows.pop() if windows else 0,
        patch_size=patch,
        img_size=grid_h * patch,
        mlp_ratio=mlp_dim / dim,
        out_chans=out_chans,
    )


def _infer_prompt_encoder(sd: Mapping[str, torch.Tensor], out_chans: int, source: str) -> dict[str, Any]:
    """Prompt-encoder fields of :class:`MetaSamArch`, checked against the image embedding width."""
    prompt_dim = _shape(sd, "prompt_encoder.no_mask_embed.weight", 2, source)[1]
    if prompt_dim != out_chans:
        raise CheckpointError(
            f"{source}: the prompt embeddings have {prompt_dim} channels but the image embedding has "
            f"{out_chans}; SAM needs them equal"
        )
    gaussian = _shape(sd, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2, source)
    if gaussian != (2, prompt_dim // 2):
        raise CheckpointError(
            f"{source}: positional_encoding_gaussian_matrix should be (2, {prompt_dim // 2}), got {gaussian}"
        )
    mask_in_chans = _shape(sd, "prompt_encoder.mask_downscaling.3.weight", 4, source)[0]
    first = _shape(sd, "prompt_encoder.mask_downscaling.0.weight", 4, source)[0]
    if first != mask_in_chans // 4:
        raise CheckpointError(
            f"{source}: mask_downscaling.0 should have {mask_in_chans // 4} output channels "
            f"(a quarter of {mask_in_chans}), has {first}"
        )
    return dict(mask_in_chans=mask_in_chans)


def _infer_mask_decoder(sd: Mapping[str, torch.Tensor], dim: int, source: str) -> dict[str, Any]:
    """Mask-decoder fields of :class:`MetaSamArch`."""
    layers = _indices(sd.keys(), "mask_decoder.transformer.layers.", source)
    mlp_dim = _shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 2, source)[0]
    internal = _shape(sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 2, source)[0]
    if internal * 2 != dim:
        raise CheckpointError(
            f"{source}: the mask decoder's cross attention projects {dim} channels to {internal}; "
            f"Segment Anything halves them (to {dim // 2}) and no other rate is supported"
        )
    heads = 8  # Meta's builder hard-codes it; heads only split the projections, so shapes hide it.
    if internal % heads:
        raise CheckpointError(
            f"{source}: the mask decoder's attention width {internal} is not divisible by the "
            f"{heads} heads Segment Anything uses"
        )
    num_tokens = _shape(sd, "mask_decoder.mask_tokens.weight", 2, source)[0]
    iou_layers = _indices(sd.keys(), "mask_decoder.iou_prediction_head.layers.", source)
    iou_hidden = _shape(sd, "mask_decoder.iou_prediction_head.layers.0.weight", 2, source)[0]
    return dict(
        decoder_depth=len(layers),
        decoder_mlp_dim=mlp_dim,
        decoder_num_heads=heads,
        iou_head_depth=len(iou_layers),
        iou_head_hidden_dim=iou_hidden if len(iou_layers) > 1 else 256,
        num_multimask_outputs=num_tokens - 1,
    )


def infer_meta_sam_arch(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> MetaSamArch:
    """Read a Meta SAM architecture from the shapes of a state dict.

    Nothing is taken from file names: the encoder width and patch size come from
    ``patch_embed.proj.weight`` (``[D, 3, P, P]``), the input size from ``pos_embed``
    (``[1, S, S, D]``, ``img_size = S * P``), the depth from the block indices, the head size from
    ``rel_pos_h`` (``[2 * L - 1, D / heads]``), the global blocks from ``rel_pos_h`` lengths equal to
    ``2 * S - 1`` and the window size from the others, and so on.

    Args:
        state_dict: tensor names to tensors (any device, including ``meta``; any dtype).
        source: how to name the tensors in error messages, usually the file path.

    Returns:
        The architecture; ``arch.name`` tells whether it is one of Meta's published models.

    Raises:
        CheckpointError: the tensors are not a Meta-format SAM checkpoint (the message lists missing
            keys and names the format they look like, if known) or are inconsistent.
    """
    _check_tensors(state_dict, source)
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if missing or _other_format(state_dict.keys()):
        raise _not_meta_sam(source, state_dict, missing)
    fields = _infer_encoder(state_dict, source)
    fields.update(_infer_prompt_encoder(state_dict, fields["out_chans"], source))
    fields.update(_infer_mask_decoder(state_dict, fields["out_chans"], source))
    arch = MetaSamArch(**fields)
    log.debug("%s: Segment Anything architecture %s: %s", source, arch.name, arch)
    return arch


# --------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------


def _mlp_ratio_for(dim: int, mlp_dim: int) -> float:
    """A ratio for which Meta's ``int(dim * ratio)`` gives exactly ``mlp_dim`` (guards rounding)."""
    ratio = mlp_dim / dim
    return ratio if int(dim * ratio) == mlp_dim else (mlp_dim + 0.5) / dim


def build_meta_sam(arch: MetaSamArch, device: torch.device | str | None = None) -> "Sam":
    """Construct a randomly initialised ``segment_anything.modeling.Sam`` of architecture ``arch``.

    The modules are built directly (not through ``sam_model_registry``, which hard-codes 1024 px and
    256 channels), with Meta's settings: LayerNorm eps 1e-6 in the encoder, qkv bias and relative
    positions on, attention downsampling 2 in the decoder.

    Args:
        arch: the architecture, e.g. from :func:`infer_meta_sam_arch`.
        device: where to create the parameters. ``"meta"`` allocates nothing, so even ViT-H builds
            instantly; load real tensors into such a model with
            ``load_meta_sam_state_dict(..., assign=True)``. The constant ``pixel_mean`` /
            ``pixel_std`` buffers are always created on the CPU (Meta uses the legacy
            ``torch.Tensor`` constructor).

    Returns:
        The model in eval mode.
    """
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = arch.image_embedding_size
    context = torch.device(device) if device is not None else contextlib.nullcontext()
    with context:
        image_encoder = ImageEncoderViT(
            img_size=arch.img_size,
            patch_size=arch.patch_size,
            embed_dim=arch.encoder_embed_dim,
            depth=arch.encoder_depth,
            num_heads=arch.encoder_num_heads,
            mlp_ratio=_mlp_ratio_for(arch.encoder_embed_dim, arch.encoder_mlp_dim),
            out_chans=arch.out_chans,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=arch.window_size,
            global_attn_indexes=arch.encoder_global_attn_indexes,
        )
        prompt_encoder = PromptEncoder(
            embed_dim=arch.out_chans,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.img_size, arch.img_size),
            mask_in_chans=arch.mask_in_chans,
        )
        mask_decoder = MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.out_chans,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.out_chans,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        )
        sam = Sam(image_encoder=image_encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder)
    return sam.eval()


def load_meta_sam_state_dict(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "<state dict>",
    *,
    assign: bool = False,
) -> None:
    """Load ``state_dict`` into a Meta ``Sam`` strictly, explaining any mismatch.

    ``pixel_mean`` / ``pixel_std`` entries are skipped when the model does not persist them (they
    are constants that some files carry).

    Args:
        model: a ``Sam`` from :func:`build_meta_sam`.
        state_dict: the checkpoint tensors.
        source: how to name the tensors in error messages, usually the file path.
        assign: keep the checkpoint's tensors instead of copying into the model's (needed when the
            model was built on the ``meta`` device; the model then takes the tensors' dtype/device).

    Raises:
        CheckpointError: keys are missing or unexpected, or shapes differ; the message lists a few
            of each and names ``source``.
    """
    _check_tensors(state_dict, source)
    expected = model.state_dict()
    tensors = {k: v for k, v in state_dict.items() if k in expected or k not in _IGNORED_KEYS}
    problems = fit_problems(expected, tensors)
    if problems:
        hint = _other_format(tensors.keys())
        raise CheckpointError(
            f"{source} does not fit the Segment Anything model built for it: "
            + ", ".join(problems)
            + (f". The file looks like {hint}" if hint else "")
        )
    model.load_state_dict(tensors, strict=True, assign=assign)
