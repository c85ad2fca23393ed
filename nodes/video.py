"""Video nodes: Load SAM 2.1 Video Model, Grounded Track (text → tracked masks through a clip), Select Objects,
and the SAM 3 engine: Load SAM 3 Video Model, SAM 3 Track."""

from __future__ import annotations

import torch

from ..py.batch import as_image_batch, union_masks
from ..py.detector import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD
from ..py.masks import select_instances
from ..py.overlay import draw_segments
from ..py.structures import Segments
from . import runtime
from .common import CATEGORY, DETECTOR_TYPE, SEGMENTS_TYPE, tip
from .loaders import _DEVICE, _load

#: The video model socket (a SAM 2.1 model with its memory modules; not interchangeable with GI_SAM_MODEL).
SAM2_VIDEO_TYPE = "GI_SAM2_VIDEO_MODEL"
#: SAM 3 with its video tracker (a Sam3VideoModel; not interchangeable with GI_SAM3_MODEL, the image model).
SAM3_VIDEO_TYPE = "GI_SAM3_VIDEO_MODEL"

_PRECISION = (["auto", "fp32", "fp16", "bf16"], tip(
    "Weights precision. auto: fp32 on the CPU, half precision on GPUs that support it. fp16/bf16 fall back to fp32 with a "
    "warning where the device cannot run them.", default="auto"))
#: At most this many frames are shown inside the node (the preview output holds every frame).
PREVIEW_FRAMES = 8


def _video_choices() -> list[str]:
    """SAM 2.1 entries of the SAM dropdown: files and folders in models/sam2, files in models/sams named
    sam2*, and the SAM 2.1 downloads (the loader checks the contents and names what is wrong)."""
    from ..py.registry import known_models

    sam2_known = {m.name for m in known_models("sam") if m.arch == "sam2"}
    sam2_folders = {str(p) for p in runtime.model_folders("sam") if p.name == "sam2"}
    present = []
    for folder in runtime.model_folders("sam"):
        for name in runtime.list_models_in(folder, "sam"):
            if (str(folder) in sam2_folders or "sam2" in name.lower()) and name not in present:
                present.append(name)
    entries = [c for c in runtime.model_choices("sam") if runtime.choice_name(c) in present or runtime.choice_name(c) in sam2_known]
    return entries or ["sam2.1_hiera_tiny.pt"]


