"""The faster code paths give the reference results: lean attention, bf16, warm models."""

from __future__ import annotations

import pytest
import torch
from tolerance import assert_masks_agree

from grounded_inpaint import models
from grounded_inpaint.detector import GroundingDinoDetector, _deformable_attention
from grounded_inpaint.sam import predictor as predictor_mod
from grounded_inpaint.sam.predictor import MetaSamPredictor


def test_lean_deformable_attention_matches_transformers():
    from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

    g = torch.Generator().manual_seed(0)
    shapes = [(6, 8), (3, 4), (2, 2)]
    b, heads, dim, points, queries = 2, 4, 8, 3, 11
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, heads, dim, generator=g)
    locations = torch.rand(b, queries, heads, len(shapes), points, 2, generator=g) * 1.2 - 0.1  # some outside
    weights = torch.softmax(torch.randn(b, queries, heads, len(shapes) * points, generator=g), -1)
    weights = weights.view(b, queries, heads, len(shapes), points)
    spatial = torch.tensor(shapes)
    start = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    expected = MultiScaleDeformableAttention()(value, spatial, shapes, start, locations, weights, 64)
    got = _deformable_attention(value, spatial, shapes, start, locations.clone(), weights.clone(), 64)
    assert got.shape == (b, queries, heads * dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_detector_lean_attention_matches_transformers(detector):
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(2))
    tokens = detector.tokenize("cat, dog")
    with torch.inference_mode():
        detector.lean_attention = False
        ref = detector._forward([image], tokens, [None])
        detector.lean_attention = True
        got = detector._forward([image], tokens, [None])
    torch.testing.assert_close(got[1], ref[1], atol=1e-4, rtol=1e-4)
    finite = torch.isfinite(ref[0])
    torch.testing.assert_close(got[0][finite], ref[0][finite], atol=1e-4, rtol=1e-4)


def test_meta_lean_attention_matches_meta(meta_predictor, monkeypatch):
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        meta_predictor.lean_attention = False
        ref = meta_predictor._encode(pixels)
        meta_predictor.lean_attention = True
        got = meta_predictor._encode(pixels)
        monkeypatch.setattr(predictor_mod, "ATTENTION_QUERY_CHUNK", 1)  # one query row per chunk
        chunked = meta_predictor._encode(pixels)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=1e-5)
    assert not any("forward" in b.attn.__dict__ for b in meta_predictor.model.image_encoder.blocks)


@pytest.mark.parametrize("family", ["sam_hf", "sam_hq_hf"])
def test_transformers_lean_attention_matches_transformers(models_dir, family, monkeypatch):
    from grounded_inpaint.models import load_segmenter
    from grounded_inpaint.sam import predictor as predictor_mod

    root, paths = models_dir
    predictor = load_segmenter(str(paths[family]), None, download=False, cache=False)
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        predictor.lean_attention = False
        ref = predictor._encode(pixels)
        predictor.lean_attention = True
        got = predictor._encode(pixels)
        monkeypatch.setattr(predictor_mod, "ATTENTION_QUERY_CHUNK", 1)  # one query row per chunk
        chunked = predictor._encode(pixels)
    for a, b, c in zip(*(x if isinstance(x, tuple) else (x,) for x in (ref, got, chunked))):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c, a, atol=1e-5, rtol=1e-5)
    assert not any("forward" in layer.attn.__dict__ for layer in predictor.model.vision_encoder.layers)


def test_decoder_chunks_give_the_same_masks(hf_predictor, monkeypatch):
    hf_predictor.set_image(torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(4)))
    boxes = torch.tensor([[2.0, 2.0, 30.0, 40.0], [10.0, 5.0, 60.0, 45.0], [0.0, 0.0, 64.0, 48.0]])
    whole = hf_predictor.predict(boxes=boxes)
    monkeypatch.setattr(hf_predictor, "decode_chunk", 1)
    parts = hf_predictor.predict(boxes=boxes)
    hf_predictor.reset_image()
    assert_masks_agree(parts.masks, whole.masks)
    torch.testing.assert_close(parts.low_res_logits, whole.low_res_logits, atol=1e-5, rtol=1e-5)


