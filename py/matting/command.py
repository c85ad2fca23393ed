"""The matting options of the ``mask`` and ``inpaint`` commands, and what they write.

``--refine guided|closed_form|vitmatte`` refines the selected objects' edges
(:func:`grounded_inpaint.matting.refine`); ``mask`` then writes ``alpha.png`` (the soft alpha,
16-bit grayscale) and an RGBA ``cutout.png`` with the decontaminated colours, ``inpaint --keep``
pastes the product back with its soft alpha and clean colours. ``--refine none`` (the default)
leaves both commands as they were.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from .refine import METHODS

__all__ = [
    "add_refine_arguments",
    "matting_problems",
    "load_matting",
    "check_mattes",
    "refine_selected",
]


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``edge refinement`` option group to a subcommand's parser."""
    from ..cli_support import count_arg
    from ..models import DEFAULT_MATTING_MODEL

    g = parser.add_argument_group("edge refinement (matting)")
    g.add_argument("--refine", default="none", choices=list(METHODS),
                   help="refine the objects' edges into a soft alpha with the object's own colours: guided (fast), "
                   "closed_form (finer on hair), vitmatte (model) or none (default: the hard SAM mask)")
    g.add_argument("--matting-model", default=DEFAULT_MATTING_MODEL,
                   help=f"ViTMatte folder name or path for --refine vitmatte (default {DEFAULT_MATTING_MODEL}, "
                   "downloaded into MODELS/vitmatte on first use)")
    g.add_argument("--band-inside", type=count_arg(0, 4096), default=None,
                   help="band width inside the object's edge in pixels (default: one SAM grid cell, long side / 256)")
    g.add_argument("--band-outside", type=count_arg(0, 4096), default=None,
                   help="band width outside the edge in pixels (default as --band-inside; raise it for hair SAM cut off)")
    g.add_argument("--matte", nargs="+", default=None, metavar="FILE",
                   help="soft matte file(s) from any background remover, one per image in order: used inside the "
                   "objects' band (grayscale, or the alpha of an RGBA file; resized to the image if needed)")
    g.add_argument("--no-sam-uncertainty", action="store_true",
                   help="do not widen the band where SAM's own logits were unsure (hair, fur, blur)")
    g.add_argument("--no-decontaminate", action="store_true",
                   help="keep the photo's colours at the soft edge (default: estimate the object's own colours)")


def _wants_model(args: argparse.Namespace) -> bool:
    return args.refine == "vitmatte" and not getattr(args, "matte", None)


def matting_problems(args: argparse.Namespace) -> list[str]:
    """Why the matting model cannot be had (missing and not downloadable), as messages; [] when fine.

    Checked before any model is loaded, so that every missing model is named in one error.
    """
    from ..errors import ModelNotFoundError
    from ..models import resolve_model

    if not _wants_model(args):
        return []
    try:
        resolve_model(args.matting_model, "vitmatte", args.models, download=not args.no_download)
    except ModelNotFoundError as exc:
        return [str(exc)]
    return []


def load_matting(args: argparse.Namespace, device: Any) -> Any:
    """The ViTMatte of ``--matting-model`` for ``--refine vitmatte`` (fp32), else ``None``."""
    if not _wants_model(args):
        return None
    from ..models import load_matting_model

    return load_matting_model(args.matting_model, args.models, device=device, download=not args.no_download)


def check_mattes(args: argparse.Namespace, images: Sequence[Path], error: type[Exception]) -> list[Path | None]:
    """One ``--matte`` file per image (or none); raise ``error`` naming the problem otherwise."""
    if not args.matte:
        return [None] * len(images)
    if args.refine == "none":
        raise error("--matte needs --refine (guided, closed_form or vitmatte): the matte is used inside the refined band")
    if len(args.matte) != len(images):
        raise error(f"--matte gives {len(args.matte)} file(s) for {len(images)} image(s); give one matte per image, in order")
    missing = [str(p) for p in args.matte if not Path(p).is_file()]
    if missing:
        raise error(f"matte file(s) not found: {', '.join(missing)}")
    return [Path(p) for p in args.matte]


def refine_selected(
    args: argparse.Namespace, image: Any, chosen: Any, objects: Any, model: Any, matte_file: Path | None
) -> Any:
    """Refine the selected objects of one image as the options say.

    Arguments:
        chosen: the selected instances (:class:`~grounded_inpaint.structures.Segments`): their
            SAM logits widen the band where SAM was unsure.
        objects: ``[H, W]`` the cleaned union of the selected instances (threshold, fill holes,
            minimum area; no grow or feather): the object whose edge is refined.
        matte_file: the ``--matte`` file of this image, or ``None``.

    Returns:
        :class:`grounded_inpaint.matting.Matte`.
    """
    from ..images import to_mask
    from .refine import refine
    from .trimap import union_logits

    matte = None
    if matte_file is not None:
        from PIL import Image

        try:
            with Image.open(matte_file) as picture:
                matte = to_mask(picture, name=str(matte_file))
        except OSError as exc:
            raise ValueError(f"cannot read the matte {matte_file}: {exc}") from None
    return refine(
        image, objects, method=args.refine, inner=args.band_inside, outer=args.band_outside,
        logits=None if args.no_sam_uncertainty else union_logits(chosen), matte=matte, model=model, decontaminate=not args.no_decontaminate,
    )
