"""The ComfyUI nodes, executed without ComfyUI: schemas, a full graph on tiny models, and the rules
every node must keep (aligned batches, errors naming sizes, memory manager, progress, cancel)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from comfy_fakes import FakeComfy, InterruptProcessingException
from tolerance import assert_close, assert_masks_agree

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "grounded_inpaint_pack"


@pytest.fixture(scope="session")
def pack():
    """The repository root imported the way ComfyUI imports a custom node folder."""
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK_NAME]


@pytest.fixture
def comfy(monkeypatch, tmp_path, models_dir, pack):
    root, _ = models_dir
    fake = FakeComfy(monkeypatch, tmp_path / "comfy_models", tmp_path / "temp")
    # the test models live elsewhere, as with extra_model_paths.yaml
    fake.folder_paths.add_model_folder_path("grounding-dino", str(root / "grounding-dino"))
    fake.folder_paths.add_model_folder_path("sams", str(root / "sams"))
    sys.modules[f"{PACK_NAME}.nodes.runtime"].register_model_folders()
    return fake


def node(pack, node_id):
    return pack.NODE_CLASS_MAPPINGS[node_id]()


def call(pack, node_id, **inputs):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    return out["result"] if isinstance(out, dict) else out


# ----------------------------------------------------------------------------- schemas

ALLOWED_PRIMITIVES = {"INT", "FLOAT", "STRING", "BOOLEAN", "IMAGE", "MASK"}


def test_import_outside_comfyui_and_mappings(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert pack.WEB_DIRECTORY == "./web"
    assert len(pack.NODE_CLASS_MAPPINGS) >= 9
    assert all(k.startswith("GroundedInpaint") for k in pack.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("node_id", sorted(__import__("json").loads((ROOT / "tests" / "data" / "node_ids.json").read_text())))
def test_node_schema_is_what_comfyui_accepts(pack, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    assert cls.CATEGORY == "Grounded Inpaint"
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 40
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and len(entry) == 2, name
            kind, opts = entry
            assert "tooltip" in opts and len(opts["tooltip"]) > 10, f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert kind and all(isinstance(c, str) for c in kind)
                if "default" in opts:
                    assert opts["default"] in kind
            else:
                assert isinstance(kind, str)
                assert kind in ALLOWED_PRIMITIVES or kind.startswith("GI_"), kind
                if kind in ("INT", "FLOAT") and "default" in opts:
                    assert opts.get("min", -1e18) <= opts["default"] <= opts.get("max", 1e18)
            assert name in params, f"{node_id}.{cls.FUNCTION} does not take {name}"
            if section == "optional":
                assert params[name].default is not inspect.Parameter.empty
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    assert (ROOT / "web" / "docs" / f"{node_id}.md").is_file(), "every node needs a help page"


def test_node_ids_are_frozen(pack):
    """Published ids never change: saved workflows refer to them."""
    import json

    frozen = json.loads((ROOT / "tests" / "data" / "node_ids.json").read_text())
    assert set(frozen) <= set(pack.NODE_CLASS_MAPPINGS)


# ----------------------------------------------------------------------------- a whole graph


def _load_models(pack, comfy, models_dir):
    _, paths = models_dir
    (detector,) = call(pack, "GroundedInpaintLoadGroundingDino", model_name=paths["grounding_dino"].name, device="auto", precision="auto")
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_meta"].name, device="auto", precision="auto")
    return detector, sam


def test_graph_detect_segment_mask(pack, comfy, models_dir):
    detector, sam = _load_models(pack, comfy, models_dir)
    assert len(comfy.patchers) == 2  # both handed to ComfyUI's memory manager
    images = torch.rand(3, 40, 56, 3)
    dets, preview, count = call(pack, "GroundedInpaintDetect", image=images, detector=detector, prompt="red shoes",
                                box_threshold=0.3, text_threshold=0.25, max_detections=2)
    assert len(dets) == 3 and preview.shape == (3, 40, 56, 3) and count == sum(len(d) for d in dets) > 0
    segs, mask, seg_preview = call(pack, "GroundedInpaintSegment", image=images, sam_model=sam, multimask="auto", detections=dets)
    assert len(segs) == 3 and mask.shape == (3, 40, 56) and mask.dtype == torch.float32
    assert seg_preview.shape == (3, 40, 56, 3)
    inpaint, view = call(pack, "GroundedInpaintMaskFromSegments", segments=segs, invert=True, grow=1, feather=1.0,
                         fill_holes=True, min_area=0)
    assert inpaint.shape == (3, 40, 56) and view.shape == (3, 40, 56, 3)
    assert 0 <= float(inpaint.min()) and float(inpaint.max()) <= 1
    # models went through load_models_gpu, in full, once per node run
    assert [force for _, force in comfy.loads] == [True, True]
    # the bar of each node counts its images: 1, 2, 3 of 3 for Detect, then again for Segment
    assert [v for kind, v in comfy.progress if kind == "absolute"] == [1, 2, 3, 1, 2, 3]


def test_no_detection_keeps_the_batch(pack, comfy, models_dir):
    detector, sam = _load_models(pack, comfy, models_dir)
    images = torch.rand(4, 24, 32, 3)
    dets, _, count = call(pack, "GroundedInpaintDetect", image=images, detector=detector, prompt="cat",
                          box_threshold=0.999, text_threshold=0.25, max_detections=0)
    assert count == 0 and len(dets) == 4
    segs, mask, _ = call(pack, "GroundedInpaintSegment", image=images, sam_model=sam, multimask="auto", detections=dets)
    assert mask.shape == (4, 24, 32) and float(mask.abs().sum()) == 0.0
    inpaint, _ = call(pack, "GroundedInpaintMaskFromSegments", segments=segs, invert=True, grow=0, feather=0.0,
                      fill_holes=False, min_area=0)
    assert torch.equal(inpaint, torch.ones(4, 24, 32))  # keep nothing: repaint everything
    labels, n, instances = call(pack, "GroundedInpaintSegmentsInfo", segments=segs)
    assert n == 0 and instances.shape == (1, 24, 32) and "nothing found" in labels


def test_grounded_segment_equals_the_two_nodes(pack, comfy, models_dir):
    detector, sam = _load_models(pack, comfy, models_dir)
    images = torch.rand(2, 32, 48, 3)
    segs, mask, _ = call(pack, "GroundedInpaintGroundedSegment", image=images, detector=detector, sam_model=sam,
                         prompt="red shoes", box_threshold=0.3, text_threshold=0.25, max_detections=3, multimask="auto")
    dets, _, _ = call(pack, "GroundedInpaintDetect", image=images, detector=detector, prompt="red shoes",
                      box_threshold=0.3, text_threshold=0.25, max_detections=3)
    segs2, mask2, _ = call(pack, "GroundedInpaintSegment", image=images, sam_model=sam, multimask="auto", detections=dets)
    assert_masks_agree(mask > 0.5, mask2 > 0.5)
    assert [s.labels for s in segs] == [s.labels for s in segs2]


def test_sd_inpainting_hand_off(pack, comfy, models_dir):
    """MASK → what VAEEncodeForInpaint / InpaintModelConditioning / SetLatentNoiseMask do with it."""
    detector, sam = _load_models(pack, comfy, models_dir)
    images = torch.rand(2, 64, 96, 3)
    segs, _, _ = call(pack, "GroundedInpaintGroundedSegment", image=images, detector=detector, sam_model=sam,
                      prompt="cup", box_threshold=0.3, text_threshold=0.25, max_detections=2, multimask="auto")
    mask, _ = call(pack, "GroundedInpaintMaskFromSegments", segments=segs, invert=True, grow=4, feather=2.0,
                   fill_holes=False, min_area=0)
    # VAEEncodeForInpaint: reshape to [B, 1, H, W], resize to the pixels, multiply the pixels
    m = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])), size=(images.shape[1], images.shape[2]), mode="bilinear")
    assert m.shape == (2, 1, 64, 96)
    keep = (1.0 - m.round()).squeeze(1)
    blended = images * keep[..., None]
    assert blended.shape == images.shape
    # SetLatentNoiseMask / InpaintModelConditioning take [B, H, W] (or [H, W]) float masks
    assert mask.ndim == 3 and mask.dtype == torch.float32 and mask.shape[0] == images.shape[0]
    # ImageCompositeMasked: destination [B, H, W, 3], mask [B, H, W] of the same size
    assert mask.shape[1:] == images.shape[1:3]


# ----------------------------------------------------------------------------- rules


def test_batch_mismatch_names_both_sizes(pack, comfy, models_dir):
    from grounded_inpaint.structures import Detections  # noqa: F401 - the pack has its own copy

    detector, sam = _load_models(pack, comfy, models_dir)
    dets, _, _ = call(pack, "GroundedInpaintDetect", image=torch.rand(2, 16, 16, 3), detector=detector, prompt="cat",
                      box_threshold=0.3, text_threshold=0.25, max_detections=1)
    with pytest.raises(ValueError, match="2 result.*4 image"):
        call(pack, "GroundedInpaintSegment", image=torch.rand(4, 16, 16, 3), sam_model=sam, multimask="auto", detections=dets)
    with pytest.raises(ValueError, match="made on a 16x16 image but the images are 20x12"):
        call(pack, "GroundedInpaintSegment", image=torch.rand(2, 12, 20, 3), sam_model=sam, multimask="auto", detections=dets)
    with pytest.raises(ValueError, match="background has 4.*object has 2"):
        call(pack, "GroundedInpaintComposite", background=torch.rand(4, 16, 16, 3), object=torch.rand(2, 8, 8, 3),
             x=0, y=0, scale=1.0, anchor="top-left", feather=0.0)
    with pytest.raises(ValueError, match="image has 3.*mask has 2"):
        call(pack, "GroundedInpaintCutOut", image=torch.rand(3, 8, 8, 3), mask=torch.ones(2, 8, 8), crop=False, padding=0)


def test_model_names_outside_the_choices_are_refused(pack, comfy):
    from importlib import import_module

    runtime = import_module(f"{PACK_NAME}.nodes.runtime")
    errors = import_module(f"{PACK_NAME}.py.errors")
    for bad in ("../../../etc/passwd", "/etc/passwd", "sams/../../x.pth", "nope.pth"):
        with pytest.raises(errors.ModelNotFoundError, match="choose one of"):
            runtime.resolve_choice("sam", bad)


def test_cancel_between_images(pack, comfy, models_dir):
    detector, _ = _load_models(pack, comfy, models_dir)
    comfy.interrupt = True
    with pytest.raises(InterruptProcessingException):
        call(pack, "GroundedInpaintDetect", image=torch.rand(2, 16, 16, 3), detector=detector, prompt="cat",
             box_threshold=0.3, text_threshold=0.25, max_detections=0)


@pytest.mark.parametrize("node_id", ["GroundedInpaintDetect", "GroundedInpaintSegment"])
def test_cancel_inside_a_model_pass(pack, comfy, models_dir, node_id):
    """Cancel pressed while one image's model pass runs stops that pass; nothing partial is cached."""
    from importlib import import_module

    cache = import_module(f"{PACK_NAME}.py.cache").default_cache()
    detector, sam = _load_models(pack, comfy, models_dir)
    image = torch.rand(1, 24, 32, 3)
    inputs = dict(image=image, prompt="cat", box_threshold=0.3, text_threshold=0.25, max_detections=0, detector=detector)
    if node_id == "GroundedInpaintSegment":
        inputs = dict(image=image, sam_model=sam, multimask="auto", positive_points='[{"x": 10, "y": 10}]')
    engine = (detector if node_id == "GroundedInpaintDetect" else sam).engine
    comfy.interrupt_checks = 0
    call(pack, node_id, **inputs)  # count the checks of one uncancelled run
    checks_per_run = comfy.interrupt_checks
    assert checks_per_run > 20  # checked between the layers, not only once per image
    complete = {k: cache.get(k) for k in list(cache._entries) if k[0] == engine._cache_owner}
    assert complete  # (the uncancelled run cached its features)
    for fraction in (4, 2, 1.25):  # Cancel early, half-way and late in the run
        cache.discard_owner(engine._cache_owner)
        comfy.interrupt, comfy.interrupt_checks, comfy.interrupt_after = False, 0, int(checks_per_run / fraction)
        with pytest.raises(InterruptProcessingException):
            call(pack, node_id, **inputs)
        assert comfy.interrupt_checks == int(checks_per_run / fraction)  # stopped at the check that saw Cancel
        # what the cancelled pass cached is complete: an entry the whole run makes, with the same content
        for key in [k for k in list(cache._entries) if k[0] == engine._cache_owner]:
            assert key in complete
            for got, want in zip(_tensors(cache.get(key)), _tensors(complete[key])):
                if want.is_floating_point():
                    assert_close(got, want)
                else:
                    assert torch.equal(got, want)
    if node_id == "GroundedInpaintSegment":
        assert not sam.engine.is_image_set
    comfy.interrupt, comfy.interrupt_after = False, None
    call(pack, node_id, **inputs)  # the next prompt runs


