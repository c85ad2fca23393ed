"""Command line: ``python -m grounded_inpaint mask IMAGE... --prompt "shoes" --out DIR``.

For every image it writes ``DIR/<image name>/``:

* ``mask.png``: the inpainting mask (white = area to repaint);
* ``overlay.png``: the image with each found instance coloured, boxed and labelled;
* ``cutout.png``: the selected objects as RGBA (alpha = object mask);
* ``detections.json``: prompt, settings, and per instance its label, score, SAM quality, box, area.

``python -m grounded_inpaint models`` lists the models found in the models folder and the ones that
can be downloaded. Errors end the program with exit code 2 (bad options) or 1 (missing model,
unreadable image, …) and a one-paragraph message, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

log = logging.getLogger("grounded_inpaint")

ENV_MODELS = "GROUNDED_INPAINT_MODELS"


class CliError(Exception):
    """An error to report to the user as one paragraph (no traceback)."""


def _models_default() -> str:
    return os.environ.get(ENV_MODELS, "models")


def build_parser() -> argparse.ArgumentParser:
    from .detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD
    from .models import DEFAULT_DETECTOR, DEFAULT_SEGMENTER

    parser = argparse.ArgumentParser(
        prog="python -m grounded_inpaint",
        description="Text-prompted inpainting masks: GroundingDINO finds the objects, SAM cuts them out.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="log only errors; no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mask", help="detect, segment and write mask / overlay / cut-out / detections per image",
                       description="Detect the objects named by --prompt in each image, segment them with SAM and "
                       "write mask.png, overlay.png, cutout.png and detections.json into OUT/<image name>/.")
    m.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP, ...)")
    m.add_argument("-p", "--prompt", required=True, help='what to find, e.g. "shoes" or "dress, handbag"')
    m.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    m.add_argument("--models", default=_models_default(), type=Path,
                   help=f"models folder holding grounding-dino/ and sams/ (default: ${ENV_MODELS} or ./models)")
    m.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"GroundingDINO model name or path (default {DEFAULT_DETECTOR})")
    m.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help=f"SAM model name or path (default {DEFAULT_SEGMENTER})")
    m.add_argument("--no-download", action="store_true", help="never download; fail if a model is missing")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    m.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="model precision (auto = fp32 on CPU, fp16 on CUDA)")
    m.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD, help="minimum box score (default 0.30)")
    m.add_argument("--text-threshold", type=float, default=DEFAULT_TEXT_THRESHOLD, help="minimum word score for labels (default 0.25)")
    m.add_argument("--max-detections", type=int, default=None, help="keep at most N boxes per image")
    m.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU, help="drop same-label boxes overlapping more than this (default 0.5; 1 = off)")
    m.add_argument("--multimask", default="auto", choices=["auto", "best", "single"], help="SAM output choice (default auto)")
    m.add_argument("--select", default="", help='instances to use, by index: "0,2" or "1-3" (default all)')
    m.add_argument("--top-k", type=int, default=None, help="use only the K highest-scoring instances")
    m.add_argument("--labels", default="", help='use only instances with these labels, e.g. "shoes, bag"')
    m.add_argument("--min-score", type=float, default=0.0, help="use only instances scoring at least this")
    m.add_argument("--invert", action="store_true", help="repaint everything except the objects (keep the objects)")
    m.add_argument("--grow", type=int, default=0, help="grow (N > 0) or shrink (N < 0) the objects by N pixels")
    m.add_argument("--fill-holes", action="store_true", help="fill holes inside the objects")
    m.add_argument("--min-area", type=int, default=0, help="drop object regions smaller than N pixels")
    m.add_argument("--feather", type=float, default=0.0, help="soften the mask edge over N pixels")
    m.add_argument("--threshold", type=float, default=0.5, help="binarise the object mask at this value")
    m.add_argument("--opacity", type=float, default=0.5, help="overlay fill opacity (default 0.5)")

    ls = sub.add_parser("models", help="list local and downloadable models")
    ls.add_argument("--models", default=_models_default(), type=Path, help="models folder")

    from .inpaint import add_inpaint_arguments  # diffusers itself is imported only when it runs

    add_inpaint_arguments(sub)
    return parser


def _pick_device(name: str):
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise CliError(f"unknown device {name!r} ({exc}); use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CliError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _pick_dtype(precision: str, device):
    import torch

    from .models import parse_dtype

    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(precision)


def _output_dirs(images: Sequence[Path], out: Path) -> list[Path]:
    stems = [p.stem for p in images]
    dirs = []
    for i, (path, stem) in enumerate(zip(images, stems)):
        dirs.append(out / (stem if stems.count(stem) == 1 else f"{i:03d}_{stem}"))
    return dirs


def _progress_bar(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="image", disable=quiet or total < 2, leave=False)


def run_mask(args: argparse.Namespace) -> int:
    from .images import load_image, save_image, save_mask
    from .masks import make_inpaint_mask, parse_indices, select_indices
    from .models import load_detector, load_segmenter
    from .overlay import cutout, draw_segments
    from .prompts import normalize_prompt
    from .segment import segment

    normalize_prompt(args.prompt)  # fail on an empty prompt before loading anything
    for name in ("box_threshold", "text_threshold", "threshold", "opacity"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise CliError(f"--{name.replace('_', '-')} must be between 0 and 1; got {value}")
    indices = parse_indices(args.select) if args.select.strip() else None
    labels = [s.strip() for s in args.labels.replace(".", ",").split(",") if s.strip()] or None

    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"image file(s) not found: {', '.join(missing)}")
    device = _pick_device(args.device)
    dtype = _pick_dtype(args.precision, device)
    log.info("device %s, precision %s, models folder %s", device, str(dtype).replace("torch.", ""), args.models)
    detector = load_detector(args.detector, args.models, device=device, dtype=dtype, download=not args.no_download)
    predictor = load_segmenter(args.segmenter, args.models, device=device, dtype=dtype, download=not args.no_download)

    out_dirs = _output_dirs(paths, args.out)
    summary = []
    with _progress_bar(len(paths), "segmenting", args.quiet) as bar:
        for path, folder in zip(paths, out_dirs):
            image = load_image(path)
            found = detector.detect(
                [image], args.prompt, args.box_threshold, args.text_threshold, args.max_detections, args.nms_iou
            )[0]
            segments = segment(predictor, [image], [found], multimask=args.multimask)[0]
            selected = select_indices(segments, indices=indices, top_k=args.top_k, labels=labels, min_score=args.min_score)
            chosen = segments.take(selected)
            options = dict(threshold=args.threshold, fill_holes=args.fill_holes, min_area=args.min_area, grow=args.grow)
            objects = make_inpaint_mask(chosen, image_size=segments.image_size, **options, invert=False, feather=args.feather)
            mask = make_inpaint_mask(chosen, image_size=segments.image_size, **options, invert=args.invert, feather=args.feather)
            folder.mkdir(parents=True, exist_ok=True)
            save_mask(mask, folder / "mask.png")
            save_image(draw_segments(image, segments, opacity=args.opacity), folder / "overlay.png")
            rgba, _ = cutout(image, objects)
            save_image(rgba, folder / "cutout.png")
            record = {
                "image": str(path),
                "prompt": args.prompt,
                "settings": {
                    "detector": str(args.detector), "segmenter": str(args.segmenter),
                    "box_threshold": args.box_threshold, "text_threshold": args.text_threshold,
                    "max_detections": args.max_detections, "nms_iou": args.nms_iou, "multimask": args.multimask,
                    "invert": args.invert, "grow": args.grow, "feather": args.feather,
                    "fill_holes": args.fill_holes, "min_area": args.min_area, "threshold": args.threshold,
                },
                **segments.to_json(),
                "selected": selected,
            }
            (folder / "detections.json").write_text(json.dumps(record, indent=2) + "\n")
            summary.append((path.name, len(segments), folder))
            bar.update(1)
    for name, count, folder in summary:
        log.info("%s: %d instance%s -> %s", name, count, "" if count == 1 else "s", folder)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
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
        if args.command == "inpaint":
            return args.func(args)
        return run_mask(args)
    except (CliError, EmptyPromptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ModelNotFoundError, CheckpointError, FileNotFoundError, ValueError) as exc:
        if args.verbose:
            log.exception("details")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
