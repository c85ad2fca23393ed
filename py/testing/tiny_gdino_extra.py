"""Tiny random-weight stand-ins for the other GroundingDINO file layouts.

* :func:`write_tiny_mm_grounding_dino`: a transformers MM-GroundingDINO folder (``model_type``
  ``mm-grounding-dino``, per-layer box and class heads as the published models have them);
* :func:`write_tiny_original_grounding_dino`: a ``.pth`` in IDEA-Research's original layout
  (``{"model": state_dict}``, ``module.`` prefixes, fused q/k/v projections, BERT pooler and index
  buffers), written from :func:`build_tiny_original_source` through
  :func:`grounded_inpaint.gdino_convert.hub_to_original_state_dict`, so the model it converts back
  to is known exactly.

Both share the 64 px architecture and the tiny BERT vocabulary of
:mod:`grounded_inpaint.testing.tiny_gdino`, are calibrated the same way (every query scores about
0.4–0.85 on any image and prompt) and are deterministic given ``seed``; the global RNG is untouched.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from . import TINY_IMAGE_SIZE
from .tiny_gdino import _calibrate_grounding_dino, tiny_grounding_dino_config, write_bert_tokenizer

if TYPE_CHECKING:
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
    )

__all__ = [
    "OriginalVariant",
    "tiny_mm_grounding_dino_config",
    "build_tiny_mm_grounding_dino",
    "write_tiny_mm_grounding_dino",
    "tiny_original_config",
    "build_tiny_original_source",
    "tiny_original_state_dict",
    "write_tiny_original_grounding_dino",
]

log = logging.getLogger(__name__)

#: ``swin-t``: the tiny Swin of :func:`tiny_grounding_dino_config` (width 8, window 4, one block per
#: stage); ``swin-b``: a differently shaped one (width 10, window 2, depths 1-1-2-1, 1-2-2-4 heads),
#: standing in for the Swin-T / Swin-B difference that the loader must read off the shapes.
OriginalVariant = Literal["swin-t", "swin-b"]

# Added to every tensor of the original-layout source model, so each tensor is distinct and a
# misplaced one changes the outputs.
_PERTURBATION = 0.01


def _save_image_processor(folder: Path) -> None:
    from transformers import GroundingDinoImageProcessor

    GroundingDinoImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE, "longest_edge": TINY_IMAGE_SIZE}).save_pretrained(str(folder))


# --------------------------------------------------------------------------------------------
# MM-GroundingDINO
# --------------------------------------------------------------------------------------------


def tiny_mm_grounding_dino_config() -> "MMGroundingDinoConfig":
    """The tiny GroundingDINO architecture as an ``MMGroundingDinoConfig``, without head sharing
    (``decoder_bbox_embed_share`` and ``decoder_cls_embed_share`` off, as in the published models)."""
    from transformers import MMGroundingDinoConfig

    base = tiny_grounding_dino_config().to_dict()
    for key in ("model_type", "transformers_version", "architectures", "decoder_bbox_embed_share"):
        base.pop(key, None)
    return MMGroundingDinoConfig(**base, decoder_bbox_embed_share=False, decoder_cls_embed_share=False)


def build_tiny_mm_grounding_dino(seed: int = 0) -> "MMGroundingDinoForObjectDetection":
    """The tiny calibrated MM-GroundingDINO (eval mode, CPU, float32); its class-head biases are 0."""
    from transformers import MMGroundingDinoForObjectDetection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MMGroundingDinoForObjectDetection(tiny_mm_grounding_dino_config())
    _calibrate_grounding_dino(model, seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "class_embed" in name and name.endswith("bias"):
                param.zero_()  # the trained init (-4.6) would put every score near 0.01
    return model.eval()


def write_tiny_mm_grounding_dino(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny MM-GroundingDINO in the hub layout (``config.json`` with ``model_type``
    ``mm-grounding-dino``, ``model.safetensors``, 64 px ``preprocessor_config.json``, tiny BERT
    tokenizer) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_mm_grounding_dino(seed)
    model.save_pretrained(str(folder))
    _save_image_processor(folder)
    write_bert_tokenizer(folder, max_length=model.config.text_config.max_position_embeddings)
    log.debug("wrote tiny MM-GroundingDINO (seed %d) to %s", seed, folder)
    return folder


# --------------------------------------------------------------------------------------------
# Original (IDEA-Research) layout
# --------------------------------------------------------------------------------------------


def tiny_original_config(variant: OriginalVariant = "swin-t") -> "GroundingDinoConfig":
    """The config the loader infers back from a tiny original-layout checkpoint.

    It is :func:`tiny_grounding_dino_config` with the values the original checkpoints do not store
    set to the loader's rules (:class:`grounded_inpaint.gdino_convert.OriginalGroundingDinoArch`):
    one BERT head per 64 channels (so 1 here), ``max_text_len`` = BERT's 64 positions.
    """
    config = tiny_grounding_dino_config()
    config.text_config.num_attention_heads = 1
    config.max_text_len = config.text_config.max_position_embeddings
    if variant == "swin-b":
        backbone = config.backbone_config
        backbone.embed_dim = 10
        backbone.depths = [1, 1, 2, 1]
        backbone.num_heads = [1, 2, 2, 4]
        backbone.window_size = 2
        backbone.num_layers = 4
        backbone.hidden_size = 10 * 2**3
    elif variant != "swin-t":
        raise ValueError(f"unknown tiny variant {variant!r}; use swin-t or swin-b")
    return config


def build_tiny_original_source(seed: int = 0, variant: OriginalVariant = "swin-t") -> "GroundingDinoForObjectDetection":
    """The transformers model whose weights :func:`write_tiny_original_grounding_dino` writes.

    Calibrated like the tiny GroundingDINO, then every tensor is perturbed (seeded) so that no two
    tensors hold the same values (eval mode, CPU, float32).
    """
    from transformers import GroundingDinoForObjectDetection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(tiny_original_config(variant))
    _calibrate_grounding_dino(model, seed)
    generator = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        seen: set[int] = set()
        for param in model.parameters():  # shared box heads appear once
            if id(param) not in seen:
                seen.add(id(param))
                param.add_(torch.randn(param.shape, generator=generator) * _PERTURBATION)
    return model.eval()


def _relative_position_index(window: int) -> torch.Tensor:
    """Swin's ``[w², w²]`` index into its relative-position table (the buffer the original file holds)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def tiny_original_state_dict(model: "GroundingDinoForObjectDetection", seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s weights in the original layout, with the extra tensors the real files carry
    (BERT pooler, ``bert.embeddings.position_ids``, Swin ``relative_position_index`` buffers)."""
    from safetensors.torch import load_file

    from ..gdino_convert import hub_to_original_state_dict

    with tempfile.TemporaryDirectory() as tmp:  # the hub layout is what save_pretrained writes
        model.save_pretrained(tmp)
        hub = load_file(str(Path(tmp) / "model.safetensors"))
    original = hub_to_original_state_dict(hub, model.config.decoder_layers, source="tiny GroundingDINO")
    text, swin = model.config.text_config, model.config.backbone_config
    generator = torch.Generator().manual_seed(seed + 11)
    original["bert.pooler.dense.weight"] = torch.randn(text.hidden_size, text.hidden_size, generator=generator)
    original["bert.pooler.dense.bias"] = torch.randn(text.hidden_size, generator=generator)
    original["bert.embeddings.position_ids"] = torch.arange(text.max_position_embeddings)[None]
    index = _relative_position_index(swin.window_size)
    for stage, depth in enumerate(swin.depths):
        for block in range(depth):
            original[f"backbone.0.layers.{stage}.blocks.{block}.attn.relative_position_index"] = index.clone()
    return {k: v.contiguous().clone() for k, v in original.items()}


def write_tiny_original_grounding_dino(
    path: str | Path,
    seed: int = 0,
    *,
    variant: OriginalVariant = "swin-t",
    wrap: bool = True,
    module_prefix: bool = True,
    extra: dict[str, object] | None = None,
) -> Path:
    """Save :func:`build_tiny_original_source` in the original layout with ``torch.save``.

    Arguments:
        path: the ``.pth`` file to write (``.safetensors`` writes a plain safetensors file instead).
        wrap: store ``{"model": state_dict}`` as the published files do (else the bare state dict).
        module_prefix: prefix every key with ``module.`` (a DataParallel training save).
        extra: more top-level entries next to ``"model"`` (e.g. an ``argparse.Namespace``).

    Returns:
        ``path``; the file loads with ``torch.load(path, weights_only=True)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = tiny_original_state_dict(build_tiny_original_source(seed, variant), seed)
    if module_prefix:
        state_dict = {f"module.{k}": v for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path))
    else:
        torch.save({"model": state_dict, **(extra or {})} if wrap else state_dict, path)
    log.debug("wrote tiny original-layout GroundingDINO (%s, seed %d) to %s", variant, seed, path)
    return path
