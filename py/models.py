"""Finding, downloading, loading and caching the detector and SAM models.

A model is named by

* a path to a file or folder (used as is),
* a name inside the models folder (``models/grounding-dino/<name>``, ``models/sams/<name>``), or
* a known downloadable name (:mod:`grounded_inpaint.registry`), fetched into the models folder on
  first use unless downloads are off (then the error says which file to put where).

Loaded models are cached by ``(family, path, device, dtype)``: asking twice loads once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Literal

import torch

from .download import Progress, download_known_model
from .errors import ModelNotFoundError
from .registry import FAMILY_FOLDERS, Family, find_known, known_models

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_SEGMENTER",
    "list_models_in",
    "list_local_models",
    "list_model_choices",
    "resolve_model",
    "load_detector",
    "load_segmenter",
    "sam_family",
    "load_sam3",
    "DEFAULT_SAM3",
    "clear_cache",
    "cache_info",
    "parse_dtype",
    "model_display_name",
    "load_matting_model",
    "DEFAULT_MATTING_MODEL",
]

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "grounding-dino-tiny"
DEFAULT_SEGMENTER = "sam-vit-base"

_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")

_cache: "OrderedDict[tuple[str, str, str, str], object]" = OrderedDict()
_cache_lock = threading.Lock()
#: How many loaded models the cache keeps (least recently used go first).
CACHE_SIZE = 4


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype:
    """``"fp32" | "fp16" | "bf16"`` (or a torch dtype) → torch dtype; ``None``/``"auto"`` → float32."""
    if isinstance(name, torch.dtype):
        return name
    table = {None: torch.float32, "auto": torch.float32, "fp32": torch.float32, "float32": torch.float32,
             "fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"unknown precision {name!r}; use one of auto, fp32, fp16, bf16")
    return table[name]


def _is_model_entry(path: Path, family: Family) -> bool:
    if path.name.startswith("."):
        return False  # hidden, e.g. an unfinished download
    if path.is_dir():
        return (path / "config.json").is_file()
    # SAM checkpoints and original GroundingDINO checkpoints (groundingdino_swint_ogc.pth) are single files
    return family in ("sam", "grounding-dino") and path.suffix.lower() in _WEIGHT_SUFFIXES


def list_models_in(folder: str | Path, family: Family) -> list[str]:
    """Names of the ``family`` models directly inside ``folder`` (files or HF folders), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _is_model_entry(p, family))


def family_folders(models_dir: str | Path, family: Family) -> list[Path]:
    """``models_dir/<folder>`` for each folder of ``family`` (:data:`FAMILY_FOLDERS`), main folder first."""
    return [Path(models_dir) / name for name in FAMILY_FOLDERS[family]]


def list_local_models(models_dir: str | Path | None, family: Family) -> list[str]:
    """Names of the models of ``family`` present in its folders under ``models_dir`` (each folder sorted)."""
    if models_dir is None:
        return []
    names: list[str] = []
    for folder in family_folders(models_dir, family):
        names += [n for n in list_models_in(folder, family) if n not in names]
    return names


def list_model_choices(models_dir: str | Path | None, family: Family) -> list[str]:
    """Local models first, then the known downloadable ones not present yet."""
    local = list_local_models(models_dir, family)
    return local + [m.name for m in known_models(family) if m.name not in local]


def resolve_model(
    name: str | Path,
    family: Family,
    models_dir: str | Path | None,
    *,
    download: bool = True,
    progress: Progress | None = None,
) -> Path:
    """The path of model ``name``, downloading a known model into ``models_dir`` if needed.

    Raises:
        ModelNotFoundError: the name is neither a path, nor in the models folder, nor known — or it
            is known but downloads are off / failed. The message names the folder and the choices.
    """
    text = str(name).strip()
    if not text:
        raise ModelNotFoundError(f"no {family} model was named; choose one of: {', '.join(list_model_choices(models_dir, family))}")
    candidate = Path(text).expanduser()
    if candidate.exists() and (candidate.is_absolute() or models_dir is None or len(candidate.parts) > 1):
        return candidate
    folders = family_folders(models_dir, family) if models_dir is not None else []
    for place in folders:
        if (place / text).exists() and _is_model_entry(place / text, family):
            return place / text
    folder = folders[0] if folders else None
    known = find_known(text, family)
    if known is not None:
        folder = Path(models_dir) / known.folder if models_dir is not None else None
        if folder is None:
            raise ModelNotFoundError(
                f"{known.name} needs a models folder to be downloaded into (e.g. --models ./models); "
                f"or download it from {known.source} yourself and pass its path"
            )
        target = folder / known.name
        if not download:
            raise ModelNotFoundError(
                f"{known.name} is not in {folder} and downloads are turned off. Download it from {known.source} "
                f"and put it at {target}" + (f" (files: {', '.join(known.files)})" if known.files else "")
            )
        return download_known_model(known, folder, progress=progress)
    local = list_local_models(models_dir, family)
    where = f" in {' or '.join(str(f) for f in folders)}" if folders else ""
    raise ModelNotFoundError(
        f"unknown {family} model {text!r}: no such file{where}. Choose one of: "
        f"{', '.join(local + [m.name for m in known_models(family) if m.name not in local])}"
    )