def _tensors(value):
    """The tensors of a cache entry, in order (nested tuples / lists / dicts flattened)."""
    if torch.is_tensor(value):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [t for item in items for t in _tensors(item)]


def test_the_node_is_the_only_owner_of_its_model(pack, comfy, models_dir):
    """Dropping the loader's output (ComfyUI's "Unload models") frees the engine and its cache entries."""
    import gc
    import weakref
    from importlib import import_module

    cache = import_module(f"{PACK_NAME}.py.cache").default_cache()
    _, sam = _load_models(pack, comfy, models_dir)
    call(pack, "GroundedInpaintSegment", image=torch.rand(1, 24, 32, 3), sam_model=sam, multimask="auto",
         positive_points='[{"x": 10, "y": 10}]')
    owner, engine = sam.engine._cache_owner, weakref.ref(sam.engine)
    assert any(k[0] == owner for k in cache._entries)
    comfy.patchers.clear()
    comfy.mm.current_loaded_models.clear()
    del sam
    gc.collect()
    assert engine() is None and not any(k[0] == owner for k in cache._entries)


def test_model_dropdowns_mark_downloads_and_accept_bare_names(pack, comfy, models_dir):
    from importlib import import_module

    runtime = import_module(f"{PACK_NAME}.nodes.runtime")
    _, paths = models_dir
    choices = runtime.model_choices("sam")
    assert paths["sam_meta"].name in choices  # on disk: the bare name
    assert "sam_vit_b_01ec64.pth  (download 375 MB)" in choices  # not on disk: the size to be downloaded
    loader = pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadSam"]
    assert loader.VALIDATE_INPUTS(model_name="sam_vit_b_01ec64.pth") is True  # saved workflows / API users
    assert loader.VALIDATE_INPUTS(model_name="sam_vit_b_01ec64.pth  (download 375 MB)") is True
    assert "choose one of" in loader.VALIDATE_INPUTS(model_name="../../etc/passwd")
    assert runtime.resolve_choice("sam", paths["sam_meta"].name) == paths["sam_meta"]


