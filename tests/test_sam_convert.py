"""Meta SAM architecture inference, checkpoint errors, and Meta → transformers SamModel conversion.

Parity tests compare module outputs of a tiny random Meta ``Sam`` with the transformers
``SamModel`` holding its converted weights, on the same inputs:

* image embeddings: ``sam.image_encoder(x)`` vs ``model.get_image_embeddings(x)``, ``x`` the
  normalised, padded ``[1, 3, 64, 64]`` input;
* masks: Meta ``prompt_encoder`` + ``mask_decoder`` vs ``model(image_embeddings=...)`` where
  transformers takes boxes ``[B, N, 4]``, points ``[B, N, P, 2]``, labels ``[B, N, P]`` and masks
  ``[B, 1, 4h, 4w]`` in the same (resized, unpadded input) pixel frame as Meta's prompts.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grounded_inpaint.errors import CheckpointError
from grounded_inpaint.sam.convert import (
    hf_sam_config_from_meta,
    hf_sam_model_from_meta,
    meta_to_hf_sam_state_dict,
)
from grounded_inpaint.sam.meta_arch import (
    META_SAM_ARCHS,
    MetaSamArch,
    build_meta_sam,
    infer_meta_sam_arch,
    load_meta_sam_state_dict,
)

transformers = pytest.importorskip("transformers")
segment_anything = pytest.importorskip("segment_anything")

TINY = MetaSamArch(
    encoder_embed_dim=16,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=2,
    patch_size=16,
    img_size=64,
    mlp_ratio=4.0,
    out_chans=16,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=32,
    decoder_num_heads=8,
    iou_head_depth=3,
    iou_head_hidden_dim=16,
    num_multimask_outputs=3,
)

# Meta's published hyper-parameters, written out independently of META_SAM_ARCHS.
PUBLISHED = {
    "vit_b": dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12, encoder_global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16, encoder_global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16, encoder_global_attn_indexes=(7, 15, 23, 31)),
}  # fmt: skip
COMMON = dict(
    window_size=14, patch_size=16, img_size=1024, mlp_ratio=4.0, out_chans=256, mask_in_chans=16,
    decoder_depth=2, decoder_mlp_dim=2048, decoder_num_heads=8, iou_head_depth=3,
    iou_head_hidden_dim=256, num_multimask_outputs=3,
)  # fmt: skip

ATOL = 1e-4


def _randomised_sam(arch: MetaSamArch, seed: int = 0) -> torch.nn.Module:
    """A Meta Sam whose every tensor (also the zero-initialised positional ones) is random."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_meta_sam(arch)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in sam.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return sam


@pytest.fixture(scope="module")
def meta_sam() -> torch.nn.Module:
    return _randomised_sam(TINY)


