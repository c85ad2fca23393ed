"""SAM 3 (text → instance masks) on the tiny random-weight folder: the loader, the library, the
hand-off to masks and overlays, the nodes under fake ComfyUI modules, and torchvision missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tolerance import assert_close, assert_masks_agree
import transformers

if not hasattr(transformers, "Sam3Model"):  # transformers 4.x: tests/test_models.py checks the message instead
    pytest.skip(f"transformers {transformers.__version__} has no Sam3Model", allow_module_level=True)

from comfy_fakes import InterruptProcessingException
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures shared with the node tests

from grounded_inpaint import sam3 as sam3_module
from grounded_inpaint.masks import make_inpaint_mask
from grounded_inpaint.models import load_sam3
from grounded_inpaint.overlay import draw_segments
from grounded_inpaint.prompts import EmptyPromptError
from grounded_inpaint.sam3 import VISUAL_LABEL, Sam3Segmenter
from grounded_inpaint.structures import Detections, Segments
from grounded_inpaint.testing.tiny_sam3 import TINY_SAM3_QUERIES


@pytest.fixture(scope="module")
def segmenter(models_dir) -> Sam3Segmenter:
    root, paths = models_dir
    return load_sam3(paths["sam3"].name, root, download=False)


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, 3, generator=g)


def _same(a: Segments, b: Segments) -> bool:
    """The same instances: labels equal, scores and boxes within fp32 rounding, masks agreeing."""
    assert a.labels == b.labels
    assert_close(a.scores, b.scores)
    assert_close(a.boxes, b.boxes)
    assert_masks_agree(a.masks, b.masks)
    return True


# ----------------------------------------------------------------------------- loading


def test_loads_through_the_real_loader(models_dir, segmenter):
    root, paths = models_dir
    folder = paths["sam3"]
    assert folder == root / "sam3" / "sam3-tiny-random"
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json"} <= files
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    assert isinstance(segmenter, Sam3Segmenter) and segmenter.image_size == 56
    assert load_sam3(folder.name, root, download=False) is segmenter  # cached
    assert segmenter.dtype == torch.float32 and segmenter.device.type == "cpu"


def test_loader_errors_name_the_file_and_the_fix(models_dir, tmp_path):
    from grounded_inpaint.errors import CheckpointError, ModelNotFoundError

    root, _ = models_dir
    single = tmp_path / "sam3.pt"
    single.write_bytes(b"not a folder")
    with pytest.raises(ModelNotFoundError, match=r"sam3\.pt is a single file.*facebook/sam3"):
        load_sam3(single, root, download=False)
    wrong = tmp_path / "not-sam3"
    wrong.mkdir()
    (wrong / "config.json").write_text('{"model_type": "sam"}')
    with pytest.raises(CheckpointError, match="not SAM 3"):
        Sam3Segmenter.from_pretrained(wrong)
    with pytest.raises(ModelNotFoundError, match="sam3-tiny-random"):
        load_sam3("nope", root, download=False)  # the error lists what is there


# ----------------------------------------------------------------------------- library


def test_several_concepts_are_labelled_merged_and_sorted(segmenter):
    image = _image(40, 60, 0)
    (seg,) = segmenter.segment([image], "Red shoes, cat. cat", threshold=0.0)
    assert len(seg) == 2 * TINY_SAM3_QUERIES  # "cat" twice counts once
    assert set(seg.labels) == {"red shoes", "cat"} and seg.labels.count("cat") == TINY_SAM3_QUERIES
    assert seg.masks.shape == (len(seg), 40, 60) and seg.masks.dtype == torch.bool
    assert torch.all(seg.scores[:-1] >= seg.scores[1:])
    assert torch.all((seg.boxes[:, 0::2] >= 0) & (seg.boxes[:, 0::2] <= 60))
    assert torch.all((seg.boxes[:, 1::2] >= 0) & (seg.boxes[:, 1::2] <= 40))
    assert torch.all(seg.boxes[:, :2] <= seg.boxes[:, 2:])
    assert torch.all((seg.quality >= 0) & (seg.quality <= 1))
    # each concept alone gives the same instances (the concepts run as one batch)
    (cat,) = segmenter.segment([image], "cat", threshold=0.0)
    assert _same(cat, seg.take([i for i, label in enumerate(seg.labels) if label == "cat"]))


def test_threshold_and_max_instances(segmenter):
    image = _image(32, 32, 1)
    (everything,) = segmenter.segment([image], "shoes, bag", threshold=0.0)
    counts = [len(segmenter.segment([image], "shoes, bag", threshold=t)[0]) for t in (0.0, 0.3, 0.6, 0.9, 0.999)]
    assert counts == sorted(counts, reverse=True) and counts[0] == 16 and counts[-1] == 0
    assert 0 < counts[2] < 16  # the tiny model's scores spread, so a middle threshold keeps some
    (mid,) = segmenter.segment([image], "shoes, bag", threshold=0.6)
    assert torch.all(mid.scores > 0.6) and _same(mid, everything.take(range(len(mid))))
    (top3,) = segmenter.segment([image], "shoes, bag", threshold=0.0, max_instances=3)
    assert _same(top3, everything.take([0, 1, 2]))
    with pytest.raises(ValueError, match=r"threshold must be a number in 0\.\.1"):
        segmenter.segment([image], "shoes", threshold=1.5)


def test_mask_threshold_grows_masks(segmenter):
    image = _image(24, 24, 2)
    (loose,) = segmenter.segment([image], "shoes", threshold=0.0, mask_threshold=0.2)
    (tight,) = segmenter.segment([image], "shoes", threshold=0.0, mask_threshold=0.8)
    assert torch.all(loose.masks | ~tight.masks)  # every tight pixel is in the loose mask
    assert int(loose.masks.sum()) > int(tight.masks.sum())


def test_batch_of_different_sizes_stays_aligned(segmenter):
    a, b = _image(40, 56, 3), _image(28, 20, 4)
    results = segmenter.segment([a, b], "shoes", threshold=0.2)
    assert [r.image_size for r in results] == [(40, 56), (28, 20)]
    assert _same(results[0], segmenter.segment([a], "shoes", threshold=0.2)[0])
    assert _same(results[1], segmenter.segment([b], "shoes", threshold=0.2)[0])
    done = []
    segmenter.segment(torch.stack([a, a]), "shoes", progress=lambda d, t: done.append((d, t)))
    assert done == [(1, 2), (2, 2)]


def test_nothing_found_gives_empty_segments_and_zero_mask(segmenter):
    results = segmenter.segment(torch.rand(2, 20, 30, 3), "cat", threshold=0.999)
    assert [len(r) for r in results] == [0, 0] and all(r.image_size == (20, 30) for r in results)
    assert float(results[0].union().abs().sum()) == 0.0
    assert torch.equal(make_inpaint_mask(results[0], invert=True), torch.ones(20, 30))
    assert draw_segments(torch.zeros(20, 30, 3), results[0]).shape == (20, 30, 3)


def test_output_goes_through_mask_from_segmentation_and_overlay(segmenter):
    image = _image(36, 48, 5)
    (seg,) = segmenter.segment([image], "shoes, bag", threshold=0.3)
    assert len(seg) > 0
    mask = make_inpaint_mask(seg, grow=2, feather=1.0)
    assert mask.shape == (36, 48) and mask.dtype == torch.float32 and 0 <= float(mask.min()) <= float(mask.max()) <= 1
    assert torch.equal(make_inpaint_mask(seg, threshold=0.5), seg.union())
    preview = draw_segments(image, seg)
    assert preview.shape == (36, 48, 3) and not torch.equal(preview, image)
    assert seg.to_json()["instances"][0]["label"] in ("shoes", "bag")


def test_empty_prompt_is_an_error_unless_boxes_are_given(segmenter):
    image = _image(32, 32, 6)
    with pytest.raises(EmptyPromptError, match="names no object"):
        segmenter.segment([image], " , ")
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 24.0]]), None]
    results = segmenter.segment([image, image], "", threshold=0.0, boxes=boxes)
    assert len(results[0]) == TINY_SAM3_QUERIES and set(results[0].labels) == {VISUAL_LABEL}
    assert len(results[1]) == 0  # no concept and no box for this image
    (with_box,) = segmenter.segment([image], "shoes", threshold=0.0, boxes=boxes[:1])
    (without,) = segmenter.segment([image], "shoes", threshold=0.0)
    assert not torch.allclose(with_box.scores, without.scores)  # the exemplar changes the answer
    with pytest.raises(ValueError, match="2 images but 1 box sets"):
        segmenter.segment([image, image], "shoes", boxes=boxes[:1])


def test_overlap_suppression_across_concepts(segmenter):
    image = _image(32, 32, 7)
    (all_,) = segmenter.segment([image], "shoes, shoe", threshold=0.0)
    (deduped,) = segmenter.segment([image], "shoes, shoe", threshold=0.0, overlap_iou=0.5)
    assert 0 < len(deduped) < len(all_)
    assert deduped.labels[0] == all_.labels[0] and torch.equal(deduped.masks[0], all_.masks[0])


def test_matches_transformers_post_processing(segmenter, models_dir):
    """Same pixels in → the same instances as Sam3Processor's post_process_instance_segmentation."""
    transformers = pytest.importorskip("transformers")
    _, paths = models_dir
    processor = transformers.Sam3Processor.from_pretrained(str(paths["sam3"]))
    image = (_image(30, 44, 8) * 255).round().to(torch.uint8)
    inputs = processor(images=image.permute(2, 0, 1), text="shoes", return_tensors="pt")
    ours = segmenter.preprocess(image.float() / 255)
    assert torch.allclose(ours, inputs["pixel_values"], atol=0.03)  # float vs uint8 resize
    with torch.no_grad():
        out = segmenter.model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                              attention_mask=inputs["attention_mask"])
    (expected,) = processor.post_process_instance_segmentation(out, threshold=0.3, mask_threshold=0.5,
                                                               target_sizes=[(30, 44)])
    original = segmenter.preprocess
    segmenter.preprocess = lambda _image: inputs["pixel_values"]
    try:
        (seg,) = segmenter.segment([image.float() / 255], "shoes", threshold=0.3, mask_threshold=0.5)
    finally:
        segmenter.preprocess = original
    order = torch.argsort(expected["scores"], descending=True, stable=True)
    assert torch.allclose(seg.scores, expected["scores"][order], atol=1e-5)
    assert torch.allclose(seg.boxes, expected["boxes"][order].clamp(min=0).minimum(torch.tensor([44.0, 30, 44, 30])), atol=1e-3)
    assert_masks_agree(seg.masks, expected["masks"][order].bool())


