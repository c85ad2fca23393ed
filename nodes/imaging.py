"""Overlay, Cut Out and Composite: showing results and placing objects onto other pictures."""

from __future__ import annotations

import torch

from ..py.batch import as_image_batch, as_mask_batch, batch_size_for, cutout_batch, pick
from ..py.overlay import ANCHORS, composite, draw_mask, draw_segments
from . import runtime
from .common import CATEGORY, SEGMENTS_TYPE, tip


class Overlay:
    DESCRIPTION = (
        "Shows what was found: each object of SEGMENTS in its own colour with its box, label and score — or a MASK "
        "tinted red — over the image. The result is an IMAGE and is also previewed inside the node."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The image with the overlay.",)
    FUNCTION = "draw"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The images the segments or mask belong to.")),
                "opacity": ("FLOAT", tip("How strongly objects are coloured.", default=0.5, min=0.0, max=1.0, step=0.05)),
                "show_boxes": ("BOOLEAN", tip("Draw each object's box.", default=True)),
                "show_labels": ("BOOLEAN", tip("Write each object's label and score.", default=True)),
            },
            "optional": {
                "segments": (SEGMENTS_TYPE, tip("Objects from SAM Segment or Grounded Segment.")),
                "mask": ("MASK", tip("A mask to show instead (white areas are tinted).")),
            },
        }

    def draw(self, image, opacity, show_boxes, show_labels, segments=None, mask=None):
        images = as_image_batch(image).cpu()
        b = images.shape[0]
        if segments is not None:
            n = batch_size_for(image=b, segments=len(segments))
            result = runtime.draw_each(n, lambda i: draw_segments(pick(images, i), pick(segments, i), opacity=opacity,
                                                                  boxes=show_boxes, labels=show_labels, scores=show_labels))
        elif mask is not None:
            masks = as_mask_batch(mask).cpu()
            n = batch_size_for(image=b, mask=masks.shape[0])
            result = runtime.draw_each(n, lambda i: draw_mask(pick(images, i), pick(masks, i), opacity=opacity))
        else:
            raise ValueError("Overlay needs something to show: connect segments or a mask")
        return {"ui": runtime.preview_images(result, "grounded_inpaint_overlay"),
                "result": (result.to(runtime.intermediate_device()),)}


class CutOut:
    DESCRIPTION = (
        "Cuts the masked object out of the image: the object's colours, its mask as alpha, and an RGBA image "
        "(SaveImage writes it as a transparent PNG). With crop, every image of the batch is cut to the box around "
        "all masks, ready for Composite. Given Refine Mask Edges' foreground (and its alpha as mask), the cut-out carries "
        "the object's clean colours and soft edge."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("image", "mask", "rgba")
    OUTPUT_TOOLTIPS = ("The crop (or the whole image) as RGB, background pixels included: pair it with the mask.",
                       "The object's alpha: 1 = object.", "RGB + alpha in one 4-channel IMAGE.")
    FUNCTION = "cut"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", tip("The picture holding the object.")),
                "mask": ("MASK", tip("The object (white = object), e.g. from Mask from Segmentation without invert.")),
                "crop": ("BOOLEAN", tip("Cut to the box around the mask.", default=True)),
                "padding": ("INT", tip("Pixels of margin around the crop.", default=0, min=0, max=4096)),
            },
            "optional": {
                "foreground": ("IMAGE", tip("The object's clean colours from Refine Mask Edges (its foreground output): used "
                                            "instead of the image's colours, so the cut-out has no halo. Use its alpha as mask.")),
            },
        }

    def cut(self, image, mask, crop, padding, foreground=None):
        images = as_image_batch(image).cpu()
        masks = as_mask_batch(mask).cpu()
        if foreground is not None:
            colours = as_image_batch(foreground, "foreground").cpu()
            if tuple(colours.shape[1:3]) != tuple(images.shape[1:3]):
                raise ValueError(f"foreground is {colours.shape[2]}x{colours.shape[1]} but the image is "
                                 f"{images.shape[2]}x{images.shape[1]}; connect Refine Mask Edges' foreground of the same images")
            batch_size_for(image=images.shape[0], foreground=colours.shape[0])
            images = colours if colours.shape[0] >= images.shape[0] else colours.expand(images.shape[0], -1, -1, -1)
        n = batch_size_for(image=images.shape[0], mask=masks.shape[0])
        if tuple(masks.shape[1:]) != tuple(images.shape[1:3]):
            raise ValueError(f"the mask is {masks.shape[2]}x{masks.shape[1]} but the image is {images.shape[2]}x{images.shape[1]}")
        images = images.expand(n, -1, -1, -1) if images.shape[0] == 1 else images
        masks = masks.expand(n, -1, -1) if masks.shape[0] == 1 else masks
        rgba = cutout_batch(images, masks, crop=crop, padding=padding)
        dev = runtime.intermediate_device()
        return (rgba[..., :3].contiguous().to(dev), rgba[..., 3].contiguous().to(dev), rgba.to(dev))


