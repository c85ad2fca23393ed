"""A tiny random-weight SAM 3 (transformers ``Sam3Model``) folder, written offline.

facebook/sam3 weighs 3.4 GB and is gated, so tests use a stand-in with the same folder layout:
``config.json`` + ``model.safetensors`` (a ``Sam3Model`` of ~65 k parameters), the CLIP tokenizer
files (``vocab.json``, ``merges.txt``, ``tokenizer.json``, ``tokenizer_config.json``: the tiny
byte-level BPE of :mod:`grounded_inpaint.testing.tiny_diffusers`, so any text tokenizes) and
``processor_config.json`` (what ``Sam3Processor.save_pretrained`` writes: a 56 px square resize,
mean/std 0.5, 16 px masks).

Architecture (see :func:`tiny_sam3_config`): a 2-layer, 16-wide ViT on 56 px input with 14 px
patches (a 4×4 grid; FPN levels 16², 8², 4², 2²), a 1-layer 16-wide CLIP text encoder with 32
positions, 1-layer geometry encoder / DETR encoder / DETR decoder with 8 queries, and a 16-wide
mask decoder (16×16 mask logits). Random weights, calibrated (:func:`_calibrate`) so that scores
spread over about 0.01–0.97 (``threshold=0`` keeps all 8 queries of a concept, ``threshold=0.999``
none, values between keep some) and masks are smooth blobs rather than all-empty or all-full.
Building takes about half a second after the imports; the folder is about 0.3 MB.

Everything is deterministic given ``seed``; the global torch RNG is left untouched.
Run ``python -m grounded_inpaint.testing.tiny_sam3 DIR`` to write one by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .tiny_diffusers import write_tiny_clip_tokenizer

if TYPE_CHECKING:  # heavy imports happen only when a model is built
    from transformers import Sam3Config, Sam3Model

__all__ = [
    "TINY_SAM3_IMAGE_SIZE",
    "TINY_SAM3_QUERIES",
    "tiny_sam3_config",
    "build_tiny_sam3",
    "write_tiny_sam3",
    "main",
]

log = logging.getLogger(__name__)

#: Side of the square input of the tiny SAM 3 (4×4 patches of 14 px).
TINY_SAM3_IMAGE_SIZE = 56
#: Object queries per concept (released SAM 3: 200).
TINY_SAM3_QUERIES = 8
_PATCH = 14
_WIDTH = 16
_TEXT_POSITIONS = 32  # as SAM 3's text encoder
#: Mask logits side: the FPN's finest level, 4× the patch grid.
_MASK_SIDE = 4 * TINY_SAM3_IMAGE_SIZE // _PATCH


def tiny_sam3_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> "Sam3Config":
    """The tiny ``Sam3Config`` (see the module docstring) for a tokenizer of ``vocab_size`` tokens."""
    from transformers import Sam3Config

    grid = TINY_SAM3_IMAGE_SIZE // _PATCH
    small = {"hidden_size": _WIDTH, "num_attention_heads": 2, "intermediate_size": 2 * _WIDTH}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model", **small, "num_hidden_layers": 2, "image_size": TINY_SAM3_IMAGE_SIZE,
                "patch_size": _PATCH, "window_size": 2, "global_attn_indexes": [1],
                "pretrain_image_size": TINY_SAM3_IMAGE_SIZE,
            },
            "fpn_hidden_size": _WIDTH,
            "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        },
        text_config={
            "model_type": "clip_text_model", **small, "vocab_size": vocab_size, "projection_dim": _WIDTH,
            "num_hidden_layers": 1, "max_position_embeddings": _TEXT_POSITIONS,
            "bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": eos_token_id,
        },
        geometry_encoder_config={**small, "num_layers": 1, "roi_size": 2},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": TINY_SAM3_QUERIES},
        mask_decoder_config={"hidden_size": _WIDTH, "num_attention_heads": 2, "num_upsampling_stages": 3},
    )


def build_tiny_sam3(vocab_size: int, bos_token_id: int, eos_token_id: int, seed: int = 0) -> "Sam3Model":
    """A tiny ``Sam3Model`` with seeded random weights (eval mode, CPU, float32)."""
    from transformers import Sam3Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3Model(tiny_sam3_config(vocab_size, bos_token_id, eos_token_id))
    _calibrate(model)
    return model.eval()


#: Calibration (see :func:`_calibrate`): presence logit bias, score and mask-logit gains.
_PRESENCE_BIAS = 4.0
_SCORE_GAIN = 30.0
_MASK_GAIN = 30.0


@torch.no_grad()
def _calibrate(model: "Sam3Model") -> None:
    """Make the random model's outputs look like a trained one's, so thresholds matter in tests.

    With transformers' small initialisation every score is about 0.25 and every mask logit about
    0. Here the presence head's output bias is set to 4 (presence ≈ 0.98), the two projections of the
    dot-product scorer are scaled by 30 (query logits spread over about -4..4, so scores spread over
    about 0.01–0.97), and the mask decoder's instance projection and the last layer of its query
    embedder are scaled (mask logits of a few units: masks are blobs covering up to ~40 % of the image).
    """
    model.detr_decoder.presence_head.layer3.bias.fill_(_PRESENCE_BIAS)
    scoring = model.dot_product_scoring
    scoring.query_proj.weight.mul_(_SCORE_GAIN)
    scoring.text_proj.weight.mul_(_SCORE_GAIN)
    model.mask_decoder.instance_projection.weight.mul_(_MASK_GAIN * 100)
    last = [m for m in model.mask_decoder.mask_embedder.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.weight.mul_(_MASK_GAIN)


def _processor_config() -> dict[str, Any]:
    """``processor_config.json`` as ``Sam3Processor.save_pretrained`` writes it (transformers 5)."""
    return {
        "image_processor": {
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "Sam3ImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "mask_size": {"height": _MASK_SIDE, "width": _MASK_SIDE},
            "resample": 2,
            "rescale_factor": 1 / 255,
            "size": {"height": TINY_SAM3_IMAGE_SIZE, "width": TINY_SAM3_IMAGE_SIZE},
        },
        "point_pad_value": -10,
        "processor_class": "Sam3Processor",
        "target_size": TINY_SAM3_IMAGE_SIZE,
    }


def write_tiny_sam3(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny transformers SAM 3 folder (layout of facebook/sam3) and return it.

    The folder loads with ``Sam3Model.from_pretrained`` and ``AutoTokenizer.from_pretrained``
    (and ``Sam3Processor.from_pretrained`` where torchvision is installed). Needs no torchvision
    to be written.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    build_tiny_sam3(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, seed).save_pretrained(str(folder))
    (folder / "processor_config.json").write_text(json.dumps(_processor_config(), indent=2) + "\n", encoding="utf-8")
    log.debug("wrote tiny SAM 3 (seed %d) to %s", seed, folder)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m grounded_inpaint.testing.tiny_sam3 DIR [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m grounded_inpaint.testing.tiny_sam3",
                                     description="Write a tiny random-weight transformers SAM 3 folder.")
    parser.add_argument("folder", type=Path, help="the folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info("tiny SAM 3: %s", write_tiny_sam3(args.folder, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
