"""SAM 2.1: loading from Meta's layout (.safetensors / .pt) and transformers folders, exact round trip
of the in-process conversion, video-only tensors skipped by name only, no torchvision needed, and the
SAM Segment node running SAM-HQ and SAM 2.1."""

from __future__ import annotations

import builtins
import sys

import pytest
import torch
from tolerance import assert_close, assert_same_weights

from grounded_inpaint.errors import CheckpointError
from grounded_inpaint.models import load_segmenter, sam_family
from grounded_inpaint.sam.convert_sam2 import (
    SAM2_ARCHS,
    hf_sam2_config_from_arch,
    hf_sam2_model_from_original,
    hf_to_original_sam2_state_dict,
    infer_sam2_arch,
)
from grounded_inpaint.sam.sam2 import Sam2Predictor
from grounded_inpaint.testing.tiny_sam_extra import TINY_SAM2_ARCH, build_tiny_sam2_hf, tiny_sam2_original_state_dict

BOXES = torch.tensor([[5.0, 6.0, 40.0, 30.0], [30.0, 10.0, 79.0, 47.0], [0.0, 0.0, 80.0, 48.0]])
POINTS = torch.tensor([[[20.0, 20.0], [10.0, 8.0]], [[50.0, 30.0], [0.0, 0.0]], [[40.0, 24.0], [70.0, 40.0]]])
LABELS = torch.tensor([[1, 0], [1, -1], [1, 1]])


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(48, 80, 3, generator=torch.Generator().manual_seed(seed))


def _run(predictor, **prompts):
    predictor.feature_cache = None
    predictor.set_image(_image())
    return predictor.predict(**prompts)


@pytest.fixture(scope="module")
def sam2_file(models_dir):
    root, paths = models_dir
    return load_segmenter(str(paths["sam2_file"]), None, download=False)


@pytest.fixture(scope="module")
def sam2_hf(models_dir):
    root, paths = models_dir
    return load_segmenter(str(paths["sam2_hf"]), None, download=False)


def test_file_is_read_at_1024_and_matches_the_same_weights(sam2_file):
    """The original-layout file loads (video tensors skipped) and equals the HF model it came from."""
    assert isinstance(sam2_file, Sam2Predictor) and sam2_file.image_size == 1024
    reference = Sam2Predictor(build_tiny_sam2_hf(seed=0, image_size=1024))
    assert_same_weights(sam2_file.model.state_dict(), reference.model.state_dict())
    a = _run(sam2_file, boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask="all")
    b = _run(reference, boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask="all")
    assert_close(a.low_res_logits, b.low_res_logits)
    assert_close(a.iou, b.iou)
    assert a.masks.shape == (3, 3, 48, 80) and a.low_res_logits.shape == (3, 3, 256, 256)


def test_hf_folder_boxes_points_masks_and_batches(sam2_hf, models_dir):
    _, paths = models_dir
    assert sam_family(paths["sam2_hf"]) == "sam2" and sam_family(paths["sam2_file"]) == "sam2"
    assert sam2_hf.image_size == 64 and sam2_hf.input_size is None
    sam2_hf.feature_cache = None
    sam2_hf.set_image(_image())
    assert sam2_hf.input_size == (64, 64)  # square resize, no padding
    embeddings, s0, s1 = sam2_hf.features
    assert embeddings.shape == (1, 16, 4, 4) and s0.shape == (1, 2, 16, 16) and s1.shape == (1, 4, 8, 8)
    for multimask in ("single", "best", "all"):
        out = sam2_hf.predict(boxes=BOXES, multimask=multimask)
        k = 3 if multimask == "all" else 1
        assert out.masks.shape == (3, k, 48, 80) and out.masks.dtype == torch.bool and out.iou.shape == (3, k)
    points = sam2_hf.predict(point_coords=POINTS, point_labels=LABELS)
    both = sam2_hf.predict(boxes=BOXES, point_coords=POINTS, point_labels=LABELS)
    assert not torch.equal(points.low_res_logits, both.low_res_logits)
    batch = sam2_hf.predict(boxes=BOXES, multimask="all")
    for i in range(3):  # one batched decode equals prompt-by-prompt decoding
        single = sam2_hf.predict(boxes=BOXES[i : i + 1], multimask="all")
        torch.testing.assert_close(single.low_res_logits, batch.low_res_logits[i : i + 1], atol=1e-5, rtol=1e-5)
    rough = torch.zeros(48, 80)
    rough[10:30, 20:60] = 1
    logits = sam2_hf.mask_to_logits(rough)
    assert logits.shape == (16, 16)
    only_mask = sam2_hf.predict(mask_input=logits[None])
    assert only_mask.masks.shape == (1, 1, 48, 80)


