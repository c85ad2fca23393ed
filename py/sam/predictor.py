"""One SAM predictor interface over Meta's ``segment_anything`` and transformers' ``SamModel``.

Like Meta's ``SamPredictor``: :meth:`SamPredictorBase.set_image` runs the heavy image encoder once,
then :meth:`SamPredictorBase.predict` answers any number of prompts (boxes, positive/negative points,
low-resolution mask logits) in **one batched decoder call**. All prompt coordinates are given in
pixels of the original image; masks come back at the original resolution.

Pre- and post-processing are shared by both back ends (so the same weights give the same masks):

* the image is resized so its longest side is ``image_size`` (1024 for released models) with
  bilinear antialiased interpolation, normalised with the model's mean/std, and zero-padded at
  the bottom/right to ``image_size × image_size``;
* prompt coordinates are scaled by the same factors;
* the decoder's low-resolution logits (``image_size/4`` square) are upsampled to the padded input,
  cropped to the resized image, upsampled to the original size and thresholded at 0.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F

from ..cache import FeatureCache, default_cache, image_key, new_owner_token, to_cpu_copy, to_device
from ..images import to_rgb
from ..interrupt import InterruptCheck, checkpoint, interruptible

__all__ = [
    "SamPrediction",
    "SamPredictorBase",
    "MetaSamPredictor",
    "HFSamPredictor",
    "MultimaskMode",
    "preprocess_shape",
    "load_transformers_sam",
]

log = logging.getLogger(__name__)

MultimaskMode = Literal["best", "single", "all"]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: Logit magnitude used when a binary mask is given as a mask prompt.
MASK_PROMPT_LOGIT = 10.0


def _discard_owner(owner: int) -> None:
    """Drop a freed model's entries from the shared cache (called by ``weakref.finalize``)."""
    default_cache().discard_owner(owner)


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` after resizing so the longest side is ``long_side`` (rounded like Meta's transform)."""
    scale = long_side / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def load_transformers_sam(
    model_class: Any, path: str | Path, *, kind: str, example: str, hint: str = ""
) -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...]]:
    """A transformers SAM-family model (``SamModel``, ``SamHQModel``, ``Sam2Model``) read from a local
    folder, with the pixel mean/std of its ``preprocessor_config.json`` (ImageNet's when absent).

    Arguments:
        model_class: the transformers class to load with (local files only, never remote code).
        path: the folder (``config.json``, ``model.safetensors``).
        kind, example, hint: for the error message: the model's name, a hub folder to compare with,
            and an extra sentence on how to fix it.

    Raises:
        CheckpointError: the folder cannot be loaded; the message names it and what it needs.
    """
    from safetensors import SafetensorError

    from ..errors import CheckpointError

    folder = Path(path)
    try:
        model = model_class.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(
            f"{folder} is not a loadable transformers {kind} folder ({str(exc).strip().splitlines()[0]}); it needs "
            f"config.json and model.safetensors as published in {example}" + (f". {hint}" if hint else "")
        ) from None
    mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        mean = tuple(cfg.get("image_mean") or mean)
        std = tuple(cfg.get("image_std") or std)
    log.info("loaded %s as transformers %s", folder, kind)
    return model, mean, std


@dataclass
class SamPrediction:
    """Masks answering a batch of ``N`` prompts on one image.

    Attributes:
        masks: ``[N, K, H, W]`` bool at the original image size (``K`` = 1, or 3 with mode "all").
        iou: ``[N, K]`` float32, SAM's predicted IoU (mask quality) of each mask.
        low_res_logits: ``[N, K, m, m]`` float32 decoder logits (``m = image_size / 4``), usable as the
            ``mask_input`` of a follow-up prediction.
    """

    masks: torch.Tensor
    iou: torch.Tensor
    low_res_logits: torch.Tensor


class SamPredictorBase:
    """Shared image/prompt transforms and the encode-once, prompt-many workflow.

    Subclasses implement :meth:`_encode` (normalised padded ``[1, 3, S, S]`` → image features) and
    :meth:`_decode` (prompts in the input frame → low-res logits and IoU predictions). ``_decode``
    must not modify :attr:`features` in place: on a CPU cache hit they are the cached tensors.
    """

    #: Number of prompts decoded at once (bounded memory for very many boxes).
    decode_chunk = 64
    #: Number of masks upsampled to the original size at once (bounded memory on huge images).
    upsample_chunk = 4
    #: ``(height, width)`` the masks of :meth:`predict` come out at, instead of the original size
    #: (``None``). Previews set it on a copy of the predictor (``copy.copy``) to get small masks fast;
    #: prompt coordinates stay in pixels of the original image.
    mask_output_size: tuple[int, int] | None = None

    def __init__(self, model: torch.nn.Module, *, image_size: int, mean: Sequence[float], std: Sequence[float], source: str) -> None:
        self.model = model.eval()
        self.image_size = int(image_size)
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32)
        self.source = source
        #: Where image features are cached by content (``None``: no caching); see :mod:`..cache`.
        self.feature_cache: FeatureCache | None = default_cache()
        self._cache_owner = new_owner_token()
        weakref.finalize(self, _discard_owner, self._cache_owner)
        self.reset_image()

    # ---------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    def reset_image(self) -> None:
        """Forget the current image and its features."""
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    # ---------------------------------------------------------------- transforms

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` float 0..1 → normalised, padded ``[1, 3, S, S]`` in the model's dtype and device."""
        h, w = image.shape[:2]
        nh, nw = preprocess_shape(h, w, self.image_size)
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean.to(self.device)[None, :, None, None]) / self.std.to(self.device)[None, :, None, None]
        x = F.pad(x, (0, self.image_size - nw, 0, self.image_size - nh))
        return x.to(self.dtype)

    def _coord_scale(self) -> torch.Tensor:
        assert self.original_size is not None and self.input_size is not None
        (h, w), (nh, nw) = self.original_size, self.input_size
        return torch.tensor([nw / w, nh / h], dtype=torch.float32)

    def transform_coords(self, coords: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` (x, y) pixels of the original image → the model's input frame."""
        return coords.float() * self._coord_scale().to(coords.device)

    def transform_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``[N, 4]`` XYXY pixels of the original image → the model's input frame."""
        return self.transform_coords(boxes.reshape(-1, 2, 2)).reshape(-1, 4)

    def mask_to_logits(self, mask: torch.Tensor) -> torch.Tensor:
        """A ``[H, W]`` mask (0..1, original size) → ``[m, m]`` low-resolution logits for ``mask_input``."""
        assert self.original_size is not None and self.input_size is not None
        nh, nw = self.input_size
        m = mask.to(self.device, torch.float32)[None, None]
        m = F.interpolate(m, size=(nh, nw), mode="bilinear", align_corners=False)
        m = F.pad(m, (0, self.image_size - nw, 0, self.image_size - nh))
        side = self.image_size // 4
        m = F.interpolate(m, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return ((m[0, 0] > 0.5).float() * 2 - 1) * MASK_PROMPT_LOGIT

    def postprocess_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        """``[N, K, m, m]`` logits → ``[N, K, H, W]`` bool masks at the original size (or
        :attr:`mask_output_size`), chunked."""
        assert self.original_size is not None and self.input_size is not None
        (nh, nw) = self.input_size
        h, w = self.mask_output_size or self.original_size
        n, k = low_res.shape[:2]
        out = torch.empty(n, k, h, w, dtype=torch.bool, device=low_res.device)
        flat = low_res.reshape(n * k, 1, *low_res.shape[-2:]).float()
        out_flat = out.view(n * k, h, w)
        for start in range(0, n * k, self.upsample_chunk):
            checkpoint()
            part = flat[start : start + self.upsample_chunk]
            part = F.interpolate(part, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            part = part[..., :nh, :nw]
            part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)
            out_flat[start : start + part.shape[0]] = part[:, 0] > 0.0
        return out

    def image_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """``[N, m, m]`` decoder logits → ``[N, h, w]`` logits covering exactly the original image.

        The padding of the model's square input is cut away and the rest resampled (area) to
        the image's share of the low-resolution grid, ``ceil(nh / 4) x ceil(nw / 4)`` (at most
        ``m x m``), so that upsampling the result bilinearly to the image's size and thresholding
        at 0 gives about the masks of :meth:`postprocess_masks` (:attr:`Segments.logits`).
        """
        assert self.original_size is not None and self.input_size is not None
        nh, nw = self.input_size
        side = low_res.shape[-1]
        size = (max(1, -(-nh * side // self.image_size)), max(1, -(-nw * side // self.image_size)))
        out = []
        for start in range(0, low_res.shape[0], self.upsample_chunk):
            checkpoint()
            part = low_res[start : start + self.upsample_chunk, None].float()
            part = F.interpolate(part, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            part = F.interpolate(part[..., :nh, :nw], size=size, mode="area")
            out.append(part[:, 0])
        return torch.cat(out) if out else low_res.new_zeros((0, *size)).float()

    # ---------------------------------------------------------------- workflow

    @torch.inference_mode()
    def set_image(self, image: Any, *, interrupt: InterruptCheck | None = None) -> None:
        """Encode ``image`` (anything :func:`grounded_inpaint.images.to_rgb` accepts) once.

        The features are cached by image content in :attr:`feature_cache` (CPU memory, bounded by
        its byte budget): setting the same pixels again, e.g. with a new prompt, skips the encoder
        and gives exactly the same features. Subclasses' ``_encode`` may return a tensor or a
        tuple / list / dict of tensors.

        Arguments:
            interrupt: called between the encoder's layers (see :mod:`grounded_inpaint.interrupt`);
                raise from it to stop. A stopped call leaves the predictor without an image (as
                after :meth:`reset_image`) and caches nothing.
        """
        picture = to_rgb(image)
        h, w = int(picture.shape[0]), int(picture.shape[1])
        self.reset_image()
        cache = self.feature_cache if self.feature_cache is not None and self.feature_cache.enabled else None
        key = None
        features = None
        if cache is not None:  # same pixels, same model, same device and dtype → same features
            key = self.feature_key(image_key(picture))
            hit = cache.get(key, copy=False)
            if hit is not None:
                features = to_device(hit, self.device)
        if features is None:
            pixels = self.preprocess(picture)
            with interruptible(interrupt, self.model):
                features = self._encode(pixels)
            if cache is not None:
                cache.put(key, to_cpu_copy(features), copy=False)
        self.set_features(features, (h, w))

    def feature_key(self, image_hash: str) -> tuple:
        """The :attr:`feature_cache` key of the features of the image whose :func:`~grounded_inpaint.cache.image_key`
        is ``image_hash``, for this model on its current device and dtype."""
        return (self._cache_owner, "sam-features", image_hash, self.image_size, str(self.device), str(self.dtype))

    def has_cached_features(self, image_hash: str) -> bool:
        """Whether the features of that image are in the cache (nothing is counted or moved)."""
        cache = self.feature_cache
        return cache is not None and cache.enabled and self.feature_key(image_hash) in cache

    def set_cached_image(self, image_hash: str, original_size: tuple[int, int]) -> bool:
        """Set the image whose features an earlier :meth:`set_image` cached, without its pixels.

        Arguments:
            image_hash: :func:`~grounded_inpaint.cache.image_key` of the ``[H, W, 3]`` float32 picture.
            original_size: its ``(height, width)``.

        Returns:
            ``False`` (and no image set) when the features are not in the cache (never encoded, evicted,
            the model moved to another device, or caching is off).
        """
        self.reset_image()
        cache = self.feature_cache
        if cache is None or not cache.enabled:
            return False
        hit = cache.get(self.feature_key(image_hash), copy=False)
        if hit is None:
            return False
        self.set_features(to_device(hit, self.device), original_size)
        return True

    def clear_feature_cache(self) -> int:
        """Forget this model's cached image features (e.g. after changing its weights); returns how many."""
        return self.feature_cache.discard_owner(self._cache_owner) if self.feature_cache is not None else 0

    def set_features(self, features: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Reuse features computed earlier for an image of ``original_size`` (skips the encoder)."""
        self.features = features
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = preprocess_shape(*self.original_size, self.image_size)

    @torch.inference_mode()
    def predict(
        self,
        boxes: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: MultimaskMode = "single",
        *,
        interrupt: InterruptCheck | None = None,
    ) -> SamPrediction:
        """Masks for ``N`` prompts on the current image, decoded in one batched call.

        Arguments:
            boxes: ``[N, 4]`` XYXY pixels of the original image, or ``None`` (corners given the
                other way round are put in order).
            point_coords: ``[N, P, 2]`` (x, y) pixels of the original image, or ``None``.
            point_labels: ``[N, P]``: 1 = foreground, 0 = background, -1 = padding (ignored point).
            mask_input: ``[N, m, m]`` low-resolution logits (``m = image_size / 4``), e.g. a previous
                prediction's ``low_res_logits`` or :meth:`mask_to_logits` of a drawn mask.
            multimask: ``"single"``: SAM's single-mask output; ``"best"``: of the 3 multimask outputs, the
                one with the highest predicted IoU; ``"all"``: the 3 multimask outputs.
            interrupt: called between decoder layers and chunks; raise from it to stop.

        Returns:
            :class:`SamPrediction` with ``K = 3`` for ``"all"`` and ``K = 1`` otherwise.
        """
        if self.features is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        if multimask not in ("single", "best", "all"):
            raise ValueError(f"multimask must be 'single', 'best' or 'all'; got {multimask!r}")
        sizes = {t.shape[0] for t in (boxes, point_coords, mask_input) if t is not None}
        if not sizes:
            raise ValueError("predict needs at least one prompt: boxes, point_coords or mask_input")
        if len(sizes) > 1:
            raise ValueError(f"boxes, point_coords and mask_input must describe the same number of prompts; got {sorted(sizes)}")
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_coords need point_labels (1 = foreground, 0 = background)")
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2 or tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
                raise ValueError(
                    f"point_coords must be [N, P, 2] and point_labels [N, P]; got {tuple(point_coords.shape)} "
                    f"and {tuple(point_labels.shape)}"
                )
        if boxes is not None and (boxes.ndim != 2 or boxes.shape[-1] != 4):
            raise ValueError(f"boxes must be [N, 4] XYXY pixels; got {tuple(boxes.shape)}")
        for name, t in (("boxes", boxes), ("point_coords", point_coords), ("mask_input", mask_input)):
            if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} hold NaN or infinite values; give finite pixel coordinates / logits")
        if point_labels is not None and not bool(((point_labels >= -1) & (point_labels <= 1)).all()):
            raise ValueError("point_labels must be 1 (foreground), 0 (background) or -1 (padding)")
        if boxes is not None:  # a box given as (x1, y1, x0, y0) means the same box: order the corners
            boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], dim=1)
        n = sizes.pop()
        dev = self.device
        t_boxes = self.transform_boxes(boxes.to(dev)) if boxes is not None else None
        t_points = self.transform_coords(point_coords.to(dev)) if point_coords is not None else None
        t_labels = point_labels.to(dev).long() if point_labels is not None else None
        t_masks = mask_input.to(dev, torch.float32) if mask_input is not None else None
        with interruptible(interrupt, self.model):
            return self._predict(n, t_boxes, t_points, t_labels, t_masks, multimask)

    def _predict(self, n, t_boxes, t_points, t_labels, t_masks, multimask: MultimaskMode) -> SamPrediction:
        multimask_output = multimask != "single"
        logits_parts, iou_parts = [], []
        for s in range(0, n, self.decode_chunk):
            sl = slice(s, s + self.decode_chunk)
            logits, iou = self._decode(
                t_boxes[sl] if t_boxes is not None else None,
                t_points[sl] if t_points is not None else None,
                t_labels[sl] if t_labels is not None else None,
                t_masks[sl] if t_masks is not None else None,
                multimask_output,
            )
            logits_parts.append(logits.float())
            iou_parts.append(iou.float())
        logits = torch.cat(logits_parts)
        iou = torch.cat(iou_parts)
        if multimask == "best":
            best = iou.argmax(dim=1)
            rows = torch.arange(n, device=iou.device)
            logits = logits[rows, best][:, None]
            iou = iou[rows, best][:, None]
        return SamPrediction(self.postprocess_masks(logits), iou, logits)

    # ---------------------------------------------------------------- back end hooks

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(
        self,
        boxes: torch.Tensor | None,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


#: Query rows per chunk in :func:`_meta_attention` (bounds the ``[heads, rows, H*W]`` score block).
ATTENTION_QUERY_CHUNK = 1024


def _meta_attention(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Meta's ``image_encoder.Attention.forward`` computed with ``scaled_dot_product_attention``.

    Same maths as Meta's code (scores ``q·k/sqrt(d)`` plus the decomposed relative-position terms
    ``q·R_h`` and ``q·R_w`` of the *unscaled* query, softmax, ``·v``), but the ``[B·heads, N, N]``
    score matrix of the global-attention blocks (N = 4096 at 1024 px: 805 MB in fp32 for ViT-B,
    and Meta's code holds three of them at once) is never materialised in full: the queries are
    processed in chunks of :data:`ATTENTION_QUERY_CHUNK` rows with a fused attention kernel, and
    Cancel is checked between chunks (:func:`grounded_inpaint.interrupt.checkpoint`).

    Arguments:
        attn: a ``segment_anything.modeling.image_encoder.Attention``.
        x: ``[B, H, W, C]`` tokens (a window or the whole 64x64 grid).

    Returns:
        ``[B, H, W, C]``, equal to ``attn(x)`` within float rounding.
    """
    from segment_anything.modeling.image_encoder import get_rel_pos

    return _chunked_vit_attention(attn, x, attn.num_heads, get_rel_pos)


def _hf_attention(attn: torch.nn.Module, hidden_states: torch.Tensor, output_attentions: Any = None, **_: Any):
    """transformers' ``SamVisionAttention.forward`` (SAM, SAM-HQ) as :func:`_meta_attention` computes it.

    Returns ``(output, None)``: the attention weights are never materialised (nothing here asks for them).
    """
    return _chunked_vit_attention(attn, hidden_states, attn.num_attention_heads, attn.get_rel_pos), None


def _chunked_vit_attention(attn: torch.nn.Module, x: torch.Tensor, heads: int, get_rel_pos: Any) -> torch.Tensor:
    """SAM's ViT attention with decomposed relative positions, in query chunks (see :func:`_meta_attention`)."""
    b, h, w, _ = x.shape
    qkv = attn.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, heads, N, d]
    d = q.shape[-1]
    rows_per_chunk = max(1, ATTENTION_QUERY_CHUNK // w)
    if attn.use_rel_pos:
        rh = get_rel_pos(h, h, attn.rel_pos_h)  # [H, H, d]
        rw = get_rel_pos(w, w, attn.rel_pos_w)  # [W, W, d]
        r_q = q.reshape(b, heads, h, w, d)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # [B, heads, H, W, H]
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # [B, heads, H, W, W]
    out = torch.empty_like(q)
    for r0 in range(0, h, rows_per_chunk):
        checkpoint()
        r1 = min(h, r0 + rows_per_chunk)
        rows = slice(r0 * w, r1 * w)
        mask = None
        if attn.use_rel_pos:
            mask = (rel_h[:, :, r0:r1, :, :, None] + rel_w[:, :, r0:r1, :, None, :]).reshape(b, heads, (r1 - r0) * w, h * w)
        out[:, :, rows] = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask.to(q.dtype) if mask is not None else None, scale=attn.scale)
    out = out.view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return attn.proj(out)


@contextlib.contextmanager
def lean_vision_attention(vision_encoder: torch.nn.Module, enabled: bool = True):
    """While active, the ViT attention modules of a transformers SAM / SAM-HQ ``vision_encoder`` run
    :func:`_hf_attention` (same results within float rounding; no ``[heads, N, N]`` matrix, and Cancel
    is checked between query chunks instead of once per 2–5 s global-attention block on a CPU)."""
    patched = []
    if enabled:
        for layer in getattr(vision_encoder, "layers", []):
            attn = getattr(layer, "attn", None)
            if attn is not None and hasattr(attn, "qkv") and hasattr(attn, "get_rel_pos") and "forward" not in attn.__dict__:
                attn.forward = functools.partial(_hf_attention, attn)
                patched.append(attn)
    try:
        yield
    finally:
        for attn in patched:
            del attn.forward


class MetaSamPredictor(SamPredictorBase):
    """Predictor over Meta's ``segment_anything.modeling.Sam`` (the ``sam_vit_*.pth`` files).

    The image encoder runs with :func:`_meta_attention` in place of Meta's attention (same
    results within float rounding, a fraction of the memory; ``lean_attention = False`` runs
    Meta's own code).
    """

    #: Use :func:`_meta_attention` in the image encoder.
    lean_attention = True
    #: Prompts per pass of :func:`_meta_decode_shared_image`. Small passes keep the decoder's
    #: ``[n, 4096, 256]`` activations in the CPU caches: on a 2-core CPU, 16 boxes (SAM ViT-B)
    #: decode in 1.0 s in passes of 4 against 1.5 s in one pass of 16.
    shared_chunk = 4

    def __init__(self, model: torch.nn.Module, *, source: str = "<model>") -> None:
        mean = (model.pixel_mean.flatten() / 255.0).tolist()
        std = (model.pixel_std.flatten() / 255.0).tolist()
        super().__init__(model, image_size=model.image_encoder.img_size, mean=mean, std=std, source=source)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "MetaSamPredictor":
        """Load a Meta-format SAM checkpoint; the architecture is read from the tensor shapes."""
        from ..checkpoints import load_state_dict
        from .meta_arch import build_meta_sam, infer_meta_sam_arch, load_meta_sam_state_dict

        state_dict = load_state_dict(path)
        arch = infer_meta_sam_arch(state_dict, source=str(path))
        model = build_meta_sam(arch)
        load_meta_sam_state_dict(model, state_dict, source=str(path))
        log.info("loaded %s as Meta SAM %s", path, arch.name)
        return cls(model.to(device=device, dtype=dtype), source=str(path))

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.model.image_encoder
        if not self.lean_attention:
            return encoder(pixels)
        patched = []
        try:
            for block in encoder.blocks:
                attn = block.attn
                if "forward" not in attn.__dict__:
                    attn.forward = functools.partial(_meta_attention, attn)
                    patched.append(attn)
            return encoder(pixels)
        finally:
            for attn in patched:
                del attn.forward

    def _decode(self, boxes, points, labels, masks, multimask_output):
        if self.dtype == torch.float32:
            return self._decode_in_dtype(boxes, points, labels, masks, multimask_output)
        # Meta's prompt encoder casts coordinates to float32 before multiplying them with its
        # (now half-precision) Gaussian matrix; autocast lets the half-precision weights work.
        with torch.autocast(self.device.type, dtype=self.dtype):
            low_res, iou = self._decode_in_dtype(boxes, points, labels, masks, multimask_output)
        return low_res, iou

    def _decode_in_dtype(self, boxes, points, labels, masks, multimask_output):
        sam = self.model
        dtype = self.dtype
        point_arg = (points.to(dtype), labels) if points is not None else None
        sparse, dense = sam.prompt_encoder(
            points=point_arg,
            boxes=boxes.to(dtype) if boxes is not None else None,
            masks=masks[:, None].to(dtype) if masks is not None else None,
        )
        if masks is not None:  # per-prompt dense embeddings: Meta's decoder as it is
            return sam.mask_decoder(
                image_embeddings=self.features,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        image_pe = sam.prompt_encoder.get_dense_pe()
        parts = [
            _meta_decode_shared_image(sam.mask_decoder, self.features, image_pe, sparse[i : i + self.shared_chunk], dense[:1], multimask_output)
            for i in range(0, sparse.shape[0], self.shared_chunk)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _meta_decode_shared_image(
    decoder: torch.nn.Module,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    multimask_output: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta's ``MaskDecoder.forward`` for ``N`` prompts that share one dense embedding.

    Meta's code copies the image embedding and its positional encoding ``N`` times
    (``repeat_interleave``) before the two-way transformer. Here both stay ``[1, C, h, w]`` and
    broadcast: the first layer's image-side projections (keys and values of the token→image
    attention, queries of the image→token attention) are computed once for all prompts instead of
    once per prompt, and the copies are never made. Same results within float rounding, so the
    decoder's cost grows less than linearly with the number of boxes.

    Arguments:
        decoder: a ``segment_anything.modeling.MaskDecoder``.
        image_embeddings: ``[1, C, h, w]``.
        image_pe: ``[1, C, h, w]`` dense positional encoding.
        sparse: ``[N, T, C]`` prompt tokens.
        dense: ``[1, C, h, w]`` the dense prompt embedding shared by every prompt (no mask prompt).

    Returns:
        ``low_res_masks [N, K, 4h, 4w]`` logits and ``iou_pred [N, K]``, ``K`` = 3 or 1.
    """
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    src = image_embeddings + dense
    _, c, h, w = src.shape
    hs, src = decoder.transformer(src, image_pe, tokens)  # broadcasts to [N, h*w, C] in the first layer
    n = tokens.shape[0]
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]
    src = src.expand(n, -1, -1).transpose(1, 2).reshape(n, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c2, h2, w2 = upscaled.shape
    low_res = (hyper_in @ upscaled.view(b, c2, h2 * w2)).view(b, -1, h2, w2)
    iou_pred = decoder.iou_prediction_head(iou_token_out)
    picked = slice(1, None) if multimask_output else slice(0, 1)
    return low_res[:, picked], iou_pred[:, picked]


class HFSamPredictor(SamPredictorBase):
    """Predictor over transformers' ``SamModel`` (HF folders such as ``facebook/sam-vit-base``)."""

    def __init__(self, model: torch.nn.Module, *, mean=_IMAGENET_MEAN, std=_IMAGENET_STD, source: str = "<model>") -> None:
        super().__init__(model, image_size=model.config.vision_config.image_size, mean=mean, std=std, source=source)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> "HFSamPredictor":
        """Load a transformers SAM folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``)."""
        from transformers import SamModel

        model, mean, std = load_transformers_sam(SamModel, path, kind="SAM", example="facebook/sam-vit-base")
        return cls(model.to(device=device, dtype=dtype), mean=mean, std=std, source=str(path))

    #: Run the vision encoder's attention with :func:`lean_vision_attention`.
    lean_attention = True

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        with lean_vision_attention(self.model.vision_encoder, self.lean_attention):
            return self.model.get_image_embeddings(pixels)

    def _decode(self, boxes, points, labels, masks, multimask_output):
        model = self.model
        dtype = self.dtype
        n = next(t.shape[0] for t in (boxes, points, masks) if t is not None)
        sparse, dense = model.prompt_encoder(
            input_points=points[:, None].to(dtype) if points is not None else None,
            input_labels=labels[:, None] if labels is not None else None,
            input_boxes=boxes[:, None].to(dtype) if boxes is not None else None,
            input_masks=masks[:, None].to(dtype) if masks is not None else None,
        )
        if dense.shape[0] != n:
            dense = dense.expand(n, -1, -1, -1)
        features = self.features.expand(n, -1, -1, -1)
        pos = model.get_image_wide_positional_embeddings().to(dtype).expand(n, -1, -1, -1)
        low_res, iou = model.mask_decoder(
            image_embeddings=features,
            image_positional_embeddings=pos,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )[:2]
        return low_res[:, 0], iou[:, 0]