def test_low_vram_unloads_after_use(pack, comfy, models_dir):
    detector, _ = _load_models(pack, comfy, models_dir)
    comfy.mm.vram_state = comfy.mm.VRAMState.LOW_VRAM
    call(pack, "GroundedInpaintDetect", image=torch.rand(1, 16, 16, 3), detector=detector, prompt="cat",
         box_threshold=0.3, text_threshold=0.25, max_detections=0)
    assert comfy.unloaded == [detector.patcher]


def test_cpu_pinned_model_skips_the_manager(pack, comfy, models_dir):
    _, paths = models_dir
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths["sam_hf"].name, device="cpu", precision="fp32")
    assert sam.patcher is None
    segs, mask, _ = call(pack, "GroundedInpaintSegment", image=torch.rand(1, 20, 20, 3), sam_model=sam, multimask="best",
                         positive_points='[{"x": 10, "y": 10}]')
    assert [s.labels for s in segs] == [["points"]] and comfy.loads == []


def test_precision_fallbacks(pack, comfy):
    from importlib import import_module

    runtime = import_module(f"{PACK_NAME}.nodes.runtime")
    cpu = torch.device("cpu")
    assert runtime.choose_dtype("fp16", cpu, auto_half=True) == torch.float32
    assert runtime.choose_dtype("bf16", cpu, auto_half=True) == torch.bfloat16
    assert runtime.choose_dtype("auto", cpu, auto_half=True) == torch.float32
    fake_gpu = torch.device("cuda")
    assert runtime.choose_dtype("fp16", fake_gpu, auto_half=True) == torch.float32  # the fake says: unsupported
    comfy.mm.should_use_fp16 = lambda device=None, prioritize_performance=True, **k: True
    assert runtime.choose_dtype("auto", fake_gpu, auto_half=True) == torch.float16
    assert runtime.choose_dtype("auto", fake_gpu, auto_half=False) == torch.float32


