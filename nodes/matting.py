"""Refine Mask Edges and Load Matting Model: SAM's cut-out → a soft, edge-true alpha and clean colours."""

from __future__ import annotations

import contextlib
import logging

import torch

from ..py.batch import as_image_batch, as_mask_batch, batch_size_for, pick
from ..py.checks import count
from ..py.matting import DEFAULT_METHOD, METHODS, refine_batch
from ..py.matting.fuse import check_finite
from ..py.matting.preview import over_checkerboard, trimap_overlay
from ..py.models import load_matting_model
from . import runtime
from .common import CATEGORY, MATTING_TYPE, SEGMENTS_TYPE, tip
from .loaders import _load

log = logging.getLogger("grounded_inpaint.nodes")

_DEVICE = (["auto", "cpu"], tip("auto: ComfyUI's device (GPU when there is one; follows --cpu, --lowvram, --novram). "
                                "cpu: always run this model on the CPU.", default="auto"))
_PRECISION = (["auto", "fp32", "fp16", "bf16"], tip(
    "Weights precision. auto: fp32 (ViTMatte is small; its edges are most faithful in fp32). fp16/bf16 run faster on GPUs "
    "that support them and fall back to fp32 with a warning where the device cannot run them.", default="auto"))


class LoadMattingModel:
    DESCRIPTION = (
        "Loads a ViTMatte matting model from models/vitmatte for Refine Mask Edges' vitmatte method: a transformers "
        "folder (config.json, model.safetensors, preprocessor_config.json) such as hustvl/vitmatte-small-composition-1k "
        "(103 MB, Apache-2.0, the default) or -base-composition-1k (387 MB). Known models that are missing are downloaded "
        "there on first use, with progress; offline, the error names the files and the folder. Only safetensors weights "
        "are read and no code from the folder runs."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (MATTING_TYPE,)
    RETURN_NAMES = ("matting_model",)
    OUTPUT_TOOLTIPS = ("The ViTMatte model, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.model_choices("vitmatte"), tip(
                    "A ViTMatte folder in models/vitmatte, or a known one to download: vitmatte-small-composition-1k "
                    "103 MB (default), vitmatte-base-composition-1k 387 MB (finer, about 3x slower).")),
                "device": _DEVICE,
                "precision": _PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("vitmatte", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        return (_load("vitmatte", model_name, device, precision, load_matting_model, auto_half=False),)


def _band(name: str, value: int) -> int | None:
    """The node's band width: -1 means "scale with the image and the object" (None in the library)."""
    checked = count(name, value, low=-1, meaning="(-1 = automatic, 0 = no band)")
    return None if checked == -1 else checked


class RefineMaskEdges:
    DESCRIPTION = (
        "Turns SAM's hard cut-out into an edge-true soft alpha and the object's own colours. A band around the "
        "object's edge is marked unknown (widths scale with the image and the object; wider where SAM was unsure) and "
        "its alpha is estimated from the photo: guided (guided filter, fast, no model), closed_form (closed-form "
        "matting, finer on hair), vitmatte (ViTMatte, needs Load Matting Model), or taken from a matte of any "
        "background remover (matte input). Pixels outside the band keep exactly 0 or 1. Decontamination estimates the "
        "object's colours in the band, so a cut-out pasted on a new picture shows no halo of the old background. "
        "Connect alpha + foreground to Composite Object, Cut Out Object or ImageCompositeMasked."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK", "IMAGE", "IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("alpha", "foreground", "rgba", "trimap", "preview")
    OUTPUT_TOOLTIPS = (
        "The soft alpha [B, H, W]: 1 = object, fractions at hair, fur and soft edges, 0 = background.",
        "The object's colours (decontaminated in the band): pair it with alpha. Where alpha is 0 it holds nearby object "
        "colours, not the photo.",
        "foreground + alpha as one 4-channel IMAGE (Save Image writes a transparent PNG).",
        "The trimap: 1 = surely object, 0.5 = the band that was estimated, 0 = surely background.",
        "The cut-out over a checkerboard (also shown in the node, next to the trimap over the photo).",
    )
    FUNCTION = "refine"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The photos the object was found in.")),
                "method": (list(METHODS), tip(
                    "How alpha is estimated in the band. guided: guided filter (fast, any device). closed_form: "
                    "closed-form matting (slower, finer on hair and fur). vitmatte: ViTMatte (connect Load Matting "
                    "Model). none: no refinement (alpha = the mask). A connected matte replaces the method.",
                    default=DEFAULT_METHOD)),
                "band_inside": ("INT", tip(
                    "Width of the band inside the object's edge, in pixels. -1: automatic (one SAM grid cell, i.e. the "
                    "image's long side / 256, at least 2 px, capped by the object's size). 0 and 0: no band, alpha = mask.",
                    default=-1, min=-1, max=1024)),
                "band_outside": ("INT", tip(
                    "Width of the band outside the object's edge, in pixels (-1: automatic, as band_inside). Make it "
                    "larger for hair or fur that SAM cut off.", default=-1, min=-1, max=1024)),
                "decontaminate": ("BOOLEAN", tip(
                    "Estimate the object's own colours in the band (removes the old background's halo). Off: "
                    "foreground is the photo.", default=True)),
            },
            "optional": {
                "segments": (SEGMENTS_TYPE, tip("The objects from SAM Segment / Grounded Segment (all of them, with "
                                                "SAM's own confidence). Give this or mask.")),
                "mask": ("MASK", tip("The object as a mask (white = object) instead of segments, e.g. from Mask from "
                                     "Segmentation with invert off.")),
                "matte": ("MASK", tip(
                    "A soft matte from any background remover (ComfyUI's, RMBG, BiRefNet) or a file: its alpha is used "
                    "inside the object's band; far from the object the segments / mask decide. Resized to the image "
                    "(with a log line) if its size differs.")),
                "matting_model": (MATTING_TYPE, tip("From Load Matting Model; needed for method vitmatte.")),
                "unknown_mask": ("MASK", tip("Regions to estimate wholly (white): glass, a veil, a net, whose alpha is "
                                             "fractional everywhere, not only at the edge.")),
                "use_sam_uncertainty": ("BOOLEAN", tip(
                    "Widen the band where SAM's own mask logits were unsure (hair, fur, lace, blur). Needs segments.",
                    default=True)),
            },
        }

    def refine(self, image, method, band_inside, band_outside, decontaminate, segments=None, mask=None, matte=None,
               matting_model=None, unknown_mask=None, use_sam_uncertainty=True):
        inner, outer = _band("band_inside", band_inside), _band("band_outside", band_outside)
        images = as_image_batch(image)
        if segments is None and mask is None:
            raise ValueError("Refine Mask Edges needs the object: connect segments (from SAM Segment / Grounded Segment) "
                             "or a mask")
        if method == "vitmatte" and matting_model is None and matte is None:
            raise ValueError("method vitmatte needs a matting model: connect Load Matting Model to matting_model, or "
                             "choose method guided or closed_form")
        sizes = {"image": images.shape[0]}
        if segments is not None:
            objects = list(segments)
            sizes["segments"] = len(objects)
        else:
            objects = as_mask_batch(mask).cpu()
            sizes["mask"] = objects.shape[0]
        if matte is not None:
            check_finite(matte, "matte")
        mattes = as_mask_batch(matte).cpu() if matte is not None else None
        if mattes is not None:
            sizes["matte"] = mattes.shape[0]
        unknown = as_mask_batch(unknown_mask).cpu() if unknown_mask is not None else None
        if unknown is not None:
            sizes["unknown_mask"] = unknown.shape[0]
        n = batch_size_for(**sizes)
        height, width = int(images.shape[1]), int(images.shape[2])
        for i in range(len(objects)):
            item = objects[i]
            size = tuple(item.image_size) if hasattr(item, "image_size") else tuple(item.shape)
            if size != (height, width):
                what = "segments" if segments is not None else "mask"
                raise ValueError(f"{what} entry {i + 1} is {size[1]}x{size[0]} but the images are {width}x{height}; "
                                 "connect the same images to SAM and to this node")
        if unknown is not None and tuple(unknown.shape[1:]) != (height, width):
            raise ValueError(f"unknown_mask is {unknown.shape[2]}x{unknown.shape[1]} but the images are {width}x{height}")
        device = runtime.torch_device() if method != "closed_form" else torch.device("cpu")
        pictures = [pick(images, i).to(device) for i in range(n)]
        per_image = [pick(objects, i) for i in range(n)]
        bar = runtime.progress_bar(n)
        context = runtime.models_on_device(matting_model) if matting_model is not None and method == "vitmatte" else contextlib.nullcontext()
        with context:
            results = refine_batch(
                pictures, per_image,
                mattes=[pick(mattes, i) for i in range(n)] if mattes is not None else None,
                unknown=[pick(unknown, i) for i in range(n)] if unknown is not None else None,
                method=method, inner=inner, outer=outer, use_logits=bool(use_sam_uncertainty),
                model=matting_model.engine if matting_model is not None else None, decontaminate=bool(decontaminate),
                progress=runtime.progress_callback(bar), interrupt=runtime.check_interrupt,
            )
        alpha = torch.stack([r.alpha.cpu() for r in results])
        foreground = torch.stack([r.foreground.cpu() for r in results])
        trimap = torch.stack([r.trimap.cpu() for r in results])
        preview = torch.stack([over_checkerboard(foreground[i], alpha[i]) for i in range(n)])
        shown = torch.cat([torch.stack([trimap_overlay(pick(images, i).cpu(), trimap[i]) for i in range(n)]), preview])
        out = runtime.intermediate_device()
        rgba = torch.cat([foreground, alpha[..., None]], dim=-1)
        return {"ui": runtime.preview_images(shown, "grounded_inpaint_matte"),
                "result": (alpha.to(out), foreground.to(out), rgba.to(out), trimap.to(out), preview.to(out))}