@pytest.fixture(scope="module")
def hf_sam(meta_sam):
    config = hf_sam_config_from_meta(TINY)
    model = transformers.SamModel(config).eval()
    result = model.load_state_dict(meta_to_hf_sam_state_dict(meta_sam.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


@pytest.fixture(scope="module")
def image_embeddings(meta_sam) -> torch.Tensor:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return meta_sam.image_encoder(x)


def _meta_decode(sam, embeddings, points=None, boxes=None, masks=None, multimask=True):
    """Meta prompt encoder + mask decoder: masks ``[N, K, 16, 16]``, IoU ``[N, K]``."""
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return sam.mask_decoder(
            image_embeddings=embeddings,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )


# ------------------------------------------------------------------------------------------
# Architecture inference
# ------------------------------------------------------------------------------------------


def test_infer_recovers_tiny_arch(meta_sam):
    arch = infer_meta_sam_arch(meta_sam.state_dict(), "tiny.pth")
    assert arch == TINY
    assert arch.name == "custom"
    assert arch.image_embedding_size == 4 and arch.encoder_mlp_dim == 64


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_infer_recovers_published_archs(name):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        reference = sam_model_registry[name]()  # Meta's own builder, no weights allocated
    state_dict = reference.state_dict()
    arch = infer_meta_sam_arch(state_dict, f"sam_{name}.pth")
    assert arch == MetaSamArch(**PUBLISHED[name], **COMMON)
    assert arch.name == name and META_SAM_ARCHS[name] == arch

    rebuilt = build_meta_sam(arch, device="meta")
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
        k: tuple(v.shape) for k, v in state_dict.items()
    }

    hf = hf_sam_model_from_meta(state_dict, f"sam_{name}.pth")  # meta tensors: costs nothing
    vision = hf.config.vision_config
    assert vision.hidden_size == PUBLISHED[name]["encoder_embed_dim"]
    assert list(vision.global_attn_indexes) == list(PUBLISHED[name]["encoder_global_attn_indexes"])
    assert vision.num_pos_feats == 128 and vision.mlp_dim == 4 * vision.hidden_size


def test_infer_handles_windowless_and_other_sizes():
    arch = MetaSamArch(24, 3, 3, (0, 1, 2), window_size=0, img_size=96, patch_size=8, mlp_ratio=2.5,
                       out_chans=32, mask_in_chans=8, decoder_depth=1, decoder_mlp_dim=40,
                       iou_head_depth=2, iou_head_hidden_dim=24, num_multimask_outputs=2)  # fmt: skip
    sam = build_meta_sam(arch, device="meta")
    assert infer_meta_sam_arch(sam.state_dict()) == arch


def test_build_on_meta_then_assign_matches(meta_sam, image_embeddings):
    empty = build_meta_sam(TINY, device="meta")
    state_dict = dict(meta_sam.state_dict())
    state_dict["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)  # some files have it
    state_dict["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    load_meta_sam_state_dict(empty, state_dict, "tiny.pth", assign=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(empty.image_encoder(x), image_embeddings)


# ------------------------------------------------------------------------------------------
# Checkpoint errors
# ------------------------------------------------------------------------------------------


def _error(state_dict, source="models/sams/odd.pth") -> str:
    with pytest.raises(CheckpointError) as info:
        infer_meta_sam_arch(state_dict, source)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert source in message and "not a Segment Anything (Meta format) checkpoint" in message
    return message


def test_error_for_grounding_dino_checkpoint():
    t = torch.zeros(1)
    state_dict = {
        "backbone.0.patch_embed.proj.weight": t,
        "transformer.encoder.layers.0.self_attn.value_proj.weight": t,
        "bert.embeddings.word_embeddings.weight": t,
    }
    message = _error(state_dict)
    assert "GroundingDINO" in message and "image_encoder.patch_embed.proj.weight" in message


def test_error_for_transformers_sam_checkpoint(hf_sam):
    assert "transformers SamModel" in _error(hf_sam.state_dict())


def test_error_for_sam_hq_and_sam2(meta_sam):
    hq = dict(meta_sam.state_dict(), **{"mask_decoder.hf_token.weight": torch.zeros(1, 16)})
    assert "SAM-HQ" in _error(hq)
    sam2 = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(1), "sam_mask_decoder.iou_token.weight": torch.zeros(1)}
    assert "SAM 2" in _error(sam2)


def test_error_for_truncated_checkpoint(meta_sam):
    truncated = {k: v for k, v in meta_sam.state_dict().items() if not k.startswith("mask_decoder.")}
    message = _error(truncated, "C:/models/sam_vit_b_01ec64.pth")
    assert "mask_decoder.mask_tokens.weight" in message


def test_error_for_wrapped_checkpoint(meta_sam):
    with pytest.raises(CheckpointError, match="nested under 'model'"):
        infer_meta_sam_arch({"model": meta_sam.state_dict()}, "wrapped.pth")


def test_load_reports_missing_unexpected_and_shapes(meta_sam):
    deeper = build_meta_sam(dataclasses.replace(TINY, encoder_depth=3), device="meta")
    with pytest.raises(CheckpointError, match=r"tiny\.pth.*missing keys.*image_encoder\.blocks\.2\."):
        load_meta_sam_state_dict(deeper, meta_sam.state_dict(), "tiny.pth")
    wider_window = build_meta_sam(dataclasses.replace(TINY, window_size=3), device="meta")
    with pytest.raises(CheckpointError, match=r"shape mismatches.*blocks\.0\.attn\.rel_pos_h: file \(3, 8\) vs model \(5, 8\)"):
        load_meta_sam_state_dict(wider_window, meta_sam.state_dict(), "tiny.pth")
    extra = dict(meta_sam.state_dict(), **{"mask_decoder.hf_token.weight": torch.zeros(1, 16)})
    with pytest.raises(CheckpointError, match=r"unexpected keys.*hf_token.*SAM-HQ"):
        load_meta_sam_state_dict(build_meta_sam(TINY), extra, "tiny.pth")


def test_convert_rejects_foreign_keys(meta_sam):
    with pytest.raises(CheckpointError, match="weird.pth.*model.extra"):
        meta_to_hf_sam_state_dict(dict(meta_sam.state_dict(), **{"model.extra": torch.zeros(1)}), "weird.pth")


# ------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------


def test_hf_config_sizes():
    config = hf_sam_config_from_meta(TINY)
    vision, prompt, decoder = config.vision_config, config.prompt_encoder_config, config.mask_decoder_config
    assert (vision.hidden_size, vision.output_channels, vision.num_hidden_layers) == (16, 16, 2)
    assert (vision.num_attention_heads, vision.window_size, list(vision.global_attn_indexes)) == (2, 2, [1])
    assert (vision.mlp_dim, vision.num_pos_feats, vision.layer_norm_eps) == (64, 8, 1e-6)
    assert (prompt.hidden_size, prompt.image_embedding_size, prompt.mask_input_channels) == (16, 4, 16)
    assert (decoder.num_attention_heads, decoder.mlp_dim, decoder.iou_head_hidden_dim) == (8, 32, 16)
    assert decoder.layer_norm_eps == 1e-5  # Meta's TwoWayTransformer uses nn.LayerNorm's default


def test_converted_keys_cover_samodel_exactly(meta_sam, hf_sam):
    converted = meta_to_hf_sam_state_dict(meta_sam.state_dict())
    expected = hf_sam.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
    assert "pixel_mean" not in converted


def test_image_embeddings_match(meta_sam, hf_sam, image_embeddings):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    hf = hf_sam.get_image_embeddings(x)
    assert hf.shape == image_embeddings.shape == (1, 16, 4, 4)
    torch.testing.assert_close(hf, image_embeddings, atol=ATOL, rtol=0)


BOXES = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 63.0, 47.0]])