def test_inputs_in_other_layouts(pack, comfy, models_dir):
    _, sam = _load_models(pack, comfy, models_dir)
    rgba = torch.rand(2, 24, 24, 4)
    mask2d = torch.zeros(24, 24)
    mask2d[4:16, 4:16] = 1
    segs, mask, _ = call(pack, "GroundedInpaintSegment", image=rgba, sam_model=sam, multimask="auto", mask=mask2d)
    assert [s.labels for s in segs] == [["mask"], ["mask"]] and mask.shape == (2, 24, 24)
    gray = torch.rand(1, 24, 24, 1)
    (out,) = call(pack, "GroundedInpaintOverlay", image=gray, opacity=0.5, show_boxes=True, show_labels=True, mask=mask2d)
    assert out.shape == (1, 24, 24, 3)


def test_overlay_preview_and_errors(pack, comfy, models_dir, tmp_path):
    detector, sam = _load_models(pack, comfy, models_dir)
    images = torch.rand(2, 32, 32, 3)
    segs, _, _ = call(pack, "GroundedInpaintGroundedSegment", image=images, detector=detector, sam_model=sam,
                      prompt="cat", box_threshold=0.3, text_threshold=0.25, max_detections=2, multimask="auto")
    out = node(pack, "GroundedInpaintOverlay").draw(images, 0.5, True, True, segments=segs)
    assert out["result"][0].shape == (2, 32, 32, 3)
    files = [tmp_path / "temp" / e["filename"] for e in out["ui"]["images"]]
    assert len(files) == 2 and all(f.is_file() for f in files)
    with pytest.raises(ValueError, match="segments or a mask"):
        node(pack, "GroundedInpaintOverlay").draw(images, 0.5, True, True)


