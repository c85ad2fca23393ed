"""Synthetic clips with known objects, and stand-ins for the detector and the video model that see them
perfectly: the id rules (:mod:`grounded_inpaint.video.tracks`) are tested and measured on them, free
of any model's errors.

* :class:`ShapeClip`: rectangles that move, enter, leave and cross (``paths[obj](t)`` gives each
  object's XYXY box on frame ``t``, or ``None`` when it is absent);
* :class:`OracleDetector`: returns the true boxes of the current frame, shuffled;
* :class:`OracleEngine`: a video model that follows each prompted object perfectly (optionally
  drifting), with the same ``start`` / ``step`` interface as :class:`~grounded_inpaint.video.sam2_video.Sam2VideoEngine`;
* :func:`crossing_clip`: two same-sized blocks crossing, and :func:`id_swaps`: how often a track's
  mask covers another object than the one it started on.
"""

from __future__ import annotations

import torch

from ..structures import Detections
from ..video.sam2_video import TrackedMask
from ..video.tracks import box_iou

__all__ = ["ShapeClip", "OracleDetector", "OracleEngine", "crossing_clip", "run_oracle", "id_swaps"]


class ShapeClip:
    """Rectangles moving on a dark background: ``paths[obj](t) -> XYXY box or None`` (absent)."""

    def __init__(self, paths, n, h=60, w=100):
        self.paths, self.n, self.h, self.w = paths, n, h, w

    def boxes(self, t):
        return {k: b for k, p in self.paths.items() if (b := p(t)) is not None}

    def frames(self):
        for t in range(self.n):
            frame = torch.zeros(self.h, self.w, 3)
            for k, (x0, y0, x1, y1) in self.boxes(t).items():
                frame[int(y0):int(y1), int(x0):int(x1)] = torch.tensor([0.9, 0.3, 0.1]) if k % 2 else torch.tensor([0.1, 0.4, 0.9])
            yield frame

    def mask(self, box):
        m = torch.zeros(self.h, self.w, dtype=torch.bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        m[y0:y1, x0:x1] = True
        return m


class OracleDetector:
    """The true boxes of the clip, in a shuffled order, every call (stands in for GroundingDINO)."""

    def __init__(self, clip, label="block"):
        self.clip, self.label, self.t, self.calls, self.frame = clip, label, -1, [], 0

    def detect(self, images, prompt, box_threshold, text_threshold, max_detections, nms_iou, interrupt=None):
        self.t = self.frame
        truth = list(self.clip.boxes(self.t).values())
        order = torch.randperm(len(truth), generator=torch.Generator().manual_seed(self.t)).tolist()
        boxes = torch.stack([torch.tensor(truth[i], dtype=torch.float32) for i in order]) if truth else torch.zeros(0, 4)
        self.calls.append(self.t)
        return [Detections(boxes, [0.9] * len(order), [self.label] * len(order), (self.clip.h, self.clip.w))]


class OracleEngine:
    """A video model that follows each prompted object perfectly: the prompt's true object (the one whose
    box overlaps it most) is followed by identity; ``drift(t)`` shifts what it reports (a drifting model)."""

    def __init__(self, clip, detector, drift=None):
        self.clip, self.detector, self.drift = clip, detector, drift or (lambda t: 0)
        self.prompts = []

    def start(self, size, state_device=None):
        engine = self

        class Stream:
            def __init__(self):
                self.t, self.follow = -1, {}

            def step(self, frame, prompts=None, remove=(), interrupt=None):
                self.t += 1
                engine.detector.frame = self.t + 1
                for i in remove:
                    self.follow.pop(i, None)
                truth = engine.clip.boxes(self.t)
                for obj_id, box in (prompts or {}).items():
                    ious = {k: float(box_iou(box, torch.tensor(b))[0, 0]) for k, b in truth.items()}
                    self.follow[obj_id] = max(ious, key=ious.get)
                    engine.prompts.append((self.t, obj_id))
                out = {}
                for obj_id, true in self.follow.items():
                    if true in truth:
                        x0, y0, x1, y1 = truth[true]
                        d = engine.drift(self.t) if obj_id not in (prompts or {}) else 0
                        mask = engine.clip.mask((min(x0 + d, engine.clip.w - 1), y0, min(x1 + d, engine.clip.w), y1))
                        out[obj_id] = TrackedMask(mask, 0.99, obj_id in (prompts or {}))
                    else:
                        out[obj_id] = TrackedMask(torch.zeros(engine.clip.h, engine.clip.w, dtype=torch.bool), 0.01, False)
                return out

        return Stream()




def crossing_clip(frames: int = 18, height: int = 60, width: int = 100) -> ShapeClip:
    """Two same-sized blocks, one moving right, one left; they overlap in the middle frames."""
    side = width // 5
    step = (width - side - 10) / max(1, frames - 1)
    return ShapeClip({
        1: lambda t: (5 + step * t, height // 3, 5 + step * t + side, height // 3 + side),
        2: lambda t: (width - 5 - side - step * t, height // 3 + 2, width - 5 - step * t, height // 3 + 2 + side),
    }, frames, height, width)


def run_oracle(clip: ShapeClip, detect_every: int = 5, drift=None, **options):
    """:func:`~grounded_inpaint.video.grounded_track` over ``clip`` with the oracle detector and video model.

    Returns:
        ``(segments per frame, engine, detector)``.
    """
    from ..video import grounded_track

    detector = OracleDetector(clip)
    engine = OracleEngine(clip, detector, drift)
    results = grounded_track(detector, engine, list(clip.frames()), "block", detect_every=detect_every, **options)
    return results, engine, detector


def owner(clip: ShapeClip, t: int, mask: torch.Tensor) -> int:
    """The true object a mask covers most on frame ``t``."""
    cover = {k: int((mask & clip.mask(b)).sum()) for k, b in clip.boxes(t).items()}
    return max(cover, key=cover.get)


def id_swaps(clip: ShapeClip, results, *, skip_overlapping: float = 0.5) -> int:
    """How many times a track's mask covers another true object than on its first frame (frames where
    the true objects overlap by more than ``skip_overlapping`` IoU are not judged)."""
    first: dict[int, int] = {}
    swaps = 0
    for t, seg in enumerate(results):
        truth = list(clip.boxes(t).values())
        if len(truth) > 1:
            overlap = box_iou(torch.tensor(truth, dtype=torch.float32), torch.tensor(truth, dtype=torch.float32))
            overlap.fill_diagonal_(0)
            if float(overlap.max()) > skip_overlapping:
                continue
        for obj_id, mask in zip(seg.ids.tolist(), seg.masks):
            who = owner(clip, t, mask)
            if first.setdefault(obj_id, who) != who:
                swaps += 1
    return swaps
