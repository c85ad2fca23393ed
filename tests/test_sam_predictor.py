"""SAM predictor: Meta/transformers parity, encode-once, one batched decode, geometry at any size."""

import pytest
import torch
from tolerance import assert_masks_agree

from grounded_inpaint.sam.predictor import SamPredictorBase, preprocess_shape


def _image(h=48, w=80, seed=0):
    return torch.rand(h, w, 3, generator=torch.Generator().manual_seed(seed))


BOXES = torch.tensor([[5.0, 6.0, 40.0, 30.0], [30.0, 10.0, 79.0, 47.0], [0.0, 0.0, 80.0, 48.0]])


@pytest.mark.parametrize("multimask", ["single", "best", "all"])
def test_meta_and_transformers_give_the_same_masks(meta_predictor, hf_predictor, multimask):
    image = _image()
    points = torch.tensor([[[20.0, 20.0], [10.0, 8.0]], [[50.0, 30.0], [0.0, 0.0]], [[40.0, 24.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0], [1, -1], [1, -1]])
    outs = []
    for predictor in (meta_predictor, hf_predictor):
        predictor.set_image(image)
        features = predictor.features.clone()
        outs.append((features, predictor.predict(BOXES, points, labels, multimask=multimask)))
    (fa, a), (fb, b) = outs
    torch.testing.assert_close(fa, fb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.iou, b.iou, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.low_res_logits, b.low_res_logits, atol=1e-3, rtol=1e-4)
    agree = (a.masks == b.masks).float().mean()
    assert agree > 0.999
    k = 3 if multimask == "all" else 1
    assert a.masks.shape == (3, k, 48, 80) and a.masks.dtype == torch.bool


def test_mask_input_parity(meta_predictor, hf_predictor):
    image = _image(seed=1)
    rough = torch.zeros(48, 80)
    rough[10:30, 20:60] = 1
    results = []
    for predictor in (meta_predictor, hf_predictor):
        predictor.set_image(image)
        logits = predictor.mask_to_logits(rough)[None]
        assert logits.shape == (1, predictor.image_size // 4, predictor.image_size // 4)
        results.append(predictor.predict(boxes=torch.tensor([[20.0, 10.0, 60.0, 30.0]]), mask_input=logits))
    torch.testing.assert_close(results[0].low_res_logits, results[1].low_res_logits, atol=1e-3, rtol=1e-4)


def test_best_is_the_highest_predicted_iou(meta_predictor):
    meta_predictor.set_image(_image(seed=2))
    every = meta_predictor.predict(BOXES, multimask="all")
    best = meta_predictor.predict(BOXES, multimask="best")
    torch.testing.assert_close(best.iou[:, 0], every.iou.max(dim=1).values)
    idx = every.iou.argmax(dim=1)
    assert_masks_agree(best.masks[:, 0], every.masks[torch.arange(3), idx])


def test_encode_once_decode_once(meta_predictor, monkeypatch):
    calls = {"encode": 0, "decode": 0}
    encode, decode = meta_predictor._encode, meta_predictor._decode

    def counting_encode(*a, **k):
        calls["encode"] += 1
        return encode(*a, **k)

    def counting_decode(*a, **k):
        calls["decode"] += 1
        return decode(*a, **k)

    monkeypatch.setattr(meta_predictor, "_encode", counting_encode)
    monkeypatch.setattr(meta_predictor, "_decode", counting_decode)
    meta_predictor.set_image(_image(seed=3))
    boxes = torch.rand(16, 4) * 40
    boxes[:, 2:] += boxes[:, :2]
    out = meta_predictor.predict(boxes)
    meta_predictor.predict(boxes[:2])
    assert calls == {"encode": 1, "decode": 2}
    assert out.masks.shape[0] == 16


def test_predict_needs_an_image_and_a_prompt(hf_predictor):
    hf_predictor.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        hf_predictor.predict(BOXES)
    hf_predictor.set_image(_image())
    with pytest.raises(ValueError, match="at least one prompt"):
        hf_predictor.predict()
    with pytest.raises(ValueError, match="same number of prompts"):
        hf_predictor.predict(BOXES, torch.zeros(2, 1, 2), torch.ones(2, 1))
    with pytest.raises(ValueError, match="point_labels"):
        hf_predictor.predict(point_coords=torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="multimask"):
        hf_predictor.predict(BOXES, multimask="three")


class BoxOracle(SamPredictorBase):
    """A stand-in model whose 'mask' for a box prompt is exactly that box in the model's input frame.

    It checks the geometry that surrounds the model: resize, prompt transform, low-res upsampling,
    crop of the padding and resize back to the original image.
    """

    def __init__(self, image_size=1024):
        super().__init__(torch.nn.Linear(1, 1), image_size=image_size, mean=(0, 0, 0), std=(1, 1, 1), source="oracle")

    def _encode(self, pixels):
        return torch.zeros(1, 1, self.image_size // 16, self.image_size // 16)

    def _decode(self, boxes, points, labels, masks, multimask_output):
        m = self.image_size // 4
        centres = (torch.arange(m, dtype=torch.float32) + 0.5) * 4  # low-res pixel centres in the input frame
        x_in = (centres[None] >= boxes[:, 0:1]) & (centres[None] <= boxes[:, 2:3])
        y_in = (centres[None] >= boxes[:, 1:2]) & (centres[None] <= boxes[:, 3:4])
        logits = torch.where(y_in[:, :, None] & x_in[:, None, :], 10.0, -10.0)
        k = 3 if multimask_output else 1
        return logits[:, None].expand(-1, k, -1, -1), torch.ones(boxes.shape[0], k)


@pytest.mark.parametrize("size", [(1, 1), (3, 8), (8, 8), (5, 2), (47, 81), (768, 1024), (3000, 4096)])
def test_masks_land_in_original_pixels(size):
    h, w = size
    oracle = BoxOracle()
    oracle.set_image(torch.zeros(h, w, 3))
    assert oracle.input_size == preprocess_shape(h, w, 1024)
    import math

    boxes = torch.tensor([[w // 4, h // 2, math.ceil(0.75 * w), h], [0, 0, w, h]], dtype=torch.float32)
    pred = oracle.predict(boxes)
    assert pred.masks.shape == (2, 1, h, w)
    cell = 4 * max(h, w) / 1024 + 1  # one low-res pixel, in original pixels, plus interpolation
    for mask, box in zip(pred.masks[:, 0], boxes):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert ys.numel() > 0
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert (found - box).abs().max() <= cell, (found, box)


def test_points_transform_like_boxes():
    oracle = BoxOracle()
    oracle.set_image(torch.zeros(300, 400, 3))
    torch.testing.assert_close(oracle.transform_coords(torch.tensor([[400.0, 300.0]])), torch.tensor([[1024.0, 768.0]]))
    torch.testing.assert_close(oracle.transform_boxes(torch.tensor([[0.0, 0.0, 200.0, 150.0]])), torch.tensor([[0.0, 0.0, 512.0, 384.0]]))
