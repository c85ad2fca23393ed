"""One table of bad numbers, sent through the library, the CLI and the nodes: each layer answers with a
clear error that names the parameter and its range — never a traceback from inside torch, never a
silent result. Plus property-based tests (hypothesis) over the detector's and the segmenter's
numbers and image shapes.

Each row: the parameter, a bad value, and how it reaches each layer (``None`` where a layer has no
such input). ComfyUI's own min/max checks protect the canvas, but not API users: NaN passes them
(every comparison with NaN is false), and library and CLI users pass anything.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from comfy_fakes import FakeComfy  # noqa: F401 - the node fixtures come from test_nodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures

from grounded_inpaint import masks, overlay
from grounded_inpaint.cache import FeatureCache
from grounded_inpaint.cli import main as cli_main
from grounded_inpaint.inpaint import inpaint_image, working_size
from grounded_inpaint.objects import parse_objects
from grounded_inpaint.segment import Point, segment_image
from grounded_inpaint.structures import Detections, Segments

NAN, INF = float("nan"), float("inf")


def _segments(h: int = 24, w: int = 32, cls: type = Segments) -> Segments:
    m = torch.zeros(2, h, w, dtype=torch.bool)
    m[0, 4:12, 4:12] = True
    m[1, 10:20, 14:30] = True
    return cls(m, torch.tensor([[4.0, 4, 12, 12], [14, 10, 30, 20]]), torch.tensor([0.9, 0.6]), torch.ones(2), ["a", "b"], (h, w))


def _pack_segments(pack) -> Segments:  # noqa: F811
    """Segments of the pack's own copy of the library, as the nodes upstream in ComfyUI make them."""
    return _segments(cls=sys.modules[f"{pack.__name__}.py.structures"].Segments)


@dataclass(frozen=True)
class Row:
    """A bad value of one parameter, and how it is given to each layer."""

    name: str  # the parameter's name in the library's message
    value: Any
    library: Callable[[Any, dict], Any] | None  # (value, fixtures) -> call
    cli: tuple[str, str] | None = None  # (subcommand, option)
    node: tuple[str, str] | None = None  # (node id, input)

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}"


def _detect(key):
    return lambda v, fx: fx["detector"].detect(torch.rand(16, 16, 3), "cat", **{key: v})


def _mask(key):
    return lambda v, fx: masks.make_inpaint_mask(_segments(), **{key: v})


def _track(key):
    """Grounded Track's numbers are checked before any model runs (no models are given)."""
    from grounded_inpaint.video import track_frames

    return lambda v, fx: list(track_frames(None, None, [torch.rand(8, 8, 3)], "cat", **{key: v}))


def _tracked_segments() -> Segments:
    s = _segments()
    return Segments(s.masks, s.boxes, s.scores, s.quality, s.labels, s.image_size, torch.tensor([3, 7]))


