"""SAM-HQ: loading from the official .pth and from transformers folders, exact round trips of the
in-process conversion, the HQ decoder really in use, batched prompts, clear errors."""

from __future__ import annotations


import pytest
import torch
from tolerance import assert_close, assert_same_weights

from grounded_inpaint.errors import CheckpointError
from grounded_inpaint.models import load_segmenter, sam_family
from grounded_inpaint.sam.convert_hq import (
    hf_sam_hq_model_from_original,
    hf_to_original_sam_hq_state_dict,
    infer_sam_hq_arch,
)
from grounded_inpaint.sam.hq import HFSamHQPredictor
from grounded_inpaint.testing.tiny_sam import TINY_SAM_ARCH, write_tiny_meta_sam
from grounded_inpaint.testing.tiny_sam_extra import build_tiny_sam_hq_hf, tiny_sam_hq_state_dict

BOXES = torch.tensor([[5.0, 6.0, 40.0, 30.0], [30.0, 10.0, 79.0, 47.0], [0.0, 0.0, 80.0, 48.0]])
POINTS = torch.tensor([[[20.0, 20.0], [10.0, 8.0]], [[50.0, 30.0], [0.0, 0.0]], [[40.0, 24.0], [70.0, 40.0]]])
LABELS = torch.tensor([[1, 0], [1, -1], [1, 1]])


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(48, 80, 3, generator=torch.Generator().manual_seed(seed))


def _run(predictor, image=None, **prompts):
    predictor.feature_cache = None  # every call really runs the encoder
    predictor.set_image(_image() if image is None else image)
    return predictor.predict(**prompts)


@pytest.fixture(scope="module")
def hq_pth(models_dir):
    root, paths = models_dir
    return load_segmenter(paths["sam_hq_meta"].name, root, download=False)


@pytest.fixture(scope="module")
def hq_hf(models_dir):
    root, paths = models_dir
    return load_segmenter(paths["sam_hq_hf"].name, root, download=False)


def test_both_layouts_load_as_sam_hq_and_agree(hq_pth, hq_hf, models_dir):
    _, paths = models_dir
    assert sam_family(paths["sam_hq_meta"]) == "sam_hq" and sam_family(paths["sam_hq_hf"]) == "sam_hq"
    assert isinstance(hq_pth, HFSamHQPredictor) and isinstance(hq_hf, HFSamHQPredictor)
    for multimask in ("single", "best", "all"):
        a = _run(hq_pth, boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask=multimask)
        b = _run(hq_hf, boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask=multimask)
        k = 3 if multimask == "all" else 1
        assert a.masks.shape == (3, k, 48, 80) and a.masks.dtype == torch.bool
        assert a.low_res_logits.shape == (3, k, 16, 16) and a.iou.shape == (3, k)
        torch.testing.assert_close(a.low_res_logits, b.low_res_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.iou, b.iou, atol=1e-5, rtol=1e-5)


def test_features_hold_the_early_vit_feature(hq_pth):
    hq_pth.feature_cache = None
    hq_pth.set_image(_image())
    embeddings, early = hq_pth.features
    assert embeddings.shape == (1, TINY_SAM_ARCH.out_chans, 4, 4)
    assert early.shape == (1, 4, 4, TINY_SAM_ARCH.encoder_embed_dim)  # channels last, as the ViT makes it


def test_batch_of_prompts_equals_one_by_one(hq_pth):
    batch = _run(hq_pth, boxes=BOXES, multimask="best")
    for i in range(len(BOXES)):
        single = hq_pth.predict(boxes=BOXES[i : i + 1], multimask="best")
        torch.testing.assert_close(single.low_res_logits, batch.low_res_logits[i : i + 1], atol=1e-5, rtol=1e-5)


def test_points_only_and_mask_prompt(hq_pth):
    out = _run(hq_pth, point_coords=POINTS, point_labels=LABELS)
    assert out.masks.shape == (3, 1, 48, 80)
    refine = hq_pth.predict(boxes=BOXES[:1], mask_input=out.low_res_logits[:1, 0])
    assert refine.masks.shape == (1, 1, 48, 80)


