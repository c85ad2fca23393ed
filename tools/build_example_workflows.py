"""Write the example workflows, each in both formats, from one definition.

    python tools/build_example_workflows.py

For every workflow below it writes ``example_workflows/<name>.json`` (the canvas/UI format that
ComfyUI lists under Templates, with Note nodes explaining the steps) and
``example_workflows/api/<name>_api.json`` (the API format for ``POST /prompt`` and
``python -m grounded_inpaint.client``). Both come from the same node list, so they cannot drift
apart; ``tests/test_example_workflows.py`` checks that they still agree and that every link joins
matching socket types. The API twins live in a sub-folder so the Templates menu lists only the
canvas graphs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "example_workflows"

SD_CHECKPOINT = "sd-v1-5-inpainting.ckpt"
DETECTOR = "grounding-dino-tiny"
SAM = "sam_vit_b_01ec64.pth"
NEGATIVE = "blurry, lowres, deformed, watermark, text, logo"

MODELS_NOTE = (
    "Models\n"
    f"- GroundingDINO: {DETECTOR} (downloads itself into models/grounding-dino on first run, 694 MB).\n"
    f"- SAM: {SAM} (downloads itself into models/sams on first run, 375 MB; any sam_vit_*.pth you already have works).\n"
    f"- An SD 1.5 inpainting checkpoint in models/checkpoints, e.g. {SD_CHECKPOINT} "
    "(runwayml's stable-diffusion-inpainting, 4.3 GB). Pick yours in the Load Checkpoint node.\n"
    "Input pictures: copy grounded-inpaint/example_workflows/inputs/*.png into ComfyUI/input."
)


@dataclass
class Node:
    id: int
    type: str
    inputs: dict[str, Any]  # widget values, or (node_id, slot) for links
    pos: tuple[int, int]
    title: str | None = None
    size: tuple[int, int] = (320, 130)


@dataclass
class Note:
    text: str
    pos: tuple[int, int]
    size: tuple[int, int] = (420, 220)


@dataclass
class Workflow:
    name: str
    nodes: list[Node]
    notes: list[Note] = field(default_factory=list)
    #: Why a setting differs from what a freshly added node has: ``{"<node id>.<input>": reason}``.
    #: Every such setting needs one; they are listed in a Note on the canvas.
    reasons: dict[str, str] = field(default_factory=dict)


def _common_loaders(det_id: int, sam_id: int, x: int, y: int) -> list[Node]:
    return [
        Node(det_id, "GroundedInpaintLoadGroundingDino", {"model_name": DETECTOR, "device": "auto", "precision": "auto"}, (x, y)),
        Node(sam_id, "GroundedInpaintLoadSam", {"model_name": SAM, "device": "auto", "precision": "auto"}, (x, y + 170)),
    ]


def _sd(ckpt_id: int, pos_id: int, neg_id: int, positive: str, x: int, y: int) -> list[Node]:
    return [
        Node(ckpt_id, "CheckpointLoaderSimple", {"ckpt_name": SD_CHECKPOINT}, (x, y), "Load SD 1.5 inpainting checkpoint"),
        Node(pos_id, "CLIPTextEncode", {"text": positive, "clip": (ckpt_id, 1)}, (x + 360, y), "Positive prompt", (400, 160)),
        Node(neg_id, "CLIPTextEncode", {"text": NEGATIVE, "clip": (ckpt_id, 1)}, (x + 360, y + 200), "Negative prompt", (400, 160)),
    ]


def _sampler(node_id: int, ckpt_id: int, cond_id: int, x: int, y: int, *, denoise: float, steps: int = 25, seed: int = 42) -> Node:
    return Node(node_id, "KSampler", {
        "model": (ckpt_id, 0), "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": (cond_id, 0), "negative": (cond_id, 1), "latent_image": (cond_id, 2), "denoise": denoise,
    }, (x, y), size=(320, 270))


def background_generation() -> Workflow:
    nodes = [
        Node(1, "LoadImage", {"image": "coffee.png"}, (0, 0), "Product photo", (320, 360)),
        *_common_loaders(2, 3, 0, 420),
        Node(4, "GroundedInpaintDetect", {"image": (1, 0), "detector": (2, 0), "prompt": "cup", "box_threshold": 0.3,
                                          "text_threshold": 0.25, "max_detections": 0}, (380, 0), size=(340, 260)),
        Node(5, "GroundedInpaintSegment", {"image": (1, 0), "sam_model": (3, 0), "multimask": "auto", "detections": (4, 0)},
             (380, 320), size=(340, 200)),
        Node(6, "GroundedInpaintRefineMask", {"image": (1, 0), "segments": (5, 0), "method": "guided", "band_inside": -1,
                                              "band_outside": -1, "decontaminate": True}, (780, 0),
             "Refine the cup's edge (soft alpha, clean colours)", (360, 420)),
        Node(7, "ThresholdMask", {"mask": (6, 3), "value": 0.75}, (780, 480), "Surely the cup (trimap = 1)", (300, 90)),
        Node(8, "InvertMask", {"mask": (7, 0)}, (780, 610), "Repaint mask: all but the surely-cup pixels", (300, 60)),
        *_sd(9, 10, 11, "a cup of coffee on a white marble table, soft studio light, product photography", 1200, 0),
        Node(12, "InpaintModelConditioning", {"positive": (10, 0), "negative": (11, 0), "vae": (9, 2), "pixels": (1, 0),
                                              "mask": (8, 0), "noise_mask": True}, (1200, 420), size=(320, 160)),
        _sampler(13, 9, 12, 1580, 420, denoise=1.0),
        Node(14, "VAEDecode", {"samples": (13, 0), "vae": (9, 2)}, (1960, 420), size=(220, 60)),
        Node(15, "ImageCompositeMasked", {"destination": (14, 0), "source": (6, 1), "x": 0, "y": 0, "resize_source": False,
                                          "mask": (6, 0)}, (1960, 520), "Paste the cup back: soft alpha, clean colours", (320, 180)),
        Node(16, "SaveImage", {"images": (15, 0), "filename_prefix": "grounded_inpaint/background"}, (2320, 420), size=(380, 360)),
    ]
    notes = [
        Note("Background generation: keep the product, repaint everything else.\n\n"
             "1. GroundingDINO Detect finds \"cup\"; SAM Segment cuts it out.\n"
             "2. Refine Mask Edges turns SAM's hard cut-out into a soft alpha (guided filter in a band around the edge, "
             "wider where SAM was unsure) and the cup's own colours at its edge (no halo of the old background).\n"
             "3. ThresholdMask + InvertMask: everything that is not surely the cup is repainted, the edge band included, "
             "so the new background exists under the soft edge.\n"
             "4. The SD 1.5 inpainting model repaints it from the prompt.\n"
             "5. ImageCompositeMasked pastes the cup back with its alpha and clean colours: where the cup is surely cup "
             "its pixels are exactly the photo's; at the edge it blends into the new background.", (0, -300), (760, 300)),
        Note(MODELS_NOTE, (820, -300), (700, 260)),
    ]
    reasons = {
        "4.prompt": "the product in this photo",
    }
    return Workflow("background_generation", nodes, notes, reasons)


def product_placement() -> Workflow:
    nodes = [
        Node(1, "LoadImage", {"image": "mannequin_dress.png"}, (0, 0), "Dress on a mannequin", (320, 400)),
        Node(2, "LoadImage", {"image": "studio_backdrop.png"}, (0, 460), "New background", (320, 360)),
        *_common_loaders(3, 4, 0, 880),
        Node(5, "GroundedInpaintGroundedSegment", {"image": (1, 0), "detector": (3, 0), "sam_model": (4, 0), "prompt": "dress",
                                                   "box_threshold": 0.3, "text_threshold": 0.25, "max_detections": 1,
                                                   "multimask": "auto"}, (380, 0), size=(340, 300)),
        Node(6, "GroundedInpaintRefineMask", {"image": (1, 0), "segments": (5, 0), "method": "closed_form", "band_inside": -1,
                                              "band_outside": -1, "decontaminate": True}, (380, 360),
             "Refine the dress's edge", (340, 420)),
        Node(7, "GroundedInpaintCutOut", {"image": (1, 0), "mask": (6, 0), "crop": True, "padding": 4, "foreground": (6, 1)},
             (780, 0), "Cut out with the clean colours", (300, 180)),
        Node(8, "GroundedInpaintComposite", {"background": (2, 0), "object": (7, 0), "x": 256, "y": 340, "scale": 0.8,
                                             "anchor": "bottom", "feather": 0.0, "object_mask": (7, 1)}, (780, 240),
             "Place the dress", (320, 280)),
        Node(9, "GrowMask", {"mask": (8, 1), "expand": 6, "tapered_corners": True}, (1140, 220), "Edge band: outer", (300, 110)),
        Node(10, "GrowMask", {"mask": (8, 1), "expand": -6, "tapered_corners": True}, (1140, 360), "Edge band: inner", (300, 110)),
        Node(11, "MaskComposite", {"destination": (9, 0), "source": (10, 0), "x": 0, "y": 0, "operation": "subtract"},
             (1140, 500), "Edge band = outer - inner", (300, 170)),
        *_sd(12, 13, 14, "a red dress standing in a bright photo studio, soft shadow on the wooden floor, photo", 1500, 0),
        Node(15, "InpaintModelConditioning", {"positive": (13, 0), "negative": (14, 0), "vae": (12, 2), "pixels": (8, 0),
                                              "mask": (11, 0), "noise_mask": True}, (1500, 420), size=(320, 160)),
        _sampler(16, 12, 15, 1880, 420, denoise=0.7, steps=20),
        Node(17, "VAEDecode", {"samples": (16, 0), "vae": (12, 2)}, (2260, 420), size=(220, 60)),
        Node(18, "InvertMask", {"mask": (11, 0)}, (2260, 520), "Everything but the band", (220, 60)),
        Node(19, "ImageCompositeMasked", {"destination": (17, 0), "source": (8, 0), "x": 0, "y": 0, "resize_source": False,
                                          "mask": (18, 0)}, (2260, 620), "Keep all pixels outside the band", (320, 180)),
        Node(20, "SaveImage", {"images": (19, 0), "filename_prefix": "grounded_inpaint/placement"}, (2640, 420), size=(380, 400)),
    ]
    notes = [
        Note("Product placement: cut a dress off a mannequin and place it in another picture.\n\n"
             "1. Grounded Segment finds and cuts out \"dress\".\n"
             "2. Refine Mask Edges gives the dress a soft, edge-true alpha (closed-form matting in a band around the "
             "edge) and its own colours there, so no trace of the mannequin's wall comes along.\n"
             "3. Cut Out crops the dress with those colours; Composite pastes it at x/y (anchor: bottom centre of the "
             "dress), scaled 0.8.\n"
             "4. GrowMask +6 / -6 and MaskComposite subtract make a thin band around the pasted edge.\n"
             "5. The inpainting model repaints only that band (denoise 0.7), so the edge blends and a shadow can form.\n"
             "6. ImageCompositeMasked keeps every pixel outside the band exactly as composited.", (0, -300), (760, 300)),
        Note(MODELS_NOTE, (820, -300), (700, 260)),
    ]
    reasons = {
        "5.prompt": "the product in this photo",
        "5.max_detections": "one dress: the best box",
        "8.x": "the horizontal centre of the 512 px backdrop",
        "8.y": "where the floor of the backdrop is",
        "8.scale": "the dress a little smaller, to fit the backdrop",
        "8.anchor": "x/y is where the bottom centre of the dress stands",
        "6.method": "closed-form matting: finer than the guided filter on the dress's thin straps, a second or two more",
        "7.padding": "room for the soft edge around the dress",
    }
    return Workflow("product_placement", nodes, notes, reasons)


def object_replacement() -> Workflow:
    nodes = [
        Node(1, "LoadImage", {"image": "chelsea.png"}, (0, 0), "Photo", (320, 360)),
        *_common_loaders(2, 3, 0, 420),
        Node(4, "GroundedInpaintGroundedSegment", {"image": (1, 0), "detector": (2, 0), "sam_model": (3, 0), "prompt": "cat",
                                                   "box_threshold": 0.3, "text_threshold": 0.25, "max_detections": 1,
                                                   "multimask": "auto"}, (380, 0), size=(340, 300)),
        Node(5, "GroundedInpaintMaskFromSegments", {"segments": (4, 0), "invert": False, "grow": 12, "feather": 8.0,
                                                    "fill_holes": True, "min_area": 64}, (380, 360), "Object mask, grown and feathered", (340, 230)),
        *_sd(6, 7, 8, "a small fluffy dog lying on a blanket, photo", 780, 0),
        Node(9, "InpaintModelConditioning", {"positive": (7, 0), "negative": (8, 0), "vae": (6, 2), "pixels": (1, 0),
                                             "mask": (5, 0), "noise_mask": True}, (780, 420), size=(320, 160)),
        _sampler(10, 6, 9, 1160, 420, denoise=1.0),
        Node(11, "VAEDecode", {"samples": (10, 0), "vae": (6, 2)}, (1540, 420), size=(220, 60)),
        Node(12, "ImageCompositeMasked", {"destination": (1, 0), "source": (11, 0), "x": 0, "y": 0, "resize_source": False,
                                          "mask": (5, 0)}, (1540, 520), "Change only the masked area", (320, 180)),
        Node(13, "SaveImage", {"images": (12, 0), "filename_prefix": "grounded_inpaint/replacement"}, (1900, 420), size=(380, 360)),
    ]
    notes = [
        Note("Object replacement: find an object and paint a new one in its place.\n\n"
             "1. Grounded Segment finds \"cat\".\n"
             "2. Mask from Segmentation grows the mask by 12 px (room for a different shape) and feathers it by 8 px.\n"
             "3. The inpainting model paints what the positive prompt says inside the mask.\n"
             "4. ImageCompositeMasked blends the result into the original with the same mask, so nothing outside it "
             "changes.", (0, -300), (700, 240)),
        Note(MODELS_NOTE, (780, -300), (700, 240)),
    ]
    reasons = {
        "4.prompt": "the object to replace",
        "4.max_detections": "one cat: the best box",
        "5.grow": "room for a new object of another shape",
        "5.feather": "the new object blends into the photo",
    }
    return Workflow("object_replacement", nodes, notes, reasons)


def mask_only() -> Workflow:
    nodes = [
        Node(1, "LoadImage", {"image": "coffee.png"}, (0, 0), "Photo", (320, 360)),
        *_common_loaders(2, 3, 0, 420),
        Node(4, "GroundedInpaintDetect", {"image": (1, 0), "detector": (2, 0), "prompt": "cup, spoon", "box_threshold": 0.3,
                                          "text_threshold": 0.25, "max_detections": 0}, (380, 0), size=(340, 260)),
        Node(5, "GroundedInpaintSegment", {"image": (1, 0), "sam_model": (3, 0), "multimask": "auto", "detections": (4, 0)},
             (380, 320), size=(340, 200)),
        Node(6, "GroundedInpaintMaskFromSegments", {"segments": (5, 0), "invert": False, "grow": 0, "feather": 0.0,
                                                    "fill_holes": True, "min_area": 64}, (780, 0), size=(340, 230)),
        Node(7, "GroundedInpaintOverlay", {"image": (1, 0), "opacity": 0.5, "show_boxes": True, "show_labels": True,
                                           "segments": (5, 0)}, (780, 300), size=(340, 380)),
        Node(8, "GroundedInpaintCutOut", {"image": (1, 0), "mask": (6, 0), "crop": True, "padding": 8}, (780, 740), size=(300, 160)),
        Node(9, "SaveImage", {"images": (6, 1), "filename_prefix": "grounded_inpaint/mask"}, (1180, 0), "Save the mask", (360, 300)),
        Node(10, "SaveImage", {"images": (7, 0), "filename_prefix": "grounded_inpaint/overlay"}, (1180, 360), "Save the overlay", (360, 300)),
        Node(11, "SaveImage", {"images": (8, 2), "filename_prefix": "grounded_inpaint/cutout"}, (1180, 720), "Save the RGBA cut-out", (360, 300)),
    ]
    notes = [
        Note("Mask only: no Stable Diffusion model needed.\n\n"
             "GroundingDINO Detect finds \"cup\" and \"spoon\", SAM Segment cuts each one out, and the graph saves\n"
             "- the mask (white = the objects; turn invert on for the background),\n"
             "- the overlay (each object in its own colour with label and score),\n"
             "- the cut-out as a transparent PNG.\n\n"
             f"Models: {DETECTOR} and {SAM} download themselves on the first run.\n"
             "Input: copy grounded-inpaint/example_workflows/inputs/coffee.png into ComfyUI/input.", (0, -300), (700, 260)),
    ]
    reasons = {
        "4.prompt": "the objects in this photo",
        "8.padding": "a little room around the cut-out",
    }
    return Workflow("mask_only", nodes, notes, reasons)


VIDEO_MODEL = "sam2.1_hiera_tiny.pt"


def video_track() -> Workflow:
    nodes = [
        Node(1, "LoadVideo", {"file": "crossing.mp4"}, (0, 0), "Clip", (320, 360)),
        Node(2, "GetVideoComponents", {"video": (1, 0)}, (0, 420), size=(320, 120)),
        Node(3, "GroundedInpaintLoadGroundingDino", {"model_name": DETECTOR, "device": "auto", "precision": "auto"}, (0, 600)),
        Node(4, "GroundedInpaintLoadSam2Video", {"model_name": VIDEO_MODEL, "device": "auto", "precision": "auto"}, (0, 770)),
        Node(5, "GroundedInpaintGroundedTrack", {"images": (2, 0), "detector": (3, 0), "video_model": (4, 0),
                                                 "prompt": "red square, blue square", "detect_every": 10, "max_objects": 8,
                                                 "box_threshold": 0.3, "text_threshold": 0.25}, (380, 0), size=(360, 420)),
        Node(6, "GroundedInpaintSelectObjects", {"segments": (5, 0), "ids": "", "labels": ""}, (800, 0), size=(320, 160)),
        Node(7, "GroundedInpaintMaskFromSegments", {"segments": (6, 0), "invert": True, "grow": 0, "feather": 0.0,
                                                    "fill_holes": True, "min_area": 64}, (800, 220), size=(340, 230)),
        Node(8, "SaveImage", {"images": (7, 1), "filename_prefix": "grounded_inpaint/track_mask"}, (1200, 0),
             "Save the mask of every frame", (360, 300)),
        Node(9, "SaveImage", {"images": (5, 2), "filename_prefix": "grounded_inpaint/track_preview"}, (1200, 360),
             "Save the preview (ids)", (360, 300)),
    ]
    notes = [
        Note("Video: tracked masks through a clip, no Stable Diffusion model needed.\n\n"
             "Load Video + Get Video Components give the frames. Grounded Track finds \"red square\" and \"blue square\" "
             "on frame 0 (and every 10 frames) and SAM 2.1's video memory follows each one, with an id (#1, #2) that "
             "stays the same through the crossing. Select Objects keeps the ids you type (empty = all), and Mask from "
             "Segmentation turns each frame into the inverted mask (white = repaint the background). One mask image "
             "is saved per frame.\n\n"
             f"Models: {DETECTOR} and {VIDEO_MODEL} download themselves on the first run.\n"
             "Input: copy grounded-inpaint/example_workflows/inputs/crossing.mp4 into ComfyUI/input.", (0, -300), (760, 280)),
    ]
    reasons = {
        "5.prompt": "the objects in this clip",
        "7.invert": "keep the objects, repaint the background",
    }
    return Workflow("video_track", nodes, notes, reasons)



def external_matte() -> Workflow:
    nodes = [
        Node(1, "LoadImage", {"image": "mannequin_dress.png"}, (0, 0), "Dress on a mannequin", (320, 400)),
        Node(2, "LoadImage", {"image": "mannequin_dress_matte.png"}, (0, 460), "Matte from a background remover (a file here)",
             (320, 400)),
        Node(3, "ImageToMask", {"image": (2, 0), "channel": "red"}, (0, 920), "Matte picture -> MASK", (300, 90)),
        *_common_loaders(4, 5, 0, 1060),
        Node(6, "GroundedInpaintGroundedSegment", {"image": (1, 0), "detector": (4, 0), "sam_model": (5, 0), "prompt": "dress",
                                                   "box_threshold": 0.3, "text_threshold": 0.25, "max_detections": 1,
                                                   "multimask": "auto"}, (380, 0), size=(340, 300)),
        Node(7, "GroundedInpaintRefineMask", {"image": (1, 0), "segments": (6, 0), "method": "guided", "band_inside": -1,
                                              "band_outside": -1, "decontaminate": True, "matte": (3, 0)}, (780, 0),
             "The matte decides the edge, the dress's band decides where", (360, 460)),
        Node(8, "SaveImage", {"images": (7, 2), "filename_prefix": "grounded_inpaint/dress_rgba"}, (1200, 0),
             "Save the transparent cut-out", (360, 400)),
        Node(9, "LoadImage", {"image": "studio_backdrop.png"}, (380, 560), "New background", (320, 360)),
        Node(10, "GroundedInpaintComposite", {"background": (9, 0), "object": (7, 1), "x": 256, "y": 340, "scale": 0.8,
                                              "anchor": "bottom", "feather": 0.0, "object_mask": (7, 0)}, (780, 560),
             "Place the dress", (320, 280)),
        Node(11, "SaveImage", {"images": (10, 0), "filename_prefix": "grounded_inpaint/dress_placed"}, (1200, 460),
             "Save the placed dress", (360, 360)),
    ]
    notes = [
        Note("A matte from any background remover, fused with the object GroundingDINO + SAM found.\n\n"
             "ComfyUI 0.3.64 has no background-removal node of its own, so here the matte comes from a file (Load Image + "
             "Image To Mask, channel red). Replace nodes 2-3 with the MASK output of any background remover you trust "
             "(ComfyUI-RMBG, a BiRefNet node, a newer ComfyUI's own) - this pack never runs that model's code.\n\n"
             "1. Grounded Segment finds \"dress\": it decides WHICH object.\n"
             "2. Refine Mask Edges takes the matte's alpha only inside the dress's edge band: the matte decides HOW FINE "
             "the edge is; anything else the remover kept or dropped far from the dress is ignored.\n"
             "3. The transparent cut-out is saved, and the dress is placed on a new background with its clean colours.\n\n"
             "An RGBA cut-out's alpha from Load Image's MASK output comes inverted (ComfyUI's convention): put InvertMask "
             "in between.", (0, -380), (780, 340)),
        Note(f"Models: {DETECTOR} and {SAM} download themselves on the first run. No SD model needed.\n"
             "Input pictures: copy grounded-inpaint/example_workflows/inputs/*.png into ComfyUI/input.", (840, -380), (620, 140)),
    ]
    reasons = {
        "6.prompt": "the product in this photo",
        "6.max_detections": "one dress: the best box",
        "10.x": "the horizontal centre of the 512 px backdrop",
        "10.y": "where the floor of the backdrop is",
        "10.scale": "the dress a little smaller, to fit the backdrop",
        "10.anchor": "x/y is where the bottom centre of the dress stands",
    }
    return Workflow("external_matte", nodes, notes, reasons)


WORKFLOWS = (background_generation, product_placement, object_replacement, mask_only, external_matte, video_track)


# ----------------------------------------------------------------------------- writers


def _load_pack():
    """Import the repository root the way ComfyUI imports a custom node folder."""
    name = "grounded_inpaint_pack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def node_specs():
    from grounded_inpaint.workflows import CORE_NODES, specs_from_classes

    pack = _load_pack()
    return {**CORE_NODES, **specs_from_classes(pack.NODE_CLASS_MAPPINGS)}, pack


def fill_defaults(workflow: Workflow, specs) -> Workflow:
    """Give every widget input a value (the schema's default where the definition sets none), as the
    canvas does: it sends optional widgets' values too."""
    for node in workflow.nodes:
        for inp in specs[node.type].widget_inputs():
            if inp.name not in node.inputs:
                if inp.default is None:
                    raise ValueError(f"{workflow.name}: node {node.id} ({node.type}) needs a value for {inp.name}")
                node.inputs[inp.name] = inp.default
    return workflow


#: Inputs whose fresh-node value depends on the user's disk (the models note explains them).
_MACHINE_DEPENDENT = {"model_name", "ckpt_name", "image"}


def explain_changed_settings(workflow: Workflow, specs) -> Workflow:
    """Add a Note listing every setting of this pack's nodes that differs from a fresh node's default,
    with the reason given in ``workflow.reasons``; a difference without a reason is an error."""
    lines = []
    for node in workflow.nodes:
        if not node.type.startswith("GroundedInpaint"):
            continue
        for inp in specs[node.type].widget_inputs():
            value = node.inputs.get(inp.name)
            if inp.name in _MACHINE_DEPENDENT or value == inp.default:
                continue
            key = f"{node.id}.{inp.name}"
            if key not in workflow.reasons:
                raise ValueError(f"{workflow.name}: node {key} = {value!r} differs from the default {inp.default!r}; say why in reasons")
            lines.append(f"- {node.title or node.type.replace('GroundedInpaint', '')}: {inp.name} = {value!r} ({workflow.reasons[key]})")
    unused = set(workflow.reasons) - {f"{n.id}.{i.name}" for n in workflow.nodes if n.type in specs for i in specs[n.type].widget_inputs()
                                       if n.inputs.get(i.name) != i.default}
    if unused:
        raise ValueError(f"{workflow.name}: reasons given for settings that are the defaults: {sorted(unused)}")
    if lines:
        x = max(n.pos[0] for n in workflow.nodes) + 420
        workflow.notes.append(Note("Settings changed from a fresh node's defaults, and why:\n" + "\n".join(lines), (x, -300), (620, 40 + 24 * len(lines))))
    return workflow


def to_api(workflow: Workflow) -> dict[str, Any]:
    api = {}
    for node in workflow.nodes:
        inputs = {k: ([str(v[0]), v[1]] if isinstance(v, tuple) else v) for k, v in node.inputs.items()}
        entry: dict[str, Any] = {"class_type": node.type, "inputs": inputs}
        if node.title:
            entry["_meta"] = {"title": node.title}
        api[str(node.id)] = entry
    return api


def to_ui(workflow: Workflow, specs, pack) -> dict[str, Any]:
    links: list[list[Any]] = []
    outputs: dict[tuple[int, int], list[int]] = {}
    ui_nodes = []
    by_id = {n.id: n for n in workflow.nodes}
    for order, node in enumerate(workflow.nodes):
        spec = specs[node.type]
        ui_inputs = []
        for inp in spec.inputs:
            if inp.is_widget:
                continue
            value = node.inputs.get(inp.name)
            link_id = None
            if isinstance(value, tuple):
                link_id = len(links) + 1
                src, slot = value
                links.append([link_id, src, slot, node.id, len(ui_inputs), specs[by_id[src].type].outputs[slot]])
                outputs.setdefault((src, slot), []).append(link_id)
            elif not inp.optional:
                raise ValueError(f"{workflow.name}: node {node.id} ({node.type}) input {inp.name} is not connected")
            ui_inputs.append({"name": inp.name, "type": inp.type, "link": link_id})
        widgets = []
        for inp in spec.widget_inputs():
            widgets.append(node.inputs[inp.name])
            if inp.control_after_generate or inp.name in ("seed", "noise_seed"):
                widgets.append("fixed")
            if inp.upload:
                widgets.append("image")
        cls = pack.NODE_CLASS_MAPPINGS.get(node.type)
        names = list(getattr(cls, "RETURN_NAMES", spec.outputs)) if cls else list(spec.outputs)
        entry = {
            "id": node.id, "type": node.type, "pos": [node.pos[0], round(node.pos[1] * 1.3)], "size": list(node.size), "flags": {}, "order": order,
            "mode": 0, "inputs": ui_inputs,
            "outputs": [{"name": names[i], "type": t, "links": [], "slot_index": i} for i, t in enumerate(spec.outputs)],
            "properties": {"Node name for S&R": node.type}, "widgets_values": widgets,
        }
        if node.title:
            entry["title"] = node.title
        ui_nodes.append(entry)
    for entry in ui_nodes:
        for out in entry["outputs"]:
            out["links"] = outputs.get((entry["id"], out["slot_index"]), [])
    next_id = max(n.id for n in workflow.nodes) + 1
    for i, note in enumerate(workflow.notes):
        ui_nodes.append({
            "id": next_id + i, "type": "Note", "pos": list(note.pos), "size": list(note.size), "flags": {},
            "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {"text": ""},
            "widgets_values": [note.text], "color": "#432", "bgcolor": "#653",
        })
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"grounded-inpaint/example_workflows/{workflow.name}")), "revision": 0, "last_node_id": next_id + len(workflow.notes) - 1,
        "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.6, "offset": [60, 360]}}, "version": 0.4,
    }


def main() -> int:
    specs, pack = node_specs()
    (OUT / "api").mkdir(parents=True, exist_ok=True)
    for build in WORKFLOWS:
        workflow = explain_changed_settings(fill_defaults(build(), specs), specs)
        (OUT / f"{workflow.name}.json").write_text(json.dumps(to_ui(workflow, specs, pack), indent=1) + "\n")
        (OUT / "api" / f"{workflow.name}_api.json").write_text(json.dumps(to_api(workflow), indent=1) + "\n")
        print(f"wrote example_workflows/{workflow.name}.json and api/{workflow.name}_api.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
