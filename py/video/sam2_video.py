"""SAM 2.1 video propagation over transformers' ``Sam2VideoModel``, streamed frame by frame, in bounded memory.

:class:`Sam2VideoEngine` holds the model; :meth:`Sam2VideoEngine.start` opens a
:class:`Sam2VideoStream` for one clip, and :meth:`Sam2VideoStream.step` takes the clip's frames one
at a time — each with the box prompts of objects that start or are re-anchored on it, and the ids
of objects to drop — and returns every tracked object's mask on that frame.

It drives transformers' own streaming API (``Sam2VideoInferenceSession`` and
``Sam2VideoModel(inference_session=..., frame_idx=..., frame=...)``, as in transformers' documented
streaming usage), with what a long clip needs on top:

* **frames stream through**: only the current frame is on the inference device; the session keeps
  no frame once it has been used;
* **state on the offload device**: the memory bank (mask memories, their positional encodings) lives
  on ``state_device`` (the CPU in ComfyUI unless ``--gpu-only``) and comes to the inference device
  for the memory attention only;
* **a windowed memory bank**: after each frame, tracking outputs older than the model can ever
  read again are dropped (it reads the last ``num_maskmem - 1`` frames' memories and the last
  ``max_object_pointers_in_encoder - 1`` frames' object pointers), and so are the full-resolution
  mask logits it keeps only to encode the memory; of the conditioning frames (where an object was
  prompted) the first and the ``max_anchors - 1`` latest are kept. Dropping what can never be read
  changes no result (the tests compare with transformers' own whole-video propagation); only the
  anchor limit changes anything, and only for objects re-anchored more than ``max_anchors - 1`` times;
* objects can be added on any frame and removed, each keeping its own memory.

Pre- and post-processing are plain torch (torchvision, which transformers' processors need, is not
used): the frame is resized to a square ``S x S`` (bilinear, antialiased) and normalised with
ImageNet's mean/std; box corners are scaled by ``(S / W, S / H)``; the ``S/4`` mask logits are
upsampled to the frame size (bilinear) and thresholded at 0 — as ``Sam2VideoProcessor`` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..interrupt import InterruptCheck, interruptible

__all__ = ["Sam2VideoEngine", "Sam2VideoStream", "TrackedMask", "DEFAULT_MAX_ANCHORS", "require_sam2_video"]

log = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: Conditioning frames kept per object: the first one and the latest ``DEFAULT_MAX_ANCHORS - 1``.
DEFAULT_MAX_ANCHORS = 3
_PIP = 'pip install -U "transformers>=4.56"'


def require_sam2_video() -> None:
    """Raise ``ImportError`` with the pip command when transformers has no SAM 2 video classes (< 4.56)."""
    import transformers

    if not hasattr(transformers, "Sam2VideoModel"):
        raise ImportError(
            f"SAM 2.1 video tracking needs transformers 4.56 or newer (this is {transformers.__version__}): {_PIP}"
        )


@dataclass
class TrackedMask:
    """One object on one frame.

    Attributes:
        mask: ``[H, W]`` bool at the frame's size (all False where the model says the object is absent).
        score: ``0..1``, the model's confidence that the object is visible on this frame
            (sigmoid of SAM 2.1's object score).
        prompted: the object was prompted (started or re-anchored) on this frame.
    """

    mask: torch.Tensor
    score: float
    prompted: bool


class Sam2VideoEngine:
    """A SAM 2.1 video model (transformers ``Sam2VideoModel``) and its pre-/post-processing.

    Load with :meth:`from_pretrained` (a transformers folder with ``model_type`` ``sam2_video``, such
    as facebook/sam2.1-hiera-tiny) or :meth:`from_checkpoint` (Meta's ``sam2.1_hiera_*.pt`` or kijai's
    ``.safetensors``, video-tracking weights included); :func:`grounded_inpaint.video.load_video_model`
    picks the right one.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        mean: Sequence[float] = _IMAGENET_MEAN,
        std: Sequence[float] = _IMAGENET_STD,
        source: str = "<model>",
    ) -> None:
        self.model = model.eval()
        size = model.config.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.source = source

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam2VideoEngine":
        """Load a transformers SAM 2.1 video folder (``config.json`` with ``model_type`` ``sam2_video``)."""
        import json

        require_sam2_video()
        from transformers import Sam2VideoModel

        from ..sam.predictor import load_transformers_sam

        folder = Path(path)
        try:
            model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{folder / 'config.json'} could not be read as JSON ({exc}); download the folder again") from None
        if model_type != "sam2_video":
            raise CheckpointError(
                f"{folder} holds a {model_type or 'unknown'!r} model, not a SAM 2.1 video model: its config.json must say "
                "model_type 'sam2_video' (facebook/sam2.1-hiera-* folders do; a 'sam2' folder has the image model only "
                "and cannot track). Use facebook/sam2.1-hiera-tiny or Meta's sam2.1_hiera_*.pt"
            )
        model, mean, std = load_transformers_sam(
            Sam2VideoModel, folder, kind="SAM 2.1 video", example="facebook/sam2.1-hiera-tiny",
            hint=f"Download it again or put Meta's sam2.1_hiera_*.pt into {folder.parent}",
        )
        return cls(model.to(device=device, dtype=dtype), mean=mean, std=std, source=str(folder))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam2VideoEngine":
        """Load Meta's SAM 2 / 2.1 file (``.pt`` with ``{"model": ...}`` or kijai's ``.safetensors``),
        every tensor included (:func:`~grounded_inpaint.sam.convert_sam2.hf_sam2_video_model_from_original`)."""
        require_sam2_video()
        from ..checkpoints import load_state_dict
        from ..sam.convert_sam2 import hf_sam2_video_model_from_original

        model = hf_sam2_video_model_from_original(load_state_dict(path), source=str(path))
        log.info("loaded %s as SAM 2.1 video model (converted in memory)", path)
        return cls(model.to(device=device, dtype=dtype), source=str(path))

    # ---------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def memory_window(self) -> int:
        """How many past frames the model can read (memories or object pointers), at most."""
        config = self.model.config
        return max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 1)

    # ---------------------------------------------------------------- processing

    def preprocess(self, frame: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` float 0..1 → normalised ``[3, S, S]`` (square resize) on the model's device/dtype."""
        x = frame.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean.to(x.device)[None, :, None, None]) / self.std.to(x.device)[None, :, None, None]
        return x[0].to(self.dtype)

    def box_prompt(self, box: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """An XYXY pixel box on an ``(H, W)`` frame → the session's point inputs (corners with labels 2, 3)."""
        h, w = size
        scale = torch.tensor([self.image_size / w, self.image_size / h], dtype=torch.float32)
        corners = torch.as_tensor(box, dtype=torch.float32).reshape(2, 2) * scale
        return {
            "point_coords": corners.reshape(1, 1, 2, 2).to(self.device),
            "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32, device=self.device),
        }

    def start(
        self,
        size: tuple[int, int],
        *,
        state_device: torch.device | str | None = None,
        max_anchors: int = DEFAULT_MAX_ANCHORS,
    ) -> "Sam2VideoStream":
        """A new tracking stream for a clip of ``(H, W)`` frames (nothing is tracked yet)."""
        return Sam2VideoStream(self, size, state_device=state_device, max_anchors=max_anchors)


class Sam2VideoStream:
    """One clip going through a :class:`Sam2VideoEngine`, frame by frame (see the module doc).

    Object ids are any integers chosen by the caller. Frames must be given in order.
    """

    def __init__(
        self,
        engine: Sam2VideoEngine,
        size: tuple[int, int],
        *,
        state_device: torch.device | str | None = None,
        max_anchors: int = DEFAULT_MAX_ANCHORS,
    ) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        if int(max_anchors) < 1:
            raise ValueError(f"max_anchors must be at least 1 (the first prompt of each object); got {max_anchors}")
        self.engine = engine
        self.size = (int(size[0]), int(size[1]))
        self.max_anchors = int(max_anchors)
        device = engine.device
        self.session = Sam2VideoInferenceSession(
            video_height=self.size[0],
            video_width=self.size[1],
            inference_device=device,
            inference_state_device=torch.device(state_device) if state_device is not None else device,
            video_storage_device=device,
            dtype=engine.dtype,
        )
        self.frame_index = -1

    @property
    def object_ids(self) -> list[int]:
        """The ids being tracked, in the order they were added."""
        return list(self.session.obj_ids)

    def step(
        self,
        frame: torch.Tensor,
        prompts: Mapping[int, torch.Tensor] | None = None,
        *,
        remove: Iterable[int] = (),
        interrupt: InterruptCheck | None = None,
    ) -> dict[int, TrackedMask]:
        """Track every object onto the next frame.

        Arguments:
            frame: ``[H, W, 3]`` float32 in 0..1, the clip's next frame (the size given to ``start``).
            prompts: ``{object id: XYXY pixel box}`` of objects that start on this frame (new ids) or
                are re-anchored on it (known ids: the box replaces what the memory would have said,
                and this frame becomes one of the object's conditioning frames).
            remove: ids to stop tracking before this frame (unknown ids are ignored).
            interrupt: checked before every layer of the model pass (raise to stop).

        Returns:
            ``{object id: TrackedMask}`` for every tracked object; empty when nothing is tracked
            (the model does not run then).
        """
        if tuple(frame.shape[:2]) != self.size:
            raise ValueError(f"frame {self.frame_index + 2} is {tuple(frame.shape[:2])} but the clip's frames are {self.size} (H, W)")
        self.frame_index += 1
        t = self.frame_index
        session = self.session
        gone = [i for i in remove if i in session.obj_ids]
        if gone:
            _remove_objects(session, gone)
        prompts = dict(prompts or {})
        for obj_id, box in prompts.items():
            idx = session.obj_id_to_idx(int(obj_id))
            # a re-anchored object restarts from the prompt on this frame (a conditioning frame)
            session.output_dict_per_obj[idx]["non_cond_frame_outputs"].pop(t, None)
            session.frames_tracked_per_obj[idx].pop(t, None)
            session.add_point_inputs(idx, t, self.engine.box_prompt(box, self.size))
            session.remove_mask_inputs(idx, t)
        session.obj_with_new_inputs = [int(i) for i in prompts]
        if session.get_obj_num() == 0:
            return {}
        model = self.engine.model
        pixels = self.engine.preprocess(frame)
        with torch.inference_mode(), interruptible(interrupt, model):
            out = model(inference_session=session, frame_idx=t, frame=pixels)
        results: dict[int, TrackedMask] = {}
        logits = out.pred_masks.float()
        masks = self._to_frame(logits)
        for idx, obj_id in enumerate(session.obj_ids):
            outputs = session.output_dict_per_obj[idx]
            record = outputs["cond_frame_outputs"].get(t) or outputs["non_cond_frame_outputs"].get(t) or {}
            score_logit = record.get("object_score_logits")
            score = float(torch.sigmoid(score_logit.float()).reshape(-1)[0]) if score_logit is not None else 1.0
            results[int(obj_id)] = TrackedMask(masks[idx], score, int(obj_id) in prompts)
        self._forget(t)
        return results

    def _to_frame(self, logits: torch.Tensor) -> torch.Tensor:
        """``[N, 1, m, m]`` logits → ``[N, H, W]`` bool masks at the frame size (bilinear, > 0)."""
        up = F.interpolate(logits.reshape(-1, 1, *logits.shape[-2:]), size=self.size, mode="bilinear", align_corners=False)
        return (up[:, 0] > 0.0).cpu()

    def _forget(self, t: int) -> None:
        """Drop what the model will never read again (see the module doc): frames, old outputs,
        full-resolution logits, old conditioning frames beyond ``max_anchors``."""
        session = self.session
        if session.processed_frames:
            session.processed_frames.clear()
        keep_from = t + 1 - self.engine.memory_window
        for idx in list(session.output_dict_per_obj):
            outputs = session.output_dict_per_obj[idx]
            tracked = outputs["non_cond_frame_outputs"]
            for frame in [f for f in tracked if f < keep_from]:
                del tracked[frame]
            for frame in [f for f in session.frames_tracked_per_obj[idx] if f < keep_from]:
                del session.frames_tracked_per_obj[idx][frame]
            anchors = outputs["cond_frame_outputs"]
            if len(anchors) > self.max_anchors:
                ordered = sorted(anchors)
                keep = {ordered[0], *ordered[len(ordered) - (self.max_anchors - 1):]} if self.max_anchors > 1 else {ordered[0]}
                for frame in ordered:
                    if frame not in keep:
                        del anchors[frame]
                        session.point_inputs_per_obj[idx].pop(frame, None)
                        session.mask_inputs_per_obj[idx].pop(frame, None)
            for frame in [f for f in session.point_inputs_per_obj[idx] if f not in anchors]:
                del session.point_inputs_per_obj[idx][frame]
            for record in (*anchors.values(), *tracked.values()):
                record.pop("high_res_masks", None)


def _remove_objects(session: Any, obj_ids: Sequence[int]) -> None:
    """Remove objects from a ``Sam2VideoInferenceSession`` (its per-object state is indexed by position,
    so the remaining objects are renumbered in their order)."""
    drop = {int(i) for i in obj_ids}
    keep = [obj_id for obj_id in session.obj_ids if obj_id not in drop]
    old = {obj_id: session._obj_id_to_idx[obj_id] for obj_id in keep}
    per_object = ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj")
    saved = {name: getattr(session, name) for name in per_object}
    session._obj_id_to_idx.clear()
    session._obj_idx_to_id.clear()
    for name in per_object:
        setattr(session, name, {})
    for new_idx, obj_id in enumerate(keep):
        session._obj_id_to_idx[obj_id] = new_idx
        session._obj_idx_to_id[new_idx] = obj_id
        for name in per_object:
            getattr(session, name)[new_idx] = saved[name][old[obj_id]]
    session.obj_ids = list(keep)
    session.obj_with_new_inputs = [i for i in session.obj_with_new_inputs if i not in drop]
