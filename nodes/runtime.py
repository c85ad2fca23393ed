"""The ComfyUI services the nodes use, in one place, each with a plain fallback.

Inside ComfyUI these call ``comfy.model_management``, ``comfy.model_patcher``, ``comfy.utils``
and ``folder_paths``. Outside ComfyUI (tests, tools) the imports fail and the fallbacks run: CPU,
no progress bar, no cancel, model folders from ``GROUNDED_INPAINT_MODELS`` or ``./models``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..py.models import list_models_in
from ..py.registry import FAMILY_FOLDERS, Family, find_known, known_models

log = logging.getLogger("grounded_inpaint.nodes")

FOLDERS: dict[str, tuple[str, ...]] = FAMILY_FOLDERS


def _comfy_mm():
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return None
    return mm


def _folder_paths():
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


# ----------------------------------------------------------------------------- devices


def torch_device() -> torch.device:
    """ComfyUI's compute device (honours ``--cpu``, ``--directml``, ...); CPU outside ComfyUI."""
    mm = _comfy_mm()
    return mm.get_torch_device() if mm is not None else torch.device("cpu")


def offload_device() -> torch.device:
    """Where models wait when not in use (CPU unless ``--highvram``/``--gpu-only``)."""
    mm = _comfy_mm()
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE, MASK) live between nodes."""
    mm = _comfy_mm()
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def choose_dtype(
    precision: str,
    device: torch.device,
    *,
    auto_half: bool,
    auto_order: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16),
) -> torch.dtype:
    """The dtype for ``precision`` (auto / fp32 / fp16 / bf16) on ``device``.

    Half precision is used only where the device supports it; otherwise fp32 is used and a warning
    says why. ``auto`` picks the first of ``auto_order`` that ComfyUI says the GPU supports when
    ``auto_half`` (e.g. ``(torch.bfloat16,)`` for a model trained in bf16 that overflows in fp16).
    """
    mm = _comfy_mm()
    if precision == "fp32":
        return torch.float32
    if device.type == "cpu":
        if precision == "bf16":
            return torch.bfloat16
        if precision == "fp16":
            log.warning("fp16 is not supported for these models on the CPU; using fp32 (bf16 works on the CPU)")
        return torch.float32
    fp16_ok = mm.should_use_fp16(device, prioritize_performance=False) if mm is not None else device.type in ("cuda", "mps")
    bf16_ok = mm.should_use_bf16(device, prioritize_performance=False) if mm is not None else (
        device.type == "cuda" and torch.cuda.is_bf16_supported())
    if precision == "auto":
        if not auto_half:
            return torch.float32
        supported = {torch.float16: fp16_ok, torch.bfloat16: bf16_ok}
        return next((d for d in auto_order if supported.get(d)), torch.float32)
    if precision == "fp16" and fp16_ok:
        return torch.float16
    if precision == "bf16" and bf16_ok:
        return torch.bfloat16
    log.warning("%s is not supported on %s; using fp32", precision, device)
    return torch.float32


# ----------------------------------------------------------------------------- memory management


class _Holder(torch.nn.Module):
    """Gives ComfyUI's ModelPatcher a plain module to move (ours expose a read-only ``device``).

    ComfyUI logs the class name of what it loads ("Requested to load …"), so each model gets a
    subclass named after it (:func:`_holder_class`): "GroundingDINO Swin-T", "SAM ViT-B".
    """

    def __init__(self, inner: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner = inner
        self.device = device


_holder_classes: dict[str, type[_Holder]] = {}


def _holder_class(display_name: str) -> type[_Holder]:
    """A :class:`_Holder` subclass whose ``__name__`` is ``display_name`` (one class per name)."""
    if display_name not in _holder_classes:
        _holder_classes[display_name] = type(display_name, (_Holder,), {"__module__": __name__, "__qualname__": display_name})
    return _holder_classes[display_name]


@dataclass
class ManagedModel:
    """A loaded detector or SAM predictor plus the ComfyUI ModelPatcher that moves it.

    ``engine`` is the library object (``GroundingDinoDetector`` or a SAM predictor); ``patcher`` is
    ``None`` outside ComfyUI or when the model was pinned to the CPU.
    """

    kind: str
    name: str
    engine: Any
    patcher: Any = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: What the model is, as ComfyUI's log and our messages name it ("SAM ViT-B").
    display_name: str = ""


def manage(kind: str, name: str, engine: Any, module: torch.nn.Module, *, pinned_cpu: bool) -> ManagedModel:
    """Wrap ``module`` (the engine's weights) so ComfyUI's memory manager can load and evict it.

    The returned object (and ComfyUI's cache of the loader node's output) is the only owner of the
    engine: the library keeps no reference (the loaders load with ``cache=False``), so when ComfyUI
    drops the output ("Unload models" / ``POST /free``) the weights and the engine's feature-cache
    entries are freed with it.
    """
    from ..py.models import model_display_name

    display = model_display_name(engine)
    mm = _comfy_mm()
    if mm is None or pinned_cpu:
        return ManagedModel(kind, name, engine, display_name=display)
    import comfy.model_patcher  # type: ignore[import-not-found]

    holder = _holder_class(display)(module, offload_device())
    patcher = comfy.model_patcher.ModelPatcher(holder, load_device=torch_device(), offload_device=offload_device())
    return ManagedModel(kind, name, engine, patcher, display_name=display)


@contextlib.contextmanager
def models_on_device(*models: ManagedModel) -> Iterator[None]:
    """Load the models onto ComfyUI's device for the duration of a node's work.

    Loaded in full (our modules are not built from ``comfy.ops``, so a partial load would leave
    layers behind on the CPU). In ``--lowvram``/``--novram`` mode they are unloaded again right
    after; otherwise they stay until ComfyUI needs the memory or "Unload models" is pressed.
    """
    mm = _comfy_mm()
    patchers = [m.patcher for m in models if m.patcher is not None]
    if mm is None or not patchers:
        yield
        return
    mm.load_models_gpu(patchers, force_full_load=True)
    try:
        yield
    finally:
        if getattr(mm, "vram_state", None) in (getattr(mm.VRAMState, "LOW_VRAM", None), getattr(mm.VRAMState, "NO_VRAM", None)):
            _unload(mm, patchers)


def _unload(mm: Any, patchers: list[Any]) -> None:
    loaded = getattr(mm, "current_loaded_models", None)
    if loaded is None:
        return
    for i in range(len(loaded) - 1, -1, -1):
        if any(loaded[i].model is p for p in patchers) and loaded[i].model_unload():
            loaded.pop(i)
    mm.soft_empty_cache()


# ----------------------------------------------------------------------------- progress and cancel


class _NoProgress:
    def update(self, value: int) -> None:
        pass

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        pass


def progress_bar(total: int):
    """``comfy.utils.ProgressBar(total)`` (shown on the node), or a silent stand-in."""
    try:
        import comfy.utils  # type: ignore[import-not-found]
    except ImportError:
        return _NoProgress()
    return comfy.utils.ProgressBar(total)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel.

    The library calls it between images and between the layers of every model pass (see
    ``grounded_inpaint.interrupt``), so Cancel takes effect within a layer's time.
    """
    mm = _comfy_mm()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def progress_callback(bar) -> Any:
    """``progress(done, total)`` for the library's batch loops, shown on the node by ``bar``."""

    def report(done: int, total: int) -> None:
        if total:
            bar.update_absolute(done, total)

    return report


def device_stages(**stages: ManagedModel):
    """``stage(name)`` for the library's batch loops: while stage ``name`` runs, its model is on
    ComfyUI's device (one stage at a time, so a low-VRAM GPU needs room for one model only)."""
    return lambda name: models_on_device(stages[name])


# ----------------------------------------------------------------------------- model folders


def register_model_folders() -> None:
    """Add ``models/grounding-dino``, ``models/sams``, ``models/sam2`` and ``models/sam3`` to ComfyUI's
    folder registry.

    Paths that ``extra_model_paths.yaml`` or other packs registered under the same names stay.
    """
    fp = _folder_paths()
    if fp is None:
        return
    for folders in FOLDERS.values():
        for folder in folders:
            default = os.path.join(fp.models_dir, folder)
            existing = fp.folder_names_and_paths.get(folder)
            if existing is None or default not in existing[0]:
                fp.add_model_folder_path(folder, default)


def _folder_paths_named(folder: str) -> list[Path]:
    fp = _folder_paths()
    if fp is not None:
        try:
            return [Path(p) for p in fp.get_folder_paths(folder)]
        except KeyError:
            return [Path(fp.models_dir) / folder]
    root = Path(os.environ.get("GROUNDED_INPAINT_MODELS", "models"))
    return [root / folder]


def model_folders(family: Family) -> list[Path]:
    """The folders searched for ``family`` models (every path of each of its folder names, in order)."""
    paths: list[Path] = []
    for folder in FOLDERS[family]:
        paths += [p for p in _folder_paths_named(folder) if p not in paths]
    return paths


#: How a dropdown entry of a model that is not on disk yet ends: ``"sam-vit-base  (download 375 MB)"``.
DOWNLOAD_MARK = "  (download "


def download_label(name: str, size_text: str) -> str:
    """The dropdown entry of a known model that is not on disk: its name, then ``(download SIZE)``."""
    return f"{name}{DOWNLOAD_MARK}{size_text})"


def choice_name(entry: str) -> str:
    """The model name of a dropdown entry (``download_label``'s suffix removed); plain names stay."""
    return entry.split(DOWNLOAD_MARK, 1)[0] if entry.endswith(")") and DOWNLOAD_MARK in entry else entry


def _present(family: Family) -> list[str]:
    present: list[str] = []
    for folder in model_folders(family):
        for name in list_models_in(folder, family):
            if name not in present:
                present.append(name)
    return present


def model_choices(family: Family) -> list[str]:
    """Dropdown entries: the models on disk (by name), then the known downloadable ones not on disk,
    marked with their download size (``"grounding-dino-tiny  (download 694 MB)"``)."""
    present = _present(family)
    return present + [download_label(m.name, m.size_text) for m in known_models(family) if m.name not in present]


def validate_choice(family: Family, entry: str) -> bool | str:
    """ComfyUI's ``VALIDATE_INPUTS`` answer for a model dropdown: ``True``, or a message listing the choices.

    Accepts a dropdown entry or the bare model name (saved workflows and API users send
    ``"grounding-dino-tiny"`` whether or not it is on disk yet).
    """
    name = choice_name(str(entry))
    known = {choice_name(c) for c in model_choices(family)}
    if name in known:
        return True
    folders = ", ".join(str(f) for f in model_folders(family))
    return f"{entry!r} is not a {family} model in {folders}; choose one of: {', '.join(sorted(known))}"


def resolve_choice(family: Family, name: str, progress=None) -> Path:
    """The path of dropdown entry ``name`` (or a bare model name); downloads a known model into the first folder.

    Only names from :func:`model_choices` are accepted (nothing else reaches the file system).
    """
    from ..py.download import download_known_model
    from ..py.errors import ModelNotFoundError

    verdict = validate_choice(family, name)
    if verdict is not True:
        raise ModelNotFoundError(verdict)
    name = choice_name(name)
    for folder in model_folders(family):
        if name in list_models_in(folder, family):
            return folder / name
    known = find_known(name, family)
    assert known is not None  # a choice is either present or known
    return download_known_model(known, _folder_paths_named(known.folder)[0], progress=progress)


# ----------------------------------------------------------------------------- previews


def draw_each(count: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``torch.stack([draw(0), …, draw(count - 1)])`` with Cancel checked before each picture.

    Drawing a preview on a large photo takes a fraction of a second per image; checking between
    images keeps Cancel prompt on long batches and clips.
    """
    drawn = []
    for i in range(count):
        check_interrupt()
        drawn.append(draw(i))
    return torch.stack(drawn)


def preview_images(images: torch.Tensor, prefix: str = "grounded_inpaint") -> dict[str, list[dict[str, str]]]:
    """Save ``[B, H, W, 3]`` images to ComfyUI's temp folder and return the node's ``ui`` entry.

    Written as ComfyUI's own Preview Image writes them (PNG, compression level 1: a 6-megapixel
    preview takes about 0.3 s instead of 1.1 s), with Cancel checked before each image.
    """
    fp = _folder_paths()
    if fp is None:
        return {"images": []}
    from ..py.images import save_image

    folder = Path(fp.get_temp_directory())
    stem = f"{prefix}_{uuid.uuid4().hex[:8]}"
    entries = []
    for i in range(images.shape[0]):
        check_interrupt()
        name = f"{stem}_{i:05d}.png"
        save_image(images[i], folder / name, compress_level=1)
        entries.append({"filename": name, "subfolder": "", "type": "temp"})
    return {"images": entries}