TABLE = [
    Row("box_threshold", NAN, _detect("box_threshold"), ("mask", "--box-threshold"), ("GroundedInpaintDetect", "box_threshold")),
    Row("box_threshold", 1.5, _detect("box_threshold"), ("mask", "--box-threshold"), ("GroundedInpaintDetect", "box_threshold")),
    Row("text_threshold", -0.1, _detect("text_threshold"), ("mask", "--text-threshold"), ("GroundedInpaintDetect", "text_threshold")),
    Row("text_threshold", INF, _detect("text_threshold"), ("mask", "--text-threshold"), ("GroundedInpaintDetect", "text_threshold")),
    Row("max_detections", -3, _detect("max_detections"), ("mask", "--max-detections"), ("GroundedInpaintDetect", "max_detections")),
    Row("max_detections", 2.5, _detect("max_detections"), ("mask", "--max-detections"), None),
    Row("nms_iou", -0.5, _detect("nms_iou"), ("mask", "--nms-iou"), ("GroundedInpaintDetect", "nms_iou")),
    Row("nms_iou", NAN, _detect("nms_iou"), ("mask", "--nms-iou"), ("GroundedInpaintDetect", "nms_iou")),
    Row("batch_size", 0, _detect("batch_size")),
    Row("grow", NAN, _mask("grow"), ("mask", "--grow"), ("GroundedInpaintMaskFromSegments", "grow")),
    Row("grow", 2.5, _mask("grow"), ("mask", "--grow"), None),
    Row("feather", NAN, _mask("feather"), ("mask", "--feather"), ("GroundedInpaintMaskFromSegments", "feather")),
    Row("feather", INF, _mask("feather"), ("mask", "--feather"), ("GroundedInpaintMaskFromSegments", "feather")),
    Row("min_area", -1, None, ("mask", "--min-area"), None),  # the library documents <= 0 as "keep every region"
    Row("min_area", NAN, _mask("min_area"), None, None),
    Row("threshold", NAN, _mask("threshold"), ("mask", "--threshold"), ("GroundedInpaintMaskFromSegments", "threshold")),
    Row("threshold", 2.0, _mask("threshold"), ("mask", "--threshold"), ("GroundedInpaintMaskFromSegments", "threshold")),
    Row("min_score", NAN, lambda v, fx: masks.select_instances(_segments(), min_score=v), ("mask", "--min-score"),
        ("GroundedInpaintMaskFromSegments", "min_score")),
    Row("top_k", -1, lambda v, fx: masks.select_instances(_segments(), top_k=v), ("mask", "--top-k"),
        ("GroundedInpaintMaskFromSegments", "top_k")),
    Row("opacity", 2.0, lambda v, fx: overlay.draw_segments(torch.rand(24, 32, 3), _segments(), opacity=v), ("mask", "--opacity"),
        ("GroundedInpaintOverlay", "opacity")),
    Row("opacity", NAN, lambda v, fx: overlay.draw_segments(torch.rand(24, 32, 3), _segments(), opacity=v), ("mask", "--opacity"),
        ("GroundedInpaintOverlay", "opacity")),
    Row("padding", -4, lambda v, fx: overlay.cutout(torch.rand(24, 32, 3), _segments().union(), crop=True, padding=v), None,
        ("GroundedInpaintCutOut", "padding")),
    Row("scale", 0.0, lambda v, fx: overlay.composite(torch.rand(24, 32, 3), torch.rand(8, 8, 3), scale=v), None,
        ("GroundedInpaintComposite", "scale")),
    Row("scale", NAN, lambda v, fx: overlay.composite(torch.rand(24, 32, 3), torch.rand(8, 8, 3), scale=v), None,
        ("GroundedInpaintComposite", "scale")),
    Row("feather", NAN, lambda v, fx: overlay.composite(torch.rand(24, 32, 3), torch.rand(8, 8, 3), feather=v), None,
        ("GroundedInpaintComposite", "feather")),
    Row("x", INF, lambda v, fx: overlay.composite(torch.rand(24, 32, 3), torch.rand(8, 8, 3), x=v), None,
        ("GroundedInpaintComposite", "x")),
    Row("steps", 0, lambda v, fx: inpaint_image(None, torch.rand(8, 8, 3), torch.ones(8, 8), "x", steps=v), ("inpaint", "--steps")),
    Row("strength", NAN, lambda v, fx: inpaint_image(None, torch.rand(8, 8, 3), torch.ones(8, 8), "x", strength=v),
        ("inpaint", "--strength")),
    Row("guidance", -1.0, lambda v, fx: inpaint_image(None, torch.rand(8, 8, 3), torch.ones(8, 8), "x", guidance=v),
        ("inpaint", "--guidance")),
    Row("size", 100_000, lambda v, fx: inpaint_image(None, torch.rand(8, 8, 3), torch.ones(8, 8), "x", size=v), ("inpaint", "--size")),
    Row("seed", -1, lambda v, fx: inpaint_image(None, torch.rand(8, 8, 3), torch.ones(8, 8), "x", seed=v), ("inpaint", "--seed")),
    Row("long_side", 10**9, lambda v, fx: working_size(100, 100, long_side=v)),
    Row("budget_bytes", -1, lambda v, fx: FeatureCache(budget_bytes=v)),
    Row("budget_bytes", NAN, lambda v, fx: FeatureCache(budget_bytes=v)),
    Row("point", Point(500.0, 5.0), lambda v, fx: segment_image(fx["sam"], torch.rand(16, 16, 3), points=[v])),
    Row("objects", '{"objects": [{"name": "cup", "box": [0, NaN, 4, 4]}]}',
        lambda v, fx: segment_image(fx["sam"], torch.rand(16, 16, 3), objects=parse_objects(v)), None,
        ("GroundedInpaintSegment", "objects")),
    Row("objects", '{"objects": [{"name": "cup", "points": [[500, 5, 1]]}]}',
        lambda v, fx: segment_image(fx["sam"], torch.rand(16, 16, 3), objects=parse_objects(v)), None,
        ("GroundedInpaintSegment", "objects")),
    Row("boxes", [[0.0, NAN, 4.0, 4.0]], lambda v, fx: Detections(v, [0.5], ["x"], (16, 16))),
    Row("scores", [NAN], lambda v, fx: Detections([[0.0, 0, 4, 4]], v, ["x"], (16, 16))),
    Row("threshold", NAN, lambda v, fx: fx["sam3"].segment(torch.rand(16, 16, 3), "cat", threshold=v) if fx["sam3"] else _skip()),
    Row("mask_threshold", -1.0, lambda v, fx: fx["sam3"].segment(torch.rand(16, 16, 3), "cat", mask_threshold=v) if fx["sam3"] else _skip()),
    Row("max_instances", -2, lambda v, fx: fx["sam3"].segment(torch.rand(16, 16, 3), "cat", max_instances=v) if fx["sam3"] else _skip()),
    Row("overlap_iou", NAN, lambda v, fx: fx["sam3"].segment(torch.rand(16, 16, 3), "cat", overlap_iou=v) if fx["sam3"] else _skip()),
    Row("detect_every", -1, _track("detect_every"), ("track", "--detect-every"), ("GroundedInpaintGroundedTrack", "detect_every")),
    Row("detect_every", NAN, _track("detect_every"), None, ("GroundedInpaintGroundedTrack", "detect_every")),
    Row("max_objects", 0, _track("max_objects"), ("track", "--max-objects"), ("GroundedInpaintGroundedTrack", "max_objects")),
    Row("max_objects", 1000, _track("max_objects"), ("track", "--max-objects"), None),
    Row("box_threshold", NAN, _track("box_threshold"), ("track", "--box-threshold"), ("GroundedInpaintGroundedTrack", "box_threshold")),
    Row("text_threshold", 2.0, _track("text_threshold"), ("track", "--text-threshold"), ("GroundedInpaintGroundedTrack", "text_threshold")),
    Row("threshold", NAN, _track("threshold"), ("track", "--threshold"), ("GroundedInpaintSam3Track", "threshold")),
    Row("new_object_threshold", 1.5, _track("new_object_threshold"), ("track", "--new-object-threshold"),
        ("GroundedInpaintSam3Track", "new_object_threshold")),
    Row("forget_after", -1, _track("forget_after")),
    Row("detect_every", -2, None, None, ("GroundedInpaintSam3Track", "detect_every")),
    Row("ids", 2.5, lambda v, fx: masks.select_instances(_tracked_segments(), ids=[v])),
    Row("ids", [1], lambda v, fx: masks.select_instances(_segments(), ids=v)),  # single images have no ids
]


