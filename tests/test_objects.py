"""The editor's named objects: parsing the JSON users and the editor write, checking it against the
picture, how objects become SAM prompts (alongside detections and plain clicks), and the masks
they give compared with the predictor prompted directly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from grounded_inpaint.objects import (
    MAX_OBJECTS,
    MAX_TOTAL_POINTS,
    EditorObject,
    ObjectsSpec,
    check_objects_on_image,
    objects_to_json,
    parse_objects,
)
from grounded_inpaint.segment import Point, plan_prompts, segment, segment_image
from grounded_inpaint.structures import Detections


def test_the_editor_format_and_its_short_forms():
    spec = parse_objects(json.dumps({
        "objects": [
            {"name": "  dress  ", "box": [380, 610, 120, 40], "points": [[250, 300, 1], [140, 90, 0]]},
            {"points": [[10.5, 20, 1], [11, 21], {"x": 3, "y": 4, "positive": False}, {"x": 5, "y": 6, "label": 0}]},
            {"name": "", "box": None},
        ],
        "size": [640, 800],
    }))
    assert spec.size == (640, 800)
    dress, second, third = spec.objects
    assert dress == EditorObject("dress", (120.0, 40.0, 380.0, 610.0), ((250.0, 300.0, True), (140.0, 90.0, False)))
    assert second.name == "object 2" and second.box is None
    assert second.points == ((10.5, 20.0, True), (11.0, 21.0, True), (3.0, 4.0, False), (5.0, 6.0, False))
    assert third.name == "object 3" and third.is_empty
    # a bare list, an empty text and an empty dict
    assert parse_objects('[{"name": "cup", "box": [0, 0, 4, 4]}]').objects[0].name == "cup"
    assert parse_objects("") == parse_objects(None) == parse_objects("  ") == parse_objects("{}") == ObjectsSpec()


def test_json_round_trip():
    spec = parse_objects({"objects": [{"name": "a", "box": [1.25, 2, 3, 4.5], "points": [[1, 2, 1], [3.75, 4, 0]]},
                                      {"name": "b", "points": [[7, 8, 1]]}], "size": [10, 12]})
    text = objects_to_json(spec)
    assert parse_objects(text) == spec
    assert json.loads(text)["objects"][0] == {"name": "a", "box": [1.25, 2, 3, 4.5], "points": [[1, 2, 1], [3.75, 4, 0]]}


@pytest.mark.parametrize("text, words", [
    ("{not json", ["objects", "not valid JSON", "line 1"]),
    ('{"objects": [], "sise": [1, 2]}', ["unknown key", "'sise'"]),
    ('{"objects": [{"name": "cup", "boxes": [0, 0, 1, 1]}]}', ["object 1", "unknown key", "'boxes'"]),
    ('{"objects": [{"name": "cup", "box": [0, 0, 1]}]}', ["object 1 ('cup') box", "[x0, y0, x1, y1]"]),
    ('{"objects": [{"name": "cup", "box": [0, 0, 5, 0]}]}', ["has no area"]),
    ('{"objects": [{"name": "cup", "box": [0, NaN, 5, 5]}]}', ["box[1]", "finite"]),
    ('{"objects": [{"name": "cup", "box": [0, "1", 5, 5]}]}', ["box[1]", "must be a number"]),
    ('{"objects": [{"name": "cup", "points": [[1, Infinity, 1]]}]}', ["point 1 y", "finite"]),
    ('{"objects": [{"name": "cup", "points": [[1, 2, 2]]}]}', ["point 1 label", "1 (on the object) or 0"]),
    ('{"objects": [{"name": "cup", "points": [[1, 2, true, 4]]}]}', ["point 1", "[x, y, label]"]),
    ('{"objects": [{"name": "cup", "points": [[true, 2]]}]}', ["point 1 x", "must be a number"]),
    ('{"objects": [{"name": 5}]}', ["name must be text"]),
    ('{"objects": "cup"}', ['"objects" must be a list']),
    ('{"objects": ["cup"]}', ["object 1 must be"]),
    ('{"objects": [], "size": [0, 5]}', ["size", "whole numbers >= 1"]),
    ('{"objects": [], "size": [2.5, 5]}', ["size", "whole numbers >= 1"]),
])
def test_bad_objects_are_named(text, words):
    with pytest.raises(ValueError) as info:
        parse_objects(text)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_counts_and_sizes_are_bounded():
    too_many = [{"name": f"o{i}", "box": [0, 0, 2, 2]} for i in range(MAX_OBJECTS + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_OBJECTS}"):
        parse_objects({"objects": too_many})
    points = [[1, 1, 1]] * (MAX_TOTAL_POINTS // 2 + 1)
    with pytest.raises(ValueError, match=f"more than {MAX_TOTAL_POINTS} points"):
        parse_objects({"objects": [{"points": points}, {"points": points}]})
    with pytest.raises(ValueError, match="name is 65 characters"):
        parse_objects({"objects": [{"name": "x" * 65}]})
    with pytest.raises(ValueError, match="characters long"):
        parse_objects(" " * (300 * 1024))
    assert len(parse_objects({"objects": too_many[:MAX_OBJECTS]})) == MAX_OBJECTS


def test_objects_must_lie_on_the_picture():
    spec = parse_objects({"objects": [{"name": "cup", "box": [0, 0, 40, 30], "points": [[40, 30, 1]]}]})
    check_objects_on_image(spec, 30, 40)  # the far edges are on the picture
    with pytest.raises(ValueError, match=r"object 1 \('cup'\) box \[0, 0, 40, 30\] reaches outside the 39x30 image"):
        check_objects_on_image(spec, 30, 39)
    spec = parse_objects({"objects": [{"name": "cup", "points": [[-0.5, 3, 1]]}]})
    with pytest.raises(ValueError, match=r"point 1 \(x=-0.5, y=3\) lies outside the 40x30 image"):
        check_objects_on_image(spec, 30, 40)
    spec = parse_objects({"objects": [], "size": [40, 30]})
    check_objects_on_image(spec, 30, 40)
    with pytest.raises(ValueError, match="placed on a 40x30 picture but this image is 80x60"):
        check_objects_on_image(spec, 60, 80)


def _dets():
    return Detections([[0.0, 0, 20, 20], [30, 0, 50, 20]], [0.9, 0.8], ["cup", "saucer"], (40, 60))


def test_plan_prompts_order_labels_and_refinement():
    objects = parse_objects({"objects": [
        {"name": "handle", "points": [[10, 10, 1], [45, 10, 0], [55, 35, 1]]},  # two clicks refine, one of its own
        {"name": "spoon", "box": [2, 22, 58, 38], "points": [[10, 30, 1], [5, 5, 1]]},  # a box: all its clicks stay
        {"name": "ghost", "points": [[58, 38, 0]]},  # a lone negative click: nothing
        {"name": "empty"},
    ]})
    plans = plan_prompts((40, 60), _dets(), points=[Point(12, 12), Point(59, 39)], objects=objects)
    assert [p.label for p in plans] == ["cup", "saucer", "handle", "spoon", "points"]
    assert [p.source for p in plans] == [("detection", 0), ("detection", 1), ("object", 0), ("object", 1), ("points", 0)]
    assert plans[0].points == (Point(12, 12), Point(10, 10))
    assert plans[1].points == (Point(45, 10, False),)
    assert plans[2].box is None and plans[2].points == (Point(55, 35),)
    assert plans[3].box.tolist() == [2, 22, 58, 38] and plans[3].points == (Point(10, 30), Point(5, 5))
    assert plans[4].points == (Point(59, 39),)
    assert [p.score for p in plans] == pytest.approx([0.9, 0.8, 1.0, 1.0, 1.0])
    # without detections the box-less object's clicks are all its own
    plans = plan_prompts((40, 60), None, objects=objects)
    assert [p.label for p in plans] == ["handle", "spoon"] and len(plans[0].points) == 3


def test_plan_prompts_refuses_objects_off_the_picture():
    objects = parse_objects({"objects": [{"name": "cup", "box": [0, 0, 61, 10]}]})
    with pytest.raises(ValueError, match="cup"):
        plan_prompts((40, 60), None, objects=objects)


def test_objects_give_the_masks_of_their_prompts(meta_predictor):
    """Each object's instance is the predictor's answer to exactly its prompts, at full size."""
    g = torch.Generator().manual_seed(3)
    image = torch.rand(40, 60, 3, generator=g)
    objects = parse_objects({"objects": [
        {"name": "cup", "box": [4, 6, 30, 34], "points": [[15, 20, 1], [28, 8, 0]]},
        {"name": "saucer", "points": [[45, 30, 1], [50, 10, 1]]},
    ]})
    segs = segment_image(meta_predictor, image, objects=objects, multimask="auto")
    assert segs.labels == ["cup", "saucer"] and segs.masks.shape == (2, 40, 60)
    assert segs.boxes[0].tolist() == [4, 6, 30, 34]
    meta_predictor.set_image(image)
    try:
        cup = meta_predictor.predict(boxes=torch.tensor([[4.0, 6, 30, 34]]), point_coords=torch.tensor([[[15.0, 20], [28, 8]]]),
                                     point_labels=torch.tensor([[1, 0]]), multimask="single")
        saucer = meta_predictor.predict(point_coords=torch.tensor([[[45.0, 30], [50, 10]]]), point_labels=torch.tensor([[1, 1]]),
                                        multimask="best")
    finally:
        meta_predictor.reset_image()
    # the same prompts decoded in another grouping: equal up to float rounding at the threshold
    assert (segs.masks[0] ^ cup.masks[0, 0]).float().mean() < 0.002
    assert (segs.masks[1] ^ saucer.masks[0, 0]).float().mean() < 0.002


def test_segment_applies_objects_to_every_image_and_keeps_the_batch(meta_predictor):
    images = torch.rand(3, 24, 32, 3)
    objects = parse_objects({"objects": [{"name": "a", "box": [2, 2, 12, 12]}, {"name": "b", "points": [[20, 16, 1]]}]})
    dets = [None, Detections([[0.0, 0, 30, 20]], [0.5], ["big"], (24, 32)), None]
    out = segment(meta_predictor, images, dets, objects=objects)
    assert [s.labels for s in out] == [["a", "b"], ["big", "a"], ["a", "b"]]  # b's click refines "big" in image 2
    assert all(s.masks.shape == (len(s.labels), 24, 32) for s in out)


def test_segment_stops_when_the_objects_were_placed_on_another_picture(meta_predictor):
    objects = parse_objects({"objects": [{"name": "a", "box": [2, 2, 12, 12]}], "size": [64, 48]})
    with pytest.raises(ValueError, match="placed on a 64x48 picture but this image is 32x24"):
        segment_image(meta_predictor, torch.rand(24, 32, 3), objects=objects)


def test_mask_output_size_gives_small_masks_that_match_the_full_ones(meta_predictor):
    """Previews ask for masks at a smaller size: the same masks, resampled (boxes stay in image pixels)."""
    import copy

    from grounded_inpaint.segment import decode_plan_masks

    image = torch.rand(80, 120, 3)
    plans = plan_prompts((80, 120), None, objects=parse_objects({"objects": [
        {"name": "a", "box": [10, 10, 70, 60]}, {"name": "b", "points": [[100, 40, 1]]}]}))
    meta_predictor.set_image(image)
    try:
        full, q_full, b_full, _ = decode_plan_masks(meta_predictor, plans)
        view = copy.copy(meta_predictor)
        view.mask_output_size = (40, 60)
        small, q_small, b_small, _ = decode_plan_masks(view, plans)
    finally:
        meta_predictor.reset_image()
    assert small.shape == (2, 40, 60) and full.shape == (2, 80, 120)
    assert torch.equal(q_small, q_full)
    assert b_small[0].tolist() == [10, 10, 70, 60]
    down = torch.nn.functional.interpolate(full[:, None].float(), size=(40, 60), mode="area")[:, 0]
    assert ((down > 0.5) ^ small).float().mean() < 0.05
    if full[1].any():
        assert torch.allclose(b_small[1], b_full[1], atol=2 * 120 / 60 + 1e-4)
    assert not math.isnan(float(q_small.sum()))


@pytest.mark.parametrize("family", ["sam_meta", "sam_hf", "sam_hq_meta", "sam_hq_hf", "sam2_file", "sam2_hf"])
def test_live_preview_equals_the_run_for_every_sam_family(models_dir, family):
    """The editor's live masks (decoder only, on the cached embedding, from a copy of the predictor)
    are the masks a run gives, for SAM, SAM-HQ and SAM 2.1 in both layouts."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from grounded_inpaint.cache import image_key
    from grounded_inpaint.live import ImageRef, LiveRequest, LiveRequestError, preview_masks
    from grounded_inpaint.models import load_segmenter

    root, paths = models_dir
    sam = load_segmenter(paths[family].name if family != "sam2_file" else paths[family], root, download=False)
    image = torch.rand(36, 50, 3, generator=torch.Generator().manual_seed(5))
    objects = parse_objects({"objects": [{"name": "a", "box": [3, 4, 30, 28], "points": [[12, 14, 1]]},
                                         {"name": "b", "points": [[40, 20, 1], [45, 30, 0]]}]})
    request = LiveRequest(ImageRef("x.png"), objects=objects)
    sam.clear_feature_cache()
    with pytest.raises(LiveRequestError) as info:
        preview_masks(sam, image_key(image), (36, 50), request)
    assert info.value.need == "embedding"
    segs = segment_image(sam, image, objects=objects)  # the run: encodes and caches
    live = preview_masks(sam, image_key(image), (36, 50), request)
    assert not sam.is_image_set  # the node's own predictor was not touched
    assert [i["label"] for i in live["instances"]] == ["a", "b"] and live["mask_size"] == [50, 36]
    for i, instance in enumerate(live["instances"]):
        with Image.open(io.BytesIO(base64.b64decode(instance["mask"]))) as im:
            mask = torch.from_numpy(np.array(im)[..., 1] > 127)
        assert torch.equal(mask, segs.masks[i]), family
        assert instance["quality"] == pytest.approx(float(segs.quality[i]), abs=1e-4)
