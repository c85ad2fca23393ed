"""GroundingDINO Detect, SAM Segment and the one-node Grounded Segment."""

from __future__ import annotations

import logging

import torch

from ..py.batch import as_image_batch, as_mask_batch, batch_size_for, check_detections, union_masks
from ..py.detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD
from ..py.overlay import draw_detections, draw_segments
from ..py.pipeline import grounded_segment
from ..py.objects import parse_objects
from ..py.segment import parse_points, segment
from . import editor, runtime
from .common import CATEGORY, DETECTIONS_TYPE, DETECTOR_TYPE, EDITOR_OPTION, SAM_TYPE, SEGMENTS_TYPE, tip

log = logging.getLogger("grounded_inpaint.nodes")

_PROMPT = ("STRING", tip(
    'What to find. Separate several objects with ".", ",", ";" or new lines — e.g. "shoes" or "dress, handbag". '
    "Case does not matter.",
    multiline=True, default="shoes"))
_BOX = ("FLOAT", tip("Minimum detection confidence for a box (0.30 is GroundingDINO's reference value). Lower finds more, "
                     "including wrong objects.", default=DEFAULT_BOX_THRESHOLD, min=0.0, max=1.0, step=0.01))
_TEXT = ("FLOAT", tip("Minimum score for a prompt word to become part of a box's label (0.25 is the reference value).",
                      default=DEFAULT_TEXT_THRESHOLD, min=0.0, max=1.0, step=0.01))
_MAXDET = ("INT", tip("Keep at most this many boxes per image, highest scores first. 0 keeps all.", default=0, min=0, max=900))
_NMS = ("FLOAT", tip("Drop a box that overlaps a better box with the same label by more than this IoU. 1.0 keeps duplicates.",
                     default=DEFAULT_NMS_IOU, min=0.0, max=1.0, step=0.01))
_MULTIMASK = (["auto", "best", "single"], tip(
    "SAM's output choice. auto: the single-mask output for box prompts, the best of 3 (highest predicted IoU) for "
    "clicks only. best: always the best of 3. single: always the single-mask output.", default="auto"))


def _to_intermediate(t: torch.Tensor) -> torch.Tensor:
    return t.to(runtime.intermediate_device())


class GroundingDinoDetect:
    DESCRIPTION = (
        "Finds the objects named in the prompt with GroundingDINO. Gives every box with its label and score "
        "(DETECTIONS, one entry per image — an image with nothing found gets an empty entry, the batch never "
        "shrinks), a preview with the boxes drawn, and the number of boxes found."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (DETECTIONS_TYPE, "IMAGE", "INT")
    RETURN_NAMES = ("detections", "preview", "count")
    OUTPUT_TOOLTIPS = ("Boxes (XYXY pixels), scores and labels per image.", "The images with boxes and labels drawn.",
                       "Boxes found in the whole batch.")
    FUNCTION = "detect"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The image batch to search.")),
                "detector": (DETECTOR_TYPE, tip("From Load GroundingDINO Model.")),
                "prompt": _PROMPT,
                "box_threshold": _BOX,
                "text_threshold": _TEXT,
                "max_detections": _MAXDET,
            },
            "optional": {"nms_iou": _NMS},
        }

    def detect(self, image, detector, prompt, box_threshold, text_threshold, max_detections, nms_iou=DEFAULT_NMS_IOU):
        images = as_image_batch(image)
        bar = runtime.progress_bar(images.shape[0])
        with runtime.models_on_device(detector):
            results = detector.engine.detect(
                images, prompt, box_threshold, text_threshold, max_detections or None, nms_iou,
                progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt,
            )
        preview = runtime.draw_each(len(results), lambda i: draw_detections(images[i].cpu(), results[i]))
        return {"ui": runtime.preview_images(preview), "result": (results, _to_intermediate(preview), sum(len(r) for r in results))}


