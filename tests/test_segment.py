"""Segmentation of batches: alignment, empty results, points and mask prompts, errors."""

import logging

import pytest
import torch

from grounded_inpaint.pipeline import grounded_segment
from grounded_inpaint.segment import Point, mask_bbox, parse_points, segment
from grounded_inpaint.structures import Detections, Segments


def _dets(size, boxes, labels=None, scores=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = boxes.shape[0]
    return Detections(boxes, torch.tensor(scores or [0.9] * n), labels or [f"obj{i}" for i in range(n)], size)


def test_one_instance_per_detection_with_metadata(meta_predictor):
    image = torch.rand(48, 80, 3)
    dets = _dets((48, 80), [[5, 5, 40, 30], [30, 10, 79, 47]], ["shoes", "bag"], [0.8, 0.6])
    seg = segment(meta_predictor, [image], [dets])[0]
    assert isinstance(seg, Segments) and len(seg) == 2
    assert seg.labels == ["shoes", "bag"] and seg.masks.shape == (2, 48, 80)
    torch.testing.assert_close(seg.scores, torch.tensor([0.8, 0.6]))
    torch.testing.assert_close(seg.boxes, dets.boxes)
    assert seg.quality.shape == (2,)


def test_batch_stays_aligned_when_an_image_has_no_detection(hf_predictor):
    images = torch.rand(3, 32, 40, 3)
    dets = [_dets((32, 40), [[1, 1, 20, 20]]), Detections.empty((32, 40)), _dets((32, 40), [[5, 5, 39, 31], [0, 0, 10, 10]])]
    segs = segment(hf_predictor, images, dets)
    assert [len(s) for s in segs] == [1, 0, 2]
    assert segs[1].masks.shape == (0, 32, 40)
    assert torch.equal(segs[1].union(), torch.zeros(32, 40))


def test_grounded_segment_aligned_with_no_detection(detector, meta_predictor):
    images = torch.rand(2, 40, 56, 3)
    dets, segs = grounded_segment(detector, meta_predictor, images, "cat", box_threshold=0.999)
    assert len(dets) == len(segs) == 2
    assert all(len(s) == 0 and s.image_size == (40, 56) for s in segs)
    dets, segs = grounded_segment(detector, meta_predictor, images, "red shoes, cat", max_detections=3)
    assert [len(s) for s in segs] == [len(d) for d in dets]
    assert all(len(d) <= 3 for d in dets)


def test_points_refine_their_box_and_loose_points_make_an_instance(meta_predictor):
    image = torch.rand(48, 80, 3)
    dets = _dets((48, 80), [[5, 5, 40, 30]], ["shoes"])
    inside = [Point(20, 20, True), Point(10, 10, False)]
    plain = segment(meta_predictor, [image], [dets])[0]
    refined = segment(meta_predictor, [image], [dets], points=inside)[0]
    assert len(refined) == 1 and refined.labels == ["shoes"]
    assert not torch.equal(plain.quality, refined.quality)  # the points reached the decoder
    loose = segment(meta_predictor, [image], [dets], points=[Point(70, 40)])[0]
    assert loose.labels == ["shoes", "points"]
    torch.testing.assert_close(loose.scores, torch.tensor([0.9, 1.0]))
    only_points = segment(meta_predictor, [image], None, points=[Point(70, 40), Point(60, 30, False)])[0]
    assert only_points.labels == ["points"]


def test_background_points_alone_are_ignored_with_a_warning(meta_predictor, caplog):
    with caplog.at_level(logging.WARNING):
        seg = segment(meta_predictor, [torch.rand(20, 20, 3)], None, points=[Point(3, 3, False)])[0]
    assert len(seg) == 0 and "background point" in caplog.text


def test_mask_prompt(hf_predictor):
    rough = torch.zeros(30, 40)
    rough[5:20, 10:30] = 1
    seg = segment(hf_predictor, [torch.rand(30, 40, 3)], None, mask_prompts=[rough])[0]
    assert seg.labels == ["mask"]
    empty = segment(hf_predictor, [torch.rand(30, 40, 3)], None, mask_prompts=[torch.zeros(30, 40)])[0]
    assert len(empty) == 0


def test_size_and_count_mismatches_are_named(meta_predictor):
    with pytest.raises(ValueError, match="3 images but 2 detection"):
        segment(meta_predictor, torch.rand(3, 8, 8, 3), [Detections.empty((8, 8))] * 2)
    with pytest.raises(ValueError, match="10x8 image"):
        segment(meta_predictor, torch.rand(1, 9, 9, 3), [Detections.empty((8, 10))])
    with pytest.raises(ValueError, match="2 images but 3 mask"):
        segment(meta_predictor, torch.rand(2, 8, 8, 3), None, mask_prompts=[torch.zeros(8, 8)] * 3)
    with pytest.raises(ValueError, match="mask prompt is 5x5"):
        segment(meta_predictor, torch.rand(1, 8, 8, 3), None, mask_prompts=[torch.ones(5, 5)])
    with pytest.raises(ValueError, match="multimask"):
        segment(meta_predictor, torch.rand(1, 8, 8, 3), None, multimask="many")


@pytest.mark.parametrize("size", [(1, 1), (2, 7), (8, 8), (3000, 4096)])
def test_any_image_size(detector, meta_predictor, size):
    image = torch.rand(*size, 3)
    dets, segs = grounded_segment(detector, meta_predictor, [image], "red shoes", max_detections=2)
    assert segs[0].image_size == size and segs[0].masks.shape[1:] == size
    assert segs[0].union().shape == size


def test_interrupt_and_progress(meta_predictor):
    seen = []

    class Stop(Exception):
        pass

    def interrupt():
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        segment(meta_predictor, torch.rand(4, 8, 8, 3), None, progress=lambda d, t: seen.append((d, t)), interrupt=interrupt)
    assert seen == [(1, 4), (2, 4)]


def test_parse_points():
    assert parse_points('[{"x": 1, "y": 2}, {"x": 3.5, "y": 4}]') == [Point(1, 2), Point(3.5, 4)]
    assert parse_points("[[1, 2]]", positive=False) == [Point(1, 2, False)]
    assert parse_points("") == [] and parse_points(None) == []
    assert parse_points('{"x": 1, "y": 2}') == [Point(1, 2)]
    for bad, msg in (("[{", "not valid JSON"), ('[{"x": 1}]', "entry 0"), ("5", "list of points"), ('[["a", 1]]', "entry 0")):
        with pytest.raises(ValueError, match=msg):
            parse_points(bad)


def test_mask_bbox():
    m = torch.zeros(10, 10)
    assert mask_bbox(m) is None
    m[2:5, 3:9] = 1
    assert mask_bbox(m).tolist() == [3, 2, 9, 5]