def test_bf16_on_cpu(models_dir):
    root, paths = models_dir
    det = models.load_detector(paths["grounding_dino"].name, root, dtype="bf16", download=False)
    # bf16 weights are slow for GroundingDINO on the CPU: fp32 weights under bf16 autocast instead.
    assert det.dtype == torch.float32 and det.autocast == torch.bfloat16
    ref = models.load_detector(paths["grounding_dino"].name, root, download=False)
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(5))
    tokens = det.tokenize("cat")
    with torch.inference_mode():
        low = det._forward([image], tokens, [None])
        full = ref._forward([image], tokens, [None])
    assert low[1].dtype in (torch.float32, torch.bfloat16)
    # normalised box coordinates; bf16 rounding may reorder near-tied queries, so each fp32 box is
    # compared with its nearest bf16 box (as benchmarks/bench.py does)
    distance = torch.cdist(full[1][0].float(), low[1][0].float(), p=1) / 4
    assert distance.min(dim=1).values.mean() < 0.05
    assert len(det.detect(image, "cat", 0.0, 0.0)[0].labels) > 0

    sam = models.load_segmenter(paths["sam_meta"].name, root, dtype="bf16", download=False)
    sam32 = models.load_segmenter(paths["sam_meta"].name, root, download=False)
    assert sam.dtype == torch.bfloat16
    box = torch.tensor([[5.0, 5.0, 50.0, 40.0]])
    masks = []
    for p in (sam, sam32):
        p.set_image(image)
        pred = p.predict(boxes=box)
        assert pred.masks.dtype == torch.bool and pred.iou.dtype == torch.float32
        masks.append(pred.masks)
        p.reset_image()
    inter = (masks[0] & masks[1]).sum().item()
    union = max(1, (masks[0] | masks[1]).sum().item())
    assert inter / union > 0.8


def test_second_run_loads_nothing(models_dir, monkeypatch):
    """Warm models: asking again (a second pipeline run in the same process) loads no weights."""
    from grounded_inpaint.pipeline import grounded_segment

    root, paths = models_dir
    models.clear_cache()
    loads = {"dino": 0, "sam": 0}
    dino_load, sam_load = GroundingDinoDetector.from_pretrained.__func__, MetaSamPredictor.from_checkpoint.__func__

    def counting_dino(cls, *a, **k):
        loads["dino"] += 1
        return dino_load(cls, *a, **k)

    def counting_sam(cls, *a, **k):
        loads["sam"] += 1
        return sam_load(cls, *a, **k)

    monkeypatch.setattr(GroundingDinoDetector, "from_pretrained", classmethod(counting_dino))
    monkeypatch.setattr(MetaSamPredictor, "from_checkpoint", classmethod(counting_sam))
    image = torch.rand(64, 64, 3)
    for prompt in ("cat", "dog"):
        det = models.load_detector(paths["grounding_dino"].name, root, download=False)
        sam = models.load_segmenter(paths["sam_meta"].name, root, download=False)
        grounded_segment(det, sam, image, prompt, box_threshold=0.0)
    assert loads == {"dino": 1, "sam": 1}
    models.clear_cache()


def test_meta_shared_image_decoder_matches_meta(meta_predictor):
    from grounded_inpaint.sam.predictor import _meta_decode_shared_image

    sam = meta_predictor.model
    g = torch.Generator().manual_seed(6)
    features = torch.randn(1, *meta_predictor.features.shape[1:], generator=g) if meta_predictor.features is not None else None
    if features is None:
        meta_predictor.set_image(torch.rand(64, 64, 3, generator=g))
        features = meta_predictor.features
        meta_predictor.reset_image()
    boxes = torch.tensor([[2.0, 3.0, 30.0, 40.0], [10.0, 5.0, 60.0, 45.0], [0.0, 0.0, 64.0, 64.0]])
    points = (torch.rand(3, 2, 2, generator=g) * 64, torch.tensor([[1, 0], [1, -1], [0, 1]]))
    with torch.inference_mode():
        for kwargs in ({"boxes": boxes}, {"points": points}, {"boxes": boxes, "points": points}):
            sparse, dense = sam.prompt_encoder(masks=None, **{"points": None, "boxes": None, **kwargs})
            for multimask in (False, True):
                ref = sam.mask_decoder(image_embeddings=features, image_pe=sam.prompt_encoder.get_dense_pe(),
                                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask)
                got = _meta_decode_shared_image(sam.mask_decoder, features, sam.prompt_encoder.get_dense_pe(), sparse, dense[:1], multimask)
                assert got[0].shape == ref[0].shape and got[1].shape == ref[1].shape
                torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(got[1], ref[1], atol=1e-4, rtol=1e-4)