class Composite:
    DESCRIPTION = (
        "Product placement: pastes the masked object onto a background at x / y (the anchor point of the object "
        "lands there), scaled, with an optional soft edge. Returns the picture and the mask of where the object "
        "landed — grow, invert or band it with ComfyUI's GrowMask / InvertMask / MaskComposite and feed it to an "
        "inpainting node to blend the edge or repaint around the object."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "placed_mask")
    OUTPUT_TOOLTIPS = ("The background with the object pasted in.", "Where the object landed (1 = object).")
    FUNCTION = "paste"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "background": ("IMAGE", tip("The picture to place the object on.")),
                "object": ("IMAGE", tip("The picture holding the object (for example Cut Out's image, the original photo, or "
                                        "Refine Mask Edges' foreground with its alpha as object_mask).")),
                "x": ("INT", tip("Horizontal position of the anchor point on the background, in pixels.", default=0, min=-16384, max=16384)),
                "y": ("INT", tip("Vertical position of the anchor point on the background, in pixels.", default=0, min=-16384, max=16384)),
                "scale": ("FLOAT", tip("Resize the object by this factor.", default=1.0, min=0.01, max=16.0, step=0.01)),
                "anchor": (list(ANCHORS), tip("Which point of the object goes to (x, y).", default="top-left")),
                "feather": ("FLOAT", tip("Soften the pasted edge over about this many pixels.", default=0.0, min=0.0, max=256.0, step=0.5)),
            },
            "optional": {
                "object_mask": ("MASK", tip("The object's mask (white = object). Without it, a 4-channel object uses its alpha, "
                                           "otherwise the whole object picture is pasted.")),
            },
        }

    def paste(self, background, object, x, y, scale, anchor, feather, object_mask=None):  # noqa: A002 - ComfyUI input name
        bgs = as_image_batch(background).cpu()
        obj = object.cpu() if torch.is_tensor(object) else object
        if torch.is_tensor(obj) and obj.ndim == 3:
            obj = obj[None]
        fgs = obj if (torch.is_tensor(obj) and obj.ndim == 4 and obj.shape[-1] == 4 and object_mask is None) else as_image_batch(obj).cpu()
        masks = as_mask_batch(object_mask).cpu() if object_mask is not None else None
        sizes = {"background": bgs.shape[0], "object": fgs.shape[0]}
        if masks is not None:
            sizes["object_mask"] = masks.shape[0]
        n = batch_size_for(**sizes)
        images, placed = [], []
        for i in range(n):
            runtime.check_interrupt()
            img, where = composite(pick(bgs, i), pick(fgs, i), pick(masks, i) if masks is not None else None,
                                   x=x, y=y, scale=scale, anchor=anchor, feather=feather)
            images.append(img)
            placed.append(where)
        dev = runtime.intermediate_device()
        return (torch.stack(images).to(dev), torch.stack(placed).to(dev))
