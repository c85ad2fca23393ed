"""The ``track`` command: ``python -m grounded_inpaint track CLIP --prompt "person" --out DIR``.

``CLIP`` is a video file (needs PyAV: ``pip install "grounded-inpaint[video]"``) or a folder of
frames. ``--engine sam2`` (default): GroundingDINO + SAM 2.1's video memory; ``--engine sam3``: SAM 3
alone (its detector and tracker, a transformers 5 folder in ``models/sam3``). Writes into ``DIR``:

* ``masks/NNNNN.png`` (or the input frame's name for folders): the inpainting mask per frame — the
  union of the selected objects (white = repaint; ``--invert`` keeps them and repaints the rest);
* ``tracks.json``: the prompt, every setting, the models' paths, and per frame every tracked object
  with its ``id``, label, score, visibility, XYXY box and area; ``objects`` lists each id with its
  label and first / last frame;
* ``masks.mp4``: the masks as a video at the clip's frame rate, when PyAV is installed (otherwise a
  log line gives the pip command).

Frames are decoded, tracked and written one at a time, so a long clip needs no more memory than a
short one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["add_track_arguments", "run_track"]

log = logging.getLogger("grounded_inpaint")

_SETTINGS = (
    "engine", "detector", "video_model", "models", "device", "precision", "detect_every", "max_objects", "box_threshold",
    "text_threshold", "nms_iou", "threshold", "new_object_threshold", "ids", "labels", "invert", "grow", "fill_holes",
    "min_area", "feather", "no_download",
)


def add_track_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``track`` subcommand to ``subparsers`` and return it (its ``func`` is :func:`run_track`)."""
    from ..cli_support import add_logging_options, count_arg, fraction_arg, models_default, number_arg
    from ..detector import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD
    from ..models import DEFAULT_DETECTOR
    from . import DEFAULT_DETECT_EVERY, DEFAULT_MAX_OBJECTS, DEFAULT_SAM3_VIDEO_MODEL, DEFAULT_VIDEO_MODEL
    from .tracker import MAX_OBJECTS_LIMIT

    p = subparsers.add_parser(
        "track", help="track the objects named by --prompt through a video or a folder of frames; write a mask per frame",
        description="GroundingDINO finds the objects on the first frame and every --detect-every frames; SAM 2.1's "
        "video memory follows each one between them with a stable id (--engine sam3: SAM 3 alone finds and follows "
        "them). Writes masks/ (one PNG per frame), tracks.json (ids, labels, boxes per frame) and masks.mp4 (with "
        "PyAV) into OUT.",
    )
    add_logging_options(p, top_level=False)
    p.add_argument("clip", metavar="CLIP", type=Path, help="a video file (.mp4, .mov, .webm, ...; needs PyAV) or a folder of frames")
    p.add_argument("-p", "--prompt", required=True, help='what to track, e.g. "person" or "dress, handbag"')
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--models", default=models_default(), type=Path, help="models folder (grounding-dino/, sam2/, sams/, sam3/)")
    p.add_argument("--engine", choices=["sam2", "sam3"], default="sam2",
                   help="sam2: GroundingDINO + SAM 2.1 video (default); sam3: SAM 3 alone, its own detector and tracker "
                   "(transformers 5)")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"GroundingDINO model name or path (default {DEFAULT_DETECTOR})")
    p.add_argument("--video-model", default=None,
                   help=f"SAM 2.1 model with its video weights: Meta's .pt, kijai's .safetensors or a sam2.1-hiera-* "
                   f"transformers folder (default {DEFAULT_VIDEO_MODEL}); with --engine sam3 a SAM 3 folder with its "
                   f"tracker in models/sam3 (default {DEFAULT_SAM3_VIDEO_MODEL}, facebook/sam3)")
    p.add_argument("--no-download", action="store_true", help="never download; fail if a model is missing")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"], help="model precision")
    p.add_argument("--detect-every", type=count_arg(0), default=None,
                   help=f"run the detector every N frames (default {DEFAULT_DETECT_EVERY}, with --engine sam3 1; 0 = the "
                   "first frame only)")
    p.add_argument("--max-objects", type=count_arg(1, MAX_OBJECTS_LIMIT), default=DEFAULT_MAX_OBJECTS,
                   help=f"track at most N objects at once (default {DEFAULT_MAX_OBJECTS})")
    p.add_argument("--box-threshold", type=fraction_arg, default=DEFAULT_BOX_THRESHOLD, help="minimum box score, 0..1")
    p.add_argument("--text-threshold", type=fraction_arg, default=DEFAULT_TEXT_THRESHOLD, help="minimum word score, 0..1")
    p.add_argument("--nms-iou", type=number_arg(low=0.0), default=DEFAULT_NMS_IOU, help="same-label box overlap to drop (1 = off)")
    p.add_argument("--threshold", type=fraction_arg, default=None,
                   help="--engine sam3: a detection counts above this score (default: the model's, 0.5)")
    p.add_argument("--new-object-threshold", type=fraction_arg, default=None,
                   help="--engine sam3: an unmatched detection starts a new object from this score (default: the model's, 0.7)")
    p.add_argument("--ids", default="", help='use only these object ids in the masks, e.g. "1,3" (default all)')
    p.add_argument("--labels", default="", help='use only objects with these labels, e.g. "person"')
    p.add_argument("--invert", action="store_true", help="keep the objects and repaint everything else")
    p.add_argument("--grow", type=count_arg(-(2**31), 2**31), default=0, help="grow (N > 0) or shrink (N < 0) the objects")
    p.add_argument("--fill-holes", action="store_true", help="fill holes inside the objects")
    p.add_argument("--min-area", type=count_arg(0), default=0, help="drop object regions smaller than N pixels")
    p.add_argument("--feather", type=number_arg(low=0.0), default=0.0, help="soften the mask edge over N pixels")
    p.add_argument("--fps", type=number_arg(low=0.0, low_open=True), default=None,
                   help="frame rate of masks.mp4 for a folder of frames (default 25; videos keep their own)")
    p.set_defaults(func=run_track)
    return p


