"""A ComfyUI-style ``models`` folder of tiny random-weight models, one of every family and layout.

No weights can be downloaded in tests, so every model the package loads has a tiny stand-in with
the same file layout as the real one (see :mod:`.tiny_gdino`, :mod:`.tiny_gdino_extra`,
:mod:`.tiny_sam`, :mod:`.tiny_sam_extra`, :mod:`.tiny_sam3`, :mod:`.tiny_vitmatte`); :func:`write_models_folder` lays
them all out as ComfyUI's ``models`` folder has them.

Run ``python -m grounded_inpaint.testing.tiny_models DIR`` to write a models folder by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from .tiny_gdino import write_tiny_grounding_dino
from .tiny_gdino_extra import write_tiny_mm_grounding_dino, write_tiny_original_grounding_dino
from .tiny_sam import write_tiny_hf_sam, write_tiny_meta_sam
from .tiny_sam3 import write_tiny_sam3
from .tiny_sam_extra import write_tiny_sam2_hf, write_tiny_sam2_original, write_tiny_sam_hq_hf, write_tiny_sam_hq_original
from .tiny_vitmatte import write_tiny_vitmatte

__all__ = ["write_models_folder", "main"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# A ComfyUI-style models folder
# --------------------------------------------------------------------------------------------


def write_models_folder(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Lay out a ComfyUI-style ``models`` folder with one tiny model of each kind.

    ::

        root/grounding-dino/grounding-dino-tiny-random/   transformers GroundingDINO folder
        root/sams/sam_vit_tiny_random.pth                 Meta SAM state dict
        root/sams/sam-hf-tiny-random/                     transformers SamModel folder (same weights)
        root/grounding-dino/mm-grounding-dino-tiny-random/  transformers MM-GroundingDINO folder
        root/grounding-dino/groundingdino_tiny_random.pth   original (IDEA-Research) GroundingDINO layout
        root/sams/sam_hq_vit_tiny_random.pth              official SAM-HQ state dict
        root/sams/sam-hq-hf-tiny-random/                  transformers SamHQModel folder (same weights)
        root/sam2/sam2.1_hiera_tiny_random.safetensors    Meta's SAM 2.1 layout (kijai's files)
        root/sam2/sam2.1-hf-tiny-random/                  transformers Sam2Model folder
        root/sam3/sam3-tiny-random/                       transformers Sam3Model folder (text → masks)
        root/sam3/sam3-video-tiny-random/                 transformers Sam3VideoModel folder (detector + tracker)
        root/sam2/sam2.1_hiera_tiny_video_random.pt       Meta's SAM 2.1 layout with the video-tracking weights
        root/sam2/sam2.1-video-hf-tiny-random/            transformers Sam2VideoModel folder (64 px)
        root/vitmatte/vitmatte-tiny-random/               transformers VitMatteForImageMatting folder (matting)

    Returns:
        ``{role: path}`` for each model written (roles: ``grounding_dino``, ``mm_grounding_dino``,
        ``grounding_dino_original``, ``sam_meta``, ``sam_hf``, ``sam_hq_meta``, ``sam_hq_hf``,
        ``sam2_file``, ``sam2_hf``, ``sam3``, ``sam3_video``, ``sam2_video_file``, ``sam2_video_hf``, ``vitmatte``;
        ``sam3``, ``sam3_video`` and the SAM 2.1 video models only where transformers has them).
    """
    root = Path(root)
    return {
        "grounding_dino": write_tiny_grounding_dino(root / "grounding-dino" / "grounding-dino-tiny-random", seed),
        "sam_meta": write_tiny_meta_sam(root / "sams" / "sam_vit_tiny_random.pth", seed),
        "sam_hf": write_tiny_hf_sam(root / "sams" / "sam-hf-tiny-random", seed, from_meta=True),
        **_extra_sam_models(root, seed),
        "mm_grounding_dino": write_tiny_mm_grounding_dino(root / "grounding-dino" / "mm-grounding-dino-tiny-random", seed),
        "grounding_dino_original": write_tiny_original_grounding_dino(root / "grounding-dino" / "groundingdino_tiny_random.pth", seed),
        "vitmatte": write_tiny_vitmatte(root / "vitmatte" / "vitmatte-tiny-random", seed),
    } | _sam3_model(root, seed) | _sam2_video_models(root, seed)


def _sam2_video_models(root: Path, seed: int) -> dict[str, Path]:
    """The tiny SAM 2.1 video model as Meta's ``.pt`` and as a transformers folder (:mod:`.tiny_sam2_video`),
    or nothing (with a warning) where transformers predates the SAM 2 video classes (before 4.56)."""
    import transformers

    if not hasattr(transformers, "Sam2VideoModel"):
        log.warning("transformers %s has no Sam2VideoModel: the tiny SAM 2.1 video models are not written", transformers.__version__)
        return {}
    from .tiny_sam2_video import write_tiny_sam2_video_hf, write_tiny_sam2_video_original

    return {
        "sam2_video_file": write_tiny_sam2_video_original(root / "sam2" / "sam2.1_hiera_tiny_video_random.pt", seed),
        "sam2_video_hf": write_tiny_sam2_video_hf(root / "sam2" / "sam2.1-video-hf-tiny-random", seed),
    }


def _sam3_model(root: Path, seed: int) -> dict[str, Path]:
    """``{"sam3": path, "sam3_video": path}`` (:mod:`.tiny_sam3`, :mod:`.tiny_sam3_video`), or nothing (with a
    warning) where transformers predates SAM 3 (before 5.0)."""
    import transformers

    if not hasattr(transformers, "Sam3Model"):
        log.warning("transformers %s has no Sam3Model: the tiny SAM 3 folder is not written", transformers.__version__)
        return {}
    from .tiny_sam3_video import write_tiny_sam3_video

    return {"sam3": write_tiny_sam3(root / "sam3" / "sam3-tiny-random", seed),
            "sam3_video": write_tiny_sam3_video(root / "sam3" / "sam3-video-tiny-random", seed)}


def _extra_sam_models(root: Path, seed: int) -> dict[str, Path]:
    """SAM-HQ and SAM 2.1 in each layout users have (see :mod:`.tiny_sam_extra`)::

        root/sams/sam_hq_vit_tiny_random.pth             official SAM-HQ state dict
        root/sams/sam-hq-hf-tiny-random/                 transformers SamHQModel folder (same weights)
        root/sam2/sam2.1_hiera_tiny_random.safetensors   Meta's SAM 2.1 layout (kijai's files)
        root/sam2/sam2.1-hf-tiny-random/                 transformers Sam2Model folder (same weights, 64 px)
    """
    return {
        "sam_hq_meta": write_tiny_sam_hq_original(root / "sams" / "sam_hq_vit_tiny_random.pth", seed),
        "sam_hq_hf": write_tiny_sam_hq_hf(root / "sams" / "sam-hq-hf-tiny-random", seed),
        "sam2_file": write_tiny_sam2_original(root / "sam2" / "sam2.1_hiera_tiny_random.safetensors", seed),
        "sam2_hf": write_tiny_sam2_hf(root / "sam2" / "sam2.1-hf-tiny-random", seed),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m grounded_inpaint.testing.tiny_models DIR [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m grounded_inpaint.testing.tiny_models",
        description="Write tiny random-weight GroundingDINO and SAM models in a ComfyUI-style models folder.",
    )
    parser.add_argument("folder", type=Path, help="the models folder to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for role, path in write_models_folder(args.folder, args.seed).items():
        log.info("%s: %s", role, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