def test_round_trip_original_layout_is_exact(tmp_path):
    """HF model → Meta's names → .pt file → loader: every tensor identical, same config, outputs equal within fp32 rounding
    (outputs compared at 64 px for speed: no tensor depends on the input size)."""
    reference = build_tiny_sam2_hf(seed=5)
    original = hf_to_original_sam2_state_dict(reference.state_dict())
    assert "image_encoder.trunk.blocks.1.proj.weight" in original and "no_mem_embed" in original
    assert "sam_prompt_encoder.point_embeddings.3.weight" in original
    path = tmp_path / "roundtrip.pt"
    torch.save({"model": original}, path)
    loaded = Sam2Predictor.from_checkpoint(path)
    ref_sd, new_sd = reference.state_dict(), loaded.model.state_dict()
    assert_same_weights(new_sd, ref_sd)
    assert loaded.model.config.to_dict() == reference.config.to_dict()
    small_ref = build_tiny_sam2_hf(seed=5, image_size=64)
    small_loaded = build_tiny_sam2_hf(seed=99, image_size=64)
    small_loaded.load_state_dict(new_sd, strict=True)
    a = _run(Sam2Predictor(small_ref), boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask="all")
    b = _run(Sam2Predictor(small_loaded), boxes=BOXES, point_coords=POINTS, point_labels=LABELS, multimask="all")
    assert_close(b.low_res_logits, a.low_res_logits)
    assert_close(b.iou, a.iou)


def test_only_listed_video_tensors_are_skipped(tmp_path):
    sd = tiny_sam2_original_state_dict(seed=0)
    assert any(k.startswith("memory_attention.") for k in sd)
    hf_sam2_model_from_original(sd)  # video-only stand-ins are skipped by name
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \('surprise\.weight'\)"):
        hf_sam2_model_from_original(dict(sd, **{"surprise.weight": torch.zeros(1)}), "x.safetensors")
    broken = {k: v for k, v in sd.items() if k != "sam_mask_decoder.conv_s1.weight"}
    with pytest.raises(CheckpointError, match=r"broken\.pt.*1 missing keys \('mask_decoder\.conv_s1\.weight'\)"):
        hf_sam2_model_from_original(broken, "broken.pt")


def test_published_variants_are_recognised_from_shapes():
    """Meta-device models of the four real sizes → original names → the right variant (no memory used)."""
    from transformers import Sam2Model

    for name, arch in SAM2_ARCHS.items():
        with torch.device("meta"):
            model = Sam2Model(hf_sam2_config_from_arch(arch))
        inferred = infer_sam2_arch(hf_to_original_sam2_state_dict(model.state_dict()), name)
        assert inferred == arch, name
    assert infer_sam2_arch(tiny_sam2_original_state_dict()) == TINY_SAM2_ARCH


def test_wrong_files_are_named(tmp_path, models_dir):
    _, paths = models_dir
    with pytest.raises(CheckpointError, match=r"sam_vit_tiny_random\.pth is not a SAM 2 checkpoint.*SAM / SAM-HQ"):
        Sam2Predictor.from_checkpoint(paths["sam_meta"])
    bad = tmp_path / "sam2.1_truncated.safetensors"
    bad.write_bytes(paths["sam2_file"].read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"sam2\.1_truncated\.safetensors.*(corrupted|truncated)"):
        load_segmenter(str(bad), None, download=False)
    empty = tmp_path / "empty_sam2"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "sam2"}')
    with pytest.raises(CheckpointError, match=r"empty_sam2 is not a loadable transformers SAM 2 folder"):
        load_segmenter(str(empty), None, download=False)


def test_works_without_torchvision(monkeypatch, models_dir):
    """SAM 2's pre/post-processing here is plain torch: blocking torchvision changes nothing."""
    _, paths = models_dir
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ImportError("No module named 'torchvision' (blocked by the test)")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401
    predictor = Sam2Predictor.from_pretrained(paths["sam2_hf"])
    out = _run(predictor, boxes=BOXES)
    assert out.masks.shape == (3, 1, 48, 80)


# ----------------------------------------------------------------------------- the SAM Segment node


@pytest.mark.parametrize("key", ["sam_hq_meta", "sam_hq_hf", "sam2_hf"])  # sam2_file: 1024 px, loaded above
def test_segment_node_runs_sam_hq_and_sam2(key, models_dir, monkeypatch, tmp_path):
    import importlib.util

    from comfy_fakes import FakeComfy
    from test_nodes import PACK_NAME, ROOT, call

    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    pack = sys.modules[PACK_NAME]
    root, paths = models_dir
    fake = FakeComfy(monkeypatch, tmp_path / "comfy_models", tmp_path / "temp")
    fake.folder_paths.add_model_folder_path("sams", str(root / "sams"))
    fake.folder_paths.add_model_folder_path("sam2", str(root / "sam2"))
    sys.modules[f"{PACK_NAME}.nodes.runtime"].register_model_folders()
    (sam,) = call(pack, "GroundedInpaintLoadSam", model_name=paths[key].name, device="auto", precision="auto")
    images = torch.rand(2, 40, 56, 3)
    mask2d = torch.zeros(40, 56)
    mask2d[8:30, 10:40] = 1
    segs, mask, preview = call(pack, "GroundedInpaintSegment", image=images, sam_model=sam, multimask="auto",
                               positive_points='[{"x": 20, "y": 20}]', mask=mask2d)
    assert len(segs) == 2 and mask.shape == (2, 40, 56) and mask.dtype == torch.float32
    assert preview.shape == (2, 40, 56, 3)
