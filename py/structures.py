"""Result types shared by detection, segmentation, masks and overlays.

Coordinate conventions used everywhere in this package:

* Images are ``[H, W, 3]`` float32 tensors with values in ``0..1`` (a batch is ``[B, H, W, 3]``).
* Boxes are **XYXY in pixels of the original image**: ``x0, y0`` is the top-left corner and
  ``x1, y1`` the bottom-right corner, both as floats; ``0 <= x0 <= x1 <= W`` and likewise for y.
* Masks are ``[H, W]`` (one image) or ``[N, H, W]`` (one per instance). Instance masks are ``bool``;
  inpainting masks are float32 in ``0..1`` where **1.0 marks the area to repaint**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

__all__ = ["Detections", "Segments"]


def _as_boxes(boxes: Any) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (XYXY pixels); got {tuple(boxes.shape)}")
    bad = ~torch.isfinite(boxes).all(dim=1)
    if bool(bad.any()):
        raise ValueError(
            f"boxes must be finite XYXY pixel coordinates; box {int(bad.nonzero()[0])} is {boxes[bad][0].tolist()}"
        )
    return boxes


def _as_scores(scores: Any, name: str) -> torch.Tensor:
    scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} must be finite numbers; got {scores.tolist()[:8]}")
    return scores


def _as_logits(logits: Any, n: int) -> torch.Tensor:
    logits = torch.as_tensor(logits).float()
    if logits.ndim != 3 or logits.shape[0] != n or 0 in logits.shape[1:]:
        raise ValueError(f"Segments.logits must be [N, h, w] with N = {n} masks; got {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("Segments.logits must be finite numbers (mask logits); found NaN or infinity")
    return logits


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width); got {image_size!r}")
    if not all(isinstance(v, (int, float)) or hasattr(v, "__int__") for v in image_size) or not all(
            float(v) == int(v) for v in image_size):
        raise ValueError(f"image_size must be two whole numbers (height, width); got {image_size!r}")
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive (height, width); got {image_size!r}")
    return h, w


@dataclass
class Detections:
    """The objects a detector found in one image.

    Attributes:
        boxes: ``[N, 4]`` float32, XYXY pixels of the original image.
        scores: ``[N]`` float32 in ``0..1``, the detector's confidence.
        labels: ``N`` phrases, taken from the prompt (e.g. ``"shoes"``).
        image_size: ``(height, width)`` of the image the boxes refer to.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: list[str]
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.scores = _as_scores(self.scores, "scores")
        self.labels = [str(label) for label in self.labels]
        self.image_size = _check_size(self.image_size)
        n = self.boxes.shape[0]
        if self.scores.shape[0] != n or len(self.labels) != n:
            raise ValueError(
                f"Detections need one score and one label per box: {n} boxes, "
                f"{self.scores.shape[0]} scores, {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, image_size: Sequence[int]) -> "Detections":
        """No detection in an image of ``image_size = (height, width)``."""
        return cls(torch.zeros(0, 4), torch.zeros(0), [], tuple(image_size))

    def take(self, indices: Sequence[int] | torch.Tensor) -> "Detections":
        """The detections at ``indices`` (in that order)."""
        idx = torch.as_tensor(list(indices) if not torch.is_tensor(indices) else indices, dtype=torch.long)
        return Detections(
            self.boxes[idx], self.scores[idx], [self.labels[int(i)] for i in idx], self.image_size
        )

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), list(self.labels), self.image_size)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``{"image_size": [h, w], "detections": [{label, score, box}]}``."""
        return {
            "image_size": list(self.image_size),
            "detections": [
                {"label": label, "score": round(float(score), 6), "box": [round(float(v), 3) for v in box]}
                for label, score, box in zip(self.labels, self.scores.tolist(), self.boxes.tolist())
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Detections":
        """Inverse of :meth:`to_json`."""
        items = data.get("detections", [])
        return cls(
            torch.tensor([d["box"] for d in items], dtype=torch.float32).reshape(-1, 4),
            torch.tensor([d["score"] for d in items], dtype=torch.float32),
            [d["label"] for d in items],
            tuple(data["image_size"]),
        )


@dataclass
class Segments:
    """Instance masks for one image, one per prompt (usually one per detection).

    Attributes:
        masks: ``[N, H, W]`` bool, at the original image resolution.
        boxes: ``[N, 4]`` float32 XYXY pixels: the prompt box, or the mask's bounding box when the
            instance came from points or a mask prompt only.
        scores: ``[N]`` float32 in ``0..1``: the detection score (1.0 for manual prompts).
        quality: ``[N]`` float32: SAM's predicted IoU of the chosen mask.
        labels: ``N`` labels (the detection phrase, or ``"points"`` / ``"mask"`` for manual prompts).
        image_size: ``(height, width)``; equals ``masks.shape[1:]``.
        ids: ``[N]`` int64 object ids that stay the same for one object through a video clip
            (:mod:`grounded_inpaint.video`), or ``None`` for single images (the default).
        logits: optional ``[N, h, w]`` float32: the segmenter's mask logits over the whole image
            at its own low resolution (SAM: the long side is at most 256), ``None`` when the
            segmenter gives none. Upsampled bilinearly to ``image_size`` and thresholded at 0 they
            give about ``masks``; values near 0 mark where the segmenter was unsure (the matting
            stage widens its band there).
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    quality: torch.Tensor
    labels: list[str]
    image_size: tuple[int, int] = field(default=(0, 0))
    ids: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"Segments.masks must be [N, H, W]; got {tuple(self.masks.shape)}")
        self.masks = self.masks.bool()
        if self.image_size == (0, 0):
            self.image_size = (int(self.masks.shape[1]), int(self.masks.shape[2]))
        self.image_size = _check_size(self.image_size)
        if tuple(self.masks.shape[1:]) != self.image_size:
            raise ValueError(
                f"Segments.masks are {tuple(self.masks.shape[1:])} but image_size is {self.image_size}"
            )
        self.boxes = _as_boxes(self.boxes)
        self.scores = _as_scores(self.scores, "scores")
        self.quality = _as_scores(self.quality, "quality")
        self.labels = [str(label) for label in self.labels]
        n = self.masks.shape[0]
        sizes = (self.boxes.shape[0], self.scores.shape[0], self.quality.shape[0], len(self.labels))
        if any(s != n for s in sizes):
            raise ValueError(
                f"Segments need one box, score, quality and label per mask: {n} masks, "
                f"{sizes[0]} boxes, {sizes[1]} scores, {sizes[2]} qualities, {sizes[3]} labels"
            )
        if self.ids is not None:
            ids = torch.as_tensor(self.ids)
            if ids.numel() and (ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex()):
                raise ValueError(f"Segments.ids must be whole numbers (object ids); got dtype {ids.dtype}")
            self.ids = ids.to(torch.int64).reshape(-1).cpu()
            if self.ids.shape[0] != n:
                raise ValueError(f"Segments need one object id per mask: {n} masks, {self.ids.shape[0]} ids")
        if self.logits is not None:
            self.logits = _as_logits(self.logits, n)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def empty(cls, image_size: Sequence[int], device: torch.device | str = "cpu") -> "Segments":
        """No instance in an image of ``image_size = (height, width)``."""
        h, w = _check_size(image_size)
        return cls(
            torch.zeros(0, h, w, dtype=torch.bool, device=device),
            torch.zeros(0, 4),
            torch.zeros(0),
            torch.zeros(0),
            [],
            (h, w),
        )

    def take(self, indices: Sequence[int] | torch.Tensor) -> "Segments":
        """The instances at ``indices`` (in that order)."""
        idx = torch.as_tensor(list(indices) if not torch.is_tensor(indices) else indices, dtype=torch.long)
        return Segments(
            self.masks[idx.to(self.masks.device)],
            self.boxes[idx],
            self.scores[idx],
            self.quality[idx],
            [self.labels[int(i)] for i in idx],
            self.image_size,
            ids=None if self.ids is None else self.ids[idx.cpu()],
            logits=self.logits[idx.to(self.logits.device)] if self.logits is not None else None,
        )

    def union(self) -> torch.Tensor:
        """``[H, W]`` float32 mask, 1.0 where any instance is; all zero when there is none."""
        if len(self) == 0:
            return torch.zeros(self.image_size, dtype=torch.float32, device=self.masks.device)
        return self.masks.any(dim=0).float()

    def to(self, device: torch.device | str) -> "Segments":
        return Segments(
            self.masks.to(device), self.boxes, self.scores, self.quality, list(self.labels), self.image_size,
            ids=self.ids, logits=self.logits.to(device) if self.logits is not None else None,
        )

    def detections(self) -> Detections:
        """The boxes, scores and labels of these instances as :class:`Detections`."""
        return Detections(self.boxes, self.scores, list(self.labels), self.image_size)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable summary (no mask pixels): label, score, quality, box and area (and the
        object ``id`` when the instances have ids)."""
        areas = self.masks.flatten(1).sum(1).tolist() if len(self) else []
        ids = self.ids.tolist() if self.ids is not None else [None] * len(self)
        return {
            "image_size": list(self.image_size),
            "instances": [
                {
                    **({"id": int(obj_id)} if obj_id is not None else {}),
                    "label": label,
                    "score": round(float(score), 6),
                    "quality": round(float(q), 6),
                    "box": [round(float(v), 3) for v in box],
                    "area": int(area),
                }
                for obj_id, label, score, q, box, area in zip(
                    ids, self.labels, self.scores.tolist(), self.quality.tolist(), self.boxes.tolist(), areas
                )
            ],
        }
