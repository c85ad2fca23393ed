"""Against a real ComfyUI: the pack imports, every node is in /object_info with its descriptions and
tooltips, Load Image → Detect → Segment → Mask from Segmentation → Save Image runs over the HTTP
API on tiny models, every bundled example workflow runs end to end (with a tiny random-weight
SD 1.5 inpainting checkpoint, 1 step) and keeps the pixels it promises to keep, and the headless
client runs the mask-only workflow.

Skipped unless ``COMFYUI_DIR`` points at a ComfyUI checkout. ``COMFYUI_PYTHON`` names the Python
that has ComfyUI's requirements and this pack's (default: the Python running the tests), e.g.
the venv made by ``../shared/tools/comfy_up.sh --setup-only``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from grounded_inpaint.testing.comfy_server import COMFYUI_DIR, COMFYUI_PYTHON, ROOT, ComfyServer, get
from PIL import Image

TINY_CKPT = "tiny-sd15-inpainting-random.safetensors"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the integration test"),
]
_get = get


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory):
    from grounded_inpaint.testing.tiny_models import write_models_folder

    work = tmp_path_factory.mktemp("comfy")
    models = work / "models"
    paths = write_models_folder(models)
    subprocess.run(
        [COMFYUI_PYTHON, str(ROOT / "tools" / "write_tiny_sd15_inpaint.py"), str(models / "checkpoints" / TINY_CKPT)],
        check=True, env={**__import__("os").environ, "COMFYUI_DIR": str(COMFYUI_DIR)}, capture_output=True, timeout=300,
    )
    server = ComfyServer(work, models)
    shutil.copy(ROOT / "assets" / "coffee.png", work / "input" / "coffee.png")
    for picture in (ROOT / "example_workflows" / "inputs").glob("*.png"):
        shutil.copy(picture, work / "input" / f"example_{picture.name}")
    for clip in (ROOT / "example_workflows" / "inputs").glob("*.mp4"):
        shutil.copy(clip, work / "input" / f"example_{clip.name}")
    server.wait_ready()
    yield server.base, work, paths, server
    server.stop()


def test_pack_imports_and_every_node_is_listed(comfy_server):
    base, work, _, server = comfy_server
    text = (work / "comfy.log").read_text()
    assert "IMPORT FAILED" not in text and "grounded-inpaint" in text
    info = _get(f"{base}/object_info")
    frozen = json.loads((ROOT / "tests" / "data" / "node_ids.json").read_text())
    for node_id in frozen:
        assert node_id in info, node_id
        entry = info[node_id]
        assert entry["category"] == "Grounded Inpaint" and len(entry["description"]) > 40
        for section in ("required", "optional"):
            for name, spec in entry["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert "grounding-dino-tiny-random" in info["GroundedInpaintLoadGroundingDino"]["input"]["required"]["model_name"][0]


def _saved(work: Path, entry: dict, node_id: str) -> np.ndarray:
    images = entry["outputs"][node_id]["images"]
    assert len(images) == 1
    return np.asarray(Image.open(work / "output" / images[0]["subfolder"] / images[0]["filename"]))


def test_detect_segment_mask_workflow_over_the_api(comfy_server):
    base, work, _, server = comfy_server
    workflow = json.loads((ROOT / "tests" / "data" / "detect_segment_mask_api.json").read_text())
    workflow["7"]["inputs"]["filename_prefix"] = f"gi_{uuid.uuid4().hex[:6]}"
    entry = server.run(workflow)
    images = entry["outputs"]["7"]["images"]
    assert len(images) == 1
    saved = work / "output" / images[0]["subfolder"] / images[0]["filename"]
    mask = np.asarray(Image.open(saved))
    source = Image.open(ROOT / "assets" / "coffee.png")
    assert mask.shape[:2] == (source.height, source.width)
    assert set(np.unique(mask).tolist()) <= {0, 255}  # a hard mask (feather 0)
    assert (mask == 255).any()  # inverted: the background is to be repainted


def _example(name: str) -> dict:
    """An example workflow's API twin on the test's tiny models, with unique output names."""
    workflow = json.loads((ROOT / "example_workflows" / "api" / f"{name}_api.json").read_text())
    tag = uuid.uuid4().hex[:6]
    for node in workflow.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "GroundedInpaintLoadGroundingDino":
            inputs["model_name"] = "grounding-dino-tiny-random"
        elif kind == "GroundedInpaintLoadSam":
            inputs["model_name"] = "sam_vit_tiny_random.pth"
        elif kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = TINY_CKPT
        elif kind == "KSampler":
            inputs["steps"] = 1
        elif kind == "LoadImage":
            inputs["image"] = f"example_{inputs['image']}"
        elif kind == "LoadVideo":
            inputs["file"] = f"example_{inputs['file']}"
        elif kind == "GroundedInpaintLoadSam2Video":
            inputs["model_name"] = "sam2.1-video-hf-tiny-random"
        elif kind == "SaveImage":
            inputs["filename_prefix"] = f"{inputs['filename_prefix']}_{tag}"
    return workflow


def _add_save(workflow: dict, node_id: str, source: list, *, mask: bool = False) -> None:
    """Save ``source`` too (a MASK goes through MaskToImage first)."""
    if mask:
        workflow[f"{node_id}m"] = {"class_type": "MaskToImage", "inputs": {"mask": source}}
        source = [f"{node_id}m", 0]
    workflow[node_id] = {"class_type": "SaveImage", "inputs": {"images": source, "filename_prefix": f"check_{node_id}_{uuid.uuid4().hex[:6]}"}}


def _find(workflow: dict, kind: str, title: str | None = None) -> str:
    return next(k for k, v in workflow.items() if v["class_type"] == kind and (title is None or v.get("_meta", {}).get("title") == title))


def test_background_generation_keeps_the_product(comfy_server):
    base, work, _, server = comfy_server
    wf = _example("background_generation")
    refine = _find(wf, "GroundedInpaintRefineMask")
    _add_save(wf, "900", [_find(wf, "LoadImage"), 0])
    _add_save(wf, "901", [_find(wf, "ThresholdMask"), 0], mask=True)  # surely the cup
    _add_save(wf, "902", [refine, 0], mask=True)  # the soft alpha
    _add_save(wf, "903", [_find(wf, "InvertMask"), 0], mask=True)  # what was repainted
    entry = server.run(wf)
    result, original = _saved(work, entry, _find(wf, "SaveImage", None)), _saved(work, entry, "900")
    keep, alpha, repaint = (_saved(work, entry, k)[..., 0] for k in ("901", "902", "903"))
    assert result.shape == original.shape == (264, 400, 3)
    assert (keep == 255).any()
    assert np.array_equal(result[keep == 255], original[keep == 255])  # the cup's own pixels, exactly
    assert np.array_equal(repaint == 255, keep == 0)  # everything else was repainted, the soft band included
    assert (alpha[keep == 255] == 255).all()
    assert ui_preview_count(entry, refine) == 2  # trimap over the photo and the cut-out, shown in the node


def ui_preview_count(entry: dict, node_id: str) -> int:
    return len(entry["outputs"].get(node_id, {}).get("images", []))


def test_external_matte_decides_the_edge_inside_the_band(comfy_server):
    base, work, _, server = comfy_server
    wf = _example("external_matte")
    refine = _find(wf, "GroundedInpaintRefineMask")
    _add_save(wf, "900", [refine, 3], mask=True)  # trimap
    _add_save(wf, "901", [refine, 0], mask=True)  # alpha
    _add_save(wf, "902", [_find(wf, "ImageToMask"), 0], mask=True)  # the matte
    entry = server.run(wf)
    rgba = _saved(work, entry, _find(wf, "SaveImage", "Save the transparent cut-out"))
    placed = _saved(work, entry, _find(wf, "SaveImage", "Save the placed dress"))
    trimap, alpha, matte = (_saved(work, entry, k)[..., 0].astype(int) for k in ("900", "901", "902"))
    assert rgba.shape == (400, 320, 4) and placed.shape == (384, 512, 3)
    band = (trimap > 0) & (trimap < 255)
    assert band.any()
    assert np.abs(alpha[band] - matte[band]).max() <= 1  # inside the band: the matte (8-bit rounding)
    assert np.array_equal(alpha[~band], trimap[~band])  # outside: the segmenter's 0 / 1
    assert np.array_equal(rgba[..., 3], alpha.astype(np.uint8))


def test_vitmatte_through_load_matting_model(comfy_server):
    base, work, paths, server = comfy_server
    info = _get(f"{base}/object_info")
    assert paths["vitmatte"].name in info["GroundedInpaintLoadMattingModel"]["input"]["required"]["model_name"][0]
    wf: dict = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example_mannequin_dress.png"}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "example_mannequin_dress_matte.png"}},
        "4": {"class_type": "ThresholdMask", "inputs": {"mask": ["2", 0], "value": 0.5}},
        "5": {"class_type": "GroundedInpaintLoadMattingModel", "inputs": {"model_name": paths["vitmatte"].name, "device": "auto",
                                                                            "precision": "auto"}},
        "6": {"class_type": "GroundedInpaintRefineMask", "inputs": {"image": ["1", 0], "mask": ["4", 0], "matting_model": ["5", 0],
                                                                      "method": "vitmatte", "band_inside": 6, "band_outside": 6,
                                                                      "decontaminate": True}},
    }
    _add_save(wf, "alpha", ["6", 0], mask=True)
    _add_save(wf, "trimap", ["6", 3], mask=True)
    entry = server.run(wf)
    alpha, trimap = _saved(work, entry, "alpha")[..., 0], _saved(work, entry, "trimap")[..., 0]
    band = (trimap > 0) & (trimap < 255)
    assert alpha.shape == (400, 320) and band.any()
    assert np.array_equal(alpha[~band], trimap[~band]) and len(np.unique(alpha[band])) > 5


def test_product_placement_only_repaints_the_edge_band(comfy_server):
    base, work, _, server = comfy_server
    wf = _example("product_placement")
    composite = _find(wf, "GroundedInpaintComposite")
    _add_save(wf, "900", [composite, 0])
    _add_save(wf, "901", [_find(wf, "InvertMask"), 0], mask=True)
    entry = server.run(wf)
    result, pasted, outside = _saved(work, entry, _find(wf, "SaveImage")), _saved(work, entry, "900"), _saved(work, entry, "901")[..., 0]
    assert result.shape == pasted.shape == (384, 512, 3)  # the backdrop's size
    assert np.array_equal(result[outside == 255], pasted[outside == 255])


def test_object_replacement_changes_only_the_mask(comfy_server):
    base, work, _, server = comfy_server
    wf = _example("object_replacement")
    _add_save(wf, "900", [_find(wf, "LoadImage"), 0])
    _add_save(wf, "901", [_find(wf, "GroundedInpaintMaskFromSegments"), 0], mask=True)
    entry = server.run(wf)
    result, original, mask = _saved(work, entry, _find(wf, "SaveImage")), _saved(work, entry, "900"), _saved(work, entry, "901")[..., 0]
    assert result.shape == original.shape == (264, 400, 3)
    # The saved mask is 8-bit: the feather's tail (values below 1/255, up to the feather radius of
    # 8 px beyond the visible edge) shows as 0, so pixels there may differ by one level; farther away
    # (21x21 neighbourhood all zero) they are exactly the original.
    from scipy.ndimage import maximum_filter

    untouched = maximum_filter(mask, size=21) == 0
    assert untouched.sum() > 1000
    assert np.array_equal(result[untouched], original[untouched])
    diff = np.abs(result.astype(int) - original.astype(int))
    assert diff[mask == 0].max() <= 1


def test_mask_only_saves_mask_overlay_and_cutout(comfy_server):
    base, work, _, server = comfy_server
    wf = _example("mask_only")
    entry = server.run(wf)
    saves = sorted(k for k, v in wf.items() if v["class_type"] == "SaveImage")
    outputs = {wf[k]["inputs"]["filename_prefix"].split("/")[-1].split("_")[0]: _saved(work, entry, k) for k in saves}
    assert outputs["mask"].shape == (264, 400, 3) and set(np.unique(outputs["mask"]).tolist()) <= {0, 255}
    assert outputs["overlay"].shape == (264, 400, 3)
    assert outputs["cutout"].ndim == 3 and outputs["cutout"].shape[2] == 4  # RGBA


def test_video_track_saves_one_inverted_mask_per_frame(comfy_server):
    """ComfyUI's Load Video → Get Video Components → Grounded Track → Select Objects → Mask from
    Segmentation (inverted) → Save Image: 24 frames in, 24 masks out, every object keeps its id."""
    base, work, _, server = comfy_server
    wf = _example("video_track")
    track = _find(wf, "GroundedInpaintGroundedTrack")
    wf[track]["inputs"].update(box_threshold=0.0, text_threshold=0.0, max_objects=2, detect_every=5)  # random weights
    _add_save(wf, "900", [track, 1], mask=True)
    entry = server.run(wf, timeout=600)
    masks = entry["outputs"][_find(wf, "SaveImage", "Save the mask of every frame")]["images"]
    objects = entry["outputs"]["900"]["images"]
    previews = entry["outputs"][_find(wf, "SaveImage", "Save the preview (ids)")]["images"]
    assert len(masks) == len(objects) == len(previews) == 24  # B frames in, B masks out
    for saved, tracked in zip(masks, objects):
        mask = np.asarray(Image.open(work / "output" / saved["subfolder"] / saved["filename"]))[..., 0]
        union = np.asarray(Image.open(work / "output" / tracked["subfolder"] / tracked["filename"]))[..., 0]
        assert mask.shape == (96, 160) and set(np.unique(mask).tolist()) <= {0, 255}
        assert (mask == 255).any()  # inverted: the background is repainted
        assert union.shape == (96, 160)


def test_sam3_track_runs_the_example_clip(comfy_server):
    """The video_track example with SAM 3 Track (Load SAM 3 Video Model) in Grounded Track's place: the same
    clip from ComfyUI's Load Video, 24 masks out, ids from 1. A server on transformers 4 gets the loader's
    message naming the pip command instead."""
    base, work, paths, server = comfy_server
    if "sam3_video" not in paths:
        pytest.skip("SAM 3 video needs transformers 5")
    info = _get(f"{base}/object_info")
    assert paths["sam3_video"].name in info["GroundedInpaintLoadSam3Video"]["input"]["required"]["model_name"][0]
    wf = _example("video_track")
    track = _find(wf, "GroundedInpaintGroundedTrack")
    wf["s3"] = {"class_type": "GroundedInpaintLoadSam3Video",
                "inputs": {"model_name": paths["sam3_video"].name, "device": "auto", "precision": "auto"}}
    wf[track] = {"class_type": "GroundedInpaintSam3Track",
                 "inputs": {"images": wf[track]["inputs"]["images"], "sam3_video_model": ["s3", 0], "prompt": "red block, blue block",
                            "detect_every": 1, "max_objects": 2, "threshold": 0.3, "new_object_threshold": 0.7}}
    for node_id in [k for k, v in wf.items() if v["class_type"] in ("GroundedInpaintLoadGroundingDino", "GroundedInpaintLoadSam2Video")]:
        del wf[node_id]
    _add_save(wf, "900", [track, 1], mask=True)
    if not _server_has_sam3():  # a server on transformers 4: the loader names the pip command, nothing is downloaded
        entry = server.wait(server.queue(wf), timeout=600, statuses=("error",))
        errors = [m for kind, m in entry["status"]["messages"] if kind == "execution_error"]
        assert errors and errors[0]["node_type"] == "GroundedInpaintLoadSam3Video"
        assert 'pip install -U "transformers>=5"' in errors[0]["exception_message"]
        return
    entry = server.run(wf, timeout=600)
    masks = entry["outputs"][_find(wf, "SaveImage", "Save the mask of every frame")]["images"]
    objects = entry["outputs"]["900"]["images"]
    assert len(masks) == len(objects) == 24  # B frames in, B masks out
    union = [np.asarray(Image.open(work / "output" / o["subfolder"] / o["filename"]))[..., 0] for o in objects]
    assert all(u.shape == (96, 160) for u in union) and any((u == 255).any() for u in union)


def test_client_runs_the_mask_only_workflow(comfy_server, tmp_path):
    from grounded_inpaint.client import main as client_main

    base, work, _, server = comfy_server
    out = tmp_path / "client_out"
    rc = client_main([
        "-q", "run", str(ROOT / "example_workflows" / "api" / "mask_only_api.json"), "--server", base.replace("http://", ""),
        "--image", str(ROOT / "example_workflows" / "inputs" / "coffee.png"),
        "--set", "2.model_name=grounding-dino-tiny-random", "--set", "3.model_name=sam_vit_tiny_random.pth",
        "--set", f"9.filename_prefix=client_{uuid.uuid4().hex[:6]}", "--out", str(out), "--timeout", "300",
        "--expect-images", "3",
    ])
    assert rc == 0
    assert len(list(out.glob("*.png"))) == 3


def test_every_model_family_runs_through_the_nodes(comfy_server):
    """Each detector layout, each SAM layout (SAM, SAM-HQ, SAM 2.1) and SAM 3 in one queued graph."""
    base, work, paths, server = comfy_server
    detectors = {k: paths[k].name for k in ("grounding_dino", "mm_grounding_dino", "grounding_dino_original")}
    sams = {k: paths[k].name for k in ("sam_meta", "sam_hf", "sam_hq_meta", "sam_hq_hf", "sam2_file", "sam2_hf")}
    info = _get(f"{base}/object_info")
    assert set(detectors.values()) <= set(info["GroundedInpaintLoadGroundingDino"]["input"]["required"]["model_name"][0])
    assert set(sams.values()) <= set(info["GroundedInpaintLoadSam"]["input"]["required"]["model_name"][0])
    # transformers 4.x has no SAM 3: write_models_folder leaves it out, and a server on 4.x cannot load
    # the folder a test process on 5.x wrote
    with_sam3 = "sam3" in paths and _server_has_sam3()
    if with_sam3:
        assert paths["sam3"].name in info["GroundedInpaintLoadSam3"]["input"]["required"]["model_name"][0]

    # example_coffee.png: the client test uploads over coffee.png, so that name's size depends on test order
    wf: dict = {"1": {"class_type": "LoadImage", "inputs": {"image": "example_coffee.png"}}}
    low = {"box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 2}
    for i, (role, name) in enumerate(detectors.items()):
        wf[f"d{i}"] = {"class_type": "GroundedInpaintLoadGroundingDino", "inputs": {"model_name": name, "device": "auto", "precision": "auto"}}
        wf[f"e{i}"] = {"class_type": "GroundedInpaintDetect", "inputs": {"image": ["1", 0], "detector": [f"d{i}", 0], "prompt": "cup", **low}}
        _add_save(wf, f"det_{role}", [f"e{i}", 1])
    for i, (role, name) in enumerate(sams.items()):
        wf[f"s{i}"] = {"class_type": "GroundedInpaintLoadSam", "inputs": {"model_name": name, "device": "auto", "precision": "auto"}}
        wf[f"g{i}"] = {"class_type": "GroundedInpaintSegment", "inputs": {"image": ["1", 0], "sam_model": [f"s{i}", 0], "multimask": "auto", "detections": ["e0", 0]}}
        _add_save(wf, f"seg_{role}", [f"g{i}", 1], mask=True)
    if with_sam3:
        _add_sam3_branch(wf, paths["sam3"].name)
    entry = server.run(wf, timeout=600)
    source = Image.open(ROOT / "example_workflows" / "inputs" / "coffee.png")
    for node_id in [k for k, v in wf.items() if v["class_type"] == "SaveImage"]:
        picture = _saved(work, entry, node_id)
        assert picture.shape[:2] == (source.height, source.width), node_id
    for role in sams:
        assert (_saved(work, entry, f"seg_{role}") == 255).any(), role  # every SAM cut something out
    if with_sam3:
        assert (_saved(work, entry, "sam3_mask") > 0).any()


def _server_has_sam3() -> bool:
    done = subprocess.run([COMFYUI_PYTHON, "-c", "import transformers; print(hasattr(transformers, 'Sam3Model'))"],
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip().endswith("True")


def _add_sam3_branch(wf: dict, model_name: str) -> None:
    """Load SAM 3 → SAM 3 Segment → Mask from Segmentation and Overlay → saved."""
    wf["t0"] = {"class_type": "GroundedInpaintLoadSam3", "inputs": {"model_name": model_name, "device": "auto", "precision": "auto"}}
    wf["t1"] = {"class_type": "GroundedInpaintSam3Segment", "inputs": {"image": ["1", 0], "sam3_model": ["t0", 0], "prompt": "cup, saucer",
                                                                       "threshold": 0.0, "mask_threshold": 0.5, "max_instances": 3}}
    wf["t2"] = {"class_type": "GroundedInpaintMaskFromSegments", "inputs": {"segments": ["t1", 0], "invert": True, "grow": 0, "feather": 0.0, "fill_holes": False, "min_area": 0}}
    wf["t3"] = {"class_type": "GroundedInpaintOverlay", "inputs": {"image": ["1", 0], "opacity": 0.5, "show_boxes": True, "show_labels": True, "segments": ["t1", 0]}}
    _add_save(wf, "sam3_mask", ["t2", 0], mask=True)
    _add_save(wf, "sam3_overlay", ["t3", 0])
