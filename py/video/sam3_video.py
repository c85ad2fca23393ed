"""SAM 3 video tracking from text over transformers' ``Sam3VideoModel``, streamed frame by frame, in bounded memory.

The second video engine (the first is SAM 2.1 with GroundingDINO, :mod:`.sam2_video`). SAM 3 needs
no separate detector: its own detector finds every object the text names on a frame, and its
tracker (a SAM 2-style memory) carries each one to the next frames; each frame's detections are
matched to the tracks by mask IoU, unmatched confident detections start new objects, and confident
matches periodically re-condition a track's memory. :class:`Sam3VideoEngine` holds the model;
:meth:`Sam3VideoEngine.start` opens a :class:`Sam3VideoStream` for one clip and concepts, and
:meth:`Sam3VideoStream.step` takes the clip's frames one at a time and returns every visible
object's mask with its id, concept and scores.

It runs transformers' own pieces in the order of ``Sam3VideoModel.forward`` with a streamed frame
(transformers' documented streaming usage: ``model(inference_session=..., frame=...)`` then
``Sam3VideoProcessor.postprocess_outputs``) — the outputs of a frame come right after it, with no
delay — and adds what a long clip and ComfyUI need:

* **frames stream through**: the session keeps no frame once it has been used (it still counts
  them: the tracker's object-pointer window depends on how many frames it has seen);
* **state on the offload device**: memories live on ``state_device``;
* **a windowed memory bank**: tracking outputs older than the tracker can read again are dropped
  (memories of the last ``num_maskmem - 1`` frames, object pointers of the last
  ``max_object_pointers_in_encoder - 1``), and so are the full-resolution mask logits, the per-frame
  score and suppression records of past frames and the per-frame lists only the whole-video mode
  reads. Of an object's conditioning frames (where it was added or re-conditioned) the latest
  ``max_cond_frame_num`` are kept: the memory attention reads exactly those, but transformers also
  adds the object pointers of *every* older conditioning frame, so results differ from
  transformers' only for objects with more conditioning frames than that (re-conditioning adds one
  at most every ``recondition_every_nth_frame`` = 16 frames);
* **objects end**: an object not visible for more than ``forget_after`` frames in a row is removed
  from the tracker (transformers' streaming mode keeps every object ever found and pays a memory
  attention pass for each on every frame); its id is never given again;
* **at most ``max_objects`` objects at once** (transformers' ``max_num_objects``; the best new
  detections first);
* **``detect_every``**: the detector may run on every N-th frame only (default 1, as SAM 3 does);
  on the other frames the tracker alone carries the objects (no new object, no re-conditioning);
* **no downloaded code**: transformers runs mask NMS and hole filling through a CUDA kernel fetched
  from the Hugging Face Hub (``kernels``); here NMS is done in plain torch (:func:`mask_nms`) and
  hole filling is off (``fill_hole_area`` is ignored; Mask from Segmentation fills holes).

Not done: transformers' whole-video usage (``propagate_in_video_iterator``) holds every output back
``hotstart_delay`` (15) frames to remove objects that turn out to be unmatched or duplicated in their
first frames; streaming has no future frames to decide that, so (as in transformers' streaming
usage) nothing is removed that way.

Pre-processing is plain torch (square resize to the model's side, 1008 for released models,
bilinear with antialiasing, mean/std 0.5, as ``Sam3Processor``); post-processing follows
``Sam3VideoProcessor.postprocess_outputs``: the low-resolution mask logits (288² for released
models) are resized bilinearly to the frame and thresholded at 0, empty and suppressed objects are
hidden, and where objects of one concept overlap, the pixel goes to the one the tracker is most
confident about.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..checks import count, fraction
from ..errors import CheckpointError
from ..interrupt import InterruptCheck, interruptible
from ..prompts import EmptyPromptError, split_categories

__all__ = [
    "Sam3VideoEngine",
    "Sam3VideoStream",
    "Sam3TrackedObject",
    "mask_nms",
    "require_sam3_video",
    "DEFAULT_FORGET_AFTER",
]

log = logging.getLogger(__name__)

_PIP = 'pip install -U "transformers>=5"'
#: Frames in a row an object may stay invisible before it ends.
DEFAULT_FORGET_AFTER = 15
_FOLDER_FILES = "config.json (model_type 'sam3_video'), model.safetensors, tokenizer.json, tokenizer_config.json"


def require_sam3_video() -> None:
    """Raise ``ImportError`` with the pip command when transformers has no SAM 3 video classes (< 5.0)."""
    import transformers

    try:
        from transformers import Sam3VideoModel  # noqa: F401
    except ImportError:
        raise ImportError(
            f"SAM 3 video tracking needs transformers 5.0 or newer (this is {transformers.__version__}): {_PIP}"
        ) from None


@dataclass
class Sam3TrackedObject:
    """One object on one frame.

    Attributes:
        mask: ``[H, W]`` bool at the frame's size (never empty: objects not visible are left out).
        label: the concept (text prompt) that found it.
        score: ``0..1``, the detection score it started with.
        visibility: ``0..1``, the tracker's confidence that it is visible on this frame (its
            detection score on the frame it starts on).
        new: it was found on this frame.
    """

    mask: torch.Tensor
    label: str
    score: float
    visibility: float
    new: bool


def mask_nms(probs: torch.Tensor, masks: torch.Tensor, prob_threshold: float, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression of detections by mask IoU (what transformers' hub kernel does).

    Arguments:
        probs: ``[N]`` detection scores.
        masks: ``[N, h, w]`` mask logits (a pixel is in where the logit is above 0).
        prob_threshold: only detections scoring above this take part (the others are not kept).
        iou_threshold: a detection whose mask overlaps a better one's by more than this IoU is dropped.

    Returns:
        ``[N]`` bool: the detections kept.
    """
    valid = probs > prob_threshold
    keep = torch.zeros_like(valid)
    index = torch.nonzero(valid).flatten()
    if index.numel() == 0:
        return keep
    order = index[torch.argsort(probs[index], descending=True, stable=True)]
    flat = (masks[order] > 0).flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    alive = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep[order[i]] = True
        alive[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return keep


class _StreamedFrames(dict):
    """A session's ``processed_frames`` that keeps only the latest frame but counts every frame seen
    (``len`` is what transformers reads as the number of frames: it sizes the object-pointer window)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def __setitem__(self, index: int, frame: torch.Tensor) -> None:
        self.clear()
        super().__setitem__(index, frame)
        self.seen = max(self.seen, int(index) + 1)

    def __len__(self) -> int:
        return self.seen

    def drop(self) -> None:
        """Forget the frame (after its step), keeping the count."""
        super().clear()


class _MaxObjectsFilter(logging.Filter):
    """transformers warns on every frame where more objects are found than ``max_num_objects``: here that
    is the ``max_objects`` setting doing its job, so the message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max_num_objects" not in record.getMessage()


class Sam3VideoEngine:
    """A SAM 3 video model (transformers ``Sam3VideoModel``), its tokenizer and pre-/post-processing.

    Load with :meth:`from_pretrained` (a transformers folder with ``model_type`` ``sam3_video``, such
    as facebook/sam3) or :func:`grounded_inpaint.video.load_sam3_video_model`.
    """

    #: Finds its objects from the text itself (no separate detector).
    text_driven = True
    #: The detector runs on every frame unless told otherwise (SAM 3's own behaviour).
    default_detect_every = 1

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        image_size: int,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        source: str = "<model>",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.source = source
        config = model.config
        self.default_threshold = float(config.score_threshold_detection)
        self.default_new_object_threshold = float(config.new_det_thresh)
        from transformers.models.sam3_video import modeling_sam3_video

        logger = logging.getLogger(modeling_sam3_video.__name__)
        if not any(isinstance(f, _MaxObjectsFilter) for f in logger.filters):
            logger.addFilter(_MaxObjectsFilter())

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam3VideoEngine":
        """Load a transformers SAM 3 folder with the tracker (``model_type`` ``sam3_video``, as facebook/sam3).

        Raises:
            CheckpointError: a single file, a folder without the tracker (``model_type`` ``sam3``), or a
                folder that does not load.
            ImportError: transformers older than 5.0, or torchvision missing (the message gives the command).
        """
        from ..sam3 import _preprocessing, _read_json, require_torchvision

        require_sam3_video()
        folder = Path(path)
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder} is a single file; SAM 3 video tracking loads a transformers folder ({_FOLDER_FILES}) such as "
                f"https://huggingface.co/facebook/sam3 — Meta's sam3.pt is not read. Put the folder into {folder.parent}"
            )
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{folder} has no config.json; a SAM 3 video folder holds {_FOLDER_FILES}")
        model_type = _read_json(config_path).get("model_type")
        if model_type != "sam3_video":
            raise CheckpointError(
                f"{config_path} describes a {model_type!r} model, not SAM 3 with its video tracker (model_type "
                "'sam3_video', as in facebook/sam3); a 'sam3' folder holds the image model only and cannot track. "
                "Use the facebook/sam3 folder"
            )
        require_torchvision("SAM 3 video tracking (transformers' Sam3VideoModel)")
        from safetensors import SafetensorError
        from transformers import AutoTokenizer, Sam3VideoModel

        try:
            model = Sam3VideoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
            raise CheckpointError(
                f"{folder} is not a loadable transformers SAM 3 video folder ({str(exc).strip().splitlines()[0]}); it needs "
                f"{_FOLDER_FILES} as published in facebook/sam3"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{folder} has no usable tokenizer ({str(exc).strip().splitlines()[0]}); copy tokenizer.json and "
                "tokenizer_config.json from facebook/sam3 into it"
            ) from None
        image_size, mean, std = _preprocessing(folder, int(model.config.detector_config.vision_config.image_size))
        log.info("loaded %s as SAM 3 video model", folder)
        return cls(model.to(device=device, dtype=dtype), tokenizer, image_size=image_size, mean=mean, std=std,
                   source=str(folder))

    # ---------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def memory_window(self) -> int:
        """How many past frames the tracker can read (memories or object pointers), at most."""
        config = self.model.config.tracker_config
        return max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 1)

    # ---------------------------------------------------------------- processing

    def preprocess(self, frame: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` float 0..1 → normalised ``[3, S, S]`` (square resize) on the model's device/dtype."""
        x = frame.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x[0].to(self.dtype)

    def start(
        self,
        size: tuple[int, int],
        prompt: str | Sequence[str],
        *,
        state_device: torch.device | str | None = None,
        max_objects: int | None = None,
        threshold: float | None = None,
        new_object_threshold: float | None = None,
        forget_after: int | None = DEFAULT_FORGET_AFTER,
        nms_iou: float | None = None,
    ) -> "Sam3VideoStream":
        """A new tracking stream for a clip of ``(H, W)`` frames and the prompt's concepts (see
        :class:`Sam3VideoStream` for the settings)."""
        return Sam3VideoStream(self, size, prompt, state_device=state_device, max_objects=max_objects, threshold=threshold,
                               new_object_threshold=new_object_threshold, forget_after=forget_after, nms_iou=nms_iou)


class Sam3VideoStream:
    """One clip going through a :class:`Sam3VideoEngine`, frame by frame (see the module doc).

    Arguments:
        size: ``(H, W)`` of the clip's frames.
        prompt: the concepts: a string split at ``.``, ``,``, ``;`` and new lines, or a list; each is
            one SAM 3 text prompt and labels the objects it finds.
        state_device: where the memories live (default: the model's device).
        max_objects: at most this many objects tracked at once (default: the model's
            ``max_num_objects``, 10000 in released configs).
        threshold: a detection counts when its score (object × presence probability) is above this
            (default: the model's ``score_threshold_detection``, 0.5).
        new_object_threshold: an unmatched detection starts a new object when its score reaches this
            (default: the model's ``new_det_thresh``, 0.7; on the first frame every detection above
            ``threshold`` starts one, as in transformers).
        forget_after: an object unseen for more than this many frames in a row ends; ``None`` never
            ends one (transformers' behaviour).
        nms_iou: detections of one concept overlapping a better one by more than this mask IoU are
            dropped (default: the model's ``det_nms_thresh``, 0.1; 0 turns NMS off).

    Object ids count up from 1 and are never reused. Frames must be given in order.
    """

    def __init__(
        self,
        engine: Sam3VideoEngine,
        size: tuple[int, int],
        prompt: str | Sequence[str],
        *,
        state_device: torch.device | str | None = None,
        max_objects: int | None = None,
        threshold: float | None = None,
        new_object_threshold: float | None = None,
        forget_after: int | None = DEFAULT_FORGET_AFTER,
        nms_iou: float | None = None,
    ) -> None:
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        concepts = split_categories(prompt) if isinstance(prompt, str) else [str(c).strip() for c in prompt if str(c).strip()]
        if not concepts:
            raise EmptyPromptError(
                f"the prompt {prompt!r} names no object; type what to track, e.g. \"person\" or \"dress, bag\" "
                "(separate several objects with '.' or ',')"
            )
        config = engine.model.config
        self.engine = engine
        self.size = (int(size[0]), int(size[1]))
        self.concepts = list(dict.fromkeys(concepts))
        self.max_objects = count("max_objects", max_objects, low=1, allow_none=True) or int(config.max_num_objects)
        self.threshold = fraction("threshold", engine.default_threshold if threshold is None else threshold)
        self.new_object_threshold = fraction(
            "new_object_threshold", engine.default_new_object_threshold if new_object_threshold is None else new_object_threshold)
        self.forget_after = count("forget_after", forget_after, low=0, allow_none=True, meaning="(None never ends an object)")
        self.nms_iou = fraction("nms_iou", float(config.det_nms_thresh) if nms_iou is None else nms_iou)
        device = engine.device
        session = Sam3VideoInferenceSession(
            video_height=self.size[0],
            video_width=self.size[1],
            inference_device=device,
            inference_state_device=torch.device(state_device) if state_device is not None else device,
            video_storage_device=device,
            dtype=engine.dtype,
        )
        session.processed_frames = _StreamedFrames()
        for text in self.concepts:
            prompt_id = session.add_prompt(text)
            tokens = engine.tokenizer(text, return_tensors="pt", padding="max_length", max_length=32, truncation=True)
            session.prompt_input_ids[prompt_id] = tokens["input_ids"].to(device)
            session.prompt_attention_masks[prompt_id] = tokens["attention_mask"].to(device)
        self.session = session
        self.frame_index = -1
        self.missing: dict[int, int] = {}

    @property
    def object_ids(self) -> list[int]:
        """The ids being tracked (from 1), in the order they were found."""
        return [int(i) + 1 for i in self.session.obj_ids]

    # ---------------------------------------------------------------- one frame

    @contextlib.contextmanager
    def _settings(self) -> Iterator[None]:
        """This stream's thresholds on the model for the duration of a step (the model is shared)."""
        model = self.engine.model
        wanted = {"score_threshold_detection": self.threshold, "new_det_thresh": self.new_object_threshold,
                  "max_num_objects": self.max_objects, "fill_hole_area": 0, "det_nms_thresh": self.nms_iou}
        saved = {name: getattr(model, name) for name in wanted}
        for name, value in wanted.items():
            setattr(model, name, value)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(model, name, value)

    def _detect(self, vision: Any) -> dict[int, dict[str, torch.Tensor]]:
        """transformers' ``run_detection`` with the NMS done here (:func:`mask_nms`)."""
        model = self.engine.model
        session = self.session
        found = {}
        for prompt_id in session.prompts:
            text = session.prompt_embeddings.get(prompt_id)
            if text is None:
                text = model.detector_model.get_text_features(
                    input_ids=session.prompt_input_ids[prompt_id],
                    attention_mask=session.prompt_attention_masks[prompt_id], return_dict=True)
                session.prompt_embeddings[prompt_id] = text
            out = model.detector_model(vision_embeds=vision, text_embeds=text,
                                       attention_mask=session.prompt_attention_masks[prompt_id])
            probs = out.pred_logits.sigmoid() * out.presence_logits.sigmoid()
            if self.nms_iou > 0.0:
                keep = mask_nms(probs[0], out.pred_masks[0], self.threshold, self.nms_iou)
                probs[0][~keep] = 0.0
            hit = torch.where(probs > self.threshold)
            found[prompt_id] = {"bbox": out.pred_boxes[hit[0], hit[1]], "mask": out.pred_masks[hit[0], hit[1]],
                                "scores": probs[hit[0], hit[1]]}
        return found

    def _nothing_found(self) -> dict[int, dict[str, torch.Tensor]]:
        side = int(self.engine.model.low_res_mask_size)
        device = self.engine.device
        return {pid: {"bbox": torch.zeros(0, 4, device=device), "mask": torch.zeros(0, side, side, device=device),
                      "scores": torch.zeros(0, device=device)} for pid in self.session.prompts}

    def step(self, frame: torch.Tensor, *, detect: bool = True, interrupt: InterruptCheck | None = None
             ) -> dict[int, Sam3TrackedObject]:
        """Find and track the concepts on the clip's next frame.

        Arguments:
            frame: ``[H, W, 3]`` float32 in 0..1 (the size given to ``start``).
            detect: run the detector on this frame (new objects start and tracks are re-conditioned
                only where it runs); without it the tracker alone carries the objects.
            interrupt: checked before every layer of the model passes (raise to stop).

        Returns:
            ``{object id: Sam3TrackedObject}`` for every object visible on this frame.
        """
        if tuple(frame.shape[:2]) != self.size:
            raise ValueError(f"frame {self.frame_index + 2} is {tuple(frame.shape[:2])} but the clip's frames are {self.size} (H, W)")
        model = self.engine.model
        session = self.session
        pixels = self.engine.preprocess(frame)
        with self._settings(), torch.inference_mode(), interruptible(interrupt, model):
            t = session.add_new_frame(pixels)
            self.frame_index = t
            vision = model.detector_model.get_vision_features(pixel_values=session.get_frame(t).unsqueeze(0))
            found = self._detect(vision) if detect else self._nothing_found()
            det_out, det_prompt = model._merge_detections_from_prompts(found, session)
            feats, pos = model.get_vision_features_for_tracker(vision_embeds=vision)
            session.cache.cache_vision_features(t, {"vision_feats": feats, "vision_pos_embeds": pos})
            trk_masks, trk_scores = model.run_tracker_propagation(inference_session=session, frame_idx=t, reverse=False)
            plan, meta = model.run_tracker_update_planning_phase(
                inference_session=session, frame_idx=t, reverse=False, det_out=det_out,
                tracker_low_res_masks_global=trk_masks, tracker_obj_scores_global=trk_scores,
                det_idx_to_prompt_id=det_prompt, streaming=True)
            model.run_tracker_update_execution_phase(inference_session=session, frame_idx=t, det_out=det_out,
                                                     tracker_update_plan=plan)
            low_res = model.build_outputs(inference_session=session, det_out=det_out, tracker_low_res_masks_global=trk_masks,
                                          tracker_update_plan=plan, reconditioned_obj_ids=plan["reconditioned_obj_ids"])
        if trk_scores.shape[0] > 0:  # the objects tracked into this frame come first (new ones were appended)
            meta["obj_id_to_tracker_score_frame_wise"][t].update(zip(session.obj_ids, trk_scores.sigmoid().tolist()))
        extra = meta["extra_metadata"]
        # what Sam3VideoModel.forward stores after the step
        session.obj_id_to_score = meta["obj_id_to_score"]
        session.obj_id_to_tracker_score_frame_wise = meta["obj_id_to_tracker_score_frame_wise"]
        session.obj_id_to_last_occluded = meta["obj_id_to_last_occluded"]
        session.max_obj_id = meta["max_obj_id"]
        session.obj_ids = list(meta["obj_ids"])
        session.obj_first_frame_idx = extra["obj_first_frame_idx"]
        session.unmatched_frame_inds = extra["unmatched_frame_inds"]
        session.trk_keep_alive = extra["trk_keep_alive"]
        session.overlap_pair_to_frame_inds = extra["overlap_pair_to_frame_inds"]
        session.removed_obj_ids = extra["removed_obj_ids"]
        session.suppressed_obj_ids[t] = extra["suppressed_obj_ids"][t]
        results = self._postprocess(low_res, session.obj_id_to_score, session.obj_id_to_tracker_score_frame_wise[t],
                                    session.suppressed_obj_ids[t], set(plan["new_det_obj_ids"]))
        self._end_unseen(set(results))
        self._forget(t)
        return {int(i) + 1: r for i, r in results.items()}

    def _postprocess(self, low_res: dict[int, torch.Tensor], scores: dict, tracker_scores: dict, hidden: set,
                     new: set) -> dict[int, Sam3TrackedObject]:
        """``Sam3VideoProcessor.postprocess_outputs``: masks at the frame size, empty and suppressed ones
        hidden, overlaps within a concept given to the object the tracker is most confident about; then
        objects left with no pixel are left out (transformers returns them with an empty mask)."""
        ids = [i for i in sorted(low_res) if i not in hidden]
        if not ids:
            return {}
        logits = torch.cat([low_res[i] for i in ids]).float()
        masks = F.interpolate(logits[:, None], size=self.size, mode="bilinear", align_corners=False)[:, 0] > 0
        visible = masks.flatten(1).any(1).cpu()
        ids = [i for i, v in zip(ids, visible.tolist()) if v]
        masks = masks[visible.to(masks.device)]
        confidence = torch.tensor([float(tracker_scores.get(i, 0.0)) for i in ids], dtype=torch.float32, device=masks.device)
        prompt_of = self.session.obj_id_to_prompt_id
        groups: dict[int, list[int]] = defaultdict(list)
        for k, i in enumerate(ids):
            groups[prompt_of[i]].append(k)
        for members in groups.values():
            if len(members) < 2:
                continue
            index = torch.tensor(members, device=masks.device)
            group = masks[index]
            weighted = torch.where(group, confidence[index][:, None, None], torch.zeros((), device=masks.device))
            best = weighted.argmax(dim=0, keepdim=True)
            mine = best == torch.arange(len(members), device=masks.device)[:, None, None]
            masks[index] = group & mine & (confidence[index] > 0)[:, None, None]
        masks = masks.cpu()
        # an object whose every pixel went to a surer one of its concept is not visible on this frame
        return {i: Sam3TrackedObject(masks[k], self.session.prompts[prompt_of[i]], float(scores[i]),
                                     float(tracker_scores.get(i, 0.0)), i in new)
                for k, i in enumerate(ids) if bool(masks[k].any())}

    def _end_unseen(self, seen: set[int]) -> None:
        """Count the frames each tracked object has been unseen; end those beyond ``forget_after``."""
        session = self.session
        for obj_id in list(session.obj_ids):
            self.missing[obj_id] = 0 if obj_id in seen else self.missing.get(obj_id, 0) + 1
            if self.forget_after is not None and self.missing[obj_id] > self.forget_after:
                log.debug("SAM 3 object %d ended: unseen for more than %d frames", obj_id + 1, self.forget_after)
                session.remove_object(obj_id)
                if obj_id in session.obj_ids:  # the last object: remove_object reset the whole state
                    session.obj_ids.remove(obj_id)
                for record in (self.missing, session.obj_id_to_score, session.trk_keep_alive, session.obj_first_frame_idx,
                               session.obj_id_to_last_occluded):
                    record.pop(obj_id, None)

    def _forget(self, t: int) -> None:
        """Drop what the model will never read again (see the module doc)."""
        session = self.session
        session.processed_frames.drop()
        tracker = self.engine.model.config.tracker_config
        keep_from = t + 1 - self.engine.memory_window
        recent_from = t + 1 - max(int(tracker.num_maskmem) - 1, 1)
        anchors_kept = int(tracker.max_cond_frame_num) if int(tracker.max_cond_frame_num) > 0 else 3
        for idx in list(session.output_dict_per_obj):
            outputs = session.output_dict_per_obj[idx]
            tracked = outputs["non_cond_frame_outputs"]
            for frame in [f for f in tracked if f < keep_from]:
                del tracked[frame]
            for frame in [f for f in session.frames_tracked_per_obj.get(idx, {}) if f < keep_from]:
                del session.frames_tracked_per_obj[idx][frame]
            anchors = outputs["cond_frame_outputs"]
            latest = set(sorted(anchors)[-anchors_kept:])
            for frame in [f for f in anchors if f not in latest and f < recent_from]:
                del anchors[frame]
            for inputs in (session.mask_inputs_per_obj.get(idx, {}), session.point_inputs_per_obj.get(idx, {})):
                for frame in [f for f in inputs if f not in anchors]:
                    del inputs[frame]
            for record in (*anchors.values(), *tracked.values()):
                record.pop("high_res_masks", None)
        for per_frame in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
            for frame in [f for f in per_frame if f != t]:
                del per_frame[frame]
        # read only by the whole-video mode's hot-start removal (streaming never removes that way)
        session.unmatched_frame_inds.clear()
        session.overlap_pair_to_frame_inds.clear()
