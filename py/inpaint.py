"""The whole job outside ComfyUI: find the product, repaint around it with Stable Diffusion, paste it back.

``python -m grounded_inpaint inpaint IMAGE --detect "shoes" --keep --prompt "on a marble podium"
--out DIR`` runs GroundingDINO → SAM → mask → diffusers' ``StableDiffusionInpaintPipeline`` and
writes into ``DIR``:

* ``result.png``: the inpainted image at the original size;
* ``mask.png``: the mask used (white = repainted);
* ``overlay.png``: each detected instance coloured, boxed and labelled;
* ``detections.json``: detection settings and instances, plus an ``"inpaint"`` record with the
  model, prompts, steps, guidance, strength, seed and working size (enough to repeat the run).

Modes:

* ``--keep`` (default): keep the detected objects, repaint everything else. The repaint mask is
  the inverted union of the objects, grown by ``--grow`` (a positive grow leaves a margin of the
  original around the object) and feathered by ``--feather``. After inpainting, the objects are
  pasted back from the original **pixel-exact**: the product is never altered, whatever the mask
  settings.
* ``--replace``: repaint the detected objects (mask = union, grown and feathered).

In both modes everything outside the repaint mask is the original, pixel-exact (the VAE's
round trip would otherwise change it slightly), and a feathered edge blends the two.

Sizing: Stable Diffusion works at about 512 px, in multiples of 8. The image is resized to a
*working size* with the same aspect ratio whose long side is ``--size`` and whose sides are
multiples of ``lcm(8, vae_scale_factor)``; the result is resized back to the original size before
the paste-back. Small images are enlarged to the working size, large ones reduced.

Nothing detected: with ``--keep`` there is nothing to keep (the product would be repainted), and
with ``--replace`` nothing to repaint, so both stop with :class:`NothingDetectedError` (exit
code 1) **before** the inpainting model is loaded, and nothing is written. (A missing inpainting
model is reported even earlier, before the detector is loaded, when that can be told without
loading it.)

Models: ``--inpaint-model`` is a diffusers folder (``model_index.json``, ``unet/``, ``vae/``, …),
a single ``.safetensors`` checkpoint (read with ``from_single_file``; pickled ``.ckpt``/``.pt``
files are refused), a name inside ``MODELS/diffusers`` or ``MODELS/checkpoints``, or a Hugging
Face id (``owner/name``, cached by ``huggingface_hub`` in its usual cache). Remote code is never
run. Offline and missing, the error names what to download and where to put it.

Safety checker: a model that ships one (the Stable Diffusion inpainting repositories do) keeps
it, and an image it flags stops the run with :class:`UnsafeContentError` instead of writing a
blacked-out result; ``--no-safety-checker`` (or ``safety_checker=False``) leaves it out, which
also saves its download and memory. Single-file checkpoints never carry one.

diffusers is optional (``pip install diffusers``) and imported only when a pipeline is loaded.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from .checks import count, number
from .errors import CheckpointError, ModelNotFoundError
from .images import to_mask, to_rgb
from .interrupt import InterruptCheck, interruptible
from .overlay import paste_back

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "DEFAULT_INPAINT_MODEL",
    "DIFFUSERS_FOLDER",
    "CHECKPOINTS_FOLDER",
    "MissingDependencyError",
    "NothingDetectedError",
    "UnsafeContentError",
    "working_size",
    "inpaint_image",
    "resolve_inpaint_model",
    "check_hub_model_available",
    "load_inpaint_pipeline",
    "add_inpaint_arguments",
    "run_inpaint_command",
    "INPAINT_OUTPUT_FILES",
    "objects_to_inpaint",
    "write_inpaint_outputs",
]

log = logging.getLogger(__name__)

#: The inpainting model used when none is named (Stable Diffusion 1.5 inpainting, ~4 GB in fp32).
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
#: Sub-folder of the models folder holding diffusers pipeline folders (ComfyUI's name).
DIFFUSERS_FOLDER = "diffusers"
#: Sub-folder of the models folder holding single-file checkpoints (ComfyUI's name).
CHECKPOINTS_FOLDER = "checkpoints"

DEFAULT_SIZE = 512
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 7.5
DEFAULT_STRENGTH = 1.0
#: The smallest ``--size`` accepted: below it Stable Diffusion produces nothing usable.
MIN_SIZE = 64
#: The largest ``--size``: beyond it a run needs tens of gigabytes (SD 1.5 works at 512, SDXL at 1024).
MAX_SIZE = 4096
#: The most denoising steps (ComfyUI's KSampler allows as many).
MAX_STEPS = 10_000
#: The largest classifier-free guidance scale accepted (ComfyUI's KSampler allows as much).
MAX_GUIDANCE = 100.0

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
_PIPELINE_FILES = "model_index.json, scheduler/, text_encoder/, tokenizer/, unet/ and vae/"

ModelKind = Literal["folder", "file", "hub"]


class MissingDependencyError(ImportError):
    """An optional package (diffusers) is not installed; the message says what to install."""


class NothingDetectedError(ValueError):
    """No instance was detected or selected, so there is nothing to keep or to repaint."""


class UnsafeContentError(ValueError):
    """The model's safety checker flagged the generated image (diffusers blacks it out)."""


# --------------------------------------------------------------------------------------------
# Sizing and conversions
# --------------------------------------------------------------------------------------------


