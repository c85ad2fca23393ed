"""A tiny random-weight ViTMatte (transformers ``VitMatteForImageMatting``) folder, written offline.

hustvl/vitmatte-small-composition-1k weighs 103 MB, so tests use a stand-in with the same folder
layout: ``config.json`` + ``model.safetensors`` + ``preprocessor_config.json`` (what the hub
folders hold: mean/std 0.5, padding to a multiple of 32).

Architecture (:func:`tiny_vitmatte_config`): a 2-layer, 16-wide ViTDet backbone with 16 px
patches, windowed attention (2 × 2 patches, relative positions) in the first block and global
attention in the second — the published models' mix —, a residual conv block, and a detail
branch of 4 / 8 / 8 channels fused into 16 / 8 / 8 / 4. ``local=True`` gives the variant whose
blocks are all windowed and whose absolute position embedding is zero: its alpha at a pixel
depends only on nearby pixels, so tiling can be checked to change nothing.

The weights are random but drawn wider than the library's initialisation (which would predict
alpha ≈ 0.5 everywhere), so the output varies over the image and a wrong input shows. Everything
is deterministic given ``seed``; the global torch RNG is left untouched. About 0.1 MB.
Run ``python -m grounded_inpaint.testing.tiny_vitmatte DIR`` to write one by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from transformers import VitMatteConfig, VitMatteForImageMatting

__all__ = [
    "tiny_vitmatte_config",
    "build_tiny_vitmatte",
    "write_tiny_vitmatte",
    "real_size_vitmatte_config",
    "write_real_size_vitmatte",
    "PREPROCESSOR_CONFIG",
    "main",
]

log = logging.getLogger(__name__)

#: ``preprocessor_config.json`` of the hub's ViTMatte folders.
PREPROCESSOR_CONFIG = {
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "VitMatteImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "rescale_factor": 1 / 255,
    "size_divisibility": 32,
}


def tiny_vitmatte_config(local: bool = False) -> "VitMatteConfig":
    """The tiny ``VitMatteConfig`` (see the module docstring)."""
    from transformers import VitDetConfig, VitMatteConfig

    backbone = VitDetConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, num_channels=4, image_size=64,
        pretrain_image_size=64, patch_size=16, window_size=2, window_block_indices=[0, 1] if local else [0],
        residual_block_indices=[1], use_relative_position_embeddings=True, out_features=["stage2"],
    )
    return VitMatteConfig(backbone_config=backbone, hidden_size=16, convstream_hidden_sizes=[4, 8, 8],
                          fusion_hidden_sizes=[16, 8, 8, 4])


def build_tiny_vitmatte(seed: int = 0, local: bool = False) -> "VitMatteForImageMatting":
    """A tiny ``VitMatteForImageMatting`` with seeded random weights (eval mode, CPU, float32)."""
    from transformers import VitMatteForImageMatting

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VitMatteForImageMatting(tiny_vitmatte_config(local))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim > 1:  # conv / linear weights: wide enough that the output varies
                    param.normal_(0.0, 1.0 / param[0].numel() ** 0.5)
                elif name.endswith("bias"):
                    param.normal_(0.0, 0.1)
                else:  # norm scales: about 1 (the library initialises batch-norm scales near 0)
                    param.normal_(1.0, 0.1)
            if local:  # no absolute positions (zeros stay zeros when resized to any input)
                model.backbone.embeddings.position_embeddings.zero_()
    return model.eval()


def write_tiny_vitmatte(folder: str | Path, seed: int = 0, local: bool = False) -> Path:
    """Write a tiny transformers ViTMatte folder (the layout of hustvl/vitmatte-*) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_vitmatte(seed, local).save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n", encoding="utf-8")
    log.debug("wrote tiny ViTMatte (seed %d%s) to %s", seed, ", local" if local else "", folder)
    return folder


def real_size_vitmatte_config(base: bool = False) -> "VitMatteConfig":
    """The published architecture: hustvl/vitmatte-small-composition-1k (ViT-S, 384 wide, 6 heads) or
    -base- (ViT-B, 768 wide, 12 heads); 12 blocks, windowed attention (14 × 14 patches) in all but
    blocks 3, 6, 9 and 12 (global), residual conv blocks after those, relative positions."""
    from transformers import VitDetConfig, VitMatteConfig

    width, heads = (768, 12) if base else (384, 6)
    backbone = VitDetConfig(
        hidden_size=width, num_hidden_layers=12, num_attention_heads=heads, mlp_ratio=4, num_channels=4, image_size=512,
        pretrain_image_size=224, patch_size=16, window_size=14, window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10],
        residual_block_indices=[2, 5, 8, 11], use_relative_position_embeddings=True, out_features=["stage12"],
    )
    return VitMatteConfig(backbone_config=backbone, hidden_size=width, convstream_hidden_sizes=[48, 96, 192],
                          fusion_hidden_sizes=[256, 128, 64, 32])


def write_real_size_vitmatte(folder: str | Path, seed: int = 0, base: bool = False) -> Path:
    """A ViTMatte of the published size with random weights (for speed and memory figures), in the hub layout."""
    from transformers import VitMatteForImageMatting

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VitMatteForImageMatting(real_size_vitmatte_config(base)).eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n", encoding="utf-8")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m grounded_inpaint.testing.tiny_vitmatte DIR [--seed N] [--local]``."""
    parser = argparse.ArgumentParser(prog="python -m grounded_inpaint.testing.tiny_vitmatte", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--local", action="store_true", help="all attention windowed, no absolute positions")
    args = parser.parse_args(argv)
    write_tiny_vitmatte(args.folder, args.seed, args.local)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
