"""What every subcommand of the command line shares: errors, options, devices, files, progress.

``cli.py`` (the ``mask`` and ``models`` commands and ``main``) and ``inpaint.py`` (the ``inpaint``
command) both import from here; neither imports the other's helpers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .checks import argparse_type, count, fraction, number

__all__ = [
    "CliError",
    "ENV_MODELS",
    "models_default",
    "add_logging_options",
    "fraction_arg",
    "count_arg",
    "number_arg",
    "pick_device",
    "pick_dtype",
    "progress_bar",
    "resolve_all",
    "selection_options",
    "load_models",
    "write_json",
    "prepare_output_folder",
    "versions",
    "detections_record",
    "check_output_folder",
    "MASK_OUTPUT_FILES",
    "find_instances",
    "write_mask_outputs",
]

log = logging.getLogger("grounded_inpaint")

#: Environment variable naming the default models folder.
ENV_MODELS = "GROUNDED_INPAINT_MODELS"


class CliError(Exception):
    """An error to report to the user as one paragraph (no traceback); exit code 2."""


def models_default() -> str:
    """The default ``--models`` folder: ``$GROUNDED_INPAINT_MODELS`` or ``./models``."""
    return os.environ.get(ENV_MODELS, "models")


def add_logging_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``-v`` / ``-q`` on the main parser and again on each subcommand, so both orders work.

    On subcommands the default is ``SUPPRESS``, so a flag given before the subcommand is kept.
    """
    default: Any = False if top_level else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log more detail")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="log only errors; no progress bars")


#: argparse types: a bad number exits with code 2 and a message naming the option and its range.
fraction_arg = argparse_type(fraction)


def count_arg(low: int = 0, high: int | None = None) -> Callable[[str], object]:
    """An argparse type for a whole number in ``low..high``."""
    return argparse_type(lambda name, value: count(name, value, low=low, high=high), integer=True)


def number_arg(**bounds: Any) -> Callable[[str], object]:
    """An argparse type for a finite number within ``bounds`` (see :func:`grounded_inpaint.checks.number`)."""
    return argparse_type(lambda name, value: number(name, value, **bounds))