def _nan_matte() -> torch.Tensor:
    matte = torch.rand(1, 24, 32)
    matte[0, 3, 4] = NAN
    return matte


def _refine(key):
    from grounded_inpaint.matting import refine

    return lambda v, fx: refine(torch.rand(24, 32, 3), _segments().union(), **{key: v})


MATTING_TABLE = [
    Row("inner", -1, _refine("inner"), ("mask", "--band-inside"), None),
    Row("outer", NAN, _refine("outer"), ("inpaint", "--band-outside"), None),
    Row("band_inside", -2, None, None, ("GroundedInpaintRefineMask", "band_inside")),
    Row("band_outside", NAN, None, None, ("GroundedInpaintRefineMask", "band_outside")),
    Row("logit_margin", -1.0, _refine("logit_margin")),
    Row("matte", _nan_matte(), _refine("matte"), None, ("GroundedInpaintRefineMask", "matte")),
    Row("eps", 0.0, lambda v, fx: __import__("grounded_inpaint.matting.guided", fromlist=["x"]).guided_alpha(
        torch.rand(24, 32, 3), torch.full((24, 32), 0.5), torch.ones(24, 32), eps=v)),
    Row("radii[0]", 0, lambda v, fx: __import__("grounded_inpaint.matting", fromlist=["x"]).estimate_foreground(
        torch.rand(24, 32, 3), torch.rand(24, 32), radii=(v,))),
]
TABLE += MATTING_TABLE


