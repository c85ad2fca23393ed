"""Cost of the previews and mask steps at photo sizes: overlay drawing, feather, composite.

Run ``python benchmarks/preview_bench.py`` (about 10 minutes on a 2-core CPU, most of it spent on
the old code; ``--skip-old`` measures only the current code in about a minute).

Every case runs in its own worker process, so that its peak memory is its own. The times are
wall-clock seconds of the operation alone (inputs are built before the clock starts), the best of
``--repeat`` runs for the current code and one run for the old code. "peak +MiB" is how far the
process's peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` just before
the operation) rose above its resident memory at that moment: the operation's own peak.

Cases:

* ``draw 1 instance 6000x6000``: ``draw_segments`` with one large instance (fill, contour, box,
  caption).
* ``draw 10 instances 6000x4000``: ``draw_segments`` on a 24-megapixel photo, ten instances.
* ``annotate 10 boxes 6000x4000``: boxes and captions alone (``_annotate``: the layer and its blend).
* ``feather diagonal 2000x3000`` / ``feather 1e5 2000x3000``: ``masks.feather`` of a 2000x3000
  mask with a width equal to the mask's diagonal (3606 px) and with 1e5 px.
* ``composite x16 2000x2000 -> 1000x1000``: ``composite`` of a 2000x2000 object at scale 16
  onto a 1000x1000 background, with and without a feather of 8 px.

The old code (the versions of ``draw_segments``, ``feather`` and ``composite`` before this change)
is kept below, clearly labelled, and run on the same inputs. Where it cannot finish (a feather of
1e5 px has 200001 taps per pass; scale 16 needs a 32000x32000 RGB image) the case says why instead
of waiting for it: the old composite runs with its address space limited to ``--old-memory-gib``
so that it fails instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from grounded_inpaint import masks as M
from grounded_inpaint import overlay as O
from grounded_inpaint.structures import Segments

# =============================================================================================
# OLD VERSION — the code as it was before draw_segments worked per instance, feather used an FFT
# for long kernels and composite resampled only the visible window. Kept only for comparison.
# =============================================================================================


def old_inner_contour(mask: torch.Tensor, width: int) -> torch.Tensor:
    """OLD: one (2w+1)^2 max-pool over the whole image per instance."""
    background = (~mask).float()[None, None]
    near_background = F.max_pool2d(background, kernel_size=2 * width + 1, stride=1, padding=width)
    return mask & (near_background[0, 0] > 0)


def old_caption_origin(anchor: tuple[int, int], size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    box_left, box_top = anchor
    caption_w, caption_h = size
    x, y = box_left, box_top - caption_h
    if y < 0:
        y = box_top
    x = min(max(x, 0), max(width - caption_w, 0))
    y = min(max(y, 0), max(height - caption_h, 0))
    return x, y


def old_annotation_layer(height: int, width: int, boxes: torch.Tensor, captions: Sequence[str], colours: torch.Tensor, draw_boxes: bool) -> np.ndarray:
    """OLD: a full-size RGBA layer."""
    from PIL import Image, ImageDraw, ImageFont

    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=O._font_size(height, width))
    line = O._line_width(height, width)
    pad = max(1, O._font_size(height, width) // 5)
    for box, caption, colour in zip(boxes.tolist(), captions, colours.tolist()):
        corners = O._pixel_box(box, height, width)
        if corners is None:
            continue
        fill = O._to_uint8_colour(colour)
        if draw_boxes:
            draw.rectangle(corners, outline=fill, width=line)
        if not caption:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        size = (right - left + 2 * pad, bottom - top + 2 * pad)
        x, y = old_caption_origin((corners[0], corners[1]), size, height, width)
        draw.rectangle((x, y, x + size[0] - 1, y + size[1] - 1), fill=fill)
        draw.text((x + pad - left, y + pad - top), caption, font=font, fill=O._text_colour(colour))
    return np.array(layer)


def old_blend_layer(image: torch.Tensor, layer: np.ndarray) -> torch.Tensor:
    """OLD: the whole image converted and blended."""
    rgba = torch.from_numpy(np.ascontiguousarray(layer)).to(image.device).float() / 255.0
    alpha = rgba[..., 3:]
    blended = image * (1.0 - alpha) + rgba[..., :3] * alpha
    return torch.where(alpha > 0, blended, image)


def old_annotate(image, boxes, labels, scores, colours, *, draw_boxes, show_labels, show_scores):
    captions = [O._caption(lab, s, show_labels, show_scores) for lab, s in zip(labels, scores.tolist())]
    if not draw_boxes and not any(captions):
        return image
    height, width = image.shape[:2]
    layer = old_annotation_layer(height, width, boxes, captions, colours, draw_boxes)
    return old_blend_layer(image, layer)


def old_draw_segments(image, segments, *, opacity=0.5, boxes=True, labels=True, scores=True, contours=True):
    """OLD: full-image boolean indexing per instance, full-image contour, full-size layer."""
    out = image.clone()
    n = len(segments)
    if n == 0:
        return out
    colours = O.palette(n)
    instance_masks = segments.masks
    for i in range(n):
        if opacity > 0:
            region = instance_masks[i]
            out[region] = out[region] * (1.0 - opacity) + colours[i] * opacity
    if contours:
        width = O._line_width(*out.shape[:2])
        for i in range(n):
            out[old_inner_contour(instance_masks[i], width)] = colours[i]
    return old_annotate(out, segments.boxes, segments.labels, segments.scores, colours,
                        draw_boxes=boxes, show_labels=labels, show_scores=scores)


_OLD_BLUR_BLOCK_ELEMENTS = 1 << 19


def old_blur_rows(rows: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """OLD: 2 * radius + 1 shifted multiply-adds, whatever the radius."""
    radius = len(taps) // 2
    length = rows.shape[-1]
    index = torch.arange(-radius, length + radius, device=rows.device).clamp_(0, length - 1)
    out = torch.empty_like(rows)
    block = rows.shape[0] if rows.is_cuda else max(1, _OLD_BLUR_BLOCK_ELEMENTS // (length + 2 * radius))
    for start in range(0, rows.shape[0], block):
        padded = rows[start : start + block].index_select(1, index)
        target = out[start : start + block]
        torch.mul(padded[:, 0:length], taps[0], out=target)
        for i in range(1, len(taps)):
            target.add_(padded[:, i : i + length], alpha=taps[i])
    return out


def old_feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """OLD: no cap, taps grow with the width."""
    mask = mask.float()
    taps = M._gaussian_taps(pixels / 3.0, int(math.ceil(pixels)))
    height, width = mask.shape[-2:]
    horizontal = old_blur_rows(mask.reshape(-1, width), taps).reshape(mask.shape)
    columns = horizontal.transpose(-1, -2).contiguous()
    vertical = old_blur_rows(columns.reshape(-1, height), taps).reshape(columns.shape)
    return vertical.transpose(-1, -2).contiguous().clamp_(0.0, 1.0)


def old_composite(background, foreground, mask, *, x=0, y=0, scale=1.0, anchor="top-left", feather=0.0):
    """OLD: the whole object resized to round(h * scale) x round(w * scale), then clipped."""
    height, width = background.shape[:2]
    out = background.clone()
    placed = torch.zeros((height, width), dtype=torch.float32)
    colours, alpha = foreground, mask
    fg_h, fg_w = alpha.shape
    box = O._mask_bbox(alpha)
    margin = int(math.ceil((math.ceil(feather) + 1) / float(scale))) if feather > 0 else 0
    fx0, fy0, fx1, fy1 = O._pad_box(box, margin, fg_h, fg_w)
    frame_h, frame_w = fy1 - fy0, fx1 - fx0
    size = (max(1, int(round(frame_h * scale))), max(1, int(round(frame_w * scale))))
    obj_rgb = O._resize(colours[fy0:fy1, fx0:fx1], size)
    obj_alpha = O._resize(alpha[fy0:fy1, fx0:fx1, None], size)[..., 0]
    if feather > 0:
        obj_alpha = old_feather(obj_alpha, feather)
    sy, sx = size[0] / frame_h, size[1] / frame_w
    offset_x, offset_y = (box[0] - fx0) * sx, (box[1] - fy0) * sy
    object_w, object_h = (box[2] - box[0]) * sx, (box[3] - box[1]) * sy
    ax, ay = O._ANCHOR_FRACTIONS[anchor]
    left = int(math.floor(float(x) - ax * (object_w - 1) - offset_x + 0.5))
    top = int(math.floor(float(y) - ay * (object_h - 1) - offset_y + 0.5))
    dx0, dx1, sx0 = O._clip_span(left, size[1], width)
    dy0, dy1, sy0 = O._clip_span(top, size[0], height)
    a = obj_alpha[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    rgb = obj_rgb[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    out[dy0:dy1, dx0:dx1] = out[dy0:dy1, dx0:dx1] * (1.0 - a[..., None]) + rgb * a[..., None]
    placed[dy0:dy1, dx0:dx1] = a
    return out, placed


# =============================================================================================
# Inputs
# =============================================================================================


def ellipse_segments(height: int, width: int, n: int, seed: int = 0) -> Segments:
    """``n`` elliptical instances spread over the image, each with its box and a label."""
    generator = np.random.default_rng(seed)
    masks = torch.zeros(n, height, width, dtype=torch.bool)
    boxes = []
    for i in range(n):
        if n == 1:
            cx, cy, rx, ry = width / 2, height / 2, width * 0.4, height * 0.35
        else:
            rx, ry = width * generator.uniform(0.06, 0.14), height * generator.uniform(0.06, 0.14)
            cx, cy = generator.uniform(rx, width - rx), generator.uniform(0.0, height - ry)  # some touch the top
        x0, x1 = max(0, int(cx - rx)), min(width, int(math.ceil(cx + rx)) + 1)
        y0, y1 = max(0, int(cy - ry)), min(height, int(math.ceil(cy + ry)) + 1)
        yy = torch.arange(y0, y1, dtype=torch.float32)[:, None]
        xx = torch.arange(x0, x1, dtype=torch.float32)[None, :]
        masks[i, y0:y1, x0:x1] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        boxes.append([x0, y0, x1, y1])
    labels = ["cup", "saucer", "spoon", "teapot", "sugar bowl", "lid", "plate", "fork", "knife", "napkin"]
    return Segments(masks, torch.tensor(boxes, dtype=torch.float32), torch.linspace(0.95, 0.35, n), torch.ones(n),
                    [labels[i % len(labels)] for i in range(n)])


def photo(height: int, width: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(height, width, 3)


def feather_mask() -> torch.Tensor:
    mask = torch.zeros(2000, 3000)
    mask[500:1500, 800:2200] = 1.0
    return mask


def product() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    foreground = torch.rand(2000, 2000, 3)
    mask = torch.zeros(2000, 2000)
    mask[100:1900, 100:1900] = 1.0
    return torch.rand(1000, 1000, 3), foreground, mask


# =============================================================================================
# Worker: one case, one side
# =============================================================================================


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def build(case: str, side: str) -> Callable[[], Any]:
    """The operation to time, with its inputs already built."""
    if case == "draw1":
        image, segments = photo(6000, 6000), ellipse_segments(6000, 6000, 1)
        fn = old_draw_segments if side == "old" else O.draw_segments
        return lambda: fn(image, segments)
    if case == "draw10":
        image, segments = photo(4000, 6000), ellipse_segments(4000, 6000, 10)
        fn = old_draw_segments if side == "old" else O.draw_segments
        return lambda: fn(image, segments)
    if case == "annotate10":
        image, segments = photo(4000, 6000), ellipse_segments(4000, 6000, 10)
        colours = O.palette(10)
        fn = old_annotate if side == "old" else O._annotate
        kwargs = dict(draw_boxes=True, show_labels=True, show_scores=True)
        return lambda: fn(image.clone(), segments.boxes, segments.labels, segments.scores, colours, **kwargs)
    if case in ("feather_diag", "feather_1e5"):
        mask = feather_mask()
        pixels = math.hypot(2000, 3000) if case == "feather_diag" else 1e5
        fn = old_feather if side == "old" else M.feather
        return lambda: fn(mask, pixels)
    if case in ("composite16", "composite16_feather"):
        background, foreground, mask = product()
        feather = 8.0 if case == "composite16_feather" else 0.0
        fn = old_composite if side == "old" else O.composite
        return lambda: fn(background, foreground, mask, x=500, y=500, scale=16.0, anchor="center", feather=feather)
    raise SystemExit(f"unknown case {case!r}")


def worker(case: str, side: str, repeat: int, memory_gib: float | None) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    operation = build(case, side)
    if memory_gib:
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    times = []
    peak_mib = 0.0
    error = None
    for _ in range(repeat):
        before = _rss_kib("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        try:
            result = operation()
        except (MemoryError, RuntimeError) as exc:  # the old composite at scale 16
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            break
        times.append(time.perf_counter() - start)
        peak_mib = max(peak_mib, (_rss_kib("VmHWM") - before) / 1024)
        del result
    print(json.dumps({"times": times, "peak_mib": peak_mib, "error": error}))


# =============================================================================================
# Driver
# =============================================================================================

CASES = [
    ("draw1", "draw 1 instance 6000x6000"),
    ("draw10", "draw 10 instances 6000x4000"),
    ("annotate10", "annotate 10 boxes 6000x4000"),
    ("feather_diag", "feather diagonal (3606) 2000x3000"),
    ("feather_1e5", "feather 1e5 2000x3000"),
    ("composite16", "composite x16 2000x2000 -> 1000x1000"),
    ("composite16_feather", "composite x16 + feather 8"),
]

#: Old-code cases that are not run, and why.
OLD_NOT_RUN = {
    "feather_1e5": "not run: 200001 taps per pass, ~28x the diagonal case",
}


def run_case(case: str, side: str, repeat: int, timeout: float, memory_gib: float | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", case, side, "--repeat", str(repeat)]
    if memory_gib:
        command += ["--old-memory-gib", str(memory_gib)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"times": [], "peak_mib": None, "error": f"stopped after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"times": [], "peak_mib": None, "error": f"exit {done.returncode}: {tail[:120]}"}
    return json.loads(lines[-1])


def describe(result: dict[str, Any] | None) -> tuple[str, str]:
    if result is None:
        return "-", "-"
    if result["error"]:
        return result["error"], "-"
    return f"{min(result['times']):.3f}", f"{result['peak_mib']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-old", action="store_true", help="measure only the current code")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the current code per case (best is shown)")
    parser.add_argument("--old-timeout", type=float, default=600.0, help="seconds before an old-code case is stopped")
    parser.add_argument("--old-memory-gib", type=float, default=8.0, help="address-space limit of the old composite")
    parser.add_argument("--cases", default=",".join(name for name, _ in CASES), help="comma-separated case names")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, side = args.worker
        worker(case, side, args.repeat, args.old_memory_gib if side == "old" and case.startswith("composite") else None)
        return

    wanted = args.cases.split(",")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads")
    header = f"{'case':40s} {'new s':>8s} {'new peak +MiB':>14s} {'old s':>24s} {'old peak +MiB':>14s} {'old/new':>8s}"
    print(header)
    print("-" * len(header))
    for case, title in CASES:
        if case not in wanted:
            continue
        new = run_case(case, "new", args.repeat, 3600.0, None)
        old: dict[str, Any] | None = None
        if not args.skip_old:
            if case in OLD_NOT_RUN:
                old = {"times": [], "peak_mib": None, "error": OLD_NOT_RUN[case]}
            else:
                old = run_case(case, "old", 1, args.old_timeout, args.old_memory_gib)
        new_s, new_mib = describe(new)
        old_s, old_mib = describe(old)
        ratio = "-"
        if old and not old["error"] and new["times"]:
            ratio = f"{min(old['times']) / min(new['times']):.1f}x"
        print(f"{title:40s} {new_s:>8s} {new_mib:>14s} {old_s:>24s} {old_mib:>14s} {ratio:>8s}", flush=True)


if __name__ == "__main__":
    main()
