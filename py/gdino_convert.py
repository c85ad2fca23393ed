"""The original GroundingDINO checkpoints (IDEA-Research) loaded into transformers, without their code.

``groundingdino_swint_ogc.pth`` and ``groundingdino_swinb_cogcoor.pth`` (the files other packs keep in
``models/grounding-dino``) hold ``{"model": state_dict}`` in the key layout of IDEA-Research's own
model: ``backbone.0.*`` (Swin), ``bert.*``, ``transformer.encoder/decoder.*`` with fused
``in_proj_weight`` attention projections, ``feat_map``, ``input_proj``, ``bbox_embed``. Next to them
lie ``GroundingDINO_SwinT_OGC.cfg.py`` files; those are Python and are never read or executed here.

Loading one takes four steps, all in this process:

1. the file is read with :func:`grounded_inpaint.checkpoints.load_state_dict` (safetensors or
   ``torch.load(weights_only=True)``: a pickle that would run code is refused);
2. :func:`infer_original_arch` reads the architecture off the tensor shapes (Swin embed width,
   depths, heads and window size; BERT size; transformer width, layers, points, levels, queries)
   and :meth:`OriginalGroundingDinoArch.to_config` turns it into a ``GroundingDinoConfig``;
3. :func:`original_to_hub_state_dict` renames every tensor to the names transformers'
   ``save_pretrained`` writes (the Hugging Face hub layout) and splits the fused q/k/v projections;
   a tensor it does not know, or a model tensor left without a value, is an error that names the file;
4. ``GroundingDinoForObjectDetection.from_pretrained(None, config=..., state_dict=...)`` builds the
   model; transformers applies its own renames of the hub layout (its Swin modules were renamed in
   version 5), so the conversion never depends on its internal names.

The tokenizer is BERT's (``bert-base-uncased``) and is not inside the checkpoint. It is taken from a
local folder (:func:`find_tokenizer_folder`) or downloaded once, with a log message, into
``models/grounding-dino/bert-base-uncased``; offline, the error names that folder and its files.

:func:`hub_to_original_state_dict` is the inverse mapping; tests use it to write tiny checkpoints in
the original layout and prove that the conversion loses and misplaces nothing.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch

from .errors import CheckpointError, ModelNotFoundError

if TYPE_CHECKING:  # heavy imports happen only when a model is built
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from .detector import GroundingDinoDetector

__all__ = [
    "BERT_TOKENIZER_REPO",
    "BERT_TOKENIZER_FILES",
    "BERT_TOKENIZER_FOLDER",
    "OriginalGroundingDinoArch",
    "is_original_grounding_dino",
    "infer_original_arch",
    "original_to_hub_state_dict",
    "hub_to_original_state_dict",
    "build_from_original_state_dict",
    "find_tokenizer_folder",
    "load_tokenizer",
    "load_original_grounding_dino",
]

log = logging.getLogger(__name__)

#: Where BERT's tokenizer files are fetched from when no local copy exists.
BERT_TOKENIZER_REPO = "google-bert/bert-base-uncased"
#: The tokenizer files fetched (no ``config.json``: the folder must not look like a model).
BERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")
#: The folder name the tokenizer goes into, next to the checkpoint.
BERT_TOKENIZER_FOLDER = "bert-base-uncased"
#: Token ids that GroundingDINO's text masks hard-code (``[CLS]``, ``[SEP]``, ``.``, ``?``).
_SPECIAL_TOKEN_IDS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}

_SWIN = "backbone.0"
_HUB_SWIN = "model.backbone.conv_encoder.model"

# Renames of module prefixes, original -> hub layout. ``{}`` stands for a layer index. A rule matches
# a key equal to its pattern or followed by ``.rest`` (``.weight``, ``.bias``, ``.layers.0.weight``);
# the rest is kept. The first matching rule wins; the table is used in both directions.
_PREFIX_RULES: tuple[tuple[str, str], ...] = (
    # Swin backbone
    (f"{_SWIN}.patch_embed.proj", f"{_HUB_SWIN}.embeddings.patch_embeddings.projection"),
    (f"{_SWIN}.patch_embed.norm", f"{_HUB_SWIN}.embeddings.norm"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.norm1", f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.layernorm_before"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.norm2", f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.layernorm_after"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.attn.relative_position_bias_table",
     f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.attention.self.relative_position_bias_table"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.attn.proj", f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.attention.output.dense"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.mlp.fc1", f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.intermediate.dense"),
    (f"{_SWIN}.layers.{{}}.blocks.{{}}.mlp.fc2", f"{_HUB_SWIN}.encoder.layers.{{}}.blocks.{{}}.output.dense"),
    (f"{_SWIN}.layers.{{}}.downsample", f"{_HUB_SWIN}.encoder.layers.{{}}.downsample"),
    # text encoder and its projection
    ("bert.embeddings", "model.text_backbone.embeddings"),
    ("bert.encoder", "model.text_backbone.encoder"),
    ("feat_map", "model.text_projection"),
    # image feature projections
    ("input_proj", "model.input_proj_vision"),
    # transformer: global tensors and two-stage heads
    ("transformer.level_embed", "model.level_embed"),
    ("transformer.tgt_embed", "model.query_position_embeddings"),
    ("transformer.enc_output", "model.enc_output"),
    ("transformer.enc_output_norm", "model.enc_output_norm"),
    ("transformer.enc_out_bbox_embed", "model.encoder_output_bbox_embed"),
    # encoder: deformable image layer, text enhancer, fusion
    ("transformer.encoder.layers.{}.self_attn", "model.encoder.layers.{}.deformable_layer.self_attn"),
    ("transformer.encoder.layers.{}.norm1", "model.encoder.layers.{}.deformable_layer.self_attn_layer_norm"),
    ("transformer.encoder.layers.{}.linear1", "model.encoder.layers.{}.deformable_layer.fc1"),
    ("transformer.encoder.layers.{}.linear2", "model.encoder.layers.{}.deformable_layer.fc2"),
    ("transformer.encoder.layers.{}.norm2", "model.encoder.layers.{}.deformable_layer.final_layer_norm"),
    ("transformer.encoder.text_layers.{}.self_attn", "model.encoder.layers.{}.text_enhancer_layer.self_attn"),
    ("transformer.encoder.text_layers.{}.linear1", "model.encoder.layers.{}.text_enhancer_layer.fc1"),
    ("transformer.encoder.text_layers.{}.linear2", "model.encoder.layers.{}.text_enhancer_layer.fc2"),
    ("transformer.encoder.text_layers.{}.norm1", "model.encoder.layers.{}.text_enhancer_layer.layer_norm_before"),
    ("transformer.encoder.text_layers.{}.norm2", "model.encoder.layers.{}.text_enhancer_layer.layer_norm_after"),
    ("transformer.encoder.fusion_layers.{}.gamma_v", "model.encoder.layers.{}.fusion_layer.vision_param"),
    ("transformer.encoder.fusion_layers.{}.gamma_l", "model.encoder.layers.{}.fusion_layer.text_param"),
    ("transformer.encoder.fusion_layers.{}.layer_norm_v", "model.encoder.layers.{}.fusion_layer.layer_norm_vision"),
    ("transformer.encoder.fusion_layers.{}.layer_norm_l", "model.encoder.layers.{}.fusion_layer.layer_norm_text"),
    ("transformer.encoder.fusion_layers.{}.attn.v_proj", "model.encoder.layers.{}.fusion_layer.attn.vision_proj"),
    ("transformer.encoder.fusion_layers.{}.attn.l_proj", "model.encoder.layers.{}.fusion_layer.attn.text_proj"),
    ("transformer.encoder.fusion_layers.{}.attn.values_v_proj", "model.encoder.layers.{}.fusion_layer.attn.values_vision_proj"),
    ("transformer.encoder.fusion_layers.{}.attn.values_l_proj", "model.encoder.layers.{}.fusion_layer.attn.values_text_proj"),
    ("transformer.encoder.fusion_layers.{}.attn.out_v_proj", "model.encoder.layers.{}.fusion_layer.attn.out_vision_proj"),
    ("transformer.encoder.fusion_layers.{}.attn.out_l_proj", "model.encoder.layers.{}.fusion_layer.attn.out_text_proj"),
    # decoder
    ("transformer.decoder.layers.{}.cross_attn", "model.decoder.layers.{}.encoder_attn"),
    ("transformer.decoder.layers.{}.norm1", "model.decoder.layers.{}.encoder_attn_layer_norm"),
    ("transformer.decoder.layers.{}.ca_text", "model.decoder.layers.{}.encoder_attn_text"),
    ("transformer.decoder.layers.{}.catext_norm", "model.decoder.layers.{}.encoder_attn_text_layer_norm"),
    ("transformer.decoder.layers.{}.self_attn", "model.decoder.layers.{}.self_attn"),
    ("transformer.decoder.layers.{}.norm2", "model.decoder.layers.{}.self_attn_layer_norm"),
    ("transformer.decoder.layers.{}.linear1", "model.decoder.layers.{}.fc1"),
    ("transformer.decoder.layers.{}.linear2", "model.decoder.layers.{}.fc2"),
    ("transformer.decoder.layers.{}.norm3", "model.decoder.layers.{}.final_layer_norm"),
    ("transformer.decoder.norm", "model.decoder.layer_norm"),
    ("transformer.decoder.ref_point_head", "model.decoder.reference_points_head"),
    ("transformer.decoder.bbox_embed", "model.decoder.bbox_embed"),
    ("bbox_embed", "bbox_embed"),
)

# Tensors of the original model that transformers' model does not have and that inference never
# reads: BERT's pooler (its output is unused) and position-id buffer, Swin's relative-position index
# buffer (recomputed from the window size).
_UNUSED_ORIGINAL = re.compile(
    r"^(bert\.pooler\..*|bert\.embeddings\.position_ids|"
    + re.escape(_SWIN)
    + r"\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index)$"
)

# Tensors of transformers' model that the original lacks and inference never reads: the final
# LayerNorm of the Swin model inside the backbone (the backbone normalises each output stage itself),
# and, in transformers 4, the Swin relative-position index buffers (computed from the window size).
_UNUSED_HUB = re.compile(
    r"^" + re.escape(_HUB_SWIN) + r"\.(?:(?:swin\.)?layernorm\.(?:weight|bias)"
    r"|.*\.relative_position_index)$"
)

# Fused q/k/v projections: original key (weight or bias) -> hub module of the three parts.
_FUSED_ORIGINAL = re.compile(
    r"^(?P<module>"
    + re.escape(_SWIN)
    + r"\.layers\.\d+\.blocks\.\d+\.attn)\.qkv\.(?P<kind>weight|bias)$"
    r"|^(?P<mha>transformer\.(?:encoder\.text_layers|decoder\.layers)\.\d+\.(?:self_attn|ca_text))\.in_proj_(?P<mkind>weight|bias)$"
)
_QKV_NAMES = ("query", "key", "value")
_SWIN_NORM = re.compile(r"^" + re.escape(_SWIN) + r"\.norm(?P<index>\d+)\.(?P<rest>weight|bias)$")
_HUB_SWIN_NORM = re.compile(r"^" + re.escape(_HUB_SWIN) + r"\.hidden_states_norms\.stage(?P<stage>\d+)\.(?P<rest>weight|bias)$")


def _compile(template: str) -> re.Pattern[str]:
    parts = template.split("{}")
    body = r"(\d+)".join(re.escape(p) for p in parts)
    return re.compile(r"^" + body + r"(?P<rest>\..+)?$")


_FORWARD = tuple((_compile(orig), hub) for orig, hub in _PREFIX_RULES)
_BACKWARD = tuple((_compile(hub), orig) for orig, hub in _PREFIX_RULES)


def _rename(key: str, rules: Sequence[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.match(key)
        if match is not None:
            indices = [g for g in match.groups()[: template.count("{}")]]
            return template.format(*indices) + (match.group("rest") or "")
    return None


# --------------------------------------------------------------------------------------------
# Layout detection and architecture inference
# --------------------------------------------------------------------------------------------


def is_original_grounding_dino(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` (``module.`` already stripped) is in IDEA-Research's key layout."""
    return (
        f"{_SWIN}.patch_embed.proj.weight" in state_dict
        and "transformer.level_embed" in state_dict
        and any(k.startswith("bert.") for k in state_dict)
    )