def working_size(height: int, width: int, *, long_side: int = DEFAULT_SIZE, multiple: int = 8) -> tuple[int, int]:
    """The size to run Stable Diffusion at: same aspect ratio, long side ``long_side``, multiples of ``multiple``.

    The working long side is ``long_side`` rounded to the nearest multiple (halves up, at least
    ``multiple``); the working short side is that times the image's ``short / long`` ratio, rounded
    likewise and at least ``multiple`` (so a 1x1000 strip becomes 8x512, not 0x512). Square images
    give squares; 60x100 at 512 gives 304x512.

    Arguments:
        height, width: the image size in pixels, ``>= 1``.
        long_side: wanted length of the long side in pixels, ``>= multiple``.
        multiple: both sides are multiples of this (8 for Stable Diffusion; see
            :func:`inpaint_image`), ``>= 1``.

    Returns:
        ``(working_height, working_width)``.

    Raises:
        ValueError: a size below 1, ``multiple`` outside ``1..1024``, ``long_side`` above
            :data:`MAX_SIZE` or below ``multiple``.
    """
    height, width = count("height", height, low=1), count("width", width, low=1)
    multiple = count("multiple", multiple, low=1, high=1024)
    long_side = count("long_side", long_side, low=1, high=MAX_SIZE)
    if long_side < multiple:
        raise ValueError(f"working_size: long_side ({long_side}) must be at least multiple ({multiple})")
    long_px = max(multiple, _round_half_up(long_side / multiple) * multiple)
    ratio = min(height, width) / max(height, width)
    short_px = max(multiple, _round_half_up(long_px * ratio / multiple) * multiple)
    return (long_px, short_px) if height >= width else (short_px, long_px)


