"""Tiny random-weight SAM models: Meta's ``segment_anything`` ``.pth`` and a transformers folder.

* :func:`write_tiny_meta_sam`: a Meta ``segment_anything`` ``.pth`` state dict;
* :func:`write_tiny_hf_sam`: a transformers ``SamModel`` folder, by default holding the converted
  weights of :func:`build_tiny_meta_sam` (same seed), so both formats compute the same masks.

Everything is deterministic given ``seed``, runs on the CPU and takes milliseconds (64 px inputs).
The global torch RNG is left untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..sam.convert import hf_sam_config_from_meta, hf_sam_model_from_meta
from ..sam.meta_arch import MetaSamArch, build_meta_sam
from . import TINY_IMAGE_SIZE

if TYPE_CHECKING:  # heavy imports happen only when a model is built
    from segment_anything.modeling import Sam
    from transformers import SamModel

__all__ = [
    "TINY_SAM_ARCH",
    "build_tiny_meta_sam",
    "write_tiny_meta_sam",
    "build_tiny_hf_sam",
    "write_tiny_hf_sam",
]

log = logging.getLogger(__name__)

#: Meta SAM architecture of the tiny SAM: 64 px input, 16 px patches (a 4x4 embedding), 16 channels.
TINY_SAM_ARCH = MetaSamArch(
    encoder_embed_dim=16,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=2,
    patch_size=16,
    img_size=TINY_IMAGE_SIZE,
    mlp_ratio=4.0,
    out_chans=16,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=32,
    decoder_num_heads=8,
    iou_head_depth=3,
    iou_head_hidden_dim=16,
    num_multimask_outputs=3,
)

# Tiny SAM: Meta's init leaves positional tensors at 0 and LayerNorms at 1/0; perturbing every
# tensor makes each one matter, so a conversion mistake shows in the outputs.
_SAM_PERTURBATION = 0.1


def build_tiny_meta_sam(seed: int = 0) -> "Sam":
    """A Meta ``segment_anything`` SAM of architecture :data:`TINY_SAM_ARCH` (eval mode, CPU).

    Every tensor, including those Meta initialises to constants (positional embeddings, relative
    positions, LayerNorms), carries seeded random values.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_meta_sam(TINY_SAM_ARCH)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in sam.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * _SAM_PERTURBATION)
    return sam.eval()


def write_tiny_meta_sam(path: str | Path, seed: int = 0) -> Path:
    """Save :func:`build_tiny_meta_sam` as a plain state dict with ``torch.save`` (Meta's ``.pth``
    layout; loads with ``torch.load(path, weights_only=True)``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().clone().contiguous() for k, v in build_tiny_meta_sam(seed).state_dict().items()}
    torch.save(state_dict, path)
    log.debug("wrote tiny Meta SAM (seed %d) to %s", seed, path)
    return path


def build_tiny_hf_sam(seed: int = 0, from_meta: bool = True) -> "SamModel":
    """A transformers ``SamModel`` with the tiny architecture (eval mode, CPU, float32).

    Args:
        seed: random seed.
        from_meta: hold the converted weights of ``build_tiny_meta_sam(seed)`` (so the two models
            compute the same masks); otherwise use transformers' own seeded initialisation.
    """
    from transformers import SamModel

    if from_meta:
        return hf_sam_model_from_meta(build_tiny_meta_sam(seed).state_dict(), source="tiny Meta SAM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(hf_sam_config_from_meta(TINY_SAM_ARCH))
    return model.eval()


def write_tiny_hf_sam(folder: str | Path, seed: int = 0, from_meta: bool = True) -> Path:
    """Write a tiny transformers ``SamModel`` folder and return it.

    The folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) loads with
    ``SamModel.from_pretrained`` and ``SamProcessor.from_pretrained``. The processor resizes the
    longest side to 64 px, pads to 64x64 and handles 16 px mask prompts (``mask_size`` /
    ``mask_pad_size`` 16). See :func:`build_tiny_hf_sam` for ``from_meta``.
    """
    from transformers import SamImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_hf_sam(seed, from_meta).save_pretrained(str(folder))
    mask_side = TINY_SAM_ARCH.image_embedding_size * 4
    SamImageProcessor(
        size={"longest_edge": TINY_IMAGE_SIZE},
        pad_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    ).save_pretrained(str(folder))
    log.debug("wrote tiny transformers SAM (seed %d, from_meta=%s) to %s", seed, from_meta, folder)
    return folder

