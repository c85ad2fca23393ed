"""The matting stage: SAM's cut-out → a soft, edge-true alpha and the object's own colours.

Stages, one module each:

* :mod:`.trimap` — known object / unknown band / known background from a mask or SAM instances;
* :mod:`.guided` — guided-filter alpha (no model, fast, plain torch);
* :mod:`.closed_form` — closed-form matting (scipy.sparse + conjugate gradients);
* :mod:`.vitmatte` — ViTMatte through transformers, in tiles around the band;
* :mod:`.fuse` — an external matte (any background remover's MASK) fused inside the band;
* :mod:`.foreground` — the object's colours in the band (decontamination, blur fusion);
* :mod:`.refine` — :func:`refine` / :func:`refine_batch`, the one entry point and batch loop.
"""

from .foreground import estimate_foreground
from .fuse import fuse_matte, prepare_matte
from .refine import DEFAULT_METHOD, METHODS, Matte, refine, refine_batch
from .trimap import default_band, make_trimap, trimap_for_segments

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Matte",
    "default_band",
    "estimate_foreground",
    "fuse_matte",
    "make_trimap",
    "prepare_matte",
    "refine",
    "refine_batch",
    "trimap_for_segments",
]