# ----------------------------------------------------------------------------- torchvision


def test_torchvision_missing_says_what_to_install(monkeypatch, models_dir):
    _, paths = models_dir
    real = sam3_module.importlib.util.find_spec
    monkeypatch.setattr(sam3_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchvision" else real(name, *a))
    with pytest.raises(ImportError, match="pip install torchvision"):
        sam3_module.require_torchvision()
    with pytest.raises(ImportError, match="pip install torchvision"):
        Sam3Segmenter.from_pretrained(paths["sam3"])


def test_broken_torchvision_says_what_to_install(monkeypatch):
    """torchvision built for another torch: found, but importing it fails (as PyPI's wheel on torch 2.13 does)."""
    import importlib.abc
    import importlib.util

    class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "torchvision" else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(ImportError, match="does not import.*pip install torchvision"):
        sam3_module.require_torchvision()


def test_without_torchvision_in_a_fresh_process(models_dir):
    """A real run where torchvision cannot be found: writing the tiny folder works, loading says what to install."""
    _, paths = models_dir
    script = textwrap.dedent(f"""
        import importlib.machinery, sys, tempfile
        class Hidden(importlib.machinery.PathFinder):
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name == "torchvision" or name.startswith("torchvision."):
                    return None
                return super().find_spec(name, path, target)
        sys.meta_path[:] = [Hidden if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
        from grounded_inpaint.testing.tiny_sam3 import write_tiny_sam3
        write_tiny_sam3(tempfile.mkdtemp())
        from grounded_inpaint.models import load_sam3
        try:
            load_sam3({str(paths["sam3"])!r})
        except ImportError as exc:
            print("ERROR", exc)
        """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ERROR" in result.stdout and "pip install torchvision" in result.stdout, result.stdout


# ----------------------------------------------------------------------------- nodes


@pytest.fixture
def sam3_comfy(comfy, models_dir):  # noqa: F811 - the fixture imported from test_nodes
    root, _ = models_dir
    comfy.folder_paths.add_model_folder_path("sam3", str(root / "sam3"))
    return comfy


def _load_node(pack, models_dir, **kw):  # noqa: F811
    _, paths = models_dir
    (model,) = call(pack, "GroundedInpaintLoadSam3", model_name=paths["sam3"].name, device=kw.get("device", "auto"),
                    precision=kw.get("precision", "auto"))
    return model


def test_nodes_text_to_masks_to_inpaint_mask(pack, sam3_comfy, models_dir):  # noqa: F811
    choices = pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadSam3"].INPUT_TYPES()["required"]["model_name"][0]
    choice_name = sys.modules[f"{PACK_NAME}.nodes.runtime"].choice_name
    names = [choice_name(c) for c in choices]
    assert names[0] == "sam3-tiny-random" and "sam3" in names  # local first, then the download
    assert choices[names.index("sam3")].endswith(" GB)")  # marked with its download size
    model = _load_node(pack, models_dir)
    assert model.patcher is not None and len(sam3_comfy.patchers) == 1  # handed to ComfyUI's memory manager
    images = torch.rand(3, 32, 48, 3)
    segs, mask, preview = call(pack, "GroundedInpaintSam3Segment", image=images, sam3_model=model, prompt="shoes, bag",
                               threshold=0.3, mask_threshold=0.5, max_instances=4)
    assert len(segs) == 3 and all(len(s) <= 4 for s in segs) and sum(len(s) for s in segs) > 0
    assert mask.shape == (3, 32, 48) and mask.dtype == torch.float32 and preview.shape == (3, 32, 48, 3)
    assert [force for _, force in sam3_comfy.loads] == [True]
    assert [v for kind, v in sam3_comfy.progress if kind == "absolute"] == [1, 2, 3]  # one step per image
    inpaint, view = call(pack, "GroundedInpaintMaskFromSegments", segments=segs, invert=False, grow=0, feather=0.0,
                         fill_holes=False, min_area=0, labels="shoes")
    assert inpaint.shape == (3, 32, 48) and view.shape == (3, 32, 48, 3)
    assert torch.all(inpaint <= mask)  # only the "shoes" objects
    out = call(pack, "GroundedInpaintOverlay", image=images, opacity=0.5, show_boxes=True, show_labels=True, segments=segs)
    assert out[0].shape == (3, 32, 48, 3)
    labels, count, _ = call(pack, "GroundedInpaintSegmentsInfo", segments=segs)
    assert count == sum(len(s) for s in segs) and ("shoes" in labels or "bag" in labels)


def test_node_nothing_found_keeps_the_batch(pack, sam3_comfy, models_dir):  # noqa: F811
    model = _load_node(pack, models_dir, device="cpu", precision="fp32")
    assert model.patcher is None  # pinned to the CPU: ComfyUI's manager is not involved
    segs, mask, _ = call(pack, "GroundedInpaintSam3Segment", image=torch.rand(4, 16, 24, 3), sam3_model=model,
                         prompt="cat", threshold=0.999, mask_threshold=0.5, max_instances=0)
    assert len(segs) == 4 and float(mask.abs().sum()) == 0.0 and mask.shape == (4, 16, 24)


def test_node_exemplar_boxes_and_their_checks(pack, sam3_comfy, models_dir):  # noqa: F811
    model = _load_node(pack, models_dir)
    images = torch.rand(2, 24, 32, 3)
    dets = [Detections(torch.tensor([[2.0, 2.0, 12.0, 20.0]]), torch.tensor([0.9]), ["shoes"], (24, 32)),
            Detections.empty((24, 32))]
    segs, _, _ = call(pack, "GroundedInpaintSam3Segment", image=images, sam3_model=model, prompt="", threshold=0.0,
                      mask_threshold=0.5, max_instances=0, detections=dets, overlap_iou=1.0)
    assert [len(s) for s in segs] == [TINY_SAM3_QUERIES, 0] and set(segs[0].labels) == {VISUAL_LABEL}
    with pytest.raises(ValueError, match="made on a 32x24 image but the images are 40x30"):
        call(pack, "GroundedInpaintSam3Segment", image=torch.rand(2, 30, 40, 3), sam3_model=model, prompt="shoes",
             threshold=0.5, mask_threshold=0.5, max_instances=0, detections=dets)
    with pytest.raises(ValueError, match="2 result.*3 image"):
        call(pack, "GroundedInpaintSam3Segment", image=torch.rand(3, 24, 32, 3), sam3_model=model, prompt="shoes",
             threshold=0.5, mask_threshold=0.5, max_instances=0, detections=dets)


def test_node_cancel_between_images(pack, sam3_comfy, models_dir):  # noqa: F811
    model = _load_node(pack, models_dir)
    sam3_comfy.interrupt = True
    with pytest.raises(InterruptProcessingException):
        call(pack, "GroundedInpaintSam3Segment", image=torch.rand(2, 16, 16, 3), sam3_model=model, prompt="cat",
             threshold=0.5, mask_threshold=0.5, max_instances=0)


def test_node_precision_auto_prefers_bf16_on_gpus(pack, sam3_comfy):  # noqa: F811
    from importlib import import_module

    nodes_sam3 = import_module(f"{PACK_NAME}.nodes.sam3")
    assert nodes_sam3._dtype("auto", torch.device("cpu")) == torch.float32
    assert nodes_sam3._dtype("bf16", torch.device("cpu")) == torch.bfloat16
    gpu = torch.device("cuda")
    assert nodes_sam3._dtype("auto", gpu) == torch.float32  # the fake says: no bf16
    sam3_comfy.mm.should_use_bf16 = lambda device=None, prioritize_performance=True, **k: True
    assert nodes_sam3._dtype("auto", gpu) == torch.bfloat16
