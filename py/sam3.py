"""SAM 3: text (and optional exemplar boxes) → instance masks, through transformers' ``Sam3Model``.

SAM 3 finds *every* instance of a concept ("shoes", "red bag") in an image and returns a mask, a
box and a score for each — what GroundingDINO + SAM do in two models, in one. The results are the
same :class:`~grounded_inpaint.structures.Segments` the GroundingDINO + SAM pipeline gives, so Mask
from Segmentation, Overlay and the example workflows work unchanged.

How a call runs (:meth:`Sam3Segmenter.segment`):

* the prompt is split into concepts (:func:`grounded_inpaint.prompts.split_categories`: ``.``,
  ``,``, ``;`` or new lines); SAM 3 takes one noun phrase per query, so each concept is one
  text prompt, and every instance is labelled with the concept that found it;
* the concepts are tokenised and **text-encoded once per call**; each image is **vision-encoded
  once** and its features are reused for every concept (the concepts of one image run as one
  batch, :attr:`Sam3Segmenter.concept_chunk` at a time);
* optional exemplar boxes (XYXY pixels, one set per image) are added to every concept as
  positive visual prompts: "more like these". With no concept at all, the boxes alone are the
  prompt (text ``"visual"``, as transformers' ``Sam3Processor`` does; label :data:`VISUAL_LABEL`);
* an instance is kept when ``sigmoid(pred_logit) · sigmoid(presence_logit) > threshold``; the
  instances of all concepts are merged, sorted by score (highest first), optionally de-duplicated
  across concepts (``overlap_iou``: an instance whose mask overlaps a better-scoring one by more
  than this IoU is dropped; off by default, because SAM 3 already gives one query per object within
  a concept), and cut to ``max_instances``;
* masks: the ``[m, m]`` logits (288² for released models) go through a sigmoid, are resized
  bilinearly to the original image size and thresholded at ``mask_threshold`` — the same steps as
  ``Sam3Processor.post_process_instance_segmentation``.

Pre-processing is done here in torch (square resize to the model's input side, 1008 for released
models, bilinear with antialiasing; mean/std 0.5), so transformers' ``Sam3ImageProcessor`` is not
used. transformers' ``Sam3Model`` itself needs torchvision (its box prompts use
``torchvision.ops.roi_align`` and transformers marks the whole model as requiring it); when it is
missing, loading fails with an error that says ``pip install torchvision``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .checks import count, fraction
from .errors import CheckpointError
from .images import to_rgb_list
from .interrupt import InterruptCheck, checkpoint, interruptible
from .prompts import EmptyPromptError, split_categories
from .structures import Segments

__all__ = [
    "Sam3Segmenter",
    "DEFAULT_THRESHOLD",
    "DEFAULT_MASK_THRESHOLD",
    "VISUAL_LABEL",
    "TORCHVISION_HINT",
    "require_torchvision",
]

log = logging.getLogger(__name__)

#: Minimum instance score (``sigmoid(logit) · sigmoid(presence)``) kept by default.
DEFAULT_THRESHOLD = 0.5
#: Mask probability above which a pixel belongs to the instance.
DEFAULT_MASK_THRESHOLD = 0.5
#: The label of instances found from exemplar boxes alone (no text concept).
VISUAL_LABEL = "visual"
#: What to run when torchvision is missing or broken.
TORCHVISION_HINT = (
    "pip install torchvision (the build that matches your torch version: ComfyUI's own install has it; "
    "with the portable build run python_embeded\\python.exe -m pip install torchvision)"
)

_DEFAULT_MEAN = (0.5, 0.5, 0.5)
_DEFAULT_STD = (0.5, 0.5, 0.5)
#: Files a transformers SAM 3 folder (facebook/sam3) holds that this loader reads.
_FOLDER_FILES = "config.json, model.safetensors, tokenizer.json, tokenizer_config.json (and processor_config.json)"


def require_torchvision(what: str = "SAM 3") -> None:
    """Raise ``ImportError`` naming the pip command when torchvision is missing or does not import.

    Arguments:
        what: the feature that needs it, for the message.
    """
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(f"{what} needs torchvision, which is not installed: {TORCHVISION_HINT}")
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # e.g. "operator torchvision::nms does not exist": built for another torch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportError(
            f"{what} needs torchvision, which is installed but does not import ({first}); it must be built for "
            f"your torch {torch.__version__}: {TORCHVISION_HINT}"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _preprocessing(folder: Path, image_size: int) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Input side, mean and std from ``processor_config.json`` / ``preprocessor_config.json`` (else defaults)."""
    side, mean, std = image_size, _DEFAULT_MEAN, _DEFAULT_STD
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        cfg = _read_json(path)
        cfg = cfg.get("image_processor", cfg) if isinstance(cfg.get("image_processor"), dict) else cfg
        size = cfg.get("size") or {}
        if isinstance(size, dict) and size.get("height") and size.get("height") == size.get("width"):
            side = int(size["height"])
        mean = tuple(float(v) for v in (cfg.get("image_mean") or mean))
        std = tuple(float(v) for v in (cfg.get("image_std") or std))
    if side != image_size:
        log.warning("%s resizes to %d px but the model was built for %d px; using %d", folder, side, image_size, image_size)
    return image_size, mean, std


