"""GroundingDINO detection: parity with transformers' post-processing, geometry, batches, bad input."""

import pytest
import torch

from grounded_inpaint.detector import box_iou, nms, resize_shortest_edge
from grounded_inpaint.prompts import EmptyPromptError
from grounded_inpaint.structures import Detections

PROMPT = "red shoes, cat"


def _raw_outputs(detector, image, prompt=PROMPT):
    tokens = detector.tokenize(prompt)
    pixel_values, pixel_mask = detector.preprocess([image])
    assert bool(pixel_mask.all())  # an ordinary image is not padded
    with torch.inference_mode():
        outputs = detector.model(pixel_values=pixel_values, pixel_mask=pixel_mask, **tokens)
    return tokens, outputs


def _clean(label: str) -> str:
    words = [w for w in label.replace(".", " ").split() if w not in ("[SEP]", "[CLS]", "[PAD]")]
    return " ".join(words)


@pytest.mark.parametrize("size", [(48, 80), (64, 64), (37, 101)])
def test_postprocess_equals_transformers(detector, size):
    image = torch.rand(*size, 3, generator=torch.Generator().manual_seed(sum(size)))
    tokens, outputs = _raw_outputs(detector, image)
    ours = detector.postprocess(
        outputs.logits[0], outputs.pred_boxes[0], tokens["input_ids"][0], size, prompt=PROMPT,
        box_threshold=0.3, text_threshold=0.25, nms_iou=None,
    )
    ref = detector.processor.post_process_grounded_object_detection(
        outputs, tokens["input_ids"], threshold=0.3, text_threshold=0.25, target_sizes=[size]
    )[0]
    assert len(ours) == len(ref["scores"]) > 0
    order = torch.argsort(ref["scores"], descending=True, stable=True)
    h, w = size
    ref_boxes = ref["boxes"][order].clone()
    ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(0, w)
    ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(0, h)
    torch.testing.assert_close(ours.scores, ref["scores"][order])
    torch.testing.assert_close(ours.boxes, ref_boxes)
    ref_labels = [_clean(ref["text_labels"][i]) for i in order.tolist()]
    for mine, theirs in zip(ours.labels, ref_labels):
        if theirs:
            assert mine == theirs
        else:  # transformers leaves it empty; we name the best-matching category
            assert mine in ("red shoes", "cat")


def test_preprocessing_matches_the_processor(detector):
    image = torch.rand(48, 80, 3, generator=torch.Generator().manual_seed(0))
    ours, _ = detector.preprocess([image])
    ref = detector.processor.image_processor(images=[(image * 255).round().to(torch.uint8).permute(2, 0, 1)], return_tensors="pt")["pixel_values"]
    assert ours.shape == ref.shape
    assert (ours - ref).abs().mean() < 0.05


@pytest.mark.parametrize(
    "hw, expected",
    [((480, 640), (800, 1066)), ((3000, 4096), (800, 1092)), ((100, 1000), (133, 1333)), ((1, 1), (800, 800)), ((800, 1200), (800, 1200))],
)
def test_resize_rule(hw, expected):
    assert resize_shortest_edge(*hw, 800, 1333) == expected


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (8, 8), (7, 5), (3000, 4096)])
def test_boxes_land_in_original_pixels(detector, size):
    """Known normalised boxes go to the original image's pixels, whatever its size."""
    h, w = size
    logits = torch.full((3, 32), -10.0)
    logits[:, 1] = 5.0  # token "red" scores high for every query
    pred = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.25, 0.75, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]])
    ids = detector.tokenize("red shoes")["input_ids"][0]
    dets = detector.postprocess(logits, pred, ids, size, prompt="red shoes", nms_iou=None)
    assert dets.image_size == size
    expected = torch.tensor([[0, 0, w, h], [0, 0.5 * h, 0.5 * w, h], [0.75 * w, 0.75 * h, w, h]], dtype=torch.float32)
    # all scores tie, so the order is the query order
    torch.testing.assert_close(dets.boxes, expected)
    assert dets.labels == ["red"] * 3


def test_batch_alignment_and_sizes(detector):
    images = [torch.rand(48, 80, 3), torch.rand(1, 1, 3), torch.rand(48, 80, 3), torch.rand(9, 7, 3)]
    dets = detector.detect(images, PROMPT, batch_size=2)
    assert [d.image_size for d in dets] == [(48, 80), (1, 1), (48, 80), (9, 7)]
    for d in dets:
        if len(d):
            assert (d.boxes[:, 0::2] <= d.image_size[1]).all() and (d.boxes[:, 1::2] <= d.image_size[0]).all()
            assert (d.boxes >= 0).all()
    batched = detector.detect(torch.stack([images[0], images[2]]), PROMPT, batch_size=2)
    single = [detector.detect(im, PROMPT)[0] for im in (images[0], images[2])]
    for a, b in zip(batched, single):
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=1e-4)


def test_nothing_found_gives_empty_results_not_a_shorter_batch(detector):
    dets = detector.detect(torch.rand(3, 40, 50, 3), PROMPT, box_threshold=0.999)
    assert len(dets) == 3 and all(len(d) == 0 and d.image_size == (40, 50) for d in dets)


def test_max_detections_and_nms(detector):
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(3))
    everything = detector.detect(image, PROMPT, nms_iou=None)[0]
    assert len(everything) > 2
    assert len(detector.detect(image, PROMPT, max_detections=2, nms_iou=None)[0]) == 2
    torch.testing.assert_close(detector.detect(image, PROMPT, max_detections=2, nms_iou=None)[0].scores, everything.scores[:2])
    assert (everything.scores[:-1] >= everything.scores[1:]).all()
    deduped = detector.detect(image, PROMPT, nms_iou=0.3)[0]
    assert len(deduped) <= len(everything)
    for label in set(deduped.labels):
        same = deduped.boxes[[i for i, l in enumerate(deduped.labels) if l == label]]
        iou = box_iou(same, same) - torch.eye(len(same))
        assert (iou <= 0.3 + 1e-6).all()


def test_nms_keeps_other_labels():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5, ["a", "b", "a"]).tolist() == [0, 1]
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2]


@pytest.mark.parametrize("prompt", ["", "  ", ". ,"])
def test_empty_prompt(detector, prompt):
    with pytest.raises(EmptyPromptError):
        detector.detect(torch.rand(8, 8, 3), prompt)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_threshold_range(detector, bad):
    with pytest.raises(ValueError, match=r"box_threshold must be a number in 0\.\.1; got"):
        detector.detect(torch.rand(8, 8, 3), "cat", box_threshold=bad)


def test_rgba_and_grayscale_inputs(detector):
    rgba = torch.rand(20, 30, 4)
    gray = torch.rand(20, 30)
    out = detector.detect([rgba, gray], "cat")
    assert [d.image_size for d in out] == [(20, 30), (20, 30)]


def test_json_round_trip(detector):
    d = detector.detect(torch.rand(32, 32, 3), PROMPT)[0]
    back = Detections.from_json(d.to_json())
    assert back.labels == d.labels and torch.allclose(back.boxes, d.boxes, atol=1e-3)