@pytest.mark.parametrize("multimask", [True, False])
def test_box_prompts_match(meta_sam, hf_sam, image_embeddings, multimask):
    masks, iou = _meta_decode(meta_sam, image_embeddings, boxes=BOXES, multimask=multimask)
    with torch.no_grad():
        out = hf_sam(image_embeddings=image_embeddings, input_boxes=BOXES[None], multimask_output=multimask)
    k = 3 if multimask else 1
    assert masks.shape == (3, k, 16, 16) and out.pred_masks.shape == (1, 3, k, 16, 16)
    assert iou.shape == (3, k) and out.iou_scores.shape == (1, 3, k)
    torch.testing.assert_close(out.pred_masks[0], masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], iou, atol=ATOL, rtol=0)


@pytest.mark.parametrize("multimask", [True, False])
def test_point_and_box_prompts_match(meta_sam, hf_sam, image_embeddings, multimask):
    points = torch.tensor([[[20.0, 30.0], [5.0, 5.0]], [[15.0, 20.0], [50.0, 40.0]], [[32.0, 24.0], [60.0, 2.0]]])
    labels = torch.tensor([[1, 0], [1, 1], [1, 0]])
    masks, iou = _meta_decode(meta_sam, image_embeddings, points=(points, labels), boxes=BOXES, multimask=multimask)
    with torch.no_grad():
        out = hf_sam(
            image_embeddings=image_embeddings,
            input_points=points[None],  # [B, N, P, 2]
            input_labels=labels[None],  # [B, N, P]
            input_boxes=BOXES[None],  # [B, N, 4]
            multimask_output=multimask,
        )
    torch.testing.assert_close(out.pred_masks[0], masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], iou, atol=ATOL, rtol=0)


def test_point_prompts_without_boxes_match(meta_sam, hf_sam, image_embeddings):
    # Without boxes both add a padding "not a point" token after the points.
    points = torch.tensor([[[20.0, 30.0]], [[50.0, 10.0]]])
    labels = torch.tensor([[1], [0]])
    masks, iou = _meta_decode(meta_sam, image_embeddings, points=(points, labels))
    with torch.no_grad():
        out = hf_sam(image_embeddings=image_embeddings, input_points=points[None], input_labels=labels[None])
    torch.testing.assert_close(out.pred_masks[0], masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], iou, atol=ATOL, rtol=0)


def test_mask_prompt_matches(meta_sam, hf_sam, image_embeddings):
    # transformers embeds one mask per *image* ([B, 1, 16, 16]) and adds it to every prompt of that
    # image; Meta takes one per prompt. They agree for a single prompt.
    mask = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    masks, iou = _meta_decode(meta_sam, image_embeddings, boxes=BOXES[:1], masks=mask)
    with torch.no_grad():
        out = hf_sam(image_embeddings=image_embeddings, input_boxes=BOXES[None, :1], input_masks=mask)
    torch.testing.assert_close(out.pred_masks[0], masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], iou, atol=ATOL, rtol=0)


def test_hf_sam_model_from_meta_matches(meta_sam, hf_sam, image_embeddings):
    model = hf_sam_model_from_meta(meta_sam.state_dict(), "tiny.pth")
    assert not model.training
    assert model.shared_image_embedding.positional_embedding.data_ptr() != (
        meta_sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.data_ptr()
    )  # the model owns its tensors
    with torch.no_grad():
        a = model(image_embeddings=image_embeddings, input_boxes=BOXES[None])
        b = hf_sam(image_embeddings=image_embeddings, input_boxes=BOXES[None])
    torch.testing.assert_close(a.pred_masks, b.pred_masks)