class LoadSam2Video:
    DESCRIPTION = (
        "Loads SAM 2.1 with its video memory (memory attention, memory encoder, object pointers) for Grounded Track, "
        "from models/sam2 or models/sams: Meta's sam2.1_hiera_tiny/small/base_plus/large .pt, kijai's .safetensors "
        "copies, or a facebook/sam2.1-hiera-* transformers folder — the files Load SAM reads as image models. Size "
        "and settings are read from the weights; a file without the video weights is refused with what is missing. "
        "Known models that are missing are downloaded on first use. Needs transformers 4.56 or newer."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SAM2_VIDEO_TYPE,)
    RETURN_NAMES = ("video_model",)
    OUTPUT_TOOLTIPS = ("The SAM 2.1 video model, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (_video_choices(), tip(
                    "A SAM 2.1 checkpoint with its video weights in models/sam2 (or models/sams), or a known one to "
                    "download (sam2.1_hiera_tiny 156 MB, small 184 MB, base_plus 324 MB, large 898 MB).")),
                "device": _DEVICE,
                "precision": _PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("sam", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        from ..py.video import load_video_model

        return (_load("sam", model_name, device, precision, load_video_model, auto_half=True),)


def _labelled(segments: Segments) -> Segments:
    """The same instances with ``#id`` in front of each label (for the preview captions)."""
    if segments.ids is None or not len(segments):
        return segments
    labels = [f"#{int(i)} {label}" for i, label in zip(segments.ids.tolist(), segments.labels)]
    return Segments(segments.masks, segments.boxes, segments.scores, segments.quality, labels, segments.image_size, segments.ids)


def _preview(images: torch.Tensor, segments: list[Segments]) -> tuple[torch.Tensor, dict]:
    """Every frame with its objects drawn (the IMAGE output), and the node's UI showing a few of them."""
    preview = runtime.draw_each(len(segments), lambda i: draw_segments(images[i].cpu(), _labelled(segments[i])))
    count = preview.shape[0]
    shown = sorted({round(k * (count - 1) / max(1, PREVIEW_FRAMES - 1)) for k in range(min(count, PREVIEW_FRAMES))})
    return preview, runtime.preview_images(preview[shown])


class GroundedTrack:
    DESCRIPTION = (
        "Text to tracked masks through a clip (an IMAGE batch from Load Video / Video Helper Suite): GroundingDINO finds "
        "the objects on the first frame and every detect_every frames; SAM 2.1's video memory follows each one between "
        "them, with an id that stays the same through the clip. Objects that appear later get new ids, drifting ones are "
        "re-anchored on the detector's box, lost ones end. B frames in, B results out: SEGMENTS per frame (each "
        "object with its id, label and score: pick some with Select Objects, then Mask from Segmentation), the union "
        "MASK per frame (black where nothing is tracked) and a preview with ids."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("segments", "mask", "preview")
    OUTPUT_TOOLTIPS = ("Per frame, every tracked object's mask with its id, label, score and box.",
                       "Per frame, all tracked objects together (white = object; black where nothing is tracked).",
                       "Every frame with each object coloured, boxed and captioned '#id label score'.")
    FUNCTION = "track"

    @classmethod
    def INPUT_TYPES(cls):
        from ..py.video.tracker import DEFAULT_DETECT_EVERY, DEFAULT_MAX_OBJECTS, MAX_OBJECTS_LIMIT

        return {
            "required": {
                "images": ("IMAGE", tip("The clip's frames, in order, all the same size.")),
                "detector": (DETECTOR_TYPE, tip("From Load GroundingDINO Model.")),
                "video_model": (SAM2_VIDEO_TYPE, tip("From Load SAM 2.1 Video Model.")),
                "prompt": ("STRING", tip('What to track. Separate several objects with ".", ",", ";" or new lines — e.g. '
                                         '"person" or "dress, handbag".', multiline=True, default="person")),
                "detect_every": ("INT", tip("Run GroundingDINO on every N-th frame (new objects get ids there; drifting "
                                            "ones are re-anchored). 0 = the first frame only. Smaller finds newcomers "
                                            "sooner and costs more.", default=DEFAULT_DETECT_EVERY, min=0, max=100000)),
                "max_objects": ("INT", tip("Track at most this many objects at once, best detections first. Each object "
                                           "costs one memory pass per frame.", default=DEFAULT_MAX_OBJECTS, min=1,
                                           max=MAX_OBJECTS_LIMIT)),
                "box_threshold": ("FLOAT", tip("Minimum detection confidence for a box (0.30 is GroundingDINO's reference "
                                               "value).", default=DEFAULT_BOX_THRESHOLD, min=0.0, max=1.0, step=0.01)),
                "text_threshold": ("FLOAT", tip("Minimum score for a prompt word to become part of a box's label.",
                                                default=DEFAULT_TEXT_THRESHOLD, min=0.0, max=1.0, step=0.01)),
            }
        }

    def track(self, images, detector, video_model, prompt, detect_every, max_objects, box_threshold, text_threshold):
        from ..py.video.tracker import grounded_track

        frames = as_image_batch(images, name="images")
        count = frames.shape[0]
        bar = runtime.progress_bar(count)
        segments = grounded_track(
            detector.engine, video_model.engine, frames, prompt, detect_every=detect_every, max_objects=max_objects,
            box_threshold=box_threshold, text_threshold=text_threshold, state_device=runtime.offload_device(),
            progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt,
            stage=lambda _name: runtime.models_on_device(detector, video_model),
        )
        preview, ui = _preview(frames, segments)
        device = runtime.intermediate_device()
        return {"ui": ui, "result": (segments, union_masks(segments).to(device), preview.to(device))}


_SAM3_PRECISION = (["auto", "fp32", "fp16", "bf16"], tip(
    "Weights precision. auto: bf16 on GPUs that support it (SAM 3 was trained in bf16), else fp32; fp32 on the CPU. "
    "fp16/bf16 fall back to fp32 with a warning where the device cannot run them.", default="auto"))


class LoadSam3Video:
    DESCRIPTION = (
        "Loads SAM 3 with its video tracker for SAM 3 Track, from models/sam3: the facebook/sam3 transformers folder "
        "(config.json with model_type sam3_video, model.safetensors, tokenizer files) — the same folder Load SAM 3 Model "
        "reads for single images. facebook/sam3 is gated under Meta's SAM License: accept it on its Hugging Face page "
        "and log in (hf auth login) so the first use can download it (3.4 GB), or put the folder there yourself. A folder "
        "with the image model only is refused. Needs transformers 5 and torchvision."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SAM3_VIDEO_TYPE,)
    RETURN_NAMES = ("sam3_video_model",)
    OUTPUT_TOOLTIPS = ("SAM 3 with its video tracker, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.model_choices("sam3"), tip(
                    "A SAM 3 folder with the video tracker in models/sam3, or sam3 to download facebook/sam3 (3.4 GB, "
                    "gated: accept the licence and log in first).")),
                "device": _DEVICE,
                "precision": _SAM3_PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("sam3", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        from ..py.video import load_sam3_video_model
        from ..py.video.sam3_video import require_sam3_video

        require_sam3_video()  # before any download: transformers 4 cannot run it
        return (_load("sam3", model_name, device, precision, load_sam3_video_model, auto_half=True,
                      auto_order=(torch.bfloat16,)),)


class Sam3Track:
    DESCRIPTION = (
        "Text to tracked masks through a clip with SAM 3 alone (the second engine next to Grounded Track): SAM 3's "
        "detector finds every object each concept of the prompt names — on every frame, or every detect_every frames — "
        "and its tracker follows each one with an id that stays the same through the clip. New objects get new ids, "
        "objects unseen for 15 frames end. B frames in, B results out: SEGMENTS per frame (id, label = the concept, "
        "score), the union MASK per frame and a preview with ids — the same outputs as Grounded Track."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("segments", "mask", "preview")
    OUTPUT_TOOLTIPS = GroundedTrack.OUTPUT_TOOLTIPS
    FUNCTION = "track"

    @classmethod
    def INPUT_TYPES(cls):
        from ..py.video.tracker import DEFAULT_MAX_OBJECTS, MAX_OBJECTS_LIMIT

        return {
            "required": {
                "images": ("IMAGE", tip("The clip's frames, in order, all the same size.")),
                "sam3_video_model": (SAM3_VIDEO_TYPE, tip("From Load SAM 3 Video Model.")),
                "prompt": ("STRING", tip('What to track: short noun phrases separated by ".", ",", ";" or new lines — e.g. '
                                         '"person" or "red dress, handbag". Each concept labels its objects.',
                                         multiline=True, default="person")),
                "detect_every": ("INT", tip("Run SAM 3's detector on every N-th frame (new objects start there); between "
                                            "them the tracker alone follows the objects. 1 = every frame, as SAM 3 is "
                                            "meant to run; 0 = the first frame only. Larger is faster.", default=1, min=0,
                                            max=100000)),
                "max_objects": ("INT", tip("Track at most this many objects at once, best detections first. Each object "
                                           "costs one memory pass per frame.", default=DEFAULT_MAX_OBJECTS, min=1,
                                           max=MAX_OBJECTS_LIMIT)),
                "threshold": ("FLOAT", tip("A detection counts when its score (object × 'the concept is present' "
                                           "confidence) is above this.", default=0.5, min=0.0, max=1.0, step=0.01)),
                "new_object_threshold": ("FLOAT", tip("A detection that matches no tracked object starts a new one from "
                                                      "this score (on the first frame every counted detection does).",
                                                      default=0.7, min=0.0, max=1.0, step=0.01)),
            }
        }

    def track(self, images, sam3_video_model, prompt, detect_every, max_objects, threshold, new_object_threshold):
        from ..py.video.tracker import grounded_track

        frames = as_image_batch(images, name="images")
        bar = runtime.progress_bar(frames.shape[0])
        segments = grounded_track(
            None, sam3_video_model.engine, frames, prompt, detect_every=detect_every, max_objects=max_objects,
            threshold=threshold, new_object_threshold=new_object_threshold, state_device=runtime.offload_device(),
            progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt,
            stage=lambda _name: runtime.models_on_device(sam3_video_model),
        )
        preview, ui = _preview(frames, segments)
        device = runtime.intermediate_device()
        return {"ui": ui, "result": (segments, union_masks(segments).to(device), preview.to(device))}


def parse_ids(text: str) -> list[int] | None:
    """``"1, 3"`` → ``[1, 3]``; empty → ``None`` (all). Raises ``ValueError`` naming the bad item."""
    items = [s.strip() for s in str(text).replace(";", ",").split(",") if s.strip()]
    ids = []
    for item in items:
        try:
            ids.append(int(item))
        except ValueError:
            raise ValueError(f'ids: {item!r} is not an object id; give whole numbers separated by commas, e.g. "1, 3"') from None
    return ids or None


class SelectObjects:
    DESCRIPTION = (
        "Keeps the tracked objects you name — by id (as the Grounded Track preview shows them: #1, #2, …) and/or by "
        "label — in every frame, and drops the others. Ids stay the same through the clip, so one list picks an object "
        "in every frame; frames where it is absent get an empty entry. Feed the result to Mask from Segmentation, "
        "Overlay Segments or Segments Info."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SEGMENTS_TYPE, "MASK")
    RETURN_NAMES = ("segments", "mask")
    OUTPUT_TOOLTIPS = ("The chosen objects, per frame.", "Per frame, the chosen objects together (black where none is).")
    FUNCTION = "select"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "segments": (SEGMENTS_TYPE, tip("From Grounded Track or SAM 3 Track.")),
                "ids": ("STRING", tip('Object ids to keep, e.g. "1" or "1, 3". Empty = every id.', default="")),
                "labels": ("STRING", tip('Only objects whose label contains one of these words, e.g. "person". Empty = '
                                         "every label.", default="")),
            }
        }

    def select(self, segments, ids, labels):
        wanted = parse_ids(ids)
        chosen = []
        for seg in segments:
            runtime.check_interrupt()
            chosen.append(select_instances(seg, ids=wanted, labels=labels or None))
        return (chosen, union_masks(chosen).to(runtime.intermediate_device()))
