"""Finding, downloading, loading and caching the detector and SAM models.

A model is named by

* a path to a file or folder (used as is),
* a name inside the models folder (``models/grounding-dino/<name>``, ``models/sams/<name>``), or
* a known downloadable name (:mod:`grounded_inpaint.registry`), fetched into the models folder on
  first use unless downloads are off (then the error says which file to put where).

Loaded models are cached by ``(path, device, dtype)``: asking twice loads once.
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
from .registry import DETECTOR_FOLDER, FAMILY_FOLDERS, Family, find_known, known_models

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_SEGMENTER",
    "list_models_in",
    "list_local_models",
    "list_model_choices",
    "resolve_model",
    "load_detector",
    "load_segmenter",
    "clear_cache",
    "cache_info",
    "parse_dtype",
]

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "grounding-dino-tiny"
DEFAULT_SEGMENTER = "sam-vit-base"

_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")

_cache: "OrderedDict[tuple[str, str, str], object]" = OrderedDict()
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
    return family == "sam" and path.suffix.lower() in _WEIGHT_SUFFIXES


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


def _cached(key: tuple[str, str, str], load: Callable[[], object]) -> object:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    model = load()
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


def cache_info() -> list[tuple[str, str, str]]:
    """The ``(path, device, dtype)`` keys currently cached, oldest first."""
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
):
    """Load (or reuse) a GroundingDINO detector. See :func:`resolve_model` for how ``name`` is found.

    Returns:
        :class:`grounded_inpaint.detector.GroundingDinoDetector`.
    """
    from .detector import GroundingDinoDetector

    path = resolve_model(name, "grounding-dino", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{path} is a single file; GroundingDINO is loaded from a transformers folder (config.json, "
            "model.safetensors, tokenizer files) such as IDEA-Research/grounding-dino-tiny. "
            f"Put that folder into {Path(models_dir) / DETECTOR_FOLDER if models_dir else 'the grounding-dino models folder'}"
        )
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    return _cached(key, lambda: GroundingDinoDetector.from_pretrained(path, device=device, dtype=torch_dtype))


def sam_backend(path: Path) -> Literal["meta", "transformers"]:
    """Which loader reads ``path``: a folder with ``config.json`` is transformers, a file is Meta."""
    return "transformers" if path.is_dir() else "meta"


def load_segmenter(
    name: str | Path = DEFAULT_SEGMENTER,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress: Progress | None = None,
):
    """Load (or reuse) a SAM predictor from a Meta ``.pth``/``.safetensors`` file or a transformers folder.

    Returns:
        :class:`grounded_inpaint.sam.predictor.SamPredictorBase` (Meta or transformers back end).
    """
    from .sam.predictor import HFSamPredictor, MetaSamPredictor

    path = resolve_model(name, "sam", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    if sam_backend(path) == "transformers":
        return _cached(key, lambda: HFSamPredictor.from_pretrained(path, device=device, dtype=torch_dtype))
    return _cached(key, lambda: MetaSamPredictor.from_checkpoint(path, device=device, dtype=torch_dtype))
