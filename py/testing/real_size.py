"""Real-size models with random weights, for speed, memory and cancel-latency figures.

No real weights can be downloaded here, so the benchmarks build models of the published sizes with
random weights: the compute and the memory are those of the real models, only the answers are
meaningless. Each is written once into a ComfyUI-style models folder and loaded through the same
loaders users run:

* :func:`write_real_size_grounding_dino`: GroundingDINO Swin-T (172 M parameters, transformers'
  default config = IDEA-Research/grounding-dino-tiny) with a BERT tokenizer of the full 30 522-token
  vocabulary size (the tiny words, the ids GroundingDINO hard-codes, ``[unusedN]`` fill);
* :func:`write_real_size_meta_sam`: SAM ViT-B in Meta's ``.pth`` layout (``sam_vit_b_01ec64.pth``);
* :func:`write_real_size_hf_sam`: the same weights as a transformers ``SamModel`` folder;
* :func:`write_real_size_sam2_video`: SAM 2.1 Hiera-T with its video-tracking weights (memory
  attention, memory encoder, object pointers; 38.9 M parameters as published) in Meta's ``.pt``
  layout (``sam2.1_hiera_tiny.pt``), read by both the image predictor and the video model;
* :func:`write_real_size_sam3_video`: SAM 3 with its video tracker (transformers' default
  ``Sam3VideoConfig`` = facebook/sam3: 860 M parameters, 1008 px) as a transformers folder.

Works with transformers 4 and 5 (the tokenizer goes through :func:`.tiny_gdino.write_bert_tokenizer`).

For memory checks (weights that really occupy memory, but passes that take a second) the same
models can be written with a small input size: :func:`write_real_size_models` with
``small_input=True`` gives GroundingDINO Swin-T resizing to 64 px and a SAM with ViT-B's weights at
a 64 px input (same parameter count but for the positional embeddings).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .tiny_gdino import tiny_vocab, write_bert_tokenizer

__all__ = [
    "REAL_SIZE_NAMES",
    "write_real_size_grounding_dino",
    "write_real_size_meta_sam",
    "write_real_size_hf_sam",
    "write_real_size_models",
    "write_real_size_sam2_video",
    "write_real_size_sam3_video",
]

log = logging.getLogger(__name__)

#: Where :func:`write_real_size_models` puts each model, relative to the models folder.
REAL_SIZE_NAMES = {
    "dino": "grounding-dino/grounding-dino-swint-random",
    "sam_meta": "sams/sam_vit_b_random.pth",
    "sam_hf": "sams/sam-vit-base-random",
    "sam2_video": "sam2/sam2.1_hiera_tiny_random.pt",
    "sam3_video": "sam3/sam3-video-random",
}


def write_real_size_grounding_dino(folder: str | Path, seed: int = 0, *, input_size: int | None = None) -> Path:
    """GroundingDINO Swin-T with random weights as a transformers folder (skipped if already written).

    ``input_size``: the image processor resizes to this side (default: 800 / 1333 as published).
    """
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor

    folder = Path(folder)
    if (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file():
        return folder
    log.info("building GroundingDINO Swin-T (random weights) in %s ...", folder)
    config = GroundingDinoConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    sizes = {} if input_size is None else {"size": {"shortest_edge": input_size, "longest_edge": input_size}}
    GroundingDinoImageProcessor(**sizes).save_pretrained(str(folder))
    vocab = tiny_vocab()
    vocab += [f"[unused{i}]" for i in range(1000, 1000 + config.text_config.vocab_size - len(vocab))]
    write_bert_tokenizer(folder, max_length=512, vocab=vocab)
    return folder


def write_real_size_meta_sam(path: str | Path, seed: int = 0, *, input_size: int | None = None) -> Path:
    """SAM ViT-B with random weights as Meta's ``.pth`` state dict (skipped if already written).

    Meta's initialisation leaves the positional tensors at zero; they get small random values too,
    so attention does real work. ``input_size`` (a multiple of 32): build the encoder for this
    input side instead of 1024 (ViT-B's widths and depth, 2x2 attention windows).
    """
    from dataclasses import replace

    from ..sam.meta_arch import META_SAM_ARCHS, build_meta_sam

    path = Path(path)
    if path.is_file():
        return path
    log.info("building SAM ViT-B (random weights) in %s ...", path)
    arch = META_SAM_ARCHS["vit_b"]
    if input_size is not None:
        arch = replace(arch, img_size=int(input_size), window_size=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_meta_sam(arch)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sam.named_parameters():
            if "pos" in name:
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path


def write_real_size_hf_sam(folder: str | Path, meta_path: str | Path) -> Path:
    """The weights of ``meta_path`` (a Meta SAM ``.pth``) as a transformers ``SamModel`` folder."""
    from transformers import SamImageProcessor

    from ..sam.convert import hf_sam_model_from_meta

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    log.info("converting %s to a transformers SAM folder in %s ...", meta_path, folder)
    state_dict = torch.load(str(meta_path), map_location="cpu", weights_only=True)
    hf_sam_model_from_meta(state_dict, str(meta_path)).save_pretrained(str(folder))
    SamImageProcessor().save_pretrained(str(folder))
    return folder


def write_real_size_models(models_dir: str | Path, *, hf_sam: bool = True, small_input: bool = False) -> dict[str, Path]:
    """Write (once) every real-size model into ``models_dir``; returns ``{role: path}`` (see :data:`REAL_SIZE_NAMES`).

    ``small_input``: the models take 64 px inputs (real weights, quick passes; see the module doc).
    """
    root = Path(models_dir)
    size = 64 if small_input else None
    paths = {
        "dino": write_real_size_grounding_dino(root / REAL_SIZE_NAMES["dino"], input_size=size),
        "sam_meta": write_real_size_meta_sam(root / REAL_SIZE_NAMES["sam_meta"], input_size=size),
    }
    if hf_sam:
        paths["sam_hf"] = write_real_size_hf_sam(root / REAL_SIZE_NAMES["sam_hf"], paths["sam_meta"])
    return paths


def write_real_size_sam2_video(path: str | Path, seed: int = 0) -> Path:
    """SAM 2.1 Hiera-T (image and video-tracking weights, random) as Meta's ``.pt`` (skipped if written).

    The memory modules have the published sizes (transformers' ``Sam2VideoConfig`` defaults: 7
    memories, 4 memory-attention layers of width 256, a 64-channel memory encoder); every tensor is
    random (``scale`` of the fuser and the positional tensors included, so every path does work), and
    the object score leans towards "present" so that random weights keep tracking.
    """
    from transformers import Sam2VideoModel

    from ..sam.convert_sam2 import SAM2_ARCHS, hf_sam2_video_config, hf_to_original_sam2_state_dict

    path = Path(path)
    if path.is_file():
        return path
    log.info("building SAM 2.1 Hiera-T video model (random weights) in %s ...", path)
    config = hf_sam2_video_config(SAM2_ARCHS["hiera_tiny"], {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if tensor.numel() < 4096 or "pos" in name or name.endswith("scale"):
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
        # SAM 2.1 keeps a mask only where its object score is positive; random weights would mostly say
        # "absent" and track nothing, so lean the score towards "present" (the work per frame is the same)
        model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(4.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": hf_to_original_sam2_state_dict(model.state_dict())}, path)
    return path


def write_real_size_sam3_video(folder: str | Path, seed: int = 0) -> Path:
    """SAM 3 with its video tracker, random weights, as a transformers folder (skipped if written).

    transformers' default ``Sam3VideoConfig`` (facebook/sam3's sizes: a 1008 px ViT detector, a CLIP
    text encoder, the DETR heads and the SAM 2-style tracker; 860 M parameters, 3.4 GB in fp32),
    the tiny CLIP tokenizer (any token id fits the real vocabulary) and the processor settings of
    facebook/sam3. The tracker's object score leans towards "present", as for SAM 2.1. Random
    detections score about 0.25: run it with a low threshold and ``max_objects`` to track a given
    number of objects. Building it takes a few minutes and about 4 GB of memory.
    """
    import json

    from transformers import CLIPTokenizer, Sam3VideoConfig, Sam3VideoModel

    from .tiny_diffusers import write_tiny_clip_tokenizer

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    log.info("building SAM 3 video (860 M parameters, random weights) in %s ...", folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    config = Sam3VideoConfig()
    text = config.detector_config.text_config
    text.bos_token_id, text.eos_token_id, text.pad_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3VideoModel(config).eval()
    with torch.no_grad():
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(4.0)
    model.save_pretrained(str(folder))
    del model
    side = int(config.detector_config.vision_config.image_size)
    common = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
              "size": {"height": side, "width": side}}
    mask = int(config.low_res_mask_size)
    (folder / "processor_config.json").write_text(json.dumps({
        "image_processor": {**common, "image_processor_type": "Sam3ImageProcessor", "mask_size": {"height": mask, "width": mask}},
        "processor_class": "Sam3VideoProcessor", "target_size": side,
        "video_processor": {**common, "return_metadata": False, "video_processor_type": "Sam2VideoVideoProcessor"},
    }, indent=2) + "\n", encoding="utf-8")
    return folder
