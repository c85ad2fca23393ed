"""Object ids through a clip: which detection continues which track, which starts one, which track ends.

Pure bookkeeping, no model: the tracker (:mod:`.tracker`) asks :meth:`TrackBook.plan` on every
frame where the detector ran, and tells :meth:`TrackBook.observe` what the video model saw on every
frame. Boxes are XYXY pixels.

* **Matching.** Detections are matched to the live tracks by box IoU against each track's last
  visible box (the previous frame's, as the detector runs before the video model on a key frame),
  with an optimal one-to-one assignment (Hungarian, maximising the total IoU); a pair counts when its
  IoU is at least ``match_iou``. The assignment is global, so two objects that cross keep their ids as
  long as each is closer to its own previous box than to the other's.
* **Re-anchoring.** A matched track whose last box overlaps its detection by less than
  ``reanchor_iou`` has drifted (or moved fast): the detection's box prompts the video model again on
  this frame. A track that was lost (not visible) and is matched again is re-anchored too, and
  keeps its id.
* **New tracks.** An unmatched detection that overlaps no live track by ``match_iou`` or more starts
  a new track with the next id (ids count up from ``first_id`` and are never reused), best scores
  first, while fewer than ``max_objects`` tracks are live.
* **Ending.** A track the video model has not seen for more than ``forget_after`` frames in a row
  ends (it left the picture, or stayed hidden too long): its id is not used again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ..checks import count, fraction

__all__ = ["Track", "KeyframePlan", "TrackBook", "box_iou", "mask_box"]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` IoU of XYXY boxes ``a [N, 4]`` and ``b [M, 4]`` (0 where a box has no area)."""
    a = a.reshape(-1, 4).float()
    b = b.reshape(-1, 4).float()
    x0 = torch.maximum(a[:, None, 0], b[None, :, 0])
    y0 = torch.maximum(a[:, None, 1], b[None, :, 1])
    x1 = torch.minimum(a[:, None, 2], b[None, :, 2])
    y1 = torch.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).clamp(min=0)
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=0)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def mask_box(mask: torch.Tensor) -> torch.Tensor | None:
    """The XYXY pixel box around the ``True`` pixels of an ``[H, W]`` mask (``x1``/``y1`` exclusive), or
    ``None`` for an empty mask."""
    rows = mask.any(dim=1).nonzero()
    if rows.numel() == 0:
        return None
    cols = mask.any(dim=0).nonzero()
    return torch.tensor(
        [float(cols[0]), float(rows[0]), float(cols[-1]) + 1.0, float(rows[-1]) + 1.0], dtype=torch.float32
    )


@dataclass
class Track:
    """One object followed through the clip.

    Attributes:
        id: the object id (stable for the whole clip, never reused).
        label: the detection phrase that started it.
        score: the detection score of its latest matched detection (``0..1``).
        box: its last visible box (XYXY pixels).
        born: the frame it started on.
        last_seen: the last frame the video model saw it on.
        missing: frames in a row it has not been seen (0 while visible).
    """

    id: int
    label: str
    score: float
    box: torch.Tensor
    born: int
    last_seen: int
    missing: int = 0


@dataclass
class KeyframePlan:
    """What to do on a frame where the detector ran.

    Attributes:
        start: ``{new id: detection index}``: detections that start new tracks.
        reanchor: ``{id: detection index}``: tracks prompted again with their detection's box.
        matched: ``{id: detection index}``: every track matched to a detection (re-anchored or not).
        dropped: indices of detections that start nothing (the ``max_objects`` limit was reached).
    """

    start: dict[int, int] = field(default_factory=dict)
    reanchor: dict[int, int] = field(default_factory=dict)
    matched: dict[int, int] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)


class TrackBook:
    """The live tracks of one clip and the rules that keep their ids (see the module doc).

    Arguments:
        max_objects: at most this many tracks live at once (``>= 1``).
        match_iou: a detection continues a track when their boxes overlap at least this much (``0..1``).
        reanchor_iou: a matched track whose last box overlaps its detection less than this is
            prompted again with the detection (``match_iou..1``; 0 never re-anchors a visible track).
        forget_after: a track unseen for more than this many frames in a row ends (``>= 0``).
        first_id: the first id given (ids count up from it).
    """

    def __init__(
        self,
        *,
        max_objects: int = 8,
        match_iou: float = 0.3,
        reanchor_iou: float = 0.6,
        forget_after: int = 15,
        first_id: int = 1,
    ) -> None:
        self.max_objects = count("max_objects", max_objects, low=1)
        self.match_iou = fraction("match_iou", match_iou)
        self.reanchor_iou = fraction("reanchor_iou", reanchor_iou)
        self.forget_after = count("forget_after", forget_after, low=0)
        self.next_id = int(first_id)
        self.tracks: dict[int, Track] = {}
        self.ended: list[Track] = []

    @property
    def live_ids(self) -> list[int]:
        return sorted(self.tracks)

    def plan(
        self, frame: int, boxes: torch.Tensor, scores: Sequence[float] | torch.Tensor, labels: Sequence[str]
    ) -> KeyframePlan:
        """Match this frame's detections (``boxes [N, 4]``, ``scores [N]``, ``labels``) to the live tracks,
        register the new tracks and return what the video model must be prompted with."""
        from scipy.optimize import linear_sum_assignment

        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        scores = [float(s) for s in torch.as_tensor(scores, dtype=torch.float32).reshape(-1).tolist()]
        plan = KeyframePlan()
        ids = self.live_ids
        iou = box_iou(torch.stack([self.tracks[i].box for i in ids]), boxes) if ids and len(boxes) else torch.zeros(len(ids), len(boxes))
        if iou.numel():
            rows, cols = linear_sum_assignment(iou.numpy(), maximize=True)
            for r, c in zip(rows.tolist(), cols.tolist()):
                overlap = float(iou[r, c])
                if overlap < self.match_iou:
                    continue
                track = self.tracks[ids[r]]
                plan.matched[track.id] = c
                track.score = scores[c]
                if overlap < self.reanchor_iou or track.missing > 0:
                    plan.reanchor[track.id] = c
        taken = set(plan.matched.values())
        for c in sorted((c for c in range(len(boxes)) if c not in taken), key=lambda c: -scores[c]):
            if ids and float(iou[:, c].max()) >= self.match_iou:
                continue  # a second detection of an object already followed
            if len(self.tracks) >= self.max_objects:
                plan.dropped.append(c)
                continue
            track = Track(self.next_id, str(labels[c]), scores[c], boxes[c].clone(), frame, frame)
            self.tracks[track.id] = track
            self.next_id += 1
            plan.start[track.id] = c
        return plan

    def observe(self, frame: int, seen: Mapping[int, torch.Tensor | None]) -> list[int]:
        """Record what the video model saw on ``frame``: ``{id: visible box, or None when not seen}``
        for the live tracks (a live id missing from ``seen`` counts as not seen).

        Returns:
            The ids that end on this frame (unseen for more than ``forget_after`` frames).
        """
        ended = []
        for track_id, track in list(self.tracks.items()):
            box = seen.get(track_id)
            if box is not None:
                track.box = box.clone()
                track.last_seen = frame
                track.missing = 0
                continue
            track.missing += 1
            if track.missing > self.forget_after:
                ended.append(track_id)
                self.ended.append(self.tracks.pop(track_id))
        return ended
