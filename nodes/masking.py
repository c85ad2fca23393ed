"""Mask from Segmentation and Segments Info."""

from __future__ import annotations

import torch

from ..py.batch import describe_segments, instance_masks
from ..py.masks import make_inpaint_mask, parse_indices, select_instances
from . import runtime
from .common import CATEGORY, SEGMENTS_TYPE, tip


class MaskFromSegments:
    DESCRIPTION = (
        "Turns the objects SAM found into the mask an inpainting node needs: white (1.0) = repaint, black = keep. "
        "Choose objects by label, minimum score, index and top-k score (filters apply in that order); then, in this "
        "order: threshold, fill holes, drop small regions, grow/shrink, invert, feather. To keep the product and repaint the background, turn on "
        "invert. The MASK plugs straight into VAE Encode (for Inpainting), InpaintModelConditioning, Set Latent "
        "Noise Mask and ImageCompositeMasked."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "mask_image")
    OUTPUT_TOOLTIPS = ("[B, H, W] in 0..1, white = area to repaint.", "The same mask as a black-and-white image.")
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "segments": (SEGMENTS_TYPE, tip("From SAM Segment or Grounded Segment.")),
                "invert": ("BOOLEAN", tip("Repaint everything except the chosen objects (background generation).", default=False)),
                "grow": ("INT", tip("Grow the objects by this many pixels (negative shrinks). With invert, a positive value "
                                    "keeps a margin around the kept object.", default=0, min=-512, max=512, step=1)),
                "feather": ("FLOAT", tip("Soften the mask edge over about this many pixels (0 = hard edge).", default=0.0,
                                         min=0.0, max=256.0, step=0.5)),
                "fill_holes": ("BOOLEAN", tip("Fill holes inside the objects (SAM leaves specks of background inside "
                                              "many objects).", default=True)),
                "min_area": ("INT", tip("Drop object regions smaller than this many pixels (SAM's stray specks); 0 keeps "
                                        "every region.", default=64, min=0, max=1 << 24)),
            },
            "optional": {
                "select": ("STRING", tip('Which objects, by index in each image: "0", "0, 2", "1-3", "-1" (last). Empty = all. '
                                         "Indices an image does not have are skipped.", default="")),
                "top_k": ("INT", tip("Only the K highest-scoring objects per image (0 = all).", default=0, min=0, max=900)),
                "labels": ("STRING", tip('Only objects whose label contains one of these words or phrases as whole words ("shoes" matches '
                                          '"red shoes", "shoe" does not match "shoes"), e.g. "shoes, bag". Empty = all.', default="")),
                "min_score": ("FLOAT", tip("Only objects with at least this detection score.", default=0.0, min=0.0, max=1.0, step=0.01)),
                "threshold": ("FLOAT", tip("Binarise the objects' mask at this value before the other steps (SAM masks are already 0/1, "
                                               "so this matters only for soft masks).", default=0.5, min=0.01, max=1.0, step=0.01)),
            },
        }

    def make(self, segments, invert, grow, feather, fill_holes, min_area, select="", top_k=0, labels="", min_score=0.0, threshold=0.5):
        indices = parse_indices(select) if select.strip() else None
        masks = []
        for seg in segments:
            runtime.check_interrupt()
            chosen = select_instances(seg, indices=indices, top_k=top_k or None, labels=labels or None, min_score=min_score)
            masks.append(make_inpaint_mask(chosen, image_size=seg.image_size, threshold=threshold, fill_holes=fill_holes,
                                           min_area=min_area, grow=grow, invert=invert, feather=feather).cpu())
        sizes = {tuple(m.shape) for m in masks}
        if len(sizes) > 1:
            raise ValueError(f"the images have different sizes {sorted(sizes)}; a MASK batch needs one size")
        batch = torch.stack(masks).to(runtime.intermediate_device())
        return (batch, batch[..., None].expand(-1, -1, -1, 3).contiguous())


class SegmentsInfo:
    DESCRIPTION = (
        "What SAM found, for use elsewhere in the graph: a text list (image, index, label, score, quality, box), the "
        "number of objects, and every object's mask as a MASK batch (one entry per object, all images in order)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "INT", "MASK")
    RETURN_NAMES = ("labels", "count", "instance_masks")
    OUTPUT_TOOLTIPS = ("One line per object.", "Objects in the whole batch.",
                       "[N, H, W], one mask per object; a single black mask when nothing was found.")
    FUNCTION = "info"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"segments": (SEGMENTS_TYPE, tip("From SAM Segment or Grounded Segment."))}}

    def info(self, segments):
        return (describe_segments(segments), sum(len(s) for s in segments),
                instance_masks(segments).to(runtime.intermediate_device()))
