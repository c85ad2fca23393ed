"""One entry point for the matting stage: image + object mask (or SAM instances) → alpha + clean colours.

:func:`refine` does, for one image:

1. the trimap (:mod:`.trimap`): known object, known background and the band between, from the
   mask and the band widths (defaults scale with the image and the object), widened where
   SAM's logits were unsure and over any region marked unknown;
2. alpha in the band, by ``method`` (``guided``, ``closed_form``, ``vitmatte``), or taken from an
   external ``matte`` (:mod:`.fuse`); known pixels keep their exact 0 or 1;
3. the object's colours in the band (:mod:`.foreground`), so the cut-out carries the object's
   colour and not the old background's.

:func:`refine_batch` is the batch loop the CLI and the nodes share: ``B`` images in, ``B``
results out, progress and Cancel between images and inside the long loops.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch

from ..images import to_mask, to_rgb_list
from ..interrupt import InterruptCheck, interruptible
from ..structures import Segments
from ._filters import as_rgb
from .closed_form import closed_form_alpha
from .foreground import estimate_foreground
from .fuse import fuse_matte, prepare_matte
from .guided import guided_alpha
from .trimap import DEFAULT_LOGIT_MARGIN, make_trimap, trimap_for_segments, unknown_of

__all__ = ["Matte", "Method", "METHODS", "DEFAULT_METHOD", "refine", "refine_batch"]

log = logging.getLogger(__name__)

Method = Literal["guided", "closed_form", "vitmatte", "none"]
#: The alpha estimators, in the order the nodes and the CLI list them.
METHODS: tuple[str, ...] = ("guided", "closed_form", "vitmatte", "none")
DEFAULT_METHOD: Method = "guided"


@dataclass
class Matte:
    """The matting result for one image.

    Attributes:
        alpha: ``[H, W]`` float32 in ``0..1``: exactly 0 / 1 outside the trimap's band.
        foreground: ``[H, W, 3]`` float32 in ``0..1``: the object's colours (the photo's where
            ``alpha == 1``; estimated in the band; the nearby object colours where ``alpha == 0``).
            The photo itself when decontamination is off.
        trimap: ``[H, W]`` float32: 0 background, 0.5 unknown, 1 object.
    """

    alpha: torch.Tensor
    foreground: torch.Tensor
    trimap: torch.Tensor

    def rgba(self) -> torch.Tensor:
        """``[H, W, 4]``: the foreground colours with alpha as the fourth channel (a transparent cut-out)."""
        return torch.cat([self.foreground, self.alpha[..., None]], dim=-1)


def _is_segments(value: Any) -> bool:
    """Segments, also from another import of this package (ComfyUI loads the pack under its own name)."""
    return isinstance(value, Segments) or all(hasattr(value, a) for a in ("masks", "image_size", "union", "labels"))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown matting method {method!r}; choose one of {', '.join(METHODS)}")


def refine(
    image: Any,
    mask: Segments | Any,
    *,
    method: Method = DEFAULT_METHOD,
    inner: int | None = None,
    outer: int | None = None,
    use_logits: bool = True,
    logit_margin: float = DEFAULT_LOGIT_MARGIN,
    logits: torch.Tensor | None = None,
    unknown: Any = None,
    matte: Any = None,
    model: Any = None,
    decontaminate: bool = True,
    options: dict[str, Any] | None = None,
    interrupt: InterruptCheck | None = None,
) -> Matte:
    """Refine an object's edge: trimap → alpha in the band → the object's true colours.

    Arguments:
        image: ``[H, W, 3]`` float RGB in ``0..1`` (anything :func:`~grounded_inpaint.images.to_rgb` takes).
        mask: the object: a :class:`~grounded_inpaint.structures.Segments` (the union of its
            instances; their SAM logits widen the band where SAM was unsure) or an ``[H, W]``
            mask (``>= 0.5`` is the object). No instance / an all-black mask gives alpha 0
            everywhere.
        method: ``"guided"`` (guided filter, fast, no model), ``"closed_form"`` (closed-form
            matting, slower, finer on hair), ``"vitmatte"`` (needs ``model``) or ``"none"`` (alpha
            is the mask itself).
        inner, outer: band widths inside / outside the edge in pixels; ``None``: scaled with the
            image and the object (:func:`.trimap.default_band`); ``0`` and ``0``: no band, alpha = mask.
        use_logits: widen the band where the segmenter's logits are within ``±logit_margin``.
        logits: with a plain ``mask``: optional ``[h, w]`` segmenter logits over the image (e.g.
            :func:`.trimap.union_logits` of the instances the mask was made from).
        unknown: optional ``[H, W]`` mask of regions to mark wholly unknown (glass, veils).
        matte: optional external soft matte (``[H', W']``, resized to the image with a log line
            if its size differs): its alpha is used inside the band instead of ``method``'s.
        model: a loaded ViTMatte (:func:`grounded_inpaint.models.load_matting_model`) for
            ``method="vitmatte"``.
        decontaminate: estimate the object's colours in the band (otherwise the photo's colours
            are returned as ``foreground``).
        options: extra settings of the method, e.g. ``{"radius": 8, "eps": 3e-4}`` for guided,
            ``{"eps": 1e-7}`` for closed_form, ``{"tile": 1024}`` for vitmatte.
        interrupt: called between tiles and solver iterations and between the model's layers;
            raise from it to stop.

    Returns:
        :class:`Matte` with alpha, foreground and trimap, on the image's device.

    Raises:
        ValueError: an unknown method, ``"vitmatte"`` without a model, bad widths, sizes that
            differ, or a matte with NaN (each named).
    """
    _check_method(method)
    rgb = as_rgb(image)
    size = tuple(rgb.shape[:2])
    options = dict(options or {})
    if _is_segments(mask):
        if tuple(mask.image_size) != size:
            raise ValueError(f"the segments belong to a {mask.image_size[1]}x{mask.image_size[0]} image but the image is "
                             f"{size[1]}x{size[0]}; give the image the segments were made from")
        coarse = mask.union().to(rgb.device)
        trimap = trimap_for_segments(mask, inner=inner, outer=outer, use_logits=use_logits, logit_margin=logit_margin,
                                     unknown=unknown).to(rgb.device)
    else:
        coarse = (to_mask(mask, name="mask") >= 0.5).float().to(rgb.device)
        if tuple(coarse.shape) != size:
            raise ValueError(f"the mask is {coarse.shape[1]}x{coarse.shape[0]} but the image is {size[1]}x{size[0]}; "
                             "give a mask of the image's size")
        trimap = make_trimap(coarse, inner=inner, outer=outer, logits=logits if use_logits else None,
                             logit_margin=logit_margin, unknown=unknown).to(rgb.device)
    if matte is not None:  # checked (NaN) and brought to the image's size even where no band needs it
        matte = prepare_matte(matte, size).to(rgb.device)
    if method == "vitmatte" and model is None and matte is None:
        raise ValueError("method 'vitmatte' needs a matting model: load one with load_matting_model "
                         "(or connect Load Matting Model), or choose method 'guided' or 'closed_form'")
    modules = [getattr(model, "model", None)] if method == "vitmatte" and model is not None else []
    guard = interruptible(interrupt, *modules) if interrupt is not None else contextlib.nullcontext()
    with guard:
        if method == "none" and matte is None:
            alpha = coarse.clone()
        elif not bool(unknown_of(trimap).any()):
            alpha = trimap.clone()
        elif matte is not None:
            alpha = fuse_matte(trimap, matte)
        elif method == "guided":
            alpha = guided_alpha(rgb, trimap, coarse, **options)
        elif method == "closed_form":
            alpha = closed_form_alpha(rgb, trimap, coarse, **options)
        else:
            alpha = model.estimate_alpha(rgb, trimap, **options)
        alpha = alpha.to(rgb.device).float()
        if decontaminate and bool(((alpha > 0) & (alpha < 1)).any()):
            foreground = estimate_foreground(rgb, alpha)
        else:
            foreground = rgb.clone()
    return Matte(alpha, foreground, trimap)


def refine_batch(
    images: Any,
    masks: Sequence[Segments | Any] | torch.Tensor,
    *,
    mattes: Sequence[Any] | torch.Tensor | None = None,
    unknown: Sequence[Any] | torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    interrupt: InterruptCheck | None = None,
    **settings: Any,
) -> list[Matte]:
    """:func:`refine` over a batch: ``B`` images in, ``B`` :class:`Matte` out, always aligned.

    Arguments:
        images: ``[B, H, W, C]`` tensor or a list of images.
        masks: one :class:`Segments` or ``[H, W]`` mask per image (a ``[B, H, W]`` tensor works);
            a single entry is used for every image.
        mattes: optional external mattes, one per image or one for all (``[B, H, W]`` works).
        unknown: optional regions to mark unknown, one per image or one for all.
        progress: ``progress(done, total)`` after each image.
        interrupt: called between images and inside the long loops; raise from it to stop.
        settings: passed to :func:`refine` (``method``, ``inner``, ``outer``, ``model``, ...).

    Raises:
        ValueError: the numbers of images, masks, mattes or unknown regions differ (all named).
    """
    pictures = to_rgb_list(images)
    b = len(pictures)

    def per_image(values: Any, name: str) -> list[Any]:
        if values is None:
            return [None] * b
        items = list(values) if not torch.is_tensor(values) or values.ndim == 3 else [values]
        if len(items) == 1 and b > 1:
            items = items * b
        if len(items) != b:
            raise ValueError(f"got {b} image(s) but {len(items)} {name}; give one, or one per image")
        return items

    mask_list = per_image(masks, "masks")
    matte_list = per_image(mattes, "mattes")
    unknown_list = per_image(unknown, "unknown regions")
    results = []
    for i, picture in enumerate(pictures):
        if interrupt is not None:
            interrupt()
        results.append(refine(picture, mask_list[i], matte=matte_list[i], unknown=unknown_list[i], interrupt=interrupt,
                              **settings))
        if progress is not None:
            progress(i + 1, b)
    return results