def _cached(family: str, key: tuple[str, str, str], load: Callable[[], object], use_cache: bool = True) -> object:
    """The model cached under ``(family, path, device, dtype)``, loading it on a miss (LRU, :data:`CACHE_SIZE`).

    ``use_cache=False`` loads a fresh model and keeps no reference to it (its owner decides when it
    is freed: ComfyUI's memory manager, for the nodes).
    """
    if not use_cache:
        model = load()
        log.info("loaded %s", model_display_name(model))
        return model
    key = (family, *key)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    model = load()
    log.info("loaded %s", model_display_name(model))
    with _cache_lock:
        _cache[key] = model
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def clear_cache() -> None:
    """Drop every cached model (their memory is freed once nothing else holds them)."""
    with _cache_lock:
        _cache.clear()


def cache_info() -> list[tuple[str, str, str, str]]:
    """The ``(family, path, device, dtype)`` keys currently cached, oldest first.

    The family is part of the key, so one path read as a detector and as a segmenter never mixes.
    """
    with _cache_lock:
        return list(_cache)


def load_detector(
    name: str | Path = DEFAULT_DETECTOR,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress: Progress | None = None,
    tokenizer: str | Path | None = None,
    download_tokenizer: bool | None = None,
    cache: bool = True,
):
    """Load (or reuse) a GroundingDINO detector. See :func:`resolve_model` for how ``name`` is found.

    ``name`` may be a transformers folder (GroundingDINO or MM-GroundingDINO, by ``config.json``'s
    ``model_type``) or an original GroundingDINO checkpoint file (``groundingdino_swint_ogc.pth``,
    ``groundingdino_swinb_cogcoor.pth``), converted in memory by
    :func:`grounded_inpaint.gdino_convert.load_original_grounding_dino`.

    Arguments:
        tokenizer: for original checkpoints: a folder with bert-base-uncased's tokenizer files.
            Default: ``bert-base-uncased/`` next to the checkpoint or in the grounding-dino folders,
            or any transformers GroundingDINO folder there (same BERT vocabulary).
        download_tokenizer: for original checkpoints without a local tokenizer: fetch it once into
            ``<checkpoint folder>/bert-base-uncased`` (logged). Defaults to ``download``.
        cache: reuse a model this process loaded before and keep this one for later calls; ``False``
            loads afresh and keeps no reference (ComfyUI's memory manager then owns the model).

    Returns:
        :class:`grounded_inpaint.detector.GroundingDinoDetector`.
    """
    from .detector import GroundingDinoDetector

    path = resolve_model(name, "grounding-dino", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    if not path.is_dir():
        from .gdino_convert import load_original_grounding_dino

        search = family_folders(models_dir, "grounding-dino") if models_dir is not None else []
        return _cached("grounding-dino", key, lambda: load_original_grounding_dino(
            path, tokenizer_folder=tokenizer, search=search,
            download_tokenizer=download if download_tokenizer is None else download_tokenizer,
            device=device, dtype=torch_dtype,
        ), cache)
    return _cached("grounding-dino", key, lambda: GroundingDinoDetector.from_pretrained(path, device=device, dtype=torch_dtype), cache)


def sam_backend(path: Path) -> Literal["meta", "transformers"]:
    """Which loader reads ``path``: a folder with ``config.json`` is transformers, a file is Meta."""
    return "transformers" if path.is_dir() else "meta"


SamFamily = Literal["sam", "sam_hq", "sam2"]


def sam_family(path: Path) -> SamFamily:
    """Which segmenter ``path`` holds, from its contents (never its name).

    A transformers folder is read from ``config.json``'s ``model_type`` (``sam``, ``sam_hq``, ``sam2``;
    ``sam2_video`` folders hold the same image weights). A single file is read from its tensor names:
    ``mask_decoder.hf_token.*`` → SAM-HQ, ``image_encoder.trunk.*`` → SAM 2, else Meta SAM (whose
    loader explains any other content).

    Raises:
        CheckpointError: the folder's ``config.json`` is unreadable or names another model type.
    """
    import json

    from .errors import CheckpointError

    if path.is_dir():
        config = path / "config.json"
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{config} could not be read as JSON ({exc}); download the folder again") from None
        table = {"sam": "sam", "sam_hq": "sam_hq", "sam2": "sam2", "sam2_video": "sam2"}
        if model_type not in table:
            raise CheckpointError(
                f"{path} holds a {model_type or 'unknown'!r} model (config.json model_type), not a segmenter; "
                "SAM folders have model_type 'sam', 'sam_hq' or 'sam2' (e.g. facebook/sam-vit-base, "
                "syscv-community/sam-hq-vit-base, facebook/sam2.1-hiera-tiny)"
            )
        return table[model_type]  # type: ignore[return-value]
    from .checkpoints import load_state_dict
    from .sam.convert_hq import is_sam_hq_state_dict
    from .sam.convert_sam2 import is_sam2_state_dict

    keys = _checkpoint_keys(path, load_state_dict)
    if is_sam_hq_state_dict(keys):
        return "sam_hq"
    if is_sam2_state_dict(keys):
        return "sam2"
    return "sam"


def _checkpoint_keys(path: Path, load: Callable[[Path], dict]) -> list[str]:
    """Tensor names of a checkpoint; safetensors headers are read without loading the tensors."""
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
            if keys and all(k.startswith("module.") for k in keys):
                keys = [k[len("module."):] for k in keys]
            return keys
        except Exception:  # unreadable header: the full loader raises the proper CheckpointError
            pass
    try:  # zip-format pickles (every torch.save since 1.6) map lazily: names without reading the tensors
        import argparse

        from .checkpoints import unwrap_state_dict

        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        return list(unwrap_state_dict(obj, str(path)).keys())
    except Exception:  # legacy format, refused or corrupt pickle: the full loader explains or succeeds
        return list(load(path).keys())


def load_segmenter(
    name: str | Path = DEFAULT_SEGMENTER,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress: Progress | None = None,
    cache: bool = True,
):
    """Load (or reuse) a SAM, SAM-HQ or SAM 2.1 predictor from a file or a transformers folder.

    The family is read from the contents (:func:`sam_family`): Meta SAM ``.pth``/``.safetensors``,
    official SAM-HQ ``sam_hq_vit_*.pth`` and Meta's SAM 2.1 ``.pt``/``.safetensors`` files are
    converted in memory; transformers folders (``sam``, ``sam_hq``, ``sam2``) load directly.
    ``cache``: as in :func:`load_detector`.

    Returns:
        :class:`grounded_inpaint.sam.predictor.SamPredictorBase`: ``MetaSamPredictor``,
        ``HFSamPredictor``, ``HFSamHQPredictor`` or ``Sam2Predictor``.
    """
    from .sam.predictor import HFSamPredictor, MetaSamPredictor

    path = resolve_model(name, "sam", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))

    def load():
        family = sam_family(path)
        if family == "sam_hq":
            from .sam.hq import HFSamHQPredictor as cls
        elif family == "sam2":
            from .sam.sam2 import Sam2Predictor as cls
        elif sam_backend(path) == "transformers":
            cls = HFSamPredictor
        else:
            cls = MetaSamPredictor
        if path.is_dir():
            return cls.from_pretrained(path, device=device, dtype=torch_dtype)
        return cls.from_checkpoint(path, device=device, dtype=torch_dtype)

    return _cached("sam", key, load, cache)


