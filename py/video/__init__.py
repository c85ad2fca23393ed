"""Video: words to tracked masks through a clip — GroundingDINO on key frames, SAM 2.1 memory between them.

* :func:`load_video_model`: a SAM 2.1 video model from the files users have (Meta's ``.pt``, kijai's
  ``.safetensors``, transformers ``sam2.1-hiera-*`` folders), video-tracking weights included;
* :func:`load_sam3_video_model`: SAM 3 with its video tracker from a transformers folder
  (facebook/sam3) in ``models/sam3`` — the second engine, which finds the objects from the text
  itself (transformers 5);
* :func:`grounded_track` / :func:`track_frames` (:mod:`.tracker`): frames + prompt → one
  :class:`~grounded_inpaint.structures.Segments` per frame, each object with a stable id, with
  either engine;
* :mod:`.tracks`: the id rules (matching re-detections, new tracks, re-anchoring, ending), no model;
* :mod:`.sam2_video`: the streamed, memory-bounded SAM 2.1 propagation;
* :mod:`.sam3_video`: the streamed, memory-bounded SAM 3 detection and tracking;
* :mod:`.frames`: reading a video file or a folder of frames, writing mask frames and a mask video.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tracker import DEFAULT_DETECT_EVERY, DEFAULT_MAX_OBJECTS, grounded_track, track_frames

__all__ = ["load_video_model", "load_sam3_video_model", "DEFAULT_SAM3_VIDEO_MODEL", "grounded_track", "track_frames", "DEFAULT_DETECT_EVERY", "DEFAULT_MAX_OBJECTS",
           "DEFAULT_VIDEO_MODEL"]

#: The SAM 2.1 video model used when none is named (Meta's file holds the video-tracking weights).
DEFAULT_VIDEO_MODEL = "sam2.1_hiera_tiny.pt"


def load_video_model(
    name: str | Path = DEFAULT_VIDEO_MODEL,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress=None,
    cache: bool = True,
):
    """Load (or reuse) a SAM 2.1 video model. ``name`` is found like a segmenter
    (:func:`grounded_inpaint.models.resolve_model`: a path, a name in ``models/sam2`` or
    ``models/sams``, or a known SAM 2.1 download).

    A single file (Meta's ``sam2.1_hiera_*.pt``, kijai's ``.safetensors``) is converted in memory with
    its video-tracking weights; a transformers folder must have ``model_type`` ``sam2_video``.
    ``cache``: as in :func:`grounded_inpaint.models.load_detector`.

    Returns:
        :class:`.sam2_video.Sam2VideoEngine`.

    Raises:
        ModelNotFoundError: the name is unknown (the message lists the choices).
        CheckpointError: the file has no video-tracking weights (an image-only SAM 2 file or folder)
            or is not SAM 2 at all.
        ImportError: transformers is older than 4.56 (the message gives the pip command).
    """
    from ..models import _cached, parse_dtype, resolve_model
    from .sam2_video import Sam2VideoEngine, require_sam2_video

    require_sam2_video()
    path = resolve_model(name, "sam", models_dir, download=download, progress=progress)
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    if path.is_dir():
        return _cached("sam2_video", key, lambda: Sam2VideoEngine.from_pretrained(path, device=device, dtype=torch_dtype), cache)
    return _cached("sam2_video", key, lambda: Sam2VideoEngine.from_checkpoint(path, device=device, dtype=torch_dtype), cache)


#: The SAM 3 folder used when none is named (facebook/sam3 holds the video tracker; a gated download).
DEFAULT_SAM3_VIDEO_MODEL = "sam3"


def load_sam3_video_model(
    name: str | Path = DEFAULT_SAM3_VIDEO_MODEL,
    models_dir: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    download: bool = True,
    progress=None,
    cache: bool = True,
):
    """Load (or reuse) SAM 3 with its video tracker from a transformers folder in ``models/sam3``
    (``model_type`` ``sam3_video``, as facebook/sam3: the same folder Load SAM 3 Model reads for images).
    ``name`` is found as in :func:`grounded_inpaint.models.load_sam3`; ``cache`` as in
    :func:`grounded_inpaint.models.load_detector`.

    Returns:
        :class:`.sam3_video.Sam3VideoEngine`.

    Raises:
        ModelNotFoundError: the name is unknown, or it is a single file (Meta's ``sam3.pt`` is not read).
        CheckpointError: the folder holds the image model only (``model_type`` ``sam3``) or does not load.
        ImportError: transformers is older than 5.0, or torchvision is missing (the message gives the pip command).
    """
    from ..errors import ModelNotFoundError
    from ..models import _cached, parse_dtype, resolve_model
    from .sam3_video import Sam3VideoEngine, require_sam3_video

    require_sam3_video()
    path = resolve_model(name, "sam3", models_dir, download=download, progress=progress)
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{path} is a single file; SAM 3 video tracking loads a transformers folder (config.json, model.safetensors, "
            "tokenizer files) such as facebook/sam3 — Meta's sam3.pt is not read. Put that folder into "
            f"{Path(models_dir) / 'sam3' if models_dir else 'the sam3 models folder'}"
        )
    torch_dtype = parse_dtype(dtype)
    key = (str(path.resolve()), str(torch.device(device)), str(torch_dtype))
    return _cached("sam3_video", key, lambda: Sam3VideoEngine.from_pretrained(path, device=device, dtype=torch_dtype), cache)