def pick_device(name: str):
    """``auto`` → CUDA, then Apple MPS, then the CPU; otherwise the named torch device (checked)."""
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise CliError(f"unknown device {name!r} ({exc}); use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CliError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise CliError("--device mps was asked for but PyTorch sees no Apple GPU; use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(precision: str, device):
    """``auto`` → fp16 on CUDA, fp32 elsewhere; otherwise the named precision."""
    import torch

    from .models import parse_dtype

    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(precision)


def progress_bar(total: int, desc: str, quiet: bool):
    """A tqdm bar counting images (hidden with ``-q`` or for a single image)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="image", disable=quiet or total < 2, leave=False)


def resolve_all(
    wanted: Iterable[tuple[str, str]], models_dir: Path | None, *, download: bool, also: Sequence[str] = ()
) -> list[Path]:
    """Resolve every ``(name, family)`` and report **all** missing models in one error.

    A user fixing a missing detector should not discover the missing segmenter only on the next
    run: each model that cannot be found or downloaded adds one paragraph to the message, after
    the problems already found (``also``).

    Raises:
        ModelNotFoundError: one or more models are missing (every one is named).
    """
    from .errors import ModelNotFoundError
    from .models import resolve_model

    paths: list[Path] = []
    problems: list[str] = list(also)
    for name, family in wanted:
        try:
            paths.append(resolve_model(name, family, models_dir, download=download))  # type: ignore[arg-type]
        except ModelNotFoundError as exc:
            problems.append(str(exc))
    if problems:
        if len(problems) == 1:
            raise ModelNotFoundError(problems[0])
        raise ModelNotFoundError(f"{len(problems)} models are missing:\n" + "\n".join(f"  - {p}" for p in problems))
    return paths


def selection_options(args: argparse.Namespace) -> tuple[list[int] | None, list[str] | None]:
    """``(indices, labels)`` of ``--select`` / ``--labels`` (None where not given)."""
    from .masks import parse_indices

    indices = parse_indices(args.select) if args.select.strip() else None
    labels = [s.strip() for s in args.labels.replace(".", ",").split(",") if s.strip()] or None
    return indices, labels


def load_models(args: argparse.Namespace, device, dtype, *, also: Sequence[str] = ()):
    """The detector and the segmenter of ``args`` (``--detector``, ``--segmenter``, ``--models``,
    ``--no-download``) with their paths; every missing model is named in one error, together with
    the problems ``also`` lists (e.g. a missing inpainting model)."""
    from .models import load_detector, load_segmenter

    detector_path, segmenter_path = resolve_all(
        [(args.detector, "grounding-dino"), (args.segmenter, "sam")], args.models, download=not args.no_download,
        also=also,
    )
    detector = load_detector(detector_path, args.models, device=device, dtype=dtype, download=not args.no_download)
    predictor = load_segmenter(segmenter_path, args.models, device=device, dtype=dtype, download=False)
    return (detector, detector_path), (predictor, segmenter_path)


def prepare_output_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents) or raise :class:`CliError` naming it and why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the output folder {folder}: {exc.strerror or exc}; choose another --out") from None
    if not os.access(folder, os.W_OK):
        raise CliError(f"the output folder {folder} is not writable; choose another --out")
    return folder


def check_output_folder(folder: Path) -> None:
    """Raise :class:`CliError` now if ``folder`` could not be created or written later (nothing is created)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise CliError(f"cannot create the output folder {folder}: {probe} is a file; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"cannot create the output folder {folder}: {probe} is not writable; choose another --out")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically: a temporary file in the same folder, then a rename."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def versions() -> dict[str, str]:
    """Versions of the package and of the libraries that decide its numbers (recorded with results)."""
    from importlib import metadata

    out = {}
    for name in ("grounded-inpaint", "torch", "transformers", "segment-anything", "diffusers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def detections_record(
    args: argparse.Namespace,
    image: Path,
    prompt: str,
    segments: Any,
    selected: Sequence[int],
    setting_names: Sequence[str],
    model_paths: tuple[Path, Path],
    device: Any,
    dtype: Any,
    *,
    overlay_shows: str,
) -> dict[str, Any]:
    """What ``detections.json`` holds: the image and its size, every setting used (the options
    ``setting_names`` as given, plus the models' resolved paths, the device and precision used and
    the library versions), every instance found (label, score, SAM quality, XYXY box, area) and the
    selection the mask was made of."""
    height, width = segments.image_size
    settings = {name: (str(v) if isinstance(v, Path) else v) for name in setting_names for v in [getattr(args, name, None)]}
    settings.update(detector_path=str(model_paths[0]), segmenter_path=str(model_paths[1]), device_used=str(device),
                    precision_used=str(dtype).replace("torch.", ""))
    return {
        "image": str(image),
        "prompt": prompt,
        "image_size_order": "height, width",
        **segments.to_json(),
        "image_height": height,
        "image_width": width,
        "settings": settings,
        "selected": list(selected),
        "overlay_shows": overlay_shows,
        "versions": versions(),
    }


#: The files the ``mask`` command (and ``batch`` without ``--inpaint``) writes per image, in this order.
MASK_OUTPUT_FILES = ("mask.png", "overlay.png", "cutout.png", "detections.json")


def find_instances(args: argparse.Namespace, image: Any, prompt: str, detector: Any, predictor: Any) -> tuple[Any, list[int]]:
    """Detect ``prompt`` in one image, segment every detection and apply the selection options of ``args``.

    Arguments:
        args: the detection options (``box_threshold``, ``text_threshold``, ``max_detections``,
            ``nms_iou``, ``multimask``) and the selection options (``select``, ``top_k``,
            ``labels``, ``min_score``) as the ``mask`` command parses them.
        image: ``[H, W, 3]`` float32 RGB in ``0..1``.
        prompt: what to find, e.g. ``"shoes"``.
        detector, predictor: the loaded models (:func:`load_models`).

    Returns:
        ``(segments, selected)``: every instance found (:class:`grounded_inpaint.structures.Segments`)
        and the indices of the selected ones (all of them without a selection option).
    """
    from .masks import select_indices
    from .pipeline import grounded_segment

    indices, labels = selection_options(args)
    _, (segments,) = grounded_segment(
        detector, predictor, [image], prompt, box_threshold=args.box_threshold, text_threshold=args.text_threshold,
        max_detections=args.max_detections, nms_iou=args.nms_iou, multimask=args.multimask,
    )
    return segments, select_indices(segments, indices=indices, top_k=args.top_k, labels=labels, min_score=args.min_score)


def write_mask_outputs(
    args: argparse.Namespace,
    image_path: Path,
    image: Any,
    segments: Any,
    selected: Sequence[int],
    folder: Path,
    *,
    setting_names: Sequence[str],
    model_paths: tuple[Path, Path],
    device: Any,
    dtype: Any,
    matting: Any = None,
    matte_file: Path | None = None,
) -> list[Path]:
    """Write what the ``mask`` command writes for one image into ``folder`` (which must exist).

    ``mask.png`` (the inpainting mask after the mask options of ``args``: ``threshold``,
    ``fill_holes``, ``min_area``, ``grow``, ``invert``, ``feather``), ``overlay.png`` (the selected
    instances when a selection option is given, otherwise all found, at ``opacity``), ``cutout.png``
    (the selected objects as RGBA) and ``detections.json`` (:func:`detections_record`). With
    ``--refine`` (``args.refine`` other than ``"none"``; ``matting`` is the ViTMatte model for
    ``vitmatte``, ``matte_file`` the image's ``--matte``) the cut-out carries the refined soft alpha
    and the object's own colours at its edge, and ``alpha.png`` (16-bit) is written after
    ``cutout.png``. Each file is written to a temporary name and moved into place.

    Returns:
        The paths written, in the order of :data:`MASK_OUTPUT_FILES` (``alpha.png`` before
        ``detections.json`` when refining).
    """
    from .images import save_image, save_mask
    from .masks import make_inpaint_mask
    from .overlay import cutout, draw_segments

    indices, labels = selection_options(args)
    selecting = indices is not None or labels is not None or bool(args.top_k) or args.min_score > 0
    chosen = segments.take(list(selected))
    options = dict(threshold=args.threshold, fill_holes=args.fill_holes, min_area=args.min_area, grow=args.grow)
    objects = make_inpaint_mask(chosen, image_size=segments.image_size, **options, invert=False, feather=args.feather)
    mask = make_inpaint_mask(chosen, image_size=segments.image_size, **options, invert=args.invert, feather=args.feather)
    written = [save_mask(mask, folder / "mask.png")]
    # the overlay shows what the mask is made of: the selected instances (all of them without a selection)
    written.append(save_image(draw_segments(image, chosen if selecting else segments, opacity=args.opacity), folder / "overlay.png"))
    if getattr(args, "refine", "none") == "none":
        rgba, _ = cutout(image, objects)
        written.append(save_image(rgba, folder / "cutout.png"))
    else:  # the soft alpha (16-bit) and the object's own colours at its edge
        from .matting.command import refine_selected

        clean = make_inpaint_mask(chosen, image_size=segments.image_size, threshold=args.threshold,
                                  fill_holes=args.fill_holes, min_area=args.min_area)
        matte = refine_selected(args, image, chosen, clean, matting, matte_file)
        written.append(save_image(matte.rgba(), folder / "cutout.png"))
        written.append(save_mask(matte.alpha, folder / "alpha.png", bits=16))
    record = detections_record(args, image_path, args.prompt, segments, selected, setting_names, model_paths, device, dtype,
                               overlay_shows="selected" if selecting else "all")
    written.append(write_json(folder / "detections.json", record))
    return written
