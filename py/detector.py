"""Open-vocabulary detection with GroundingDINO (transformers).

``GroundingDinoDetector.detect(images, "shoes, bag")`` returns one :class:`Detections` per image:
boxes in XYXY pixels of that image's original size, scores, and the phrase each box was matched to.

Pipeline, per chunk of same-size images:

1. the prompt is normalised (``"shoes . bag ."``) and tokenised once;
2. each image is resized so its short side is ``shortest_edge`` (800) without the long side
   exceeding ``longest_edge`` (1333), normalised with the processor's mean/std (all in torch, on the
   model's device);
3. the model predicts ``num_queries`` boxes (normalised cxcywh) with a score per text token;
4. a box is kept when its best token score exceeds ``box_threshold``; its label is made of the
   tokens whose score exceeds ``text_threshold`` (GroundingDINO's reference rule, the same as
   ``post_process_grounded_object_detection``); boxes are scaled to the original image size,
   clipped to it, de-duplicated per label by NMS, sorted by score and cut to ``max_detections``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .cache import FeatureCache, default_cache, image_key, new_owner_token, to_cpu_copy, to_device
from .checks import count, fraction, number
from .images import to_rgb_list
from .interrupt import InterruptCheck, checkpoint, interruptible
from .prompts import normalize_prompt, split_categories
from .structures import Detections

__all__ = [
    "GroundingDinoDetector",
    "DETECTOR_MODEL_CLASSES",
    "detector_model_class",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "nms",
    "resize_shortest_edge",
]

log = logging.getLogger(__name__)

DEFAULT_BOX_THRESHOLD = 0.30
DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_NMS_IOU = 0.5
#: GroundingDINO's queries bound the detections per image (900 in the released models).
MAX_DETECTIONS_LIMIT = 10_000
#: Strides of GroundingDINO's feature levels (Swin stages 2-4 and the extra convolution level).
_LEVEL_STRIDES = (8, 16, 32, 64)


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` (cx, cy, w, h) → ``[..., 4]`` (x0, y0, x1, y1), same units."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``[N, M]`` of XYXY boxes ``a [N, 4]`` and ``b [M, 4]`` (0 for empty boxes)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, groups: Sequence[str] | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Arguments:
        boxes: ``[N, 4]`` XYXY.
        scores: ``[N]``.
        iou_threshold: a box is dropped when it overlaps a higher-scoring kept box of the same group
            by more than this IoU. ``>= 1`` disables suppression.
        groups: optional group name per box (labels); boxes of different groups never suppress
            each other.

    Returns:
        ``[K]`` long indices of the kept boxes, by decreasing score.

    Raises:
        ValueError: ``iou_threshold`` is NaN or negative.
    """
    iou_threshold = number("iou_threshold", iou_threshold, low=0.0, meaning="(1 or more keeps every box)")
    order = torch.argsort(scores, descending=True, stable=True)
    if iou_threshold >= 1.0 or boxes.shape[0] <= 1:
        return order
    iou = box_iou(boxes, boxes)
    if groups is not None:
        codes = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        gid = torch.tensor([codes[g] for g in groups], device=boxes.device)
        iou = torch.where(gid[:, None] == gid[None, :], iou, torch.zeros_like(iou))
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def resize_shortest_edge(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    """Output ``(height, width)`` when the short side becomes ``shortest`` but the long side stays
    within ``longest`` (the DETR / GroundingDINO resizing rule, aspect ratio kept). Every side is at
    least 1 pixel (a strip far thinner than ``shortest / longest`` keeps a 1-pixel short side)."""
    for name, value in (("height", height), ("width", width), ("shortest", shortest), ("longest", longest)):
        count(name, value, low=1)
    short, long_ = float(min(height, width)), float(max(height, width))
    size: float = shortest
    exact = None
    if long_ / short * shortest > longest:
        exact = longest * short / long_
        size = int(round(exact))
    size = int(size)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    ratio_base = exact if exact is not None else size
    size = max(1, size)
    if width < height:
        return max(1, int(ratio_base * height / width)), size
    return size, max(1, int(ratio_base * width / height))


def _discard_owner(owner: int) -> None:
    """Drop a freed detector's entries from the shared cache (called by ``weakref.finalize``)."""
    default_cache().discard_owner(owner)


def _cpu_autocast(device: torch.device | str, dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype | None]:
    """``(weights dtype, autocast dtype)`` for a requested ``dtype``.

    On the CPU, GroundingDINO with bf16 *weights* runs about twice slower than fp32 (its deformable
    attention and many small ops fall off the fast paths), while fp32 weights under bf16 autocast
    run about 1.5x faster; so bf16 on the CPU means fp32 weights plus bf16 autocast. Elsewhere the
    weights take the requested dtype.
    """
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        return torch.float32, torch.bfloat16
    return dtype, None


#: transformers model class of each detector ``model_type`` (``config.json``).
DETECTOR_MODEL_CLASSES = {
    "grounding-dino": "GroundingDinoForObjectDetection",
    "mm-grounding-dino": "MMGroundingDinoForObjectDetection",
}


def detector_model_class(path: str | Path, *, local_files_only: bool = True) -> type:
    """The transformers class for the detector folder (or hub id) ``path``, from its ``config.json``
    ``model_type``: GroundingDINO or MM-GroundingDINO (same inputs, outputs and processor).

    A folder without a readable ``config.json`` gets GroundingDINO's class (loading then says what
    is missing).

    Raises:
        CheckpointError: the folder holds another kind of model, or transformers is too old for
            MM-GroundingDINO (it needs transformers 4.56 or newer).
    """
    import json

    import transformers

    from .errors import CheckpointError

    config_file = Path(path) / "config.json"
    model_type = "grounding-dino"
    try:
        if config_file.is_file():
            model_type = str(json.loads(config_file.read_text(encoding="utf-8")).get("model_type", model_type))
        elif not Path(path).exists():  # a hub id
            model_type = transformers.AutoConfig.from_pretrained(str(path), local_files_only=local_files_only).model_type
    except (OSError, ValueError):
        pass
    name = DETECTOR_MODEL_CLASSES.get(model_type)
    if name is None:
        raise CheckpointError(
            f"{path} holds a {model_type!r} model, not a detector; models/grounding-dino takes GroundingDINO "
            f"({', '.join(DETECTOR_MODEL_CLASSES)}) folders and original GroundingDINO .pth files"
        )
    model_class = getattr(transformers, name, None)
    if model_class is None:
        raise CheckpointError(
            f"{path} is a {model_type} model, which needs a newer transformers ({name} is missing in "
            f"{transformers.__version__}): pip install -U 'transformers>=4.56'"
        )
    return model_class


def _deformable_attention(
    value: torch.Tensor,
    value_spatial_shapes: torch.Tensor,
    value_spatial_shapes_list: list[tuple[int, int]],
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
) -> torch.Tensor:
    """Multi-scale deformable attention (pure PyTorch), lighter than transformers' fallback.

    Same maths as ``MultiScaleDeformableAttention.forward`` in transformers (bilinear
    ``grid_sample`` of each level at the sampling locations, weighted sum over levels and points),
    but the weights are applied level by level and accumulated, instead of stacking every level's
    samples into one ``[B·heads, d, Q, levels·points]`` tensor and multiplying that (two copies of
    290 MB per encoder layer at 800x1066 input). Faster and leaner on the CPU.

    Arguments:
        value: ``[B, S, heads, d]`` projected values of all levels, flattened.
        value_spatial_shapes_list: ``(h, w)`` of each level (their areas sum to ``S``).
        sampling_locations: ``[B, Q, heads, levels, points, 2]`` in 0..1 (x, y).
        attention_weights: ``[B, Q, heads, levels, points]`` (softmax over levels·points).

    Returns:
        ``[B, Q, heads·d]``.
    """
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in value_spatial_shapes_list], dim=1)
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels, points)
    out: torch.Tensor | None = None
    for level, (h, w) in enumerate(value_spatial_shapes_list):
        checkpoint()
        v = values[level].flatten(2).transpose(1, 2).reshape(batch * heads, dim, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # [B*heads, Q, points, 2]
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        part = sampled.mul_(weights[..., level, :].to(sampled.dtype)).sum(-1)  # [B*heads, d, Q]
        out = part if out is None else out.add_(part)
    assert out is not None
    return out.view(batch, heads * dim, queries).transpose(1, 2).contiguous()


class GroundingDinoDetector:
    """GroundingDINO with its tokenizer and preprocessing, ready to answer text prompts.

    Build it with :meth:`from_pretrained` (a local HF folder, or a hub id fetched through
    ``huggingface_hub``). The model is kept in eval mode on ``device`` with ``dtype``.

    Raw model outputs are cached by (image content, tokenised prompt), and the text-independent
    Swin backbone features by image content, in :attr:`feature_cache` (CPU memory, bounded; see
    :mod:`grounded_inpaint.cache`): a new threshold reuses the outputs, a new prompt on the same
    image reuses the backbone features. Results are the same as without the cache.

    Arguments:
        autocast: run the model under ``torch.autocast`` with this dtype (e.g. bf16 on the CPU,
            where bf16 weights are slow); ``None`` runs in the weights' dtype.
    """

    def __init__(self, model: torch.nn.Module, processor: Any, *, source: str = "<model>", autocast: torch.dtype | None = None) -> None:
        self.model = model.eval()
        self.autocast = autocast
        #: Where outputs and backbone features are cached by content (``None``: no caching).
        self.feature_cache: FeatureCache | None = default_cache()
        #: Whether the backbone features are cached too (they let a new prompt skip the Swin backbone).
        self.cache_backbone = True
        #: Run the deformable attention with :func:`_deformable_attention` (same results, less time and memory).
        self.lean_attention = True
        self._cache_owner = new_owner_token()
        self._forward_lock = threading.RLock()
        weakref.finalize(self, _discard_owner, self._cache_owner)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.source = source
        ip = processor.image_processor
        size = dict(getattr(ip, "size", None) or {})
        self.shortest_edge = int(size.get("shortest_edge") or 800)
        self.longest_edge = int(size.get("longest_edge") or 1333)
        self.image_mean = torch.tensor(list(getattr(ip, "image_mean", None) or (0.485, 0.456, 0.406)))
        self.image_std = torch.tensor(list(getattr(ip, "image_std", None) or (0.229, 0.224, 0.225)))
        self.max_text_len = int(getattr(model.config, "max_text_len", 256))
        special = {getattr(self.tokenizer, n, None) for n in ("cls_token_id", "sep_token_id", "pad_token_id")}
        self._special_ids = {int(i) for i in special if i is not None}
        self._dot_id = self.tokenizer.convert_tokens_to_ids(".")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        local_files_only: bool | None = None,
    ) -> "GroundingDinoDetector":
        """Load a transformers GroundingDINO or MM-GroundingDINO folder (``config.json``, weights,
        processor and tokenizer files); the class follows ``config.json``'s ``model_type`` (see
        :func:`detector_model_class`). Original GroundingDINO ``.pth`` files load with
        :func:`grounded_inpaint.gdino_convert.load_original_grounding_dino`.

        Arguments:
            path: a local folder, or a hub id such as ``IDEA-Research/grounding-dino-tiny`` (then the
                HF cache is used; prefer :func:`grounded_inpaint.models.load_detector`, which puts
                downloads into the models folder).
            local_files_only: defaults to ``True`` for local folders, so nothing is ever fetched
                behind the user's back (the tokenizer comes from the folder itself).
        """
        from transformers import GroundingDinoProcessor

        from safetensors import SafetensorError

        from .errors import CheckpointError

        local = Path(path).is_dir()
        if local_files_only is None:
            local_files_only = local
        kwargs: dict[str, Any] = {"local_files_only": local_files_only}
        model_class = detector_model_class(path, local_files_only=local_files_only)
        try:
            processor = GroundingDinoProcessor.from_pretrained(str(path), **kwargs)
            model = model_class.from_pretrained(str(path), use_safetensors=None if local else True, **kwargs)
        except OSError as exc:
            raise CheckpointError(
                f"{path} is not a complete GroundingDINO model folder ({str(exc).strip().splitlines()[0]}); it needs "
                "config.json, model.safetensors, preprocessor_config.json and the tokenizer files "
                "(tokenizer.json or vocab.txt) as published in IDEA-Research/grounding-dino-tiny"
            ) from None
        except (ValueError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(
                f"{path} could not be loaded as GroundingDINO ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); "
                "a file in it is probably truncated or corrupted: delete the folder and download it again"
            ) from None
        dtype, autocast = _cpu_autocast(device, dtype)
        model = model.to(device=device, dtype=dtype)
        return cls(model, processor, source=str(path), autocast=autocast)

    # ------------------------------------------------------------------ preprocessing

    def tokenize(self, prompt: str) -> dict[str, torch.Tensor]:
        """Tokenise the normalised ``prompt`` → ``input_ids``, ``attention_mask``, ``token_type_ids`` ``[1, T]``."""
        caption = normalize_prompt(prompt)
        tokens = self.tokenizer(caption, return_tensors="pt", truncation=True, max_length=self.max_text_len)
        if tokens["input_ids"].shape[1] >= self.max_text_len:
            log.warning("the prompt is longer than %d tokens and was cut: %r", self.max_text_len, caption)
        tokens.setdefault("token_type_ids", torch.zeros_like(tokens["input_ids"]))
        return {k: tokens[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def preprocess(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Same-size ``[H, W, 3]`` float 0..1 images → ``(pixel_values [B, 3, h, w], pixel_mask [B, h, w])``.

        The images are resized by :func:`resize_shortest_edge` and normalised with the processor's
        mean/std on the model's device. The model picks its queries among the positions of its
        feature maps, so an image must have at least as many positions as queries: a strip a few
        pixels wide is padded (bottom / right) until it has (:meth:`padded_size`), and ``pixel_mask``
        (1 = image, 0 = padding) tells the model to ignore the padding; boxes stay relative to the
        image. Ordinary images are not padded.
        """
        h, w = images[0].shape[:2]
        oh, ow = resize_shortest_edge(h, w, self.shortest_edge, self.longest_edge)
        batch = torch.stack([im.to(self.device, torch.float32) for im in images]).permute(0, 3, 1, 2)
        if (oh, ow) != (h, w):
            batch = F.interpolate(batch, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)
        mean = self.image_mean.to(self.device)[None, :, None, None]
        std = self.image_std.to(self.device)[None, :, None, None]
        batch = (batch - mean) / std
        ph, pw = self.padded_size(oh, ow)
        mask = torch.ones(batch.shape[0], ph, pw, dtype=torch.long, device=self.device)
        if (ph, pw) != (oh, ow):
            batch = F.pad(batch, (0, pw - ow, 0, ph - oh))
            mask[:, oh:, :] = 0
            mask[:, :, ow:] = 0
        return batch.to(self.dtype), mask

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` of a resized image, its short side padded (in steps of 8 pixels) until the
        feature maps hold at least ``num_queries`` positions; unchanged for ordinary images."""
        queries = int(getattr(self.model.config, "num_queries", 900))
        levels = int(getattr(self.model.config, "num_feature_levels", len(_LEVEL_STRIDES)))
        strides = [2 ** (3 + i) for i in range(levels)]

        def positions(h: int, w: int) -> int:
            return sum(math.ceil(h / s) * math.ceil(w / s) for s in strides)

        h, w = height, width
        while positions(h, w) < queries:
            if h <= w:
                h = (h // 8 + 1) * 8
            else:
                w = (w // 8 + 1) * 8
        return h, w

    # ------------------------------------------------------------------ post-processing

    def _phrase(self, token_ids: torch.Tensor, selected: torch.Tensor, probs: torch.Tensor, categories: list[str], category_of: list[int]) -> str:
        ids = [int(token_ids[i]) for i in selected.tolist() if int(token_ids[i]) not in self._special_ids and int(token_ids[i]) != self._dot_id]
        if ids:
            return self.tokenizer.decode(ids).strip()
        # No token above text_threshold: name the category of the best token instead of "".
        valid = torch.tensor([c >= 0 for c in category_of], device=probs.device)
        best = int(torch.where(valid, probs[: len(category_of)], torch.full_like(probs[: len(category_of)], -1)).argmax())
        return categories[category_of[best]] if category_of[best] >= 0 else (categories[0] if categories else "")

    def _category_map(self, token_ids: torch.Tensor) -> list[int]:
        """Category index of each token position (``-1`` for special tokens and separators)."""
        index, out = 0, []
        for tid in token_ids.tolist():
            if tid in self._special_ids:
                out.append(-1)
            elif tid == self._dot_id:
                out.append(-1)
                index += 1
            else:
                out.append(index)
        return out

    def postprocess(
        self,
        logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        input_ids: torch.Tensor,
        image_size: tuple[int, int],
        *,
        prompt: str,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        max_detections: int | None = None,
        nms_iou: float | None = DEFAULT_NMS_IOU,
    ) -> Detections:
        """Turn one image's raw outputs into :class:`Detections`.

        Arguments:
            logits: ``[Q, T]`` raw token logits of each query.
            pred_boxes: ``[Q, 4]`` normalised cxcywh (relative to the unpadded image).
            input_ids: ``[T']`` token ids of the caption (``T' <= T``).
            image_size: original ``(height, width)``; boxes are returned in its pixels.
        """
        h, w = image_size
        probs = logits.float().sigmoid()
        scores = probs.max(dim=-1).values
        keep = scores > box_threshold
        if not bool(keep.any()):
            return Detections.empty(image_size)
        probs, scores = probs[keep], scores[keep]
        boxes = box_cxcywh_to_xyxy(pred_boxes[keep].float()) * torch.tensor([w, h, w, h], dtype=torch.float32, device=logits.device)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        # The reference rule: tokens above text_threshold, ignoring the first and the last position.
        posmap = probs > text_threshold
        posmap[:, 0] = False
        posmap[:, -1] = False
        categories = split_categories(prompt)
        category_of = self._category_map(input_ids)
        ids = input_ids.to(logits.device)
        labels = [
            self._phrase(ids, posmap[i, : ids.shape[0]].nonzero().flatten(), probs[i], categories, category_of)
            for i in range(probs.shape[0])
        ]
        order = nms(boxes, scores, nms_iou if nms_iou is not None else 1.0, labels)
        if max_detections is not None:
            order = order[:max_detections]
        return Detections(boxes[order].cpu(), scores[order].cpu(), [labels[i] for i in order.tolist()], image_size)

    # ------------------------------------------------------------------ detection

    @torch.inference_mode()
    def detect(
        self,
        images: Any,
        prompt: str,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        max_detections: int | None = None,
        nms_iou: float | None = DEFAULT_NMS_IOU,
        *,
        batch_size: int = 1,
        progress: Callable[[int, int], None] | None = None,
        interrupt: InterruptCheck | None = None,
    ) -> list[Detections]:
        """Find the objects named in ``prompt`` in every image.

        Arguments:
            images: ``[B, H, W, C]`` tensor, a list of images (sizes may differ) or one image; see
                :func:`grounded_inpaint.images.to_rgb`.
            prompt: e.g. ``"shoes"`` or ``"dress, handbag"`` (``.``/``,`` separate categories).
            box_threshold: minimum box confidence, 0..1.
            text_threshold: minimum token score for a word to be part of a box's label, 0..1.
            max_detections: keep at most this many boxes per image (highest scores), ``None`` = all;
                an integer ``>= 0`` (0 keeps none).
            nms_iou: IoU above which a lower-scoring box with the same label is dropped, ``>= 0``;
                ``None`` or ``>= 1`` keeps duplicates.
            batch_size: how many same-size images go through the model at once, ``>= 1``.
            progress: ``progress(done, total)`` after each image.
            interrupt: called between images and between the model's layers (see
                :mod:`grounded_inpaint.interrupt`); raise from it to stop.

        Returns:
            ``B`` :class:`Detections`, aligned with the input (empty where nothing was found).

        Raises:
            ValueError: a threshold outside ``0..1`` or NaN, a negative or fractional
                ``max_detections``, a negative or NaN ``nms_iou``, ``batch_size < 1``; an empty prompt
                (:class:`grounded_inpaint.prompts.EmptyPromptError`).
        """
        box_threshold = fraction("box_threshold", box_threshold)
        text_threshold = fraction("text_threshold", text_threshold)
        max_detections = count("max_detections", max_detections, high=MAX_DETECTIONS_LIMIT, allow_none=True, meaning="(None keeps all)")
        nms_iou = number("nms_iou", nms_iou, low=0.0, allow_none=True, meaning="(None or 1 keeps duplicates)")
        batch_size = count("batch_size", batch_size, low=1)
        pictures = to_rgb_list(images)
        tokens = {k: v.to(self.device) for k, v in self.tokenize(prompt).items()}
        cache = self._active_cache()
        keys = [image_key(p) for p in pictures] if cache is not None else [None] * len(pictures)
        prompt_key = tuple(tokens["input_ids"][0].tolist())
        results: list[Detections] = []

        def finish(picture: torch.Tensor, logits: torch.Tensor, boxes: torch.Tensor) -> None:
            results.append(
                self.postprocess(
                    logits, boxes, tokens["input_ids"][0], (int(picture.shape[0]), int(picture.shape[1])),
                    prompt=prompt, box_threshold=box_threshold, text_threshold=text_threshold,
                    max_detections=max_detections, nms_iou=nms_iou,
                )
            )
            if progress is not None:
                progress(len(results), len(pictures))

        start = 0
        while start < len(pictures):
            if interrupt is not None:
                interrupt()
            key = self._outputs_key(keys[start], prompt_key)
            hit = cache.get(key, copy=False) if cache is not None else None
            if hit is not None:  # same image, same prompt: only the thresholds may have changed
                logits, boxes = to_device(hit, self.device)
                finish(pictures[start], logits, boxes)
                start += 1
                continue
            chunk = [start]
            while (
                len(chunk) < max(1, batch_size)
                and start + len(chunk) < len(pictures)
                and pictures[start + len(chunk)].shape == pictures[start].shape
                and (cache is None or self._outputs_key(keys[start + len(chunk)], prompt_key) not in cache)
            ):
                chunk.append(start + len(chunk))
            logits, boxes = self._forward([pictures[i] for i in chunk], tokens, [keys[i] for i in chunk], interrupt)
            for j, i in enumerate(chunk):
                if cache is not None:
                    cache.put(self._outputs_key(keys[i], prompt_key), to_cpu_copy((logits[j], boxes[j])), copy=False)
                finish(pictures[i], logits[j], boxes[j])
            start += len(chunk)
        return results

    # ------------------------------------------------------------------ model call and caching

    def _active_cache(self) -> FeatureCache | None:
        cache = self.feature_cache
        return cache if cache is not None and cache.enabled else None

    def _outputs_key(self, image: str | None, prompt_key: tuple[int, ...]) -> tuple:
        """Cache key of one image's raw outputs: model, image content, token ids, resize rule, precision."""
        return (self._cache_owner, "dino-outputs", image, prompt_key, self.shortest_edge, self.longest_edge,
                str(self.device), str(self.dtype), str(self.autocast))

    def _forward(
        self, chunk: list[torch.Tensor], tokens: dict[str, torch.Tensor], keys: list[str | None], interrupt: InterruptCheck | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model on same-size ``[H, W, 3]`` images → ``logits [B, Q, T]``, ``pred_boxes [B, Q, 4]``."""
        pixel_values, pixel_mask = self.preprocess(chunk)
        b = pixel_values.shape[0]
        if not bool(pixel_mask.all()):
            keys = [None] * len(keys)  # padded strips are rare: their backbone features are not cached
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast) if self.autocast is not None else contextlib.nullcontext()
        )
        with (self._forward_lock, interruptible(interrupt, self.model), self._cached_backbone(keys),
              self._lean_deformable_attention(), autocast):
            outputs = self.model(
                pixel_values=pixel_values,
                pixel_mask=pixel_mask,
                input_ids=tokens["input_ids"].expand(b, -1),
                attention_mask=tokens["attention_mask"].expand(b, -1),
                token_type_ids=tokens["token_type_ids"].expand(b, -1),
            )
        return outputs.logits, outputs.pred_boxes

    @contextlib.contextmanager
    def _lean_deformable_attention(self) -> Iterator[None]:
        """While active, transformers' pure-PyTorch deformable attention modules run :func:`_deformable_attention`."""
        patched = []
        if self.lean_attention:
            for module in self.model.modules():
                if type(module).__name__ == "MultiScaleDeformableAttention" and "forward" not in module.__dict__:
                    module.forward = _deformable_attention
                    patched.append(module)
        try:
            yield
        finally:
            for module in patched:
                del module.forward

    def _backbone_module(self) -> torch.nn.Module | None:
        """The text-independent image backbone (Swin + position embeddings), if the model has the usual layout."""
        inner = getattr(self.model, "model", None)
        backbone = getattr(inner, "backbone", None)
        return backbone if isinstance(backbone, torch.nn.Module) else None

    @contextlib.contextmanager
    def _cached_backbone(self, keys: list[str | None]) -> Iterator[None]:
        """While active, the model's backbone answers from the cache for images seen before.

        The backbone (``model.model.backbone``: Swin + sine position embeddings) returns
        ``([(feature_map [B, C_l, h_l, w_l], mask [B, h_l, w_l]) per level], [pos [B, d, h_l, w_l] per level])``
        and depends only on the pixels, so it is stored per image, keyed by content, and the
        module's ``forward`` is replaced by a lookup for the duration of one model call (under
        :attr:`_forward_lock`).
        """
        cache = self._active_cache()
        backbone = self._backbone_module()
        if cache is None or backbone is None or not self.cache_backbone or any(k is None for k in keys):
            yield
            return
        patched_before = backbone.__dict__.get("forward")  # e.g. an accelerate hook
        original = backbone.forward
        precision = (str(self.device), str(self.dtype), str(self.autocast))

        def forward(pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None):
            size = tuple(pixel_values.shape[-2:])
            bkeys = [(self._cache_owner, "dino-backbone", k, size, *precision) for k in keys]
            hits = [cache.get(k, copy=False) for k in bkeys]
            if len(keys) == pixel_values.shape[0] and all(h is not None for h in hits):
                parts = [to_device(h, pixel_values.device) for h in hits]
                levels = len(parts[0][0])
                out = [
                    (torch.cat([p[0][lvl][0] for p in parts]), torch.cat([p[0][lvl][1] for p in parts]))
                    for lvl in range(levels)
                ]
                pos = [torch.cat([p[1][lvl] for p in parts]) for lvl in range(levels)]
                return out, pos
            out, pos = original(pixel_values, pixel_mask)
            if len(keys) == pixel_values.shape[0]:
                for j, key in enumerate(bkeys):
                    entry = ([(f[j : j + 1], m[j : j + 1]) for f, m in out], [p[j : j + 1] for p in pos])
                    cache.put(key, to_cpu_copy(entry), copy=False)
            return list(out), list(pos)

        backbone.forward = forward
        try:
            yield
        finally:
            if patched_before is not None:
                backbone.forward = patched_before
            else:
                del backbone.forward

    def clear_feature_cache(self) -> int:
        """Forget this detector's cached outputs and features (e.g. after changing its weights); returns how many."""
        return self.feature_cache.discard_owner(self._cache_owner) if self.feature_cache is not None else 0