#: The SAM 3 model the loader uses when none is named (a gated download: see the registry).
DEFAULT_SAM3 = "sam3"


def load_sam3(
    name: str | Path = DEFAULT_SAM3,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress: Progress | None = None,
    cache: bool = True,
):
    """Load (or reuse) a SAM 3 text → instance-mask model from a transformers folder in ``models/sam3``.

    See :func:`resolve_model` for how ``name`` is found; ``cache`` as in :func:`load_detector`.

    Returns:
        :class:`grounded_inpaint.sam3.Sam3Segmenter`.

    Raises:
        ModelNotFoundError: the name is unknown, or it is a single file (e.g. Meta's ``sam3.pt``).
        CheckpointError: the folder is not a loadable SAM 3 folder.
        ImportError: transformers is too old for SAM 3, or torchvision is missing (the message gives
            the pip command).
    """
    from .sam3 import Sam3Segmenter

    path = resolve_model(name, "sam3", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{path} is a single file; SAM 3 is loaded from a transformers folder (config.json, model.safetensors, "
            "tokenizer files) such as facebook/sam3 — Meta's sam3.pt is not read. Put that folder into "
            f"{Path(models_dir) / 'sam3' if models_dir else 'the sam3 models folder'}"
        )
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    return _cached("sam3", key, lambda: Sam3Segmenter.from_pretrained(path, device=device, dtype=torch_dtype), cache)


#: The ViTMatte model the matting loader uses when none is named.
DEFAULT_MATTING_MODEL = "vitmatte-small-composition-1k"


def load_matting_model(
    name: str | Path = DEFAULT_MATTING_MODEL,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress: Progress | None = None,
    cache: bool = True,
):
    """Load (or reuse) a ViTMatte matting model from a transformers folder in ``models/vitmatte``.

    See :func:`resolve_model` for how ``name`` is found (``vitmatte-small-composition-1k`` and
    ``vitmatte-base-composition-1k`` download on first use); ``cache`` as in :func:`load_detector`.

    Returns:
        :class:`grounded_inpaint.matting.vitmatte.VitMatte`.

    Raises:
        ModelNotFoundError: the name is unknown, or missing and not downloadable (offline: the
            message names the files and the folder).
        CheckpointError: a single file, another model's folder, a folder without
            ``model.safetensors``, or weights that do not load (the message says which).
    """
    from .matting.vitmatte import VitMatte

    path = resolve_model(name, "vitmatte", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    return _cached("vitmatte", key, lambda: VitMatte.from_pretrained(path, device=device, dtype=torch_dtype), cache)


_SWIN_SIZES = {96: "Swin-T", 128: "Swin-B", 192: "Swin-L"}
_VITMATTE_SIZES = {384: "ViTMatte-S", 768: "ViTMatte-B"}
_SAM_SIZES = {768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H"}
_HIERA_SIZES = {(96, (1, 2, 7, 2)): "Hiera-T", (96, (1, 2, 11, 2)): "Hiera-S", (112, (2, 3, 16, 3)): "Hiera-B+",
                (144, (2, 6, 36, 4)): "Hiera-L"}


def model_display_name(engine: object) -> str:
    """What a loaded model is, in words users know: ``"GroundingDINO Swin-T"``, ``"SAM ViT-B"``,
    ``"SAM-HQ ViT-H"``, ``"SAM 2.1 Hiera-T"``, ``"SAM 3"``; sizes that match no published model read
    ``"(custom)"``, e.g. ``"SAM (custom ViT, width 16)"``.

    Arguments:
        engine: a detector, SAM predictor, SAM 3 segmenter or matting model of this package (its
            ``model`` is read).
    """
    model = getattr(engine, "model", engine)
    config = getattr(model, "config", None)
    kind = type(model).__name__
    if kind in ("GroundingDinoForObjectDetection", "MMGroundingDinoForObjectDetection"):
        family = "MM-GroundingDINO" if kind.startswith("MM") else "GroundingDINO"
        width = int(getattr(config.backbone_config, "embed_dim", 0) or 0)
        return f"{family} {_SWIN_SIZES.get(width, f'(custom Swin, width {width})')}"
    if kind in ("SamModel", "SamHQModel"):
        family = "SAM-HQ" if kind == "SamHQModel" else "SAM"
        width = int(config.vision_config.hidden_size)
        return f"{family} {_SAM_SIZES.get(width, f'(custom ViT, width {width})')}"
    if kind in ("Sam2Model", "Sam2VideoModel"):
        vision = config.vision_config
        trunk = getattr(vision, "backbone_config", vision)
        width = int(getattr(trunk, "hidden_size", 0) or 0)
        stages = tuple(int(b) for b in getattr(trunk, "blocks_per_stage", ()) or ())
        video = " video" if kind == "Sam2VideoModel" else ""
        return f"SAM 2.1{video} {_HIERA_SIZES.get((width, stages), f'(custom Hiera, width {width})')}"
    if kind == "Sam3Model":
        return "SAM 3"
    if kind == "VitMatteForImageMatting":
        width = int(getattr(config.backbone_config, "hidden_size", 0) or 0)
        return _VITMATTE_SIZES.get(width, f"ViTMatte (custom ViT, width {width})")
    if kind == "Sam3VideoModel":
        return "SAM 3 video"
    image_encoder = getattr(model, "image_encoder", None)
    if image_encoder is not None and hasattr(image_encoder, "patch_embed"):  # Meta's segment_anything Sam
        width = int(image_encoder.patch_embed.proj.out_channels)
        return f"SAM {_SAM_SIZES.get(width, f'(custom ViT, width {width})')}"
    return kind