class SamSegment:
    DESCRIPTION = (
        "Cuts out each detected object with SAM: one mask per box, at the image's full resolution, with its label, "
        "score and SAM's quality estimate (SEGMENTS). Clicks apply to every image of the batch: each click refines "
        "every box that contains it; clicks outside all boxes (or with no DETECTIONS) form one more object when at "
        "least one of them is positive (negative-only clicks there are ignored, with a warning). The editor on the node "
        "(click, right click, drag; live masks) adds named objects, each a box and/or clicks, each one instance with "
        "its name as label. A MASK input adds one object prompted by that mask. Each image is encoded once and all "
        "its prompts are answered in one pass."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("segments", "mask", "preview")
    OUTPUT_TOOLTIPS = ("Every object's mask with its label, score and box.",
                       "Per image, all objects together (white = object; all black where nothing was found).",
                       "The images with each object coloured, boxed and labelled.")
    FUNCTION = "segment"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The same image batch the detector saw.")),
                "sam_model": (SAM_TYPE, tip("From Load SAM Model.")),
                "multimask": _MULTIMASK,
            },
            "optional": {
                "detections": (DETECTIONS_TYPE, tip("Boxes from GroundingDINO Detect; each becomes one object.")),
                "positive_points": ("STRING", tip('Clicks on the object, in image pixels, as JSON: [{"x": 120, "y": 80}].', default="")),
                "negative_points": ("STRING", tip('Clicks on what is not the object, as JSON: [{"x": 40, "y": 30}].', default="")),
                "mask": ("MASK", tip("A rough mask of one object (one per image, or one for all); SAM refines it.")),
                "objects": ("STRING", tip(
                    "Named objects drawn in the editor on this node (click = point, right click = negative point, drag = "
                    "box): each becomes one instance labelled with its name. Saved as JSON in image pixels, e.g. "
                    '{"objects": [{"name": "cup", "box": [40, 30, 200, 180], "points": [[120, 90, 1]]}]}.',
                    default="", **{EDITOR_OPTION: "sam"})),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def segment(self, image, sam_model, multimask, detections=None, positive_points="", negative_points="", mask=None,
                objects="", unique_id=None):
        images = as_image_batch(image)
        if detections is not None:
            check_detections(detections, images)
        points = parse_points(positive_points, positive=True, name="positive_points") + parse_points(
            negative_points, positive=False, name="negative_points")
        spec = parse_objects(objects)
        for note in spec.notes:
            log.warning("objects: %s", note)
        masks = as_mask_batch(mask) if mask is not None else None
        if masks is not None and batch_size_for(image=images.shape[0], mask=masks.shape[0]) != images.shape[0]:
            raise ValueError(f"{masks.shape[0]} masks were given for {images.shape[0]} image(s); give one mask, or one per image")
        bar = runtime.progress_bar(images.shape[0])
        with runtime.models_on_device(sam_model):
            segments = segment(sam_model.engine, images, detections, points=points, objects=spec, mask_prompts=masks,
                               multimask=multimask, progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt)
        out = _segment_outputs(images, segments)
        out["ui"].update(editor.record_run(unique_id, sam_model, images, detections, points, spec, segments))
        return out


def _segment_outputs(images: torch.Tensor, segments):
    """The node result: SEGMENTS, their union MASK and the preview (also shown inside the node)."""
    preview = runtime.draw_each(len(segments), lambda i: draw_segments(images[i].cpu(), segments[i]))
    result = (segments, _to_intermediate(union_masks(segments)), _to_intermediate(preview))
    return {"ui": runtime.preview_images(preview), "result": result}


class GroundedSegment:
    DESCRIPTION = (
        "Text to masks in one node: GroundingDINO finds what the prompt names, SAM cuts out each object. The same as "
        "GroundingDINO Detect followed by SAM Segment (for people used to storyicon's GroundingDinoSAMSegment), but "
        "every object stays separate in SEGMENTS and the batch is never shortened."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("segments", "mask", "preview")
    OUTPUT_TOOLTIPS = SamSegment.OUTPUT_TOOLTIPS
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The image batch to search.")),
                "detector": (DETECTOR_TYPE, tip("From Load GroundingDINO Model.")),
                "sam_model": (SAM_TYPE, tip("From Load SAM Model.")),
                "prompt": _PROMPT,
                "box_threshold": _BOX,
                "text_threshold": _TEXT,
                "max_detections": _MAXDET,
                "multimask": _MULTIMASK,
            }
        }

    def run(self, image, detector, sam_model, prompt, box_threshold, text_threshold, max_detections, multimask):
        images = as_image_batch(image)
        bar = runtime.progress_bar(2 * images.shape[0])
        _, segments = grounded_segment(
            detector.engine, sam_model.engine, images, prompt, box_threshold=box_threshold, text_threshold=text_threshold,
            max_detections=max_detections or None, nms_iou=DEFAULT_NMS_IOU, multimask=multimask,
            progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt,
            stage=runtime.device_stages(detect=detector, segment=sam_model),
        )
        return _segment_outputs(images, segments)
