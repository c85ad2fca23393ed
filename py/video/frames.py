"""Clips in and out: a video file or a folder of frames in, mask frames and a mask video out.

Video files are read and written with PyAV (the optional extra ``grounded-inpaint[video]``, i.e.
``pip install av``); without it, folders of frames still work and asking for a video file says the
pip command. Frames are decoded one at a time, so a long clip is never held in memory whole.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import torch

__all__ = ["Clip", "open_clip", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "PYAV_PIP", "have_pyav", "MaskVideoWriter", "write_video"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
#: What to run when PyAV is missing.
PYAV_PIP = 'pip install "grounded-inpaint[video]"  (or: pip install av)'


def have_pyav() -> bool:
    """Whether PyAV (``import av``) is installed."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


def _natural_key(path: Path) -> list:
    """``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


@dataclass
class Clip:
    """A clip being read.

    Attributes:
        source: the file or folder.
        count: the number of frames, when known before decoding (folders; most video files).
        fps: frames per second (25 for folders of frames, where nothing records it).
        names: a file stem per frame for folders (output frames are named after them); ``None`` for videos.
    """

    source: Path
    count: int | None
    fps: Fraction
    names: list[str] | None = None

    def frames(self) -> Iterator[torch.Tensor]:
        """``[H, W, 3]`` float32 frames in 0..1, one at a time, in order."""
        if self.source.is_dir():
            from ..images import load_image

            files = _frame_files(self.source)
            for path in files:
                yield load_image(path)
            return
        import av
        import numpy as np

        with av.open(str(self.source)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                pixels = frame.to_ndarray(format="rgb24")
                yield torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)


def _frame_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise FileNotFoundError(f"{folder} holds no frames ({', '.join(IMAGE_SUFFIXES)} files)")
    return files


def open_clip(path: str | Path, *, fps: float | None = None) -> Clip:
    """Open a video file (needs PyAV) or a folder of frames (sorted by name, numbers in order).

    Arguments:
        fps: frames per second to record for a folder (default 25); ignored for video files, which
            carry their own rate.

    Raises:
        FileNotFoundError: the path does not exist, or the folder has no image files.
        ImportError: a video file but PyAV is not installed (the message gives the pip command).
        ValueError: the file is not a video PyAV can read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"clip not found: {path}")
    if path.is_dir():
        files = _frame_files(path)
        return Clip(path, len(files), Fraction(fps or 25).limit_denominator(1001), [p.stem for p in files])
    if not have_pyav():
        raise ImportError(f"reading the video file {path} needs PyAV: {PYAV_PIP}; or give a folder of frames instead")
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            count = int(stream.frames) or None
            rate = stream.average_rate or stream.base_rate or Fraction(25)
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path} is not a video file PyAV can read ({exc}); convert it, or give a folder of frames") from None
    return Clip(path, count, Fraction(rate), None)


class MaskVideoWriter:
    """Writes ``[H, W]`` masks (0..1) as a gray H.264 video (MPEG-4 where libx264 is missing), frame by frame.

    Sides are padded to even numbers (H.264 needs them); use as a context manager.
    """

    def __init__(self, path: str | Path, fps: Fraction) -> None:
        import av

        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self._container = av.open(str(self.path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.pix_fmt = "yuv420p"
        self._size: tuple[int, int] | None = None

    def write(self, mask: torch.Tensor) -> None:
        import av

        pixels = (mask.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        h, w = pixels.shape
        if self._size is None:
            self._size = (h + h % 2, w + w % 2)
            self._stream.height, self._stream.width = self._size
        padded = torch.zeros(self._size, dtype=torch.uint8)
        padded[:h, :w] = pixels
        rgb = padded[..., None].expand(-1, -1, 3).contiguous().numpy()
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "MaskVideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(frames, path: str | Path, fps: float | Fraction, *, crf: int = 18) -> Path:
    """Write ``[H, W, 3]`` float frames (0..1, even sides) as an H.264 video (needs PyAV)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": str(crf)}
        for i, frame in enumerate(frames):
            pixels = (frame.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            if i == 0:
                stream.height, stream.width = pixels.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
