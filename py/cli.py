"""Command line: ``python -m grounded_inpaint mask IMAGE... --prompt "shoes" --out DIR``.

For every image it writes ``DIR/<image name>/``:

* ``mask.png``: the inpainting mask (white = area to repaint);
* ``overlay.png``: the image with each instance coloured, boxed and labelled: the selected ones when
  ``--select`` / ``--top-k`` / ``--labels`` / ``--min-score`` choose some, otherwise all found;
* ``cutout.png``: the selected objects as RGBA (alpha = object mask; with ``--refine`` the soft
  alpha and the object's own colours at its edge);
* ``alpha.png`` (with ``--refine``): the refined soft alpha as 16-bit grayscale;
* ``detections.json``: prompt, every setting used, the image size (``image_size`` is
  ``[height, width]``; ``image_height`` / ``image_width`` say it again), and per instance its
  label, score, SAM quality, box (XYXY pixels) and area; ``selected`` lists the instances used.

The default models are ``grounding-dino-tiny`` (IDEA-Research) and ``sam-vit-base`` (Meta's SAM
ViT-B in transformers' layout), downloaded on first use into ``--models`` unless ``--no-download``.

``python -m grounded_inpaint batch INPUT... --prompt "shoes" --out DIR`` does the same for a whole
catalogue — folders, glob patterns, manifests —, resumably, in this process or on Ray
(:mod:`grounded_inpaint.catalogue`).

``python -m grounded_inpaint track CLIP --prompt ... --out DIR`` tracks the objects through a video
or a folder of frames (see :mod:`grounded_inpaint.video.cli`).

``python -m grounded_inpaint models`` lists the models found in the models folder and the ones that
can be downloaded. Errors end the program with exit code 2 (bad options, each named with its valid
range) or 1 (missing models — all of them named at once —, unreadable image, …) and a
one-paragraph message, without a traceback. ``-v`` / ``-q`` go before or after the command.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Sequence

from .cli_support import (
    CliError,
    ENV_MODELS,
    add_logging_options,
    count_arg,
    find_instances,
    fraction_arg,
    models_default,
    number_arg,
    load_models,
    pick_device,
    pick_dtype,
    prepare_output_folder,
    progress_bar,
    selection_options,
    write_mask_outputs,
)

__all__ = ["main", "build_parser"]

log = logging.getLogger("grounded_inpaint")

#: The options of ``mask`` recorded in ``detections.json`` (with the models' resolved paths).
_MASK_SETTINGS = (
    "detector", "segmenter", "models", "device", "precision", "box_threshold", "text_threshold", "max_detections",
    "nms_iou", "multimask", "select", "top_k", "labels", "min_score", "invert", "grow", "fill_holes", "min_area",
    "feather", "threshold", "opacity", "no_download",
    "refine", "matting_model", "band_inside", "band_outside", "matte", "no_decontaminate", "no_sam_uncertainty",
)


def build_parser() -> argparse.ArgumentParser:
    from .detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD, MAX_DETECTIONS_LIMIT
    from .models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER

    parser = argparse.ArgumentParser(
        prog="python -m grounded_inpaint",
        description="Text-prompted inpainting masks: GroundingDINO finds the objects, SAM cuts them out.",
    )
    add_logging_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mask", help="detect, segment and write mask / overlay / cut-out / detections per image",
                       description="Detect the objects named by --prompt in each image, segment them with SAM and "
                       "write mask.png, overlay.png, cutout.png and detections.json into OUT/<image name>/.")
    add_logging_options(m, top_level=False)
    m.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP, ...)")
    m.add_argument("-p", "--prompt", required=True, help='what to find, e.g. "shoes" or "dress, handbag"')
    m.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    m.add_argument("--models", default=models_default(), type=Path,
                   help=f"models folder holding grounding-dino/ and sams/ (default: ${ENV_MODELS} or ./models)")
    m.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"GroundingDINO model name or path (default {DEFAULT_DETECTOR})")
    m.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help=f"SAM model name or path (default {DEFAULT_SEGMENTER})")
    m.add_argument("--no-download", action="store_true", help="never download; fail if a model is missing")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    m.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="model precision (auto = fp32 on CPU, fp16 on CUDA)")
    m.add_argument("--box-threshold", type=fraction_arg, default=DEFAULT_BOX_THRESHOLD, help="minimum box score, 0..1 (default 0.30)")
    m.add_argument("--text-threshold", type=fraction_arg, default=DEFAULT_TEXT_THRESHOLD,
                   help="minimum word score for labels, 0..1 (default 0.25)")
    m.add_argument("--max-detections", type=count_arg(0, MAX_DETECTIONS_LIMIT), default=None, help="keep at most N boxes per image")
    m.add_argument("--nms-iou", type=number_arg(low=0.0), default=DEFAULT_NMS_IOU,
                   help="drop same-label boxes overlapping more than this (default 0.5; 1 = off)")
    m.add_argument("--multimask", default="auto", choices=["auto", "best", "single"], help="SAM output choice (default auto)")
    m.add_argument("--select", default="", help='instances to use, by index: "0,2" or "1-3" (default all)')
    m.add_argument("--top-k", type=count_arg(0), default=None, help="use only the K highest-scoring instances")
    m.add_argument("--labels", default="", help='use only instances with these labels, e.g. "shoes, bag"')
    m.add_argument("--min-score", type=fraction_arg, default=0.0, help="use only instances scoring at least this (0..1)")
    m.add_argument("--invert", action="store_true", help="repaint everything except the objects (keep the objects)")
    m.add_argument("--grow", type=count_arg(-(2**31), 2**31), default=0, help="grow (N > 0) or shrink (N < 0) the objects by N pixels")
    m.add_argument("--fill-holes", action="store_true", help="fill holes inside the objects")
    m.add_argument("--min-area", type=count_arg(0), default=0, help="drop object regions smaller than N pixels")
    m.add_argument("--feather", type=number_arg(low=0.0), default=0.0, help="soften the mask edge over N pixels")
    m.add_argument("--threshold", type=fraction_arg, default=0.5, help="binarise the object mask at this value (0..1)")
    m.add_argument("--opacity", type=fraction_arg, default=0.5, help="overlay fill opacity, 0..1 (default 0.5)")
    from .matting.command import add_refine_arguments

    add_refine_arguments(m)

    ls = sub.add_parser("models", help="list local and downloadable models")
    add_logging_options(ls, top_level=False)
    ls.add_argument("--models", default=models_default(), type=Path, help="models folder")

    from .inpaint import add_inpaint_arguments  # diffusers itself is imported only when it runs

    add_inpaint_arguments(sub)

    from .video.cli import add_track_arguments  # the video models are imported only when it runs

    add_track_arguments(sub)

    from .catalogue.command import add_batch_arguments  # after mask and inpaint: it shares their options

    add_batch_arguments(sub)
    return parser


def _output_dirs(images: Sequence[Path], out: Path) -> list[Path]:
    stems = [p.stem for p in images]
    dirs = []
    for i, (path, stem) in enumerate(zip(images, stems)):
        dirs.append(out / (stem if stems.count(stem) == 1 else f"{i:03d}_{stem}"))
    return dirs


def run_mask(args: argparse.Namespace) -> int:
    from .images import load_image
    from .prompts import normalize_prompt

    normalize_prompt(args.prompt)  # fail on an empty prompt before loading anything
    indices, labels = selection_options(args)
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"image file(s) not found: {', '.join(missing)}")
    from .matting.command import check_mattes, load_matting, matting_problems

    mattes = check_mattes(args, paths, CliError)
    prepare_output_folder(args.out)
    device = pick_device(args.device)
    dtype = pick_dtype(args.precision, device)
    log.info("device %s, precision %s, models folder %s", device, str(dtype).replace("torch.", ""), args.models)
    (detector, detector_path), (predictor, segmenter_path) = load_models(args, device, dtype, also=matting_problems(args))
    matting = load_matting(args, device)
    selecting = indices is not None or labels is not None or bool(args.top_k) or args.min_score > 0

    out_dirs = _output_dirs(paths, args.out)
    summary = []
    with progress_bar(len(paths), "segmenting", args.quiet) as bar:
        for path, folder, matte_file in zip(paths, out_dirs, mattes):
            image = load_image(path)
            segments, selected = find_instances(args, image, args.prompt, detector, predictor)
            prepare_output_folder(folder)
            write_mask_outputs(args, path, image, segments, selected, folder, setting_names=_MASK_SETTINGS,
                               model_paths=(detector_path, segmenter_path), device=device, dtype=dtype,
                               matting=matting, matte_file=matte_file)
            summary.append((path.name, len(segments), len(selected), folder))
            bar.update(1)
    for name, found, used, folder in summary:
        log.info("%s: %d instance%s found, %d used (overlay.png shows %s) -> %s", name, found, "" if found == 1 else "s",
                 used, "the selected ones" if selecting else "all", folder)
    if not args.quiet:
        print(f"wrote {len(summary)} result folder(s) to {args.out}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from .models import list_local_models
    from .registry import FAMILY_FOLDERS, known_models

    lines = []
    for family, folders in FAMILY_FOLDERS.items():
        local = list_local_models(args.models, family)  # type: ignore[arg-type]
        lines.append(f"{family} ({', '.join(str(args.models / f) for f in folders)}):")
        for name in local:
            lines.append(f"  {name}  [present]")
        for model in known_models(family):  # type: ignore[arg-type]
            if model.name not in local:
                lines.append(f"  {model.name}  [downloads on first use, {model.size_mb} MB, {model.license}, {model.source}]")
    print("\n".join(lines))
    return 0


def _torch_missing() -> bool:
    return importlib.util.find_spec("torch") is None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    if _torch_missing():
        print("error: PyTorch is not installed; install it first (https://pytorch.org/get-started/locally/, "
              "e.g. pip install torch), then run this again", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    for noisy in ("httpx", "huggingface_hub", "transformers", "urllib3"):  # their retries repeat our errors
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.ERROR)

    from .errors import CheckpointError, ModelNotFoundError
    from .prompts import EmptyPromptError

    try:  # transformers draws a "Loading weights" bar per model; ours are enough
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass

    try:
        if args.command == "models":
            return run_models(args)
        if args.command in ("inpaint", "track", "batch"):
            return args.func(args)
        return run_mask(args)
    except (CliError, EmptyPromptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ModelNotFoundError, CheckpointError, FileNotFoundError, ValueError, OSError) as exc:
        if args.verbose:
            log.exception("details")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (files already written are complete; run again to redo the rest)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