def _looks_like(state_dict: Mapping[str, Any]) -> str:
    """A short guess of what a foreign state dict is, for error messages."""
    keys = list(state_dict)
    if any(k.startswith("image_encoder.") for k in keys):
        return "a Segment Anything (SAM) checkpoint, which belongs in models/sams"
    if any(k.startswith("model.backbone.conv_encoder.") for k in keys):
        return "a transformers GroundingDINO state dict: use its whole folder (config.json, model.safetensors, tokenizer files)"
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        return "a Stable Diffusion checkpoint"
    return f"an unknown model (first keys: {', '.join(keys[:3])})"


def _indices(state_dict: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state_dict for m in [regex.match(k)] if m is not None})


@dataclass(frozen=True)
class OriginalGroundingDinoArch:
    """The architecture of an original GroundingDINO checkpoint, as read off its tensor shapes.

    Not stored in the weights, and taken from both published configs (``GroundingDINO_SwinT_OGC``
    and ``GroundingDINO_SwinB``): attention heads (head width 32 in the transformer, 64 in BERT),
    ``max_text_len`` 256 (capped by BERT's position table), ReLU, positional temperature 20,
    two-stage query selection with a separate encoder box head.

    Attributes:
        swin_embed_dim: channels of the first Swin stage (96 Swin-T, 128 Swin-B, 192 Swin-L).
        swin_depths: blocks per stage, e.g. ``(2, 2, 6, 2)`` (Swin-T) or ``(2, 2, 18, 2)`` (Swin-B).
        swin_num_heads: attention heads per stage.
        swin_window_size: 7 (224-px pretraining) or 12 (384-px pretraining).
        swin_patch_size: patch side in pixels (4).
        swin_mlp_ratio: MLP width / stage width (4.0).
        out_indices: transformers' backbone stages fed to the transformer (``(2, 3, 4)``).
        text_vocab_size / text_hidden_size / text_layers / text_intermediate_size /
        text_max_positions / text_type_vocab_size: the BERT text encoder.
        d_model, encoder_layers, decoder_layers, encoder_ffn_dim, decoder_ffn_dim, num_heads,
        encoder_n_points, decoder_n_points, num_feature_levels, num_queries: the transformer.
        decoder_bbox_embed_share: one box head for all decoder layers (the published models).
    """

    swin_embed_dim: int
    swin_depths: tuple[int, ...]
    swin_num_heads: tuple[int, ...]
    swin_window_size: int
    swin_patch_size: int
    swin_mlp_ratio: float
    out_indices: tuple[int, ...]
    text_vocab_size: int
    text_hidden_size: int
    text_layers: int
    text_intermediate_size: int
    text_max_positions: int
    text_type_vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_heads: int
    encoder_n_points: int
    decoder_n_points: int
    num_feature_levels: int
    num_queries: int
    decoder_bbox_embed_share: bool

    @property
    def swin_image_size(self) -> int:
        """The Swin pretraining resolution implied by the window (12 → 384, else 224); informative only."""
        return 384 if self.swin_window_size == 12 else 224

    @property
    def name(self) -> str:
        """``Swin-T``, ``Swin-B``, ``Swin-L`` or ``Swin-<embed>/<window>`` for other widths."""
        known = {96: "Swin-T", 128: "Swin-B", 192: "Swin-L"}
        return known.get(self.swin_embed_dim, f"Swin-{self.swin_embed_dim}/w{self.swin_window_size}")

    @property
    def max_text_len(self) -> int:
        return min(256, self.text_max_positions)

    def to_config(self) -> "GroundingDinoConfig":
        """The transformers ``GroundingDinoConfig`` of this architecture."""
        from transformers import GroundingDinoConfig

        return GroundingDinoConfig(
            backbone_config=dict(
                model_type="swin",
                embed_dim=self.swin_embed_dim,
                depths=list(self.swin_depths),
                num_heads=list(self.swin_num_heads),
                window_size=self.swin_window_size,
                image_size=self.swin_image_size,
                patch_size=self.swin_patch_size,
                mlp_ratio=self.swin_mlp_ratio,
                out_indices=list(self.out_indices),
            ),
            text_config=dict(
                model_type="bert",
                vocab_size=self.text_vocab_size,
                hidden_size=self.text_hidden_size,
                num_hidden_layers=self.text_layers,
                num_attention_heads=max(1, self.text_hidden_size // 64),
                intermediate_size=self.text_intermediate_size,
                max_position_embeddings=self.text_max_positions,
                type_vocab_size=self.text_type_vocab_size,
            ),
            d_model=self.d_model,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.num_heads,
            decoder_attention_heads=self.num_heads,
            encoder_ffn_dim=self.encoder_ffn_dim,
            decoder_ffn_dim=self.decoder_ffn_dim,
            encoder_n_points=self.encoder_n_points,
            decoder_n_points=self.decoder_n_points,
            num_feature_levels=self.num_feature_levels,
            num_queries=self.num_queries,
            max_text_len=self.max_text_len,
            two_stage=True,
            two_stage_bbox_embed_share=False,
            decoder_bbox_embed_share=self.decoder_bbox_embed_share,
            embedding_init_target=True,
            query_dim=4,
            positional_embedding_temperature=20,
            activation_function="relu",
        )


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(
            f"{source}: the GroundingDINO tensor {key!r} is missing, so the file is truncated or is a variant "
            "this loader does not know. Use groundingdino_swint_ogc.pth or groundingdino_swinb_cogcoor.pth "
            "from https://huggingface.co/ShilongLiu/GroundingDINO, or a transformers folder such as grounding-dino-tiny"
        )
    return tuple(state_dict[key].shape)


def infer_original_arch(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> OriginalGroundingDinoArch:
    """Read the architecture of an original-layout GroundingDINO state dict from its shapes.

    Arguments:
        state_dict: name → tensor in IDEA-Research's layout (``module.`` stripped).
        source: the file name, used in error messages.

    Raises:
        CheckpointError: not an original GroundingDINO state dict, or a variant that transformers'
            GroundingDINO cannot represent (absolute position embedding, dilated Swin, no two-stage).
    """
    if not is_original_grounding_dino(state_dict):
        raise CheckpointError(
            f"{source} is not an original GroundingDINO checkpoint (no backbone.0.patch_embed / transformer / bert "
            f"tensors); it looks like {_looks_like(state_dict)}"
        )
    if f"{_SWIN}.absolute_pos_embed" in state_dict:
        raise CheckpointError(f"{source}: Swin with absolute position embeddings is not supported by transformers' GroundingDINO")
    patch = _shape(state_dict, f"{_SWIN}.patch_embed.proj.weight", source)
    embed_dim, patch_size = patch[0], patch[-1]
    stages = _indices(state_dict, re.escape(_SWIN) + r"\.layers\.(\d+)\.")
    depths, heads, windows = [], [], set()
    for stage in stages:
        blocks = _indices(state_dict, re.escape(f"{_SWIN}.layers.{stage}.blocks.") + r"(\d+)\.")
        depths.append(len(blocks))
        table = _shape(state_dict, f"{_SWIN}.layers.{stage}.blocks.0.attn.relative_position_bias_table", source)
        heads.append(table[1])
        windows.add((math.isqrt(table[0]) + 1) // 2)
        width = _shape(state_dict, f"{_SWIN}.layers.{stage}.blocks.0.norm1.weight", source)[0]
        if width != embed_dim * 2**stage:
            raise CheckpointError(f"{source}: Swin stage {stage} has {width} channels, expected {embed_dim * 2**stage} (dilated Swin is not supported)")
    if len(windows) != 1:
        raise CheckpointError(f"{source}: the Swin stages use different window sizes {sorted(windows)}; not supported")
    mlp = _shape(state_dict, f"{_SWIN}.layers.0.blocks.0.mlp.fc1.weight", source)[0] / embed_dim
    norms = sorted(int(m.group("index")) for k in state_dict for m in [_SWIN_NORM.match(k)] if m and m.group("rest") == "weight")
    if not norms:
        raise CheckpointError(f"{source}: no Swin output norms (backbone.0.norm1..3) found")

    words = _shape(state_dict, "bert.embeddings.word_embeddings.weight", source)
    text_layers = _indices(state_dict, r"bert\.encoder\.layer\.(\d+)\.")
    text_intermediate = _shape(state_dict, "bert.encoder.layer.0.intermediate.dense.weight", source)[0]
    positions = _shape(state_dict, "bert.embeddings.position_embeddings.weight", source)[0]
    token_types = _shape(state_dict, "bert.embeddings.token_type_embeddings.weight", source)[0]

    levels, d_model = _shape(state_dict, "transformer.level_embed", source)
    if "transformer.enc_output.weight" not in state_dict or "transformer.enc_out_bbox_embed.layers.0.weight" not in state_dict:
        raise CheckpointError(f"{source}: the checkpoint has no two-stage heads (transformer.enc_output); not supported")
    num_heads = max(1, d_model // 32)
    enc_layers = _indices(state_dict, r"transformer\.encoder\.layers\.(\d+)\.")
    dec_layers = _indices(state_dict, r"transformer\.decoder\.layers\.(\d+)\.")
    enc_points = _shape(state_dict, "transformer.encoder.layers.0.self_attn.attention_weights.weight", source)[0] // (num_heads * levels)
    dec_points = _shape(state_dict, "transformer.decoder.layers.0.cross_attn.attention_weights.weight", source)[0] // (num_heads * levels)
    enc_ffn = _shape(state_dict, "transformer.encoder.layers.0.linear1.weight", source)[0]
    text_ffn = _shape(state_dict, "transformer.encoder.text_layers.0.linear1.weight", source)[0]
    fusion = _shape(state_dict, "transformer.encoder.fusion_layers.0.attn.v_proj.weight", source)[0]
    if text_ffn != enc_ffn // 2 or fusion != enc_ffn // 2:
        raise CheckpointError(
            f"{source}: text-enhancer width {text_ffn} / fusion width {fusion} are not half the encoder FFN width "
            f"{enc_ffn}, as transformers' GroundingDINO requires"
        )
    head_keys = sorted({int(k.split(".")[1]) for k in state_dict if re.match(r"^bbox_embed\.\d+\.", k)})
    shared = all(
        torch.equal(state_dict[k], state_dict[k.replace("bbox_embed.0.", f"bbox_embed.{i}.", 1)])
        for i in head_keys
        for k in state_dict
        if k.startswith("bbox_embed.0.") and k.replace("bbox_embed.0.", f"bbox_embed.{i}.", 1) in state_dict
    )
    arch = OriginalGroundingDinoArch(
        swin_embed_dim=embed_dim,
        swin_depths=tuple(depths),
        swin_num_heads=tuple(heads),
        swin_window_size=windows.pop(),
        swin_patch_size=patch_size,
        swin_mlp_ratio=float(mlp),
        out_indices=tuple(i + 1 for i in norms),
        text_vocab_size=words[0],
        text_hidden_size=words[1],
        text_layers=len(text_layers),
        text_intermediate_size=text_intermediate,
        text_max_positions=positions,
        text_type_vocab_size=token_types,
        d_model=d_model,
        encoder_layers=len(enc_layers),
        decoder_layers=len(dec_layers),
        encoder_ffn_dim=enc_ffn,
        decoder_ffn_dim=_shape(state_dict, "transformer.decoder.layers.0.linear1.weight", source)[0],
        num_heads=num_heads,
        encoder_n_points=enc_points,
        decoder_n_points=dec_points,
        num_feature_levels=levels,
        num_queries=_shape(state_dict, "transformer.tgt_embed.weight", source)[0],
        decoder_bbox_embed_share=shared,
    )
    if len(arch.out_indices) + 1 > arch.num_feature_levels:
        raise CheckpointError(f"{source}: {len(arch.out_indices)} backbone outputs but only {arch.num_feature_levels} feature levels")
    return arch


# --------------------------------------------------------------------------------------------
# Key conversion, both ways
# --------------------------------------------------------------------------------------------


def original_to_hub_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> dict[str, torch.Tensor]:
    """Rename an original-layout state dict to the hub layout that ``save_pretrained`` writes.

    Fused projections (Swin ``attn.qkv``, ``nn.MultiheadAttention`` ``in_proj_weight``/``in_proj_bias``
    ``[3·C, ...]``) are split into equal query/key/value thirds, in that order. Tensors inference
    never reads (BERT pooler, position-id and relative-position-index buffers) are dropped.

    Raises:
        CheckpointError: a tensor matches no rule (the first few are named), or a fused projection
            cannot be split in three.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        if _UNUSED_ORIGINAL.match(key):
            continue
        fused = _FUSED_ORIGINAL.match(key)
        if fused is not None:
            module = fused.group("module") or fused.group("mha")
            kind = fused.group("kind") or fused.group("mkind")
            if tensor.shape[0] % 3:
                raise CheckpointError(f"{source}: {key} has {tensor.shape[0]} rows, not a multiple of 3 (fused q/k/v)")
            if module.endswith(".attn"):  # Swin: ...attention.self.{query,key,value}, beside attention.output.dense
                base = _rename(module + ".proj", _FORWARD)
                assert base is not None and base.endswith(".attention.output.dense")
                target: str | None = base[: -len(".output.dense")] + ".self"
            else:
                target = _rename(module, _FORWARD)
            assert target is not None
            for name, part in zip(_QKV_NAMES, tensor.chunk(3, dim=0)):
                out[f"{target}.{name}.{kind}"] = part.clone()
            continue
        norm = _SWIN_NORM.match(key)
        if norm is not None:
            out[f"{_HUB_SWIN}.hidden_states_norms.stage{int(norm.group('index')) + 1}.{norm.group('rest')}"] = tensor
            continue
        renamed = _rename(key, _FORWARD)
        if renamed is None:
            unknown.append(key)
        else:
            out[renamed] = tensor
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} tensor(s) of unknown role ({', '.join(unknown[:5])}"
            f"{', ...' if len(unknown) > 5 else ''}); this is not a GroundingDINO variant this loader knows. "
            "Use a published GroundingDINO checkpoint or a transformers folder"
        )
    return out


def hub_to_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], decoder_layers: int, *, source: str = "<state dict>"
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_hub_state_dict` (used to write test checkpoints).

    Arguments:
        state_dict: the hub layout, as ``save_pretrained`` writes it (shared box heads stored once).
        decoder_layers: number of decoder layers; every ``bbox_embed.i`` and
            ``transformer.decoder.bbox_embed.i`` is written, as the original model's state dict has
            them (shared heads repeat the same tensors).

    Returns:
        The original layout with fused q/k/v projections, without the unused buffers (callers
        that want a byte-faithful file add ``bert.pooler`` and the index buffers themselves).
    """
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    qkv = re.compile(r"^(?P<module>.+)\.(?P<part>query|key|value)\.(?P<kind>weight|bias)$")
    for key, tensor in state_dict.items():
        if _UNUSED_HUB.match(key):
            continue
        norm = _HUB_SWIN_NORM.match(key)
        if norm is not None:
            out[f"{_SWIN}.norm{int(norm.group('stage')) - 1}.{norm.group('rest')}"] = tensor
            continue
        part = qkv.match(key)
        if part is not None and not key.startswith("model.text_backbone."):
            module = part.group("module")
            if module.endswith(".attention.self"):  # Swin
                original = _rename(module[: -len(".self")] + ".output.dense", _BACKWARD)
                assert original is not None and original.endswith(".attn.proj")
                fused_key = original[: -len(".proj")] + f".qkv.{part.group('kind')}"
            else:
                original = _rename(module, _BACKWARD)
                if original is None:
                    unknown.append(key)
                    continue
                fused_key = f"{original}.in_proj_{part.group('kind')}"
            pending.setdefault(fused_key, {})[part.group("part")] = tensor
            continue
        renamed = _rename(key, _BACKWARD)
        if renamed is None:
            unknown.append(key)
        else:
            out[renamed] = tensor
    for fused_key, parts in pending.items():
        if set(parts) != set(_QKV_NAMES):
            raise CheckpointError(f"{source}: {fused_key} lacks {sorted(set(_QKV_NAMES) - set(parts))}")
        out[fused_key] = torch.cat([parts[n] for n in _QKV_NAMES], dim=0)
    if unknown:
        raise CheckpointError(f"{source}: no original name for {', '.join(unknown[:5])}")
    head = {k[len("bbox_embed.0."):]: v for k, v in out.items() if k.startswith("bbox_embed.0.")}
    for i in range(decoder_layers):
        for rest, tensor in head.items():
            out.setdefault(f"bbox_embed.{i}.{rest}", tensor)
        for rest in head:
            out.setdefault(f"transformer.decoder.bbox_embed.{i}.{rest}", out[f"bbox_embed.{i}.{rest}"])
    return out


def _check_keys(model: torch.nn.Module, info: Mapping[str, Iterable[str]], source: str) -> None:
    missing = sorted(k for k in info.get("missing_keys", ()) if not _UNUSED_HUB.match(k))
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(str(m) for m in info.get("mismatched_keys", ()))
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensor(s) have no value in the file ({', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) of the file fit nowhere ({', '.join(unexpected[:5])})")
    if mismatched:
        problems.append(f"shapes differ for {', '.join(mismatched[:5])}")
    if problems:
        raise CheckpointError(
            f"{source} could not be converted to transformers' GroundingDINO: {'; '.join(problems)}. "
            "The file is a GroundingDINO variant this loader does not know; use groundingdino_swint_ogc.pth / "
            "groundingdino_swinb_cogcoor.pth or a transformers folder such as grounding-dino-tiny"
        )


def build_from_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>"
) -> "GroundingDinoForObjectDetection":
    """A transformers ``GroundingDinoForObjectDetection`` (CPU, float32, eval) holding the weights of
    an original-layout state dict. Every model tensor must get a value and every file tensor a place.

    Raises:
        CheckpointError: see :func:`infer_original_arch` and :func:`original_to_hub_state_dict`.
    """
    from transformers import GroundingDinoForObjectDetection
    from transformers.utils import logging as hf_logging

    arch = infer_original_arch(state_dict, source)
    hub = original_to_hub_state_dict(state_dict, source)
    log.info(
        "%s: original GroundingDINO, %s backbone (window %d, depths %s), %d-dim transformer with %d/%d layers, "
        "%d queries", source, arch.name, arch.swin_window_size, list(arch.swin_depths), arch.d_model,
        arch.encoder_layers, arch.decoder_layers, arch.num_queries,
    )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would repeat what _check_keys says
    try:
        model, info = GroundingDinoForObjectDetection.from_pretrained(
            None, config=arch.to_config(), state_dict=hub, output_loading_info=True
        )
    except RuntimeError as exc:  # size mismatches surface here
        raise CheckpointError(
            f"{source} could not be converted to transformers' GroundingDINO ({str(exc).strip().splitlines()[0]})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    _check_keys(model, info, source)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def _has_tokenizer_files(folder: Path) -> bool:
    return (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()


def _detector_vocab_size(folder: Path) -> int | None:
    """BERT vocabulary size of a transformers (MM-)GroundingDINO folder, or ``None`` if it is not one."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if config.get("model_type") not in ("grounding-dino", "mm-grounding-dino"):
        return None
    text = config.get("text_config") or {}
    return int(text.get("vocab_size", 30522))  # BERT-base's default, as transformers fills it in


def find_tokenizer_folder(checkpoint: str | Path, vocab_size: int, search: Sequence[str | Path] = ()) -> Path | None:
    """A local folder with BERT tokenizer files that fit a checkpoint of ``vocab_size`` words.

    Looked at, in order, in the checkpoint's folder and then in each ``search`` folder:
    ``bert-base-uncased/`` (tokenizer files only), then any transformers GroundingDINO or
    MM-GroundingDINO model folder whose text vocabulary has the same size (they all carry
    bert-base-uncased's tokenizer).
    """
    places: list[Path] = []
    for place in (Path(checkpoint).parent, *map(Path, search)):
        if place.is_dir() and place not in places:
            places.append(place)
    for place in places:
        if _has_tokenizer_files(place / BERT_TOKENIZER_FOLDER):
            return place / BERT_TOKENIZER_FOLDER
    for place in places:
        for child in sorted(place.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and _has_tokenizer_files(child) and _detector_vocab_size(child) == vocab_size:
                return child
    return None


def load_tokenizer(folder: str | Path, vocab_size: int, checkpoint: str = "<checkpoint>") -> Any:
    """BERT tokenizer from ``folder``, checked against the checkpoint's vocabulary.

    Raises:
        CheckpointError: the folder's tokenizer has more tokens than the checkpoint's embedding
            table, or places GroundingDINO's special tokens at other ids.
    """
    from transformers import BertTokenizer

    folder = Path(folder)
    try:
        tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"the tokenizer in {folder} could not be loaded ({str(exc).strip().splitlines()[0]}); it needs "
            f"{' or '.join(BERT_TOKENIZER_FILES[:2])} from https://huggingface.co/{BERT_TOKENIZER_REPO}"
        ) from None
    ids = dict(zip(_SPECIAL_TOKEN_IDS, tokenizer.convert_tokens_to_ids(list(_SPECIAL_TOKEN_IDS))))
    if len(tokenizer) > vocab_size or ids != _SPECIAL_TOKEN_IDS:
        raise CheckpointError(
            f"the tokenizer in {folder} ({len(tokenizer)} tokens, special ids {ids}) does not fit {checkpoint} "
            f"({vocab_size} words; GroundingDINO needs {_SPECIAL_TOKEN_IDS}). Put bert-base-uncased's "
            f"{', '.join(BERT_TOKENIZER_FILES)} into {folder}"
        )
    return tokenizer


def _fetch_tokenizer(checkpoint: Path) -> Path:
    """Download bert-base-uncased's tokenizer files into ``<checkpoint folder>/bert-base-uncased``."""
    from .download import download_hf_folder

    target = checkpoint.parent / BERT_TOKENIZER_FOLDER
    log.warning(
        "%s is an original GroundingDINO checkpoint without a tokenizer; downloading bert-base-uncased's tokenizer "
        "files (%s, under 1 MB, once) from https://huggingface.co/%s into %s",
        checkpoint.name, ", ".join(BERT_TOKENIZER_FILES), BERT_TOKENIZER_REPO, target,
    )
    try:
        return download_hf_folder(BERT_TOKENIZER_REPO, BERT_TOKENIZER_FILES, target, show_progress=False)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{checkpoint.name} needs BERT's tokenizer: {exc}") from None


# --------------------------------------------------------------------------------------------
# The whole loader
# --------------------------------------------------------------------------------------------


def load_original_grounding_dino(
    path: str | Path,
    *,
    tokenizer_folder: str | Path | None = None,
    search: Sequence[str | Path] = (),
    download_tokenizer: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> "GroundingDinoDetector":
    """Load an original GroundingDINO ``.pth``/``.safetensors`` file as a :class:`GroundingDinoDetector`.

    Arguments:
        path: the checkpoint (``{"model": state_dict}``, a plain state dict, ``module.`` prefixes allowed).
        tokenizer_folder: a folder with bert-base-uncased's tokenizer files; default: found by
            :func:`find_tokenizer_folder` (checkpoint folder, then ``search``).
        search: more folders to look in for a tokenizer (e.g. every ``grounding-dino`` model folder).
        download_tokenizer: when no tokenizer is found, download it once into
            ``<checkpoint folder>/bert-base-uncased`` (logged); otherwise raise.
        device, dtype: where and in which precision the model runs.

    The image preprocessing is GroundingDINO's (short side 800, long side at most 1333, ImageNet
    mean/std) unless the tokenizer folder also holds a ``preprocessor_config.json`` (a transformers
    GroundingDINO folder), which is then used.

    Raises:
        CheckpointError: the file is not a GroundingDINO checkpoint this loader can convert, or a
            pickle that would run code.
        ModelNotFoundError: no tokenizer, and downloading is off or impossible (the message names
            the folder and the files to put there).
    """
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    from .checkpoints import load_state_dict
    from .detector import GroundingDinoDetector, _cpu_autocast

    path = Path(path)
    source = str(path)
    state_dict = load_state_dict(path)
    if not is_original_grounding_dino(state_dict):
        raise CheckpointError(
            f"{source} is not an original GroundingDINO checkpoint; it looks like {_looks_like(state_dict)}. "
            "models/grounding-dino takes groundingdino_swint_ogc.pth / groundingdino_swinb_cogcoor.pth or "
            "transformers folders such as grounding-dino-tiny"
        )
    vocab_size = int(state_dict["bert.embeddings.word_embeddings.weight"].shape[0])
    folder = Path(tokenizer_folder) if tokenizer_folder is not None else find_tokenizer_folder(path, vocab_size, search)
    if folder is None:
        if not download_tokenizer:
            target = path.parent / BERT_TOKENIZER_FOLDER
            raise ModelNotFoundError(
                f"{path.name} needs BERT's tokenizer, which is not in the checkpoint, and none was found next to it. "
                f"Download {', '.join(BERT_TOKENIZER_FILES)} from https://huggingface.co/{BERT_TOKENIZER_REPO} into the "
                f"folder {target} (or put a transformers grounding-dino-tiny folder beside the checkpoint)"
            )
        folder = _fetch_tokenizer(path)
    tokenizer = load_tokenizer(folder, vocab_size, source)
    model = build_from_original_state_dict(state_dict, source)
    del state_dict
    if (folder / "preprocessor_config.json").is_file():
        image_processor = GroundingDinoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    else:
        image_processor = GroundingDinoImageProcessor()
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    weights_dtype, autocast = _cpu_autocast(device, dtype)  # the same precision rule as transformers folders
    model = model.to(device=device, dtype=weights_dtype)
    log.info("loaded %s with the tokenizer of %s", source, folder)
    return GroundingDinoDetector(model, processor, source=source, autocast=autocast)
