"""Loader nodes: GroundingDINO and SAM from the model folders (downloaded on first use)."""

from __future__ import annotations

import functools

import torch

from ..py.models import load_detector, load_segmenter
from . import editor, runtime
from .common import CATEGORY, DETECTOR_TYPE, SAM_TYPE, tip

_DEVICE = (["auto", "cpu"], tip("auto: ComfyUI's device (GPU when there is one; follows --cpu, --lowvram, --novram). cpu: always run this model on the CPU.", default="auto"))
_PRECISION = (["auto", "fp32", "fp16", "bf16"], tip(
    "Weights precision. auto: fp32 on the CPU, half precision on GPUs that support it (SAM only; GroundingDINO stays fp32). "
    "fp16/bf16 fall back to fp32 with a warning where the device cannot run them.", default="auto"))


def _load(
    family: str,
    name: str,
    device: str,
    precision: str,
    loader,
    *,
    auto_half: bool,
    auto_order: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16),
):
    """Resolve dropdown entry ``name`` (downloading a known model, with progress), load it with
    ``loader`` on ComfyUI's offload device in the chosen precision, and hand it to the memory manager."""
    bar = runtime.progress_bar(100)
    path = runtime.resolve_choice(family, name, progress=runtime.progress_callback(bar))  # type: ignore[arg-type]
    pinned_cpu = device == "cpu"
    compute = torch.device("cpu") if pinned_cpu else runtime.torch_device()
    dtype = runtime.choose_dtype(precision, compute, auto_half=auto_half, auto_order=auto_order)
    where = "cpu" if pinned_cpu or runtime.offload_device().type == "cpu" else runtime.offload_device()
    # cache=False: ComfyUI's memory manager (through the loader node's output) owns the model's lifetime
    engine = loader(path, device=where, dtype=dtype, download=False, cache=False)
    return runtime.manage(family, runtime.choice_name(name), engine, engine.model, pinned_cpu=pinned_cpu)


class LoadGroundingDino:
    DESCRIPTION = (
        "Loads a text-prompted detector from models/grounding-dino: a transformers GroundingDINO or MM-GroundingDINO "
        "folder (with its own tokenizer), or an original GroundingDINO .pth such as groundingdino_swint_ogc.pth "
        "(converted in memory, its .cfg.py is never run; BERT's tokenizer files are downloaded once into "
        "models/grounding-dino/bert-base-uncased unless a tokenizer or a transformers GroundingDINO folder is there). "
        "Known models that are missing are downloaded there on first use, with progress; offline, the error names "
        "the files and the folder to put them in."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (DETECTOR_TYPE,)
    RETURN_NAMES = ("detector",)
    OUTPUT_TOOLTIPS = ("The GroundingDINO model, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.model_choices("grounding-dino"), tip(
                    "A model in models/grounding-dino (transformers folder or original .pth), or a known one to "
                    "download: grounding-dino-tiny 694 MB, grounding-dino-base 933 MB, MM-GroundingDINO tiny/base/large "
                    "0.7/0.9/1.4 GB (better zero-shot accuracy), groundingdino_swint_ogc.pth 694 MB, "
                    "groundingdino_swinb_cogcoor.pth 938 MB.")),
                "device": _DEVICE,
                "precision": _PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("grounding-dino", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        # an original .pth has no tokenizer: like a missing known model, it is fetched (once, logged)
        loader = functools.partial(load_detector, download_tokenizer=True)
        return (_load("grounding-dino", model_name, device, precision, loader, auto_half=False),)


class LoadSam:
    DESCRIPTION = (
        "Loads a Segment Anything model from models/sams or models/sam2: Meta's SAM sam_vit_b/l/h .pth, SAM-HQ "
        "sam_hq_vit_b/l/h .pth, SAM 2.1 sam2.1_hiera_tiny/small/base_plus/large .pt or .safetensors (as other packs "
        "store them), or transformers folders (sam-vit-*, sam-hq-vit-*, sam2.1-hiera-*). The model family and size are "
        "read from the weights, not the file name. Known models that are missing are downloaded on first use."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (SAM_TYPE,)
    RETURN_NAMES = ("sam_model",)
    OUTPUT_TOOLTIPS = ("The SAM model, managed by ComfyUI's memory manager.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.model_choices("sam"), tip(
                    "A SAM, SAM-HQ or SAM 2.1 checkpoint in models/sams or models/sam2, or a known one to download "
                    "(SAM / SAM-HQ vit_b 375 MB, vit_l 1.2 GB, vit_h 2.5 GB; SAM 2.1 tiny 156 MB … large 898 MB).")),
                "device": _DEVICE,
                "precision": _PRECISION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return runtime.validate_choice("sam", model_name)

    def load(self, model_name: str, device: str = "auto", precision: str = "auto"):
        managed = _load("sam", model_name, device, precision, load_segmenter, auto_half=True)
        editor.remember_model(managed.name, managed)  # a weak reference: the editor's live masks may use it
        return (managed,)
