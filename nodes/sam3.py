"""SAM 3 nodes: Load SAM 3 Model and SAM 3 Segment (text → instance masks in one model)."""

from __future__ import annotations

import torch

from ..py.batch import as_image_batch, check_detections, union_masks
from ..py.models import load_sam3
from ..py.overlay import draw_segments
from ..py.sam3 import DEFAULT_MASK_THRESHOLD, DEFAULT_THRESHOLD
from . import runtime
from .common import CATEGORY, DETECTIONS_TYPE, SAM3_TYPE, SEGMENTS_TYPE, tip
from .loaders import _load

_DEVICE = (["auto", "cpu"], tip("auto: ComfyUI's device (GPU when there is one; follows --cpu, --lowvram, --novram). "
                                "cpu: always run this model on the CPU.", default="auto"))
_PRECISION = (["auto", "fp32", "fp16", "bf16"], tip(
    "Weights precision. auto: bf16 on GPUs that support it (SAM 3 was trained in bf16), else fp32; fp32 on the CPU. "
    "fp16/bf16 fall back to fp32 with a warning where the device cannot run them.", default="auto"))


_AUTO_ORDER = (torch.bfloat16,)


def _dtype(precision: str, compute: torch.device) -> torch.dtype:
    """SAM 3's precision: ``auto`` means bf16 on a GPU that runs it (fp32 otherwise), never fp16."""
    return runtime.choose_dtype(precision, compute, auto_half=True, auto_order=_AUTO_ORDER)


class LoadSam3:
    DESCRIPTION = (
        "Loads SAM 3 from models/sam3: a transformers folder (config.json, model.safetensors, tokenizer files) such as "
        "facebook/sam3. SAM 3 finds every object a short text names and cuts each one out, in one model. facebook/sam3 "
        "is gated under Meta's SAM License: accept it on its Hugging Face page and log in (hf auth login) so the first "
        "use can download it (3.4 GB), or put the folder there yourself. Meta's sam3.pt file is not read. Needs "
        "torchvision (part of every ComfyUI install)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SAM3_TYPE,)
    RETURN_NAMES = ("sam3_model",)
    OUTPUT_TOOLTIPS = ("The SAM 3 model, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.model_choices("sam3"), tip(
                    "A SAM 3 folder in models/sam3, or sam3 to download facebook/sam3 (3.4 GB, gated: accept the licence "
                    "and log in first).")),
                "device": _DEVICE,
                "precision": _PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("sam3", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        # auto: bf16 on GPUs that run it (SAM 3 was trained in bf16), never fp16
        return (_load("sam3", model_name, device, precision, load_sam3, auto_half=True, auto_order=_AUTO_ORDER),)


class Sam3Segment:
    DESCRIPTION = (
        "Text to masks with SAM 3 alone: finds every object each concept of the prompt names and cuts it out, with its "
        "label (the concept), score and box — the same SEGMENTS as Grounded Segment, so Mask from Segmentation, Overlay "
        "and Segments Info work unchanged. Each image is encoded once and reused for every concept; the batch is never "
        "shortened (an image with nothing found gets an empty entry and a black mask). Optional DETECTIONS add their "
        "boxes as examples (\"more like these\") to every concept."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("segments", "mask", "preview")
    OUTPUT_TOOLTIPS = ("Every object's mask with its label (the concept), score and box.",
                       "Per image, all objects together (white = object; all black where nothing was found).",
                       "The images with each object coloured, boxed and labelled.")
    FUNCTION = "segment"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The image batch to search.")),
                "sam3_model": (SAM3_TYPE, tip("From Load SAM 3 Model.")),
                "prompt": ("STRING", tip(
                    'What to find: short noun phrases (concepts) separated by ".", ",", ";" or new lines — e.g. "shoes" or '
                    '"red dress, handbag". Each concept is searched separately and labels its objects. May be empty when '
                    "DETECTIONS give example boxes.", multiline=True, default="shoes")),
                "threshold": ("FLOAT", tip(
                    "Minimum object score (object confidence × SAM 3's 'the concept is present' confidence). Lower finds "
                    "more, including wrong objects.", default=DEFAULT_THRESHOLD, min=0.0, max=1.0, step=0.01)),
                "mask_threshold": ("FLOAT", tip(
                    "A pixel belongs to an object where its mask probability is above this. Lower gives larger masks.",
                    default=DEFAULT_MASK_THRESHOLD, min=0.0, max=1.0, step=0.01)),
                "max_instances": ("INT", tip("Keep at most this many objects per image, highest scores first, over all "
                                             "concepts. 0 keeps all.", default=0, min=0, max=1000)),
            },
            "optional": {
                "detections": (DETECTIONS_TYPE, tip(
                    "Example boxes (from GroundingDINO Detect): SAM 3 finds every object that looks like them, for each "
                    "concept (with an empty prompt, the boxes alone are the prompt and the objects are labelled "
                    "'visual'). One entry per image.")),
                "overlap_iou": ("FLOAT", tip(
                    "Drop an object whose mask overlaps a better-scoring object (of any concept) by more than this IoU, "
                    "e.g. 0.7 when two concepts find the same thing. 1.0 keeps everything.",
                    default=1.0, min=0.0, max=1.0, step=0.01)),
            },
        }

    def segment(self, image, sam3_model, prompt, threshold, mask_threshold, max_instances, detections=None,
                overlap_iou=1.0):
        images = as_image_batch(image)
        boxes = None
        if detections is not None:
            check_detections(detections, images)
            boxes = [d.boxes for d in detections]
        bar = runtime.progress_bar(images.shape[0])
        with runtime.models_on_device(sam3_model):
            segments = sam3_model.engine.segment(
                images, prompt, threshold, mask_threshold, max_instances or None, boxes,
                overlap_iou=overlap_iou if overlap_iou < 1.0 else None,
                progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt)
        preview = runtime.draw_each(len(segments), lambda i: draw_segments(images[i].cpu(), segments[i]))
        device = runtime.intermediate_device()
        return {"ui": runtime.preview_images(preview), "result": (segments, union_masks(segments).to(device), preview.to(device))}
