"""A tiny random-weight SAM 3 **video** folder (transformers ``Sam3VideoModel``: detector + tracker), written offline.

facebook/sam3 holds one model with ``model_type`` ``sam3_video``: the SAM 3 detector (text → instance
masks, what ``Sam3Model`` loads from the same folder) and a SAM 2-style tracker (memory attention,
memory encoder, object pointers) that follows every found object through a video. Tests use a
stand-in with the same layout: ``config.json`` (``model_type`` ``sam3_video``), ``model.safetensors``
(~3.9 M parameters, 15 MB), the tiny CLIP tokenizer of :mod:`.tiny_sam3` and ``processor_config.json``
as ``Sam3VideoProcessor.save_pretrained`` writes it (56 px square resize, mean/std 0.5).

Architecture (:func:`tiny_sam3_video_config`): the tiny SAM 3 of :mod:`.tiny_sam3` (2-layer 16-wide
ViT on 56 px input with 14 px patches, 1-layer CLIP text encoder, 8 queries) but with 128-channel
FPN features, DETR and mask decoder: transformers' tracker reads 64-channel memories and splits each
object pointer into feature-width / 64 tokens, and that code runs only for features wider than 64
(released SAM 3 has 256), so 128 is the narrowest width that runs the same code path; the detector
shares the FPN neck's width. The tracker: 7 memories, 2 memory-attention layers of width 128 on the
4x4 grid, 16x16 mask logits (``low_res_mask_size`` 16; 288 for released models).

Random weights, calibrated so that tests see what a trained model gives: the detector as in
:mod:`.tiny_sam3` (scores spread over about 0.01-0.97, masks are blobs), and the tracker's object
score leans towards "present" so that tracked objects stay visible. Deterministic given ``seed``;
the global torch RNG is left untouched. ``python -m grounded_inpaint.testing.tiny_sam3_video DIR``
writes one by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .tiny_diffusers import write_tiny_clip_tokenizer
from .tiny_sam3 import _MASK_SIDE, TINY_SAM3_IMAGE_SIZE, tiny_sam3_config
from .tiny_sam_extra import _perturb

if TYPE_CHECKING:
    from transformers import Sam3VideoConfig, Sam3VideoModel

__all__ = ["TINY_SAM3_VIDEO_WIDTH", "tiny_sam3_video_config", "build_tiny_sam3_video", "write_tiny_sam3_video", "main"]

log = logging.getLogger(__name__)

#: Width of the FPN features, the DETR, the mask decoders and the tracker (see the module doc).
TINY_SAM3_VIDEO_WIDTH = 128
_FFN = 32
_GRID = TINY_SAM3_IMAGE_SIZE // 14


def tiny_sam3_video_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> "Sam3VideoConfig":
    """The tiny ``Sam3VideoConfig`` (see the module doc) for a tokenizer of ``vocab_size`` tokens."""
    from transformers import Sam3VideoConfig

    width = TINY_SAM3_VIDEO_WIDTH
    detector = tiny_sam3_config(vocab_size, bos_token_id, eos_token_id).to_dict()
    detector["vision_config"]["fpn_hidden_size"] = width
    for part in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
        detector[part].update(hidden_size=width, intermediate_size=_FFN)
    detector["mask_decoder_config"]["hidden_size"] = width
    detector["text_config"]["projection_dim"] = width
    tracker = {
        "vision_config": {
            "model_type": "sam3_vision_model",
            "backbone_config": detector["vision_config"]["backbone_config"],
            "fpn_hidden_size": width,
            "backbone_feature_sizes": [[4 * _GRID] * 2, [2 * _GRID] * 2, [_GRID] * 2],
        },
        "prompt_encoder_config": {"hidden_size": width, "image_size": TINY_SAM3_IMAGE_SIZE, "patch_size": 14,
                                  "mask_input_channels": 4},
        "mask_decoder_config": {"hidden_size": width, "mlp_dim": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "iou_head_hidden_dim": 16},
        "num_maskmem": 7,
        "memory_attention_hidden_size": width,
        "memory_attention_num_layers": 2,
        "memory_attention_feed_forward_hidden_size": _FFN,
        "memory_attention_rope_feat_sizes": [_GRID, _GRID],
        "memory_encoder_hidden_size": width,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": width,
        "memory_fuser_embed_dim": width,
        "memory_fuser_intermediate_dim": _FFN,
        "image_size": TINY_SAM3_IMAGE_SIZE,
    }
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=_MASK_SIDE)


def build_tiny_sam3_video(vocab_size: int, bos_token_id: int, eos_token_id: int, seed: int = 0) -> "Sam3VideoModel":
    """A tiny ``Sam3VideoModel`` with seeded, calibrated random weights (eval mode, CPU, float32)."""
    from transformers import Sam3VideoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3VideoModel(tiny_sam3_video_config(vocab_size, bos_token_id, eos_token_id))
    _calibrate_detector(model.detector_model)
    _perturb(model.tracker_model.state_dict().values(), seed)
    with torch.no_grad():  # the tracker keeps an object only where its object score is positive
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(4.0)
    return model.eval()


#: Calibration of the detector (see :func:`_calibrate_detector`): presence bias, score and mask gains.
_PRESENCE_BIAS = 4.0
_SCORE_GAIN = 8.0
_MASK_GAINS = (30.0, 10.0)


@torch.no_grad()
def _calibrate_detector(detector: torch.nn.Module) -> None:
    """As :func:`.tiny_sam3._calibrate`, with gains for the 128-wide heads: presence ≈ 0.98, query
    logits with a spread of about 2 (scores over about 0.01-0.97), mask logits of a few units."""
    detector.detr_decoder.presence_head.layer3.bias.fill_(_PRESENCE_BIAS)
    scoring = detector.dot_product_scoring
    scoring.query_proj.weight.mul_(_SCORE_GAIN)
    scoring.text_proj.weight.mul_(_SCORE_GAIN)
    detector.mask_decoder.instance_projection.weight.mul_(_MASK_GAINS[0])
    last = [m for m in detector.mask_decoder.mask_embedder.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.weight.mul_(_MASK_GAINS[1])


def _processor_config() -> dict[str, Any]:
    """``processor_config.json`` as ``Sam3VideoProcessor.save_pretrained`` writes it (transformers 5)."""
    size = {"height": TINY_SAM3_IMAGE_SIZE, "width": TINY_SAM3_IMAGE_SIZE}
    common = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
              "size": size}
    return {
        "image_processor": {**common, "image_processor_type": "Sam3ImageProcessor",
                            "mask_size": {"height": _MASK_SIDE, "width": _MASK_SIDE}},
        "processor_class": "Sam3VideoProcessor",
        "target_size": TINY_SAM3_IMAGE_SIZE,
        "video_processor": {**common, "return_metadata": False, "video_processor_type": "Sam2VideoVideoProcessor"},
    }


def write_tiny_sam3_video(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SAM 3 video folder (layout of facebook/sam3) and return it.

    It loads with ``Sam3VideoModel.from_pretrained`` (and its detector alone with
    ``Sam3Model.from_pretrained``), ``AutoTokenizer.from_pretrained`` and, where torchvision is
    installed, ``Sam3VideoProcessor.from_pretrained``. Writing it needs no torchvision.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    model = build_tiny_sam3_video(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, seed)
    model.save_pretrained(str(folder))
    (folder / "processor_config.json").write_text(json.dumps(_processor_config(), indent=2) + "\n", encoding="utf-8")
    log.debug("wrote tiny SAM 3 video model (seed %d) to %s", seed, folder)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m grounded_inpaint.testing.tiny_sam3_video DIR [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m grounded_inpaint.testing.tiny_sam3_video",
                                     description="Write a tiny random-weight transformers SAM 3 video folder.")
    parser.add_argument("folder", type=Path, help="the folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info("tiny SAM 3 video: %s", write_tiny_sam3_video(args.folder, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