def test_round_trip_original_layout_is_exact(tmp_path):
    """HF model → official names → file → loader: every tensor identical, every output equal within fp32 rounding."""
    reference = build_tiny_sam_hq_hf(seed=3)
    original = hf_to_original_sam_hq_state_dict(reference.state_dict())
    assert "mask_decoder.hf_token.weight" in original and "mask_decoder.compress_vit_feat.3.bias" in original
    path = tmp_path / "roundtrip_hq.pth"
    torch.save(original, path)
    loaded = HFSamHQPredictor.from_checkpoint(path)
    ref_sd, new_sd = reference.state_dict(), loaded.model.state_dict()
    assert_same_weights(new_sd, ref_sd)
    same_normalisation = dict(mean=loaded.mean.tolist(), std=loaded.std.tolist())  # from the file's pixel_mean/std
    a = _run(HFSamHQPredictor(reference, **same_normalisation), boxes=BOXES, point_coords=POINTS, point_labels=LABELS,
             multimask="all")
    b = _run(loaded, boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask="all")
    assert_close(b.low_res_logits, a.low_res_logits)
    assert_close(b.iou, a.iou)
    # and the official names written back are exactly the original file's
    assert set(hf_to_original_sam_hq_state_dict(loaded.model.state_dict())) == set(tiny_sam_hq_state_dict(3))


@pytest.mark.parametrize(
    "key",
    [
        "mask_decoder.hf_token.weight",
        "mask_decoder.hf_mlp.layers.2.weight",
        "mask_decoder.compress_vit_feat.0.weight",
        "mask_decoder.embedding_encoder.3.bias",
        "mask_decoder.embedding_maskfeature.1.weight",
    ],
)
def test_hq_decoder_weights_change_the_masks(key):
    """Each HQ-only tensor is really used: perturbing it changes the output."""
    sd = tiny_sam_hq_state_dict(seed=1)
    base = HFSamHQPredictor(hf_sam_hq_model_from_original(sd))
    sd2 = dict(sd)
    sd2[key] = sd[key] + 0.5
    changed = HFSamHQPredictor(hf_sam_hq_model_from_original(sd2))
    a = _run(base, boxes=BOXES)
    b = _run(changed, boxes=BOXES)
    assert not torch.allclose(a.low_res_logits, b.low_res_logits)


def test_hq_token_only_is_the_hq_mask_alone():
    predictor = HFSamHQPredictor(build_tiny_sam_hq_hf(seed=2))
    combined = _run(predictor, boxes=BOXES)
    predictor.hq_token_only = True
    hq_only = _run(predictor, boxes=BOXES)
    assert not torch.allclose(combined.low_res_logits, hq_only.low_res_logits)
    torch.testing.assert_close(combined.iou, hq_only.iou)


def test_architecture_from_shapes():
    arch, vit_dim = infer_sam_hq_arch(tiny_sam_hq_state_dict())
    assert arch == TINY_SAM_ARCH and vit_dim == TINY_SAM_ARCH.encoder_embed_dim


def test_errors_name_the_file_and_the_problem(tmp_path):
    sd = tiny_sam_hq_state_dict()
    # missing HQ tensor: strict load refuses (never silently random)
    broken = {k: v for k, v in sd.items() if k != "mask_decoder.hf_mlp.layers.1.weight"}
    path = tmp_path / "broken_hq.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match=r"broken_hq\.pth.*1 missing keys \('mask_decoder\.hq_mask_mlp"):
        HFSamHQPredictor.from_checkpoint(path)
    # an unknown extra HQ tensor
    extra = dict(sd, **{"mask_decoder.hf_mlp.layers.3.weight": torch.zeros(2)})
    torch.save(extra, path)
    with pytest.raises(CheckpointError, match=r"unknown SAM-HQ decoder tensors.*hf_mlp\.layers\.3"):
        HFSamHQPredictor.from_checkpoint(path)
    # any other left-over tensor is reported, not dropped
    torch.save(dict(sd, **{"mask_decoder.something_new.weight": torch.zeros(2)}), path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \('mask_decoder\.something_new\.weight'\)"):
        HFSamHQPredictor.from_checkpoint(path)
    # a plain SAM file is not SAM-HQ
    plain = write_tiny_meta_sam(tmp_path / "plain_sam.pth")
    with pytest.raises(CheckpointError, match=r"plain_sam\.pth is not a SAM-HQ checkpoint"):
        HFSamHQPredictor.from_checkpoint(plain)
    # Light HQ-SAM (TinyViT) is named as unsupported
    light = dict(sd, **{"image_encoder.layers.0.blocks.0.attn.qkv.weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match="Light HQ-SAM"):
        infer_sam_hq_arch(light, "sam_hq_vit_tiny.pth")
    # a truncated file
    bad = tmp_path / "truncated_hq.pth"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"truncated_hq\.pth.*(corrupted|truncated)"):
        load_segmenter(str(bad), None, download=False)
    # a folder whose config is another model type
    folder = tmp_path / "not_a_sam"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match=r"not_a_sam.*'bert'.*not a segmenter"):
        load_segmenter(str(folder), None, download=False)