def _round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (Python's ``round`` rounds halves to even)."""
    return int(math.floor(value + 0.5))


def _resize(tensor: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``[H, W, C]`` float32 to ``size = (h, w)`` (antialiased), clamped to ``0..1``."""
    if tuple(tensor.shape[:2]) == tuple(size):
        return tensor.clone()
    planar = tensor.permute(2, 0, 1)[None].float()
    out = F.interpolate(planar, size=size, mode=mode, antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0.0, 1.0).contiguous()


def _to_pil(array: torch.Tensor) -> "Image.Image":
    """``[H, W, 3]`` (RGB) or ``[H, W]`` (mode ``L``) float 0..1 → 8-bit PIL image."""
    from PIL import Image

    data = (array.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype("uint8")
    return Image.fromarray(data)


def _pipeline_multiple(pipe: Any) -> int:
    """Both sides of the working size must be multiples of this: lcm(8, the VAE's scale factor)."""
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    return 8 * factor // math.gcd(8, factor)


# --------------------------------------------------------------------------------------------
# Inpainting one image
# --------------------------------------------------------------------------------------------


def _check_settings(steps: int, guidance: float, strength: float, size: int, seed: int = 0) -> None:
    """Raise ValueError naming the first setting outside its range (see :func:`inpaint_image`)."""
    steps = count("steps", steps, low=1, high=MAX_STEPS)
    number("guidance", guidance, low=0.0, high=MAX_GUIDANCE, meaning="(1 or less turns classifier-free guidance off)")
    strength = number("strength", strength, low=0.0, high=1.0, low_open=True, meaning="(1 = repaint from pure noise)")
    count("size", size, low=MIN_SIZE, high=MAX_SIZE, meaning="(the working long side in pixels)")
    count("seed", seed, low=0, high=2**64 - 1)
    if int(steps * strength) < 1:
        raise ValueError(
            f"steps x strength must be at least 1 (diffusers runs int(steps * strength) steps); "
            f"got steps={steps}, strength={strength}"
        )


def _run_pipeline(
    pipe: Any, image: "Image.Image", mask: "Image.Image", prompt: str, *, interrupt: InterruptCheck | None = None, **kwargs: Any
) -> torch.Tensor:
    """One pipeline call; returns the generated ``[h, w, 3]`` float32 image in ``0..1`` (CPU).

    ``interrupt`` is called after every denoising step (``callback_on_step_end``) and between the
    layers of the UNet, the VAE and the text encoder; raising from it stops the run.

    Raises:
        UnsafeContentError: the safety checker flagged the image.
        ValueError: the output contains NaN/inf (typically an fp16 overflow).
    """
    if interrupt is not None:
        def on_step_end(_pipe: Any, _step: int, _timestep: Any, callback_kwargs: dict) -> dict:
            interrupt()
            return callback_kwargs

        kwargs["callback_on_step_end"] = on_step_end
    modules = [getattr(pipe, name, None) for name in ("unet", "vae", "text_encoder")]
    with interruptible(interrupt, *[m for m in modules if isinstance(m, torch.nn.Module)]):
        output = pipe(prompt=prompt, image=image, mask_image=mask, output_type="np", num_images_per_prompt=1, **kwargs)
    flagged = getattr(output, "nsfw_content_detected", None)
    if flagged and any(bool(f) for f in flagged):
        raise UnsafeContentError(
            "the model's safety checker flagged the generated image (diffusers blacks such images out), so no "
            "result was made. Change the prompt or the seed, or load the model without its checker "
            "(--no-safety-checker, or load_inpaint_pipeline(..., safety_checker=False)) for local use."
        )
    generated = torch.from_numpy(output.images[0].copy()).float()
    if not bool(torch.isfinite(generated).all()):
        raise ValueError(
            "the inpainting model produced NaN or infinite pixels, which usually means the half-precision VAE "
            "overflowed; run again with --precision fp32 (or bf16)"
        )
    return generated.clamp(0.0, 1.0)


def inpaint_image(
    pipe: Any,
    image: torch.Tensor,
    mask: torch.Tensor,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    strength: float = DEFAULT_STRENGTH,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    keep_mask: torch.Tensor | None = None,
    interrupt: InterruptCheck | None = None,
) -> torch.Tensor:
    """Inpaint one image at its own aspect ratio and restore everything that must not change.

    Steps:

    1. choose the working size with :func:`working_size` (long side ``size``, sides multiples of
       ``lcm(8, pipe.vae_scale_factor)``) and resize image (bicubic) and mask (bilinear) to it;
    2. run ``pipe`` (diffusers binarises the mask at 0.5) with a CPU ``torch.Generator`` seeded
       with ``seed``, so a seed gives the same noise on every device;
    3. resize the result back to ``H x W`` (bicubic, antialiased);
    4. paste back with :func:`grounded_inpaint.overlay.paste_back`, restoring
       ``keep = max(1 - mask, keep_mask)``: pixels where ``mask`` is 0 or ``keep_mask`` is 1 equal
       ``image`` exactly, pixels where ``mask`` is 1 (and ``keep_mask`` 0) are the generated ones,
       and soft (feathered) values blend the two.

    An all-zero mask returns a copy of ``image`` without running the pipeline.

    Arguments:
        pipe: a ``StableDiffusionInpaintPipeline`` (see :func:`load_inpaint_pipeline`), or any
            callable taking its keyword arguments and returning ``.images`` as a float numpy
            array ``[1, h, w, 3]`` in ``0..1`` (``output_type="np"``).
        image: ``[H, W, 3]`` float32 RGB in ``0..1`` (anything :func:`~grounded_inpaint.images.to_rgb`
            accepts).
        mask: ``[H, W]`` float in ``0..1``, 1 = repaint (bool and uint8 accepted).
        prompt: what to paint.
        negative_prompt: what to avoid; None or empty for none.
        steps: denoising steps, ``1..10000``.
        guidance: classifier-free guidance scale, ``0..100`` (``<= 1`` turns it off).
        strength: ``0 < strength <= 1``; 1 repaints from pure noise, less keeps more of the
            masked area's original content. ``int(steps * strength)`` must be at least 1.
        seed: seed of the initial noise, ``0..2**64 - 1``.
        size: working long side in pixels, ``64..4096``.
        keep_mask: ``[H, W]`` float in ``0..1``, 1 = restore from ``image`` even inside ``mask``
            (the kept product in "keep" mode). None: only ``1 - mask`` is restored.
        interrupt: called after every denoising step and between the model's layers; raise from
            it to stop (nothing is returned or written).

    Returns:
        ``[H, W, 3]`` float32 RGB in ``0..1`` on the CPU.

    Raises:
        ValueError: sizes that differ (both named), or a bad setting (named with its range).
        UnsafeContentError: the pipeline's safety checker flagged the image.
    """
    _check_settings(steps, guidance, strength, size, seed)
    image = to_rgb(image, name="image").float().cpu()
    mask = to_mask(mask, name="mask").float().cpu()
    height, width = int(image.shape[0]), int(image.shape[1])
    if tuple(mask.shape) != (height, width):
        raise ValueError(f"inpaint_image: the mask is {tuple(mask.shape)} (height, width) but the image is {(height, width)}")
    keep = 1.0 - mask
    if keep_mask is not None:
        keep_mask = to_mask(keep_mask, name="keep_mask").float().cpu()
        if tuple(keep_mask.shape) != (height, width):
            raise ValueError(
                f"inpaint_image: keep_mask is {tuple(keep_mask.shape)} (height, width) but the image is {(height, width)}"
            )
        keep = torch.maximum(keep, keep_mask)
    if not bool((keep < 1.0).any()):
        log.warning("inpaint_image: nothing to repaint (the mask is empty or entirely kept); returning the image")
        return image.clone()

    work_h, work_w = working_size(height, width, long_side=size, multiple=_pipeline_multiple(pipe))
    log.info("inpainting %dx%d at %dx%d, %d steps, seed %d", width, height, work_w, work_h, steps, seed)
    work_image = _to_pil(_resize(image, (work_h, work_w), "bicubic"))
    work_mask = _to_pil(_resize(mask[..., None], (work_h, work_w), "bilinear")[..., 0])
    generated = _run_pipeline(
        pipe,
        work_image,
        work_mask,
        prompt,
        negative_prompt=negative_prompt or None,
        height=work_h,
        width=work_w,
        num_inference_steps=int(steps),
        guidance_scale=float(guidance),
        strength=float(strength),
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        interrupt=interrupt,
    )
    if tuple(generated.shape[:2]) != (work_h, work_w):
        raise ValueError(
            f"the inpainting pipeline returned a {generated.shape[1]}x{generated.shape[0]} image; "
            f"{work_w}x{work_h} was asked for"
        )
    return paste_back(_resize(generated, (height, width), "bicubic"), image, keep)


# --------------------------------------------------------------------------------------------
# Loading the pipeline
# --------------------------------------------------------------------------------------------


def _import_diffusers() -> Any:
    """The ``diffusers`` module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import diffusers
    except ImportError as exc:
        raise MissingDependencyError(
            f"inpainting needs the diffusers package, which is not installed ({exc}). Install it into this "
            "Python with `pip install diffusers` (or `pip install -e \".[inpaint]\"` in the grounded-inpaint folder)."
        ) from None
    return diffusers


def _local_choices(models_dir: Path | None) -> list[str]:
    """Inpainting models present in ``models_dir/diffusers`` (folders) and ``models_dir/checkpoints`` (files)."""
    if models_dir is None:
        return []
    names = []
    folder = models_dir / DIFFUSERS_FOLDER
    if folder.is_dir():
        names += sorted(p.name for p in folder.iterdir() if (p / "model_index.json").is_file())
    files = models_dir / CHECKPOINTS_FOLDER
    if files.is_dir():
        names += sorted(p.name for p in files.iterdir() if p.suffix.lower() == ".safetensors")
    return names


def _check_local(path: Path) -> tuple[ModelKind, str]:
    """Classify an existing path as a pipeline folder or a safetensors file, or explain what is wrong."""
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a folder but not a diffusers pipeline (it has no model_index.json). An inpainting model "
                f"folder holds {_PIPELINE_FILES}, as https://huggingface.co/{DEFAULT_INPAINT_MODEL} does; "
                "or pass a single .safetensors checkpoint"
            )
        return "folder", str(path)
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} is a pickled checkpoint ({suffix}); only .safetensors single files are read, because loading a "
            "pickle can run code. Download the model's .safetensors version (most inpainting checkpoints publish "
            "one) or its diffusers folder instead"
        )
    if suffix != ".safetensors":
        raise CheckpointError(
            f"{path} is not an inpainting model: expected a diffusers folder ({_PIPELINE_FILES}) or a .safetensors file"
        )
    return "file", str(path)


def resolve_inpaint_model(name_or_path: str | Path, models_dir: str | Path | None = None) -> tuple[ModelKind, str]:
    """Find an inpainting model without loading it (and without any network access).

    Looked up in this order: an existing path; ``models_dir/diffusers/<name>`` (a pipeline
    folder); ``models_dir/checkpoints/<name>`` or ``<name>.safetensors`` (a single file); a
    Hugging Face id ``owner/name``.

    Returns:
        ``(kind, location)``: ``("folder", path)``, ``("file", path)`` or ``("hub", repo_id)``.

    Raises:
        ModelNotFoundError: nothing matches (the message lists the local models and the folders
            searched), or a folder that is not a diffusers pipeline.
        CheckpointError: a pickled single file (``.ckpt``, ``.pt``, …) or another file type.
    """
    text = str(name_or_path).strip()
    models = Path(models_dir) if models_dir is not None else None
    if not text:
        raise ModelNotFoundError(f"no inpainting model was named; use e.g. --inpaint-model {DEFAULT_INPAINT_MODEL}")
    path = Path(text).expanduser()
    if path.exists():
        return _check_local(path)
    if models is not None:
        for candidate in (
            models / DIFFUSERS_FOLDER / text,
            models / CHECKPOINTS_FOLDER / text,
            models / CHECKPOINTS_FOLDER / f"{text}.safetensors",
        ):
            if candidate.exists():
                return _check_local(candidate)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return "hub", text
    searched = (
        f" nor in {models / DIFFUSERS_FOLDER} or {models / CHECKPOINTS_FOLDER}" if models is not None else ""
    )
    local = _local_choices(models)
    raise ModelNotFoundError(
        f"inpainting model {text!r} not found: it is not an existing file or folder{searched}, and not a Hugging Face "
        f"id (owner/name). " + (f"Local models: {', '.join(local)}. " if local else "")
        + f"The default is {DEFAULT_INPAINT_MODEL}."
    )


def _hub_offline_reason(local_files_only: bool) -> str | None:
    """Why a hub download cannot happen now, or None when it may be tried."""
    if local_files_only:
        return "downloads are turned off by --no-download"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub.constants import ENDPOINT

    from .download import host_reachable

    if not host_reachable(ENDPOINT):
        return f"offline: {ENDPOINT} cannot be reached"
    return None


def _hub_missing_error(repo_id: str, reason: str, models_dir: Path | None) -> ModelNotFoundError:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE as cache
    except ImportError:  # pragma: no cover
        cache = "~/.cache/huggingface/hub"
    short = repo_id.split("/")[-1]
    dest = (models_dir if models_dir is not None else Path("MODELS")) / DIFFUSERS_FOLDER / short
    return ModelNotFoundError(
        f"the inpainting model {repo_id} is not in the Hugging Face cache ({cache}) and could not be downloaded "
        f"({reason}). To install it by hand, download {_PIPELINE_FILES} (plus safety_checker/ and "
        f"feature_extractor/ to keep its safety checker; the .safetensors weights are enough) from "
        f"https://huggingface.co/{repo_id} into the folder {dest} and pass --inpaint-model {short}; or run once "
        f"online to fill the cache. (If {repo_id} was meant as a local path: {Path(repo_id).resolve()} does not exist.)"
    )


def check_hub_model_available(repo_id: str, *, local_files_only: bool = False, models_dir: str | Path | None = None) -> None:
    """Fail early (before slow work) when a hub model is neither cached nor downloadable.

    Only the presence of ``model_index.json`` in the Hugging Face cache is checked; a model whose
    weights are missing from the cache is reported later by :func:`load_inpaint_pipeline`.

    Raises:
        ModelNotFoundError: not cached, and downloads are off, ``HF_HUB_OFFLINE`` is set or the hub
            cannot be reached (the message says what to download and where to put it).
    """
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str):
        return
    reason = _hub_offline_reason(local_files_only)
    if reason is not None:
        raise _hub_missing_error(repo_id, reason, Path(models_dir) if models_dir is not None else None)


def _from_hub(cls: Any, repo_id: str, kwargs: dict[str, Any], local_files_only: bool, models_dir: Path | None) -> Any:
    """Load from the hub cache; download only when allowed and the hub is reachable."""
    try:
        return cls.from_pretrained(repo_id, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:  # not (fully) cached
        log.debug("%s is not in the Hugging Face cache: %s", repo_id, exc)
    reason = _hub_offline_reason(local_files_only)
    if reason is not None:
        raise _hub_missing_error(repo_id, reason, models_dir)
    log.info("downloading %s from the Hugging Face hub (several GB) ...", repo_id)
    try:
        return cls.from_pretrained(repo_id, local_files_only=False, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _hub_missing_error(repo_id, f"{type(exc).__name__}: {first}", models_dir) from None


def _from_file(cls: Any, path: str, config: str | None, local_files_only: bool) -> Any:
    """``from_single_file`` with errors that say which configuration is missing."""
    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if config:
        kwargs["config"] = config
    try:
        return cls.from_single_file(path, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"cannot read the single-file checkpoint {path} ({type(exc).__name__}: {first}). diffusers builds the "
            "pipeline from the file's weights plus the configuration files of its architecture, which it takes from "
            "the Hugging Face cache or downloads. Pass --inpaint-config with a local diffusers folder of the same "
            f"architecture (for a Stable Diffusion 1.5 inpainting file, a copy of {DEFAULT_INPAINT_MODEL}: "
            "model_index.json and the config, tokenizer and scheduler files are enough), run once online, or use the "
            "model's diffusers folder instead."
        ) from None


def load_inpaint_pipeline(
    name_or_path: str | Path = DEFAULT_INPAINT_MODEL,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    local_files_only: bool = False,
    models_dir: str | Path | None = None,
    safety_checker: bool = True,
    config: str | Path | None = None,
) -> Any:
    """Load a Stable Diffusion inpainting pipeline (diffusers) and move it to ``device``/``dtype``.

    Arguments:
        name_or_path: a diffusers folder, a ``.safetensors`` file, a name in ``models_dir``, or a
            Hugging Face id; see :func:`resolve_inpaint_model`. Hub models are taken from the
            Hugging Face cache when present (no network), downloaded otherwise.
        device: where the pipeline runs.
        dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16``.
        local_files_only: never download.
        models_dir: the models folder searched for names (``diffusers/``, ``checkpoints/``).
        safety_checker: keep the model's safety checker if it ships one (default). False leaves
            it out (not loaded, not downloaded).
        config: for a single file only: a local diffusers folder or hub id whose configuration
            files describe the checkpoint's architecture (diffusers guesses it otherwise).

    Returns:
        A ``diffusers.StableDiffusionInpaintPipeline`` in eval mode. A model whose UNet has 4
        input channels (a plain text-to-image model) also loads; a warning says that a real
        inpainting model blends better.

    Raises:
        MissingDependencyError: diffusers is not installed.
        ModelNotFoundError: the model is missing and cannot be downloaded (the message says what to
            download and where to put it), or a single file's configuration is missing.
        CheckpointError: a pickled single file or a file that is not a model.
    """
    diffusers = _import_diffusers()
    cls = diffusers.StableDiffusionInpaintPipeline
    models = Path(models_dir) if models_dir is not None else None
    kind, location = resolve_inpaint_model(name_or_path, models)
    # Remote code is never run: no custom_pipeline, and trust_remote_code stays False.
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if not safety_checker:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "file":
        pipe = _from_file(cls, location, None if config is None else str(config), local_files_only)
    elif kind == "folder":
        try:
            pipe = cls.from_pretrained(location, local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot load the diffusers folder {location} as an inpainting pipeline ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); it needs {_PIPELINE_FILES} with "
                "their weights"
            ) from None
    else:
        pipe = _from_hub(cls, location, kwargs, local_files_only, models)
    if not safety_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # single-file loaders may attach one regardless
    in_channels = int(getattr(pipe.unet.config, "in_channels", 9))
    if in_channels != 9:
        log.warning(
            "%s has a UNet with %d input channels, i.e. it is not an inpainting model; it still works but blends "
            "the new area worse. Use an inpainting checkpoint such as %s", location, in_channels, DEFAULT_INPAINT_MODEL,
        )
    if getattr(pipe, "safety_checker", None) is None and safety_checker:
        log.debug("%s ships no safety checker", location)
    pipe = pipe.to(torch.device(device), torch.float32 if dtype is None else dtype)
    log.info("inpainting model %s loaded (%s, %s)", location, device, str(dtype or torch.float32).replace("torch.", ""))
    return pipe


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_inpaint_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``inpaint`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``) and return it.

    The command's function is :func:`run_inpaint_command` (also set as ``func`` default).
    """
    from .cli_support import add_logging_options, count_arg, fraction_arg, models_default, number_arg
    from .detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD, MAX_DETECTIONS_LIMIT
    from .models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER

    p = subparsers.add_parser(
        "inpaint",
        help="detect objects, then keep them and repaint the rest (or repaint them) with Stable Diffusion",
        description="Find the objects named by --detect, build the mask, inpaint with a diffusers Stable Diffusion "
        "inpainting model at the image's aspect ratio, and paste the kept object back pixel-exact. Writes "
        "result.png, mask.png (white = repainted), overlay.png and detections.json into OUT.",
    )
    add_logging_options(p, top_level=False)
    p.add_argument("image", metavar="IMAGE", type=Path, help="image file (PNG, JPEG, WebP, ...)")
    p.add_argument("--detect", required=True, help='what to find, e.g. "shoes" or "dress, handbag"')
    p.add_argument("--prompt", required=True, help='what to paint, e.g. "on a marble podium, studio light"')
    p.add_argument("--negative-prompt", default="", help="what the painting should avoid")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keep", dest="mode", action="store_const", const="keep",
                      help="keep the detected objects pixel-exact and repaint everything else (default)")
    mode.add_argument("--replace", dest="mode", action="store_const", const="replace",
                      help="repaint the detected objects; everything else stays as it is")
    p.set_defaults(mode="keep", func=run_inpaint_command)
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")

    g = p.add_argument_group("inpainting")
    g.add_argument("--inpaint-model", default=DEFAULT_INPAINT_MODEL,
                   help="diffusers folder, .safetensors file, name in MODELS/diffusers or MODELS/checkpoints, or "
                   f"Hugging Face id (default {DEFAULT_INPAINT_MODEL})")
    g.add_argument("--inpaint-config", default=None,
                   help="for a single .safetensors file: a local diffusers folder (or hub id) with its configuration")
    g.add_argument("--steps", type=count_arg(1, MAX_STEPS), default=DEFAULT_STEPS,
                   help=f"denoising steps, 1..{MAX_STEPS} (default {DEFAULT_STEPS})")
    g.add_argument("--guidance", type=number_arg(low=0.0, high=MAX_GUIDANCE), default=DEFAULT_GUIDANCE,
                   help=f"guidance scale, 0..{MAX_GUIDANCE:g} (default {DEFAULT_GUIDANCE})")
    g.add_argument("--strength", type=number_arg(low=0.0, low_open=True, high=1.0), default=DEFAULT_STRENGTH,
                   help="0 < s <= 1; 1 repaints from noise, less keeps more of the old content (default 1.0)")
    g.add_argument("--seed", type=count_arg(0, 2**64 - 1), default=None, help="noise seed (default: random, written to detections.json)")
    g.add_argument("--size", type=count_arg(MIN_SIZE, MAX_SIZE), default=DEFAULT_SIZE,
                   help=f"long side of the working size in pixels, {MIN_SIZE}..{MAX_SIZE}, aspect ratio kept (default {DEFAULT_SIZE})")
    g.add_argument("--no-safety-checker", action="store_true",
                   help="leave out the model's safety checker (it blacks out images it flags)")

    d = p.add_argument_group("detection and mask (as in the mask command)")
    d.add_argument("--models", default=models_default(), type=Path,
                   help="models folder holding grounding-dino/, sams/, diffusers/ and checkpoints/")
    d.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"GroundingDINO model name or path (default {DEFAULT_DETECTOR})")
    d.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help=f"SAM model name or path (default {DEFAULT_SEGMENTER})")
    d.add_argument("--no-download", action="store_true",
                   help="never download a model; fail if one is missing (diffusers may still fetch the few-KB "
                   "configuration of a single .safetensors file unless --inpaint-config names a local folder)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    d.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="model precision (auto = fp32 on CPU, fp16 on CUDA)")
    d.add_argument("--box-threshold", type=fraction_arg, default=DEFAULT_BOX_THRESHOLD, help="minimum box score, 0..1 (default 0.30)")
    d.add_argument("--text-threshold", type=fraction_arg, default=DEFAULT_TEXT_THRESHOLD,
                   help="minimum word score for labels, 0..1 (default 0.25)")
    d.add_argument("--max-detections", type=count_arg(0, MAX_DETECTIONS_LIMIT), default=None, help="keep at most N boxes")
    d.add_argument("--nms-iou", type=number_arg(low=0.0), default=DEFAULT_NMS_IOU,
                   help="drop same-label boxes overlapping more than this (default 0.5; 1 = off)")
    d.add_argument("--multimask", default="auto", choices=["auto", "best", "single"], help="SAM output choice (default auto)")
    d.add_argument("--select", default="", help='instances to use, by index: "0,2" or "1-3" (default all)')
    d.add_argument("--top-k", type=count_arg(0), default=None, help="use only the K highest-scoring instances")
    d.add_argument("--labels", default="", help='use only instances with these labels, e.g. "shoes, bag"')
    d.add_argument("--min-score", type=fraction_arg, default=0.0, help="use only instances scoring at least this (0..1)")
    d.add_argument("--grow", type=count_arg(-(2**31), 2**31), default=0,
                   help="grow (N > 0) or shrink (N < 0) the objects by N pixels before the mask is made; with --keep a "
                   "positive grow keeps a margin of the original around the object")
    d.add_argument("--fill-holes", action="store_true", help="fill holes inside the objects")
    d.add_argument("--min-area", type=count_arg(0), default=0, help="drop object regions smaller than N pixels")
    d.add_argument("--feather", type=number_arg(low=0.0), default=0.0, help="blend the repainted edge over N pixels")
    d.add_argument("--threshold", type=fraction_arg, default=0.5, help="binarise the object masks at this value (0..1)")
    d.add_argument("--opacity", type=fraction_arg, default=0.5, help="overlay fill opacity, 0..1 (default 0.5)")
    from .matting.command import add_refine_arguments

    add_refine_arguments(p)
    return p


def _validate(args: argparse.Namespace, cli_error: type[Exception]) -> None:
    """Check what the option types cannot before anything is loaded; raise ``cli_error`` naming the option.

    (Each numeric option's range is checked by its argparse type: a bad value exits with code 2.)
    """
    from .cli_support import check_output_folder
    from .prompts import normalize_prompt

    normalize_prompt(args.detect)  # EmptyPromptError for an empty --detect
    if not args.prompt.strip():
        raise cli_error('--prompt is empty; say what to paint, e.g. --prompt "on a marble podium, studio light"')
    try:
        _check_settings(args.steps, args.guidance, args.strength, args.size, args.seed or 0)
    except ValueError as exc:
        raise cli_error(f"bad inpainting option: {exc} (options --steps, --guidance, --strength, --size)") from None
    if not args.image.is_file():
        raise cli_error(f"image file not found: {args.image}")
    check_output_folder(args.out)


def _find_objects(args: argparse.Namespace, image: torch.Tensor, models: tuple[Any, Any]):
    """Detect and segment; returns ``(segments, selected indices)``."""
    from .cli_support import find_instances

    (detector, _), (predictor, _) = models
    return find_instances(args, image, args.detect, detector, predictor)


def _masks(args: argparse.Namespace, chosen: Any, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(repaint mask, objects)``: ``[H, W]`` float32 0..1 each; ``objects`` is the cleaned, un-grown union."""
    from .masks import make_inpaint_mask

    options = dict(threshold=args.threshold, fill_holes=args.fill_holes, min_area=args.min_area)
    keep = args.mode == "keep"
    repaint = make_inpaint_mask(chosen, image_size=image_size, **options, grow=args.grow, invert=keep, feather=args.feather)
    objects = make_inpaint_mask(chosen, image_size=image_size, **options)
    return repaint, objects


def _nothing_found_message(args: argparse.Namespace, n_found: int, image_path: Path | None = None) -> str:
    image = args.image if image_path is None else image_path
    what = "keep (repainting everything would repaint the product too)" if args.mode == "keep" else "repaint"
    if n_found == 0:
        found = f"nothing matching {args.detect!r} was detected in {image} above --box-threshold {args.box_threshold}"
        fix = "lower --box-threshold or change --detect"
    else:
        found = f"{n_found} instance(s) of {args.detect!r} were detected in {image} but none passed --select/--top-k/--labels/--min-score"
        fix = "loosen the selection"
    return f"{found}, so there is nothing to {what}; {fix}. Nothing was written to {args.out}."


#: The detection and mask options of ``inpaint`` recorded in ``detections.json``.
_DETECT_SETTINGS = (
    "detector", "segmenter", "models", "device", "precision", "box_threshold", "text_threshold", "max_detections",
    "nms_iou", "multimask", "select", "top_k", "labels", "min_score", "grow", "fill_holes", "min_area", "feather",
    "threshold", "opacity", "no_download",
    "refine", "matting_model", "band_inside", "band_outside", "matte", "no_decontaminate", "no_sam_uncertainty",
)


def _record(args: argparse.Namespace, segments: Any, selected: list[int], pipe: Any, seed: int,
            work: tuple[int, int], device: torch.device, dtype: torch.dtype, models: tuple[Any, Any],
            image_path: Path | None = None) -> dict[str, Any]:
    """The detections.json content: every detection setting, the instances, and the inpainting settings."""
    from .cli_support import detections_record

    record = detections_record(args, args.image if image_path is None else image_path, args.detect, segments, selected,
                               _DETECT_SETTINGS, (models[0][1], models[1][1]), device, dtype, overlay_shows="selected")
    record["settings"]["invert"] = args.mode == "keep"
    record["inpaint"] = {
        "mode": args.mode,
        "model": str(args.inpaint_model),
        "config": args.inpaint_config,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "steps": args.steps,
        "guidance": args.guidance,
        "strength": args.strength,
        "seed": seed,
        "size": args.size,
        "working_size": list(work),
        "scheduler": type(getattr(pipe, "scheduler", None)).__name__,
        "safety_checker": getattr(pipe, "safety_checker", None) is not None,
        "device": str(device),
        "precision": str(dtype).replace("torch.", ""),
    }
    return record


#: The files the ``inpaint`` command (and ``batch --inpaint``) writes per image, in this order.
INPAINT_OUTPUT_FILES = ("result.png", "mask.png", "overlay.png", "detections.json")


def objects_to_inpaint(args: argparse.Namespace, image_path: Path, segments: Any, selected: list[int]) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The selected instances and the ``(repaint mask, objects)`` of :func:`_masks` for one image.

    Raises:
        NothingDetectedError: nothing selected, or the selected masks are empty after
            ``threshold`` / ``min_area`` (there is nothing to keep or to repaint).
    """
    if not selected:
        raise NothingDetectedError(_nothing_found_message(args, len(segments), image_path))
    chosen = segments.take(selected)
    repaint, objects = _masks(args, chosen, segments.image_size)
    if not bool((objects > 0).any()):
        raise NothingDetectedError(
            f"the {len(selected)} selected instance(s) of {args.detect!r} in {image_path} have empty masks after "
            f"--threshold {args.threshold} and --min-area {args.min_area}, so there is nothing to {args.mode}; lower "
            f"them. Nothing was written to {args.out}."
        )
    return chosen, repaint, objects


def write_inpaint_outputs(
    args: argparse.Namespace,
    image_path: Path,
    image: torch.Tensor,
    segments: Any,
    selected: list[int],
    masks: tuple[Any, torch.Tensor, torch.Tensor],
    pipe: Any,
    seed: int,
    folder: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    models: tuple[Any, Any],
    matting: Any = None,
    matte_file: Path | None = None,
) -> list[Path]:
    """Inpaint one image and write what the ``inpaint`` command writes into ``folder`` (which must exist).

    With ``--refine`` (``args.refine`` other than ``"none"``) the selected objects' edges are
    refined first (:func:`grounded_inpaint.matting.command.refine_selected`, with the ViTMatte
    ``matting`` model for ``vitmatte`` and the image's ``--matte`` file): ``--keep`` repaints
    everything that is not surely the product (its soft band included) and pastes the product
    back with its soft alpha and clean colours, ``--replace`` repaints the refined fringe too;
    ``alpha.png`` (16-bit) is written as well.

    Arguments:
        args: the ``inpaint`` command's options (``detect``, ``prompt``, ``mode``, the SD and mask options).
        image: ``[H, W, 3]`` float32 RGB in ``0..1``, read from ``image_path``.
        segments, selected: every instance found and the selected indices (``find_instances``).
        masks: ``(chosen, repaint, objects)`` from :func:`objects_to_inpaint`.
        pipe: the loaded diffusers pipeline (:func:`load_inpaint_pipeline`).
        seed: the noise seed.
        models: ``((detector, path), (predictor, path))`` as ``load_models`` returns them.

    Returns:
        The paths written, in the order of :data:`INPAINT_OUTPUT_FILES`.
    """
    from .cli_support import write_json
    from .images import save_image, save_mask
    from .overlay import draw_segments

    chosen, repaint, objects = masks
    matte = None
    if getattr(args, "refine", "none") != "none":
        from .matting.command import refine_selected

        matte = refine_selected(args, image, chosen, objects, matting, matte_file)
        repaint = (matte.alpha < 1).float() if args.mode == "keep" else torch.maximum(repaint, (matte.alpha > 0).float())
    work = working_size(*segments.image_size, long_side=args.size, multiple=_pipeline_multiple(pipe))
    result = inpaint_image(
        pipe, image, repaint, args.prompt, negative_prompt=args.negative_prompt, steps=args.steps,
        guidance=args.guidance, strength=args.strength, seed=seed, size=args.size,
        keep_mask=objects if args.mode == "keep" and matte is None else None,
    )
    if matte is not None and args.mode == "keep":  # exact where alpha is 1 (the foreground is the photo there)
        result = paste_back(result, matte.foreground, matte.alpha)
    written = [save_image(result, folder / "result.png"), save_mask(repaint, folder / "mask.png"),
               save_image(draw_segments(image, chosen, opacity=args.opacity), folder / "overlay.png")]
    if matte is not None:
        written.append(save_mask(matte.alpha, folder / "alpha.png", bits=16))
    record = _record(args, segments, selected, pipe, seed, work, device, dtype, models, image_path)
    written.append(write_json(folder / "detections.json", record))
    return written


def _quiet_diffusers(verbose: bool, quiet: bool) -> None:
    """diffusers logs warnings (e.g. "accelerate not found") that repeat ours; keep them for --verbose."""
    from diffusers.utils import logging as diffusers_logging

    if not verbose:
        diffusers_logging.set_verbosity_error()
    if quiet:
        diffusers_logging.disable_progress_bar()


def _inpaint_model_problem(args: argparse.Namespace, models: Path | None) -> str | None:
    """Why the inpainting model cannot be used, or ``None`` (checked before any model is loaded)."""
    try:
        kind, location = resolve_inpaint_model(args.inpaint_model, models)
        if kind == "hub":
            check_hub_model_available(location, local_files_only=args.no_download, models_dir=models)
    except ModelNotFoundError as exc:
        return str(exc)
    return None


def _run(args: argparse.Namespace) -> int:
    from .cli_support import CliError, load_models, pick_device, pick_dtype, prepare_output_folder
    from .images import load_image

    _validate(args, CliError)
    _import_diffusers()  # fail before the slow detection if diffusers is missing
    models = Path(args.models) if args.models is not None else None
    problem = _inpaint_model_problem(args, models)  # a missing model fails before detection, with the others
    verbose, quiet = bool(getattr(args, "verbose", False)), bool(getattr(args, "quiet", False))
    _quiet_diffusers(verbose, quiet)
    device = pick_device(args.device)
    dtype = pick_dtype(args.precision, device)
    from .matting.command import check_mattes, load_matting, matting_problems

    (matte_file,) = check_mattes(args, [args.image], CliError)
    problems = ([problem] if problem else []) + matting_problems(args)
    found = load_models(args, device, dtype, also=problems)  # every missing model in one error
    matting = load_matting(args, device)

    image = load_image(args.image)
    segments, selected = _find_objects(args, image, found)
    masks = objects_to_inpaint(args, args.image, segments, selected)

    pipe = load_inpaint_pipeline(
        args.inpaint_model, device=device, dtype=dtype, local_files_only=args.no_download, models_dir=models,
        safety_checker=not args.no_safety_checker, config=args.inpaint_config,
    )
    pipe.set_progress_bar_config(disable=quiet)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    prepare_output_folder(args.out)
    write_inpaint_outputs(args, args.image, image, segments, selected, masks, pipe, seed, args.out, device=device,
                          dtype=dtype, models=found, matting=matting, matte_file=matte_file)
    log.info("%s: %d instance(s) %s, seed %d -> %s", args.image.name, len(selected),
             "kept" if args.mode == "keep" else "repainted", seed, args.out)
    return 0


def run_inpaint_command(args: argparse.Namespace) -> int:
    """Run the ``inpaint`` subcommand with parsed ``args`` (see :func:`add_inpaint_arguments`).

    Returns:
        0 on success. 1 (after printing ``error: …`` to stderr) when diffusers is not installed.

    Raises:
        The errors ``grounded_inpaint.cli.main`` turns into one-paragraph messages: ``CliError``
        (bad option, exit code 2), :class:`NothingDetectedError`, :class:`UnsafeContentError`,
        ``ModelNotFoundError``, ``CheckpointError``, ``FileNotFoundError``, ``ValueError``
        (exit code 1). Nothing is written unless the run succeeds.
    """
    try:
        return _run(args)
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
