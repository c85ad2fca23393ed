"""Write a small random-weight checkpoint that ComfyUI loads as an SD 1.5 *inpainting* model.

Used by the example-workflow integration test so every workflow can run end to end offline.
The UNet is the smallest one ComfyUI still detects as SD1.x: ``model_channels`` 320 and a 768-wide
text context are what the detection matches on, so those stay, but it has a single resolution
level, one residual block and one transformer block (9 input channels = an inpainting UNet). CLIP
and the VAE have fixed shapes in ComfyUI, so they are full size with random weights.

Run it with a Python that has ComfyUI's requirements (the shapes come from ComfyUI's own classes):

    COMFYUI_DIR=/path/to/ComfyUI python tools/write_tiny_sd15_inpaint.py OUT.safetensors

This is a tool, not part of the library: ``py/`` never imports ComfyUI.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

log = logging.getLogger("write_tiny_sd15_inpaint")

#: The tiny UNet: the fields ComfyUI's SD15 detection compares (model_channels 320, context_dim
#: 768, no linear transformer projections, no ADM) are SD 1.5's; the depth is cut to the minimum.
TINY_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 9, "model_channels": 320, "num_res_blocks": [1], "transformer_depth": [1],
    "channel_mult": [1], "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768,
    "num_heads": 8, "transformer_depth_output": [1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _comfy_on_path() -> None:
    root = os.environ.get("COMFYUI_DIR")
    if not root or not (Path(root) / "comfy").is_dir():
        raise SystemExit("set COMFYUI_DIR to a ComfyUI checkout (the folder holding main.py and comfy/)")
    if root not in sys.path:
        sys.path.insert(0, root)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # only shapes are needed; never touch a GPU (or its driver) here


def _randomise(state_dict: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Small random weights: norm scales 1, biases 0, everything else N(0, 0.02); integer buffers kept."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point():
            out[name] = tensor.clone()
        elif name.endswith("bias"):
            out[name] = torch.zeros(tensor.shape)
        elif tensor.ndim == 1 and name.endswith("weight"):
            out[name] = torch.ones(tensor.shape)
        else:
            out[name] = torch.randn(tensor.shape, generator=g) * 0.02
    return out


def build_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with the key names of an original (LDM-format) SD 1.5 file."""
    _comfy_on_path()
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init  # no init work: every tensor is overwritten below
    unet = UNetModel(**TINY_UNET, operations=ops)
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    vae = AutoencoderKL(ddconfig=SD_VAE, embed_dim=4)
    sd: dict[str, torch.Tensor] = {}
    for prefix, module in (("model.diffusion_model.", unet), ("cond_stage_model.", clip), ("first_stage_model.", vae)):
        for name, tensor in module.state_dict().items():
            sd[prefix + name] = tensor
    return _randomise(sd, seed)


def write(path: str | Path, seed: int = 0) -> Path:
    """Write the checkpoint as fp16 safetensors to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in build_state_dict(seed).items()}
    save_file(sd, str(path))
    log.info("wrote %s (%d tensors, %.0f MB)", path, len(sd), path.stat().st_size / 2**20)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .safetensors file to write (e.g. models/checkpoints/tiny-sd15-inpainting.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write(args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