def _skip():
    pytest.skip("SAM 3 needs transformers 5")


@pytest.fixture(scope="module")
def fixtures(models_dir, detector, meta_predictor):
    sam3 = None
    root, paths = models_dir
    if "sam3" in paths:
        from grounded_inpaint.models import load_sam3

        sam3 = load_sam3(paths["sam3"].name, root, download=False)
    return {"detector": detector, "sam": meta_predictor, "sam3": sam3}


def _named(message: str, name: str) -> bool:
    return name in message and ("must" in message or "outside" in message)


def _row_id(row: Row) -> str:
    return f"{row.name}=nan-tensor" if torch.is_tensor(row.value) else str(row)


@pytest.mark.parametrize("row", [r for r in TABLE if r.library], ids=_row_id)
def test_library_names_the_parameter(row, fixtures):
    with pytest.raises(ValueError) as err:
        row.library(row.value, fixtures)
    assert _named(str(err.value), row.name), str(err.value)


def _cli_value(value: Any) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else str(value)


@pytest.mark.parametrize("row", [r for r in TABLE if r.cli], ids=_row_id)
def test_cli_exits_2_naming_the_option(row, models_dir, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (120, 80, 40)).save(image)
    command, option = row.cli
    root, paths = models_dir
    models = ["--models", str(root), "--detector", paths["grounding_dino"].name, "--segmenter", paths["sam_meta"].name, "--no-download"]
    if command == "track":
        (tmp_path / "clip").mkdir()
        image.rename(tmp_path / "clip" / image.name)
        argv = ["track", str(tmp_path / "clip"), "--prompt", "cat", "--out", str(tmp_path / "out"), "--models", str(root),
                "--detector", paths["grounding_dino"].name, "--video-model", "sam2.1-video-hf-tiny-random", "--no-download",
                option, _cli_value(row.value)]
    elif command == "mask":
        argv = ["mask", str(image), "--prompt", "cat", "--out", str(tmp_path / "out"), *models, option, _cli_value(row.value)]
    else:
        argv = ["inpaint", str(image), "--detect", "cat", "--prompt", "a dog", "--out", str(tmp_path / "out"), *models,
                option, _cli_value(row.value)]
    with pytest.raises(SystemExit) as stop:
        cli_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {option}: must be" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # nothing was written