class Sam3Segmenter:
    """Text → instance masks with a transformers ``Sam3Model`` (see the module docstring).

    Attributes:
        model: the ``Sam3Model`` (``torch.nn.Module``; ComfyUI's memory manager may move it).
        tokenizer: the CLIP tokenizer of the checkpoint.
        image_size: the square input side in pixels (1008 for released models).
        concept_chunk: how many concepts of one image run through the detector at once.
        upsample_chunk: how many masks are resized to the original image size at once.
    """

    concept_chunk = 4
    upsample_chunk = 8

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        image_size: int,
        mean: Sequence[float] = _DEFAULT_MEAN,
        std: Sequence[float] = _DEFAULT_STD,
        source: str = "<model>",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.source = source
        text_config = model.config.text_config
        self.max_text_length = int(getattr(text_config, "max_position_embeddings", 32) or 32)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Sam3Segmenter":
        """Load a transformers SAM 3 folder such as ``facebook/sam3`` (local files only, no remote code).

        Arguments:
            path: the folder holding ``config.json``, ``model.safetensors`` and the tokenizer files.
            device: where the weights go.
            dtype: ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.

        Raises:
            CheckpointError: the path is a single file, or the folder is not a loadable SAM 3 folder.
            ImportError: transformers has no ``Sam3Model`` (too old), or torchvision is missing.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder} is a single file; SAM 3 is loaded from a transformers folder ({_FOLDER_FILES}) such as "
                "https://huggingface.co/facebook/sam3 — Meta's sam3.pt checkpoint (used by other SAM 3 packs) is not read. "
                f"Put the folder into {folder.parent}"
            )
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{folder} has no config.json; a SAM 3 folder holds {_FOLDER_FILES}")
        model_type = _read_json(config_path).get("model_type")
        if model_type not in ("sam3", "sam3_video"):
            raise CheckpointError(
                f"{config_path} describes a {model_type!r} model, not SAM 3 (model_type 'sam3' or 'sam3_video'); "
                "put SAM 3 folders into models/sam3 and other models into their own folders"
            )
        try:
            from transformers import AutoTokenizer, Sam3Model
        except ImportError:
            import transformers

            raise ImportError(
                f"SAM 3 needs a transformers version with Sam3Model (5.0 or newer); this is transformers "
                f"{transformers.__version__}: pip install -U \"transformers>=5\""
            ) from None
        require_torchvision("SAM 3 (transformers' Sam3Model)")
        from safetensors import SafetensorError

        try:
            model = Sam3Model.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
            raise CheckpointError(
                f"{folder} is not a loadable transformers SAM 3 folder ({str(exc).strip().splitlines()[0]}); it needs "
                f"{_FOLDER_FILES} as published in facebook/sam3"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{folder} has no usable tokenizer ({str(exc).strip().splitlines()[0]}); copy tokenizer.json and "
                "tokenizer_config.json (or vocab.json and merges.txt) from facebook/sam3 into it"
            ) from None
        image_size, mean, std = _preprocessing(folder, int(model.config.vision_config.image_size))
        return cls(model.to(device=device, dtype=dtype), tokenizer, image_size=image_size, mean=mean, std=std,
                   source=str(folder))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ steps

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` float 0..1 → ``[1, 3, S, S]`` normalised model input (square resize, no padding)."""
        pixels = image.to(device=self.device, dtype=torch.float32).permute(2, 0, 1)[None]
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear",
                               align_corners=False, antialias=True).clamp(0, 1)
        pixels = (pixels - self.mean.to(pixels.device)) / self.std.to(pixels.device)
        return pixels.to(self.dtype)

    def encode_text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise and encode ``C`` texts once.

        Returns:
            ``(features, attention_mask)``: ``[C, L, D]`` projected text features in the model dtype
            and ``[C, L]`` long attention mask (``L`` = the text encoder's 32 positions).
        """
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_text_length,
                                return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        attention_mask = tokens["attention_mask"].to(self.device)
        with torch.inference_mode():
            out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.pooler_output, attention_mask

    def encode_image(self, image: torch.Tensor) -> Any:
        """Vision features of one ``[H, W, 3]`` image (``Sam3VisionEncoderOutput``, batch 1)."""
        with torch.inference_mode():
            return self.model.get_vision_features(pixel_values=self.preprocess(image))

    def _boxes_prompt(self, boxes: torch.Tensor | None, size: tuple[int, int], n: int):
        """XYXY pixel boxes ``[K, 4]`` → normalised cxcywh ``[n, K, 4]`` and labels ``[n, K]`` (all positive)."""
        if boxes is None or boxes.numel() == 0:
            return None, None
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).cpu()
        h, w = size
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        xyxy = (boxes / scale).clamp(0, 1)
        x0, y0, x1, y1 = xyxy.unbind(-1)
        x0, x1 = torch.minimum(x0, x1), torch.maximum(x0, x1)
        y0, y1 = torch.minimum(y0, y1), torch.maximum(y0, y1)
        cxcywh = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)
        prompt = cxcywh[None].expand(n, -1, -1).to(device=self.device, dtype=self.dtype)
        labels = torch.ones(n, cxcywh.shape[0], dtype=torch.long, device=self.device)
        return prompt, labels

    def _detect(self, vision: Any, text: torch.Tensor, text_mask: torch.Tensor, boxes: torch.Tensor | None,
                size: tuple[int, int]):
        """Run the detector and mask decoder for ``C`` concepts on one encoded image.

        Returns:
            ``(scores [C, Q], boxes [C, Q, 4] normalised xyxy, mask_logits [C, Q, m, m])`` as float32.
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        c = text.shape[0]
        expanded = type(vision)(
            fpn_hidden_states=tuple(t.expand(c, -1, -1, -1) for t in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(t.expand(c, -1, -1, -1) for t in vision.fpn_position_encoding),
        )
        input_boxes, input_labels = self._boxes_prompt(boxes, size, c)
        if input_boxes is not None:
            require_torchvision("SAM 3 box prompts (torchvision.ops.roi_align)")
        with torch.inference_mode():
            out = self.model(
                vision_embeds=expanded,
                text_embeds=BaseModelOutputWithPooling(pooler_output=text),
                attention_mask=text_mask,
                input_boxes=input_boxes,
                input_boxes_labels=input_labels,
            )
        scores = out.pred_logits.float().sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.float().sigmoid()
        return scores, out.pred_boxes.float(), out.pred_masks.float()

    def _upsample(self, probs: torch.Tensor, size: tuple[int, int], mask_threshold: float) -> torch.Tensor:
        """``[N, m, m]`` probabilities → ``[N, H, W]`` bool at ``size``, :attr:`upsample_chunk` masks at a time."""
        out = torch.zeros((probs.shape[0], *size), dtype=torch.bool)
        for start in range(0, probs.shape[0], self.upsample_chunk):
            checkpoint()
            part = probs[start:start + self.upsample_chunk]
            up = F.interpolate(part[None], size=size, mode="bilinear", align_corners=False)[0]
            out[start:start + part.shape[0]] = (up > mask_threshold).cpu()
        return out

    # ------------------------------------------------------------------ public API

    def segment_image(
        self,
        image: torch.Tensor,
        concepts: Sequence[str],
        text: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        max_instances: int | None = None,
        boxes: torch.Tensor | None = None,
        overlap_iou: float | None = None,
    ) -> Segments:
        """Segment every instance of ``concepts`` in one ``[H, W, 3]`` float 0..1 image.

        Arguments:
            image: ``[H, W, 3]`` float32 in 0..1.
            concepts: the labels, one text prompt each (``[VISUAL_LABEL]`` for boxes alone).
            text: ``encode_text(concepts)`` when already computed (reused across images).
            boxes: ``[K, 4]`` XYXY pixel exemplar boxes added to every concept, or ``None``.
            threshold, mask_threshold, max_instances, overlap_iou: see :meth:`segment`.

        Returns:
            :class:`Segments` at the original resolution, highest score first.
        """
        h, w = int(image.shape[0]), int(image.shape[1])
        if not concepts:
            return Segments.empty((h, w))
        text_features, text_mask = text if text is not None else self.encode_text(concepts)
        vision = self.encode_image(image)
        all_scores, all_boxes, all_probs, all_labels = [], [], [], []
        for start in range(0, len(concepts), self.concept_chunk):
            stop = min(start + self.concept_chunk, len(concepts))
            scores, pred_boxes, mask_logits = self._detect(
                vision, text_features[start:stop], text_mask[start:stop], boxes, (h, w))
            for row in range(stop - start):
                keep = torch.nonzero(scores[row] > threshold).flatten()
                if keep.numel() == 0:
                    continue
                all_scores.append(scores[row, keep].cpu())
                all_boxes.append(pred_boxes[row, keep].cpu())
                all_probs.append(mask_logits[row, keep].sigmoid())
                all_labels += [concepts[start + row]] * int(keep.numel())
        if not all_labels:
            return Segments.empty((h, w))
        scores = torch.cat(all_scores)
        norm_boxes = torch.cat(all_boxes)
        probs = torch.cat(all_probs)
        order = torch.argsort(scores, descending=True, stable=True)
        if overlap_iou is not None and overlap_iou < 1.0:
            order = _suppress_overlaps(probs > mask_threshold, order, overlap_iou)
        if max_instances:
            order = order[: int(max_instances)]
        scores, norm_boxes, probs = scores[order], norm_boxes[order], probs[order.to(probs.device)]
        labels = [all_labels[int(i)] for i in order]
        inside = probs > mask_threshold
        area = inside.flatten(1).sum(1)
        # quality: the mean probability inside the mask (0 for an empty mask)
        quality = (probs * inside).flatten(1).sum(1) / area.clamp(min=1)
        pixel_boxes = norm_boxes * torch.tensor([w, h, w, h], dtype=torch.float32)
        pixel_boxes[:, 0::2] = pixel_boxes[:, 0::2].clamp(0, w)
        pixel_boxes[:, 1::2] = pixel_boxes[:, 1::2].clamp(0, h)
        masks = self._upsample(probs, (h, w), mask_threshold)
        return Segments(masks, pixel_boxes, scores, quality.float().cpu(), labels, (h, w))

    def segment(
        self,
        images: Any,
        prompt: str,
        threshold: float = DEFAULT_THRESHOLD,
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        max_instances: int | None = None,
        boxes: Sequence[torch.Tensor | None] | None = None,
        *,
        overlap_iou: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        interrupt: InterruptCheck | None = None,
    ) -> list[Segments]:
        """Find every instance of the prompt's concepts in each image: ``B`` images in, ``B`` results out.

        Arguments:
            images: ``[B, H, W, C]`` tensor (0..1) or a list of images (sizes may differ).
            prompt: one or more concepts separated by ``.``, ``,``, ``;`` or new lines, e.g.
                ``"shoes, red bag"``. May be empty when ``boxes`` are given.
            threshold: minimum instance score in 0..1 (``sigmoid(logit) · sigmoid(presence)``).
            mask_threshold: mask probability above which a pixel is in the mask (0..1).
            max_instances: keep at most this many instances per image, best first (``None``/0: all).
            boxes: one ``[K, 4]`` XYXY-pixel tensor (or ``None``) per image: exemplar boxes given to
                every concept as positive visual prompts (needs torchvision). With an empty prompt
                they are the only prompt and the instances are labelled :data:`VISUAL_LABEL`.
            overlap_iou: when set below 1, drop an instance whose mask overlaps a better-scoring
                instance (of any concept) by more than this IoU (computed on the low-resolution masks).
            progress: ``progress(done, total)`` after each image.
            interrupt: called before each image and between the layers of every model pass (text,
                vision, detector, mask decoder); raise from it to stop (ComfyUI's Cancel button).

        Returns:
            One :class:`Segments` per image (masks ``[N, H, W]`` bool at the image's resolution,
            boxes XYXY pixels, scores, quality = mean mask probability inside the mask, labels =
            the concept that found each instance), sorted by score. Images where nothing passes the
            threshold get an empty :class:`Segments` of their size.

        Raises:
            EmptyPromptError: the prompt names no concept and no image has boxes.
            ValueError: thresholds or ``overlap_iou`` outside 0..1 or NaN, a negative or fractional
                ``max_instances``, or a number of box sets that differs from the images.
        """
        threshold = fraction("threshold", threshold)
        mask_threshold = fraction("mask_threshold", mask_threshold)
        max_instances = count("max_instances", max_instances, allow_none=True, meaning="(None or 0 keeps all)")
        overlap_iou = fraction("overlap_iou", overlap_iou, allow_none=True, meaning="(None or 1 keeps overlaps)")
        pictures = to_rgb_list(images)
        b = len(pictures)
        per_image_boxes: list[torch.Tensor | None] = list(boxes) if boxes is not None else [None] * b
        if len(per_image_boxes) != b:
            raise ValueError(f"got {b} images but {len(per_image_boxes)} box sets; give one set (or None) per image")
        has_boxes = [bx is not None and torch.as_tensor(bx).numel() > 0 for bx in per_image_boxes]
        concepts = split_categories(prompt)
        if not concepts and not any(has_boxes):
            raise EmptyPromptError(
                f"the prompt {prompt!r} names no object; type what to find, e.g. \"shoes\" or \"dress, bag\" "
                "(separate several objects with '.' or ','), or give exemplar boxes"
            )
        texts = concepts or [VISUAL_LABEL]
        with interruptible(interrupt, self.model):
            return self._segment_all(pictures, texts, bool(concepts), per_image_boxes, has_boxes, threshold,
                                     mask_threshold, max_instances, overlap_iou, progress)

    def _segment_all(self, pictures, texts, with_concepts, per_image_boxes, has_boxes, threshold, mask_threshold,
                     max_instances, overlap_iou, progress) -> list[Segments]:
        b = len(pictures)
        encoded = self.encode_text(texts)
        results: list[Segments] = []
        for i, picture in enumerate(pictures):
            checkpoint()
            if with_concepts or has_boxes[i]:
                results.append(self.segment_image(
                    picture, texts, encoded, threshold=threshold, mask_threshold=mask_threshold,
                    max_instances=max_instances, boxes=per_image_boxes[i] if has_boxes[i] else None,
                    overlap_iou=overlap_iou))
            else:  # boxes alone are the prompt, and this image has none
                results.append(Segments.empty(picture.shape[:2]))
            if progress is not None:
                progress(i + 1, b)
        return results


def _suppress_overlaps(masks: torch.Tensor, order: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy mask NMS: walk ``order`` (best first) and drop masks overlapping a kept one by IoU > ``iou``.

    Arguments:
        masks: ``[N, m, m]`` bool low-resolution masks.
        order: ``[N]`` long indices, best first.
    """
    flat = masks.flatten(1).float()
    kept: list[int] = []
    for idx in order.tolist():
        if kept:
            inter = flat[kept] @ flat[idx]
            union = flat[kept].sum(1) + flat[idx].sum() - inter
            overlap = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
            if bool((overlap > iou).any()):
                continue
        kept.append(idx)
    return torch.tensor(kept, dtype=torch.long)