def engine_default_every(engine: Any) -> int:
    """The engine's own detector interval (10 for SAM 2.1 + GroundingDINO, 1 for SAM 3)."""
    from .tracker import DEFAULT_DETECT_EVERY

    return int(getattr(engine, "default_detect_every", DEFAULT_DETECT_EVERY))


def _parse_ids(text: str) -> list[int] | None:
    from ..cli_support import CliError

    items = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
    try:
        return [int(s) for s in items] or None
    except ValueError:
        raise CliError(f"--ids takes whole numbers separated by commas, e.g. \"1,3\"; got {text!r}") from None


def run_track(args: argparse.Namespace) -> int:
    """Run the ``track`` command (see the module doc); returns the exit code."""
    from ..cli_support import (
        CliError, pick_device, pick_dtype, prepare_output_folder, progress_bar, resolve_all, versions, write_json,
    )
    from ..images import save_mask
    from ..masks import make_inpaint_mask, select_instances
    from ..models import load_detector
    from ..prompts import normalize_prompt
    from . import DEFAULT_SAM3_VIDEO_MODEL, DEFAULT_VIDEO_MODEL, load_sam3_video_model, load_video_model, track_frames
    from .frames import PYAV_PIP, MaskVideoWriter, have_pyav, open_clip

    normalize_prompt(args.prompt)
    ids = _parse_ids(args.ids)
    labels = [s.strip() for s in args.labels.replace(".", ",").split(",") if s.strip()] or None
    if not args.clip.exists():
        raise CliError(f"clip not found: {args.clip} (give a video file or a folder of frames)")
    try:
        clip = open_clip(args.clip, fps=args.fps)
    except ImportError as exc:
        raise CliError(str(exc)) from None
    device = pick_device(args.device)
    dtype = pick_dtype(args.precision, device)
    sam3 = args.engine == "sam3"
    if sam3:
        from .sam3_video import require_sam3_video

        try:
            require_sam3_video()  # before any download
        except ImportError as exc:
            raise CliError(str(exc)) from None
        args.video_model = args.video_model or DEFAULT_SAM3_VIDEO_MODEL
        (video_path,) = resolve_all([(args.video_model, "sam3")], args.models, download=not args.no_download)
        detector, detector_path = None, None
        engine = load_sam3_video_model(video_path, args.models, device=device, dtype=dtype, download=False)
    else:
        args.video_model = args.video_model or DEFAULT_VIDEO_MODEL
        detector_path, video_path = resolve_all([(args.detector, "grounding-dino"), (args.video_model, "sam")], args.models,
                                                download=not args.no_download)
        detector = load_detector(detector_path, args.models, device=device, dtype=dtype, download=not args.no_download)
        engine = load_video_model(video_path, args.models, device=device, dtype=dtype, download=False)
    masks_dir = prepare_output_folder(args.out / "masks")
    video = None
    if have_pyav():
        video = MaskVideoWriter(args.out / "masks.mp4", clip.fps)
    else:
        log.info("masks.mp4 is not written: PyAV is not installed (%s)", PYAV_PIP)
    frames_record: list[dict[str, Any]] = []
    objects: dict[int, dict[str, Any]] = {}
    options = dict(fill_holes=args.fill_holes, min_area=args.min_area, grow=args.grow, invert=args.invert, feather=args.feather)
    results = track_frames(
        detector, engine, clip.frames(), args.prompt, detect_every=args.detect_every, max_objects=args.max_objects,
        box_threshold=args.box_threshold, text_threshold=args.text_threshold, nms_iou=args.nms_iou, total=clip.count,
        threshold=args.threshold, new_object_threshold=args.new_object_threshold,
    )
    try:
        with progress_bar(clip.count or 0, "tracking", args.quiet) as bar:
            for index, segments in enumerate(results):
                chosen = select_instances(segments, ids=ids, labels=labels)
                mask = make_inpaint_mask(chosen, image_size=segments.image_size, **options)
                name = clip.names[index] if clip.names else f"{index:05d}"
                save_mask(mask, masks_dir / f"{name}.png")
                if video is not None:
                    video.write(mask)
                record = segments.to_json()
                frames_record.append({"frame": index, "file": f"masks/{name}.png", "instances": record["instances"],
                                      "selected": [int(i) for i in chosen.ids.tolist()]})
                for item in record["instances"]:
                    entry = objects.setdefault(item["id"], {"id": item["id"], "label": item["label"], "first_frame": index})
                    entry["last_frame"] = index
                bar.update(1)
    finally:
        if video is not None:
            video.close()
    height, width = segments.image_size
    settings = {name: (str(v) if isinstance(v, Path) else v) for name in _SETTINGS for v in [getattr(args, name, None)]}
    settings.update(detector_path=str(detector_path) if detector_path else None, video_model_path=str(video_path),
                    detect_every_used=args.detect_every if args.detect_every is not None else engine_default_every(engine),
                    device_used=str(device),
                    precision_used=str(dtype).replace("torch.", ""))
    write_json(args.out / "tracks.json", {
        "clip": str(args.clip),
        "prompt": args.prompt,
        "frame_count": len(frames_record),
        "fps": float(clip.fps),
        "image_size_order": "height, width",
        "image_size": [height, width],
        "objects": sorted(objects.values(), key=lambda o: o["id"]),
        "frames": frames_record,
        "settings": settings,
        "versions": versions(),
    })
    log.info("%s: %d frames, %d objects tracked (ids %s) -> %s", args.clip, len(frames_record), len(objects),
             ", ".join(str(i) for i in sorted(objects)) or "none", args.out)
    if not args.quiet:
        print(f"wrote {len(frames_record)} mask frame(s), tracks.json" + (" and masks.mp4" if video is not None else "")
              + f" to {args.out}")
    return 0