def _node_inputs(pack, comfy, models_dir, node_id: str) -> dict:  # noqa: F811
    root, paths = models_dir
    if node_id == "GroundedInpaintDetect":
        (det,) = call(pack, "GroundedInpaintLoadGroundingDino", model_name=paths["grounding_dino"].name, device="auto", precision="auto")
        return dict(image=torch.rand(1, 16, 16, 3), detector=det, prompt="cat", box_threshold=0.3, text_threshold=0.25,
                    max_detections=0, nms_iou=0.5)
    if node_id == "GroundedInpaintSegment":
        (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_meta"].name, device="auto", precision="auto")
        return dict(image=torch.rand(1, 16, 16, 3), sam_model=sam, multimask="auto", positive_points='[{"x": 5, "y": 5}]')
    if node_id == "GroundedInpaintMaskFromSegments":
        return dict(segments=[_pack_segments(pack)], invert=False, grow=0, feather=0.0, fill_holes=True, min_area=0)
    if node_id == "GroundedInpaintOverlay":
        return dict(image=torch.rand(1, 24, 32, 3), opacity=0.5, show_boxes=True, show_labels=True, segments=[_pack_segments(pack)])
    if node_id == "GroundedInpaintCutOut":
        return dict(image=torch.rand(1, 24, 32, 3), mask=_segments().union()[None], crop=True, padding=0)
    if node_id == "GroundedInpaintGroundedTrack":
        comfy.folder_paths.add_model_folder_path("sam2", str(root / "sam2"))
        (det,) = call(pack, "GroundedInpaintLoadGroundingDino", model_name=paths["grounding_dino"].name, device="auto", precision="auto")
        (video,) = call(pack, "GroundedInpaintLoadSam2Video", model_name=paths["sam2_video_hf"].name, device="auto", precision="auto")
        return dict(images=torch.rand(2, 16, 16, 3), detector=det, video_model=video, prompt="cat", detect_every=10,
                    max_objects=2, box_threshold=0.3, text_threshold=0.25)
    if node_id == "GroundedInpaintRefineMask":
        return dict(image=torch.rand(1, 24, 32, 3), method="guided", band_inside=-1, band_outside=-1, decontaminate=True,
                    mask=_segments().union()[None])
    if node_id == "GroundedInpaintSam3Track":
        if "sam3_video" not in paths:
            _skip()
        comfy.folder_paths.add_model_folder_path("sam3", str(root / "sam3"))
        (video,) = call(pack, "GroundedInpaintLoadSam3Video", model_name=paths["sam3_video"].name, device="auto", precision="auto")
        return dict(images=torch.rand(2, 16, 16, 3), sam3_video_model=video, prompt="cat", detect_every=1, max_objects=2,
                    threshold=0.5, new_object_threshold=0.7)
    if node_id == "GroundedInpaintComposite":
        return dict(background=torch.rand(1, 24, 32, 3), object=torch.rand(1, 8, 8, 3), x=0, y=0, scale=1.0, anchor="top-left", feather=0.0)
    raise AssertionError(node_id)


@pytest.mark.parametrize("row", [r for r in TABLE if r.node], ids=_row_id)
def test_node_names_the_input(row, pack, comfy, models_dir):  # noqa: F811
    node_id, name = row.node
    inputs = _node_inputs(pack, comfy, models_dir, node_id)
    call(pack, node_id, **inputs)  # the good inputs work
    inputs[name] = row.value
    with pytest.raises(ValueError) as err:
        call(pack, node_id, **inputs)
    assert _named(str(err.value), row.name), str(err.value)


def test_the_table_covers_every_layer():
    assert len(TABLE) >= 40
    assert sum(r.cli is not None for r in TABLE) >= 20 and sum(r.node is not None for r in TABLE) >= 20


# ----------------------------------------------------------------------------- properties

_PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_sizes = st.one_of(st.integers(1, 96), st.sampled_from([1, 2, 3, 700, 2000]))


@_PROPS
@given(h=_sizes, w=_sizes, box=st.floats(0, 1), text=st.floats(0, 1), top=st.one_of(st.none(), st.integers(0, 12)),
       nms=st.one_of(st.none(), st.floats(0, 2)))
def test_detect_any_shape_and_valid_numbers(fixtures, h, w, box, text, top, nms):
    if h * w > 200_000:
        w = max(1, 200_000 // h)
    (found,) = fixtures["detector"].detect(torch.rand(h, w, 3), "cat, shoes", box, text, top, nms)
    assert found.image_size == (h, w) and (top is None or len(found) <= top)
    assert bool((found.boxes[:, 0::2] <= w).all() and (found.boxes[:, 1::2] <= h).all() and (found.boxes >= 0).all())
    assert bool(((found.scores > box) & (found.scores <= 1)).all())


_bad_fraction = st.one_of(st.just(NAN), st.just(INF), st.just(-INF), st.floats(max_value=-1e-6), st.floats(min_value=1.000001))


@_PROPS
@given(value=_bad_fraction, which=st.sampled_from(["box_threshold", "text_threshold"]))
def test_detect_refuses_bad_thresholds(fixtures, value, which):
    with pytest.raises(ValueError, match=which):
        fixtures["detector"].detect(torch.rand(8, 8, 3), "cat", **{which: value})


@_PROPS
@given(h=_sizes, w=_sizes, n=st.integers(0, 3), seed=st.integers(0, 10))
def test_segment_any_shape_gives_one_full_size_mask_per_box(fixtures, h, w, n, seed):
    if h * w > 200_000:
        w = max(1, 200_000 // h)
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(n, 4, generator=g) * torch.tensor([w, h, w, h])
    dets = Detections(corners, torch.rand(n, generator=g), ["x"] * n, (h, w))
    seg = segment_image(fixtures["sam"], torch.rand(h, w, 3, generator=g), dets)
    assert len(seg) == n and seg.masks.shape == (n, h, w) and seg.masks.dtype == torch.bool
    assert not fixtures["sam"].is_image_set  # nothing kept between calls