def test_cancel_while_previews_are_drawn_and_saved(pack, comfy, tmp_path):
    """Previews of a large batch are checked for Cancel picture by picture, and nothing is saved after it."""
    images, mask = torch.rand(4, 32, 32, 3), torch.zeros(4, 32, 32)
    comfy.interrupt_checks = 0
    node(pack, "GroundedInpaintOverlay").draw(images, 0.5, True, True, mask=mask)
    assert comfy.interrupt_checks >= 8  # before each of 4 drawings and each of 4 saved previews
    saved = set((tmp_path / "temp").iterdir())
    for after in (2, 6):  # while drawing, while saving
        comfy.interrupt, comfy.interrupt_checks, comfy.interrupt_after = False, 0, after
        with pytest.raises(InterruptProcessingException):
            node(pack, "GroundedInpaintOverlay").draw(images, 0.5, True, True, mask=mask)
        assert comfy.interrupt_checks == after
        new = set((tmp_path / "temp").iterdir()) - saved
        assert len(new) == max(0, after - 1 - 4)  # previews saved before Cancel, none after; no temp files
        saved |= new
    comfy.interrupt, comfy.interrupt_after = False, None


def test_cut_out_then_composite_is_pixel_exact(pack, comfy):
    image = torch.rand(1, 30, 40, 3)
    mask = torch.zeros(1, 30, 40)
    mask[0, 5:15, 10:25] = 1
    obj, alpha, rgba = call(pack, "GroundedInpaintCutOut", image=image, mask=mask, crop=True, padding=0)
    assert obj.shape == (1, 10, 15, 3) and alpha.shape == (1, 10, 15) and rgba.shape == (1, 10, 15, 4)
    background = torch.rand(2, 30, 40, 3)
    out, placed = call(pack, "GroundedInpaintComposite", background=background, object=obj, object_mask=alpha,
                       x=10, y=5, scale=1.0, anchor="top-left", feather=0.0)
    assert out.shape == (2, 30, 40, 3) and placed.shape == (2, 30, 40)
    assert torch.equal(out[:, 5:15, 10:25], image[:, 5:15, 10:25].expand(2, -1, -1, -1))
    outside = placed == 0
    assert torch.equal(out[outside], background[outside])
    # an RGBA object without a mask uses its alpha
    out2, placed2 = call(pack, "GroundedInpaintComposite", background=background, object=rgba, x=10, y=5, scale=1.0,
                         anchor="top-left", feather=0.0)
    assert torch.equal(out2, out) and torch.equal(placed2, placed)


def test_more_mask_prompts_than_images_is_an_error(pack, comfy, models_dir):
    _, sam = _load_models(pack, comfy, models_dir)
    with pytest.raises(ValueError, match="3 masks were given for 1 image"):
        call(pack, "GroundedInpaintSegment", image=torch.rand(1, 16, 16, 3), sam_model=sam, multimask="auto",
             mask=torch.ones(3, 16, 16))
