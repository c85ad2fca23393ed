"""Render ``docs/matting-before-after.png``: SAM's hard cut-out and the refined one on the same new background.

    pip install -e ".[bench]"      # scikit-image's sample photos
    python tools/render_matting_example.py

The object is the matting benchmark's ``hair`` and ``fur`` composites (``benchmarks/matting_bench.py``:
a CC0 / public-domain photo cut by a known alpha with hair strands, over a textured background),
so the true alpha and colours are known and shown too. Each row: the photo; the hard cut-out
(the coarse mask SAM's 256-px grid gives, with the photo's colours) pasted on a new background;
the refined cut-out (``refine(method="closed_form")``: soft alpha in the band, the object's own
colours) on the same background; the truth. Under each, a 3x zoom of the edge.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import matting_bench as bench  # noqa: E402

from grounded_inpaint.matting import refine  # noqa: E402

OUT = ROOT / "docs" / "matting-before-after.png"
SIZE = 512
PANEL = 256
ZOOM = 3


def _composite(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return alpha[..., None] * fg + (1 - alpha[..., None]) * bg


def _edge_window(alpha: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of a ``side`` px window on the most fractional part of the true alpha."""
    soft = ((alpha > 0.05) & (alpha < 0.95)).astype(np.float64)
    h, w = alpha.shape
    best, where = -1.0, (0, 0)
    step = side // 4
    for y in range(0, h - side, step):
        for x in range(0, w - side, step):
            score = soft[y:y + side, x:x + side].sum()
            if score > best:
                best, where = score, (y, x)
    return where


def _to_image(array: np.ndarray, size: int) -> Image.Image:
    picture = Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8))
    return picture.resize((size, size), Image.LANCZOS if picture.width > size else Image.NEAREST)


def row(kind: str, pair: int) -> tuple[list[Image.Image], list[Image.Image]]:
    fg_name, bg_name, tint, _ = bench.PAIRS[pair]
    alpha = bench.make_alpha(kind, SIZE, seed=100 * bench.KINDS.index(kind) + pair)
    case = bench.Case(kind, pair, alpha, bench._photo(fg_name, SIZE), bench._photo(bg_name, SIZE, tint),
                      bench._photo("coffee" if fg_name != "coffee" else "grass", SIZE))
    new_bg = np.broadcast_to(np.asarray([0.93, 0.93, 0.9], dtype=np.float32), case.image.shape).copy()  # a studio white
    refined = refine(torch.from_numpy(case.image), bench._segments(case), method="closed_form")
    hard = _composite(case.coarse.astype(np.float32), case.image, new_bg)
    ours = _composite(refined.alpha.numpy(), refined.foreground.numpy(), new_bg)
    truth = _composite(case.alpha, case.fg, new_bg)
    y, x = _edge_window(case.alpha, PANEL // ZOOM)
    crop = (slice(y, y + PANEL // ZOOM), slice(x, x + PANEL // ZOOM))
    panels = [case.image, hard, ours, truth]
    return [_to_image(p, PANEL) for p in panels], [_to_image(p[crop], PANEL) for p in panels]


def main() -> int:
    titles = ["photo (old background)", "SAM's hard cut-out", "refined: soft alpha + own colours", "truth"]
    rows = [row("hair", 0), row("fur", 1)]
    gap, head = 6, 28
    width = 4 * PANEL + 5 * gap
    height = head + len(rows) * (2 * PANEL + 2 * gap) + gap
    canvas = Image.new("RGB", (width, height), (30, 30, 34))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    for i, title in enumerate(titles):
        draw.text((gap + i * (PANEL + gap) + 4, 6), title, fill=(235, 235, 235), font=font)
    top = head
    for full, zoom in rows:
        for i, picture in enumerate(full):
            canvas.paste(picture, (gap + i * (PANEL + gap), top))
        top += PANEL + gap
        for i, picture in enumerate(zoom):
            canvas.paste(picture, (gap + i * (PANEL + gap), top))
        top += PANEL + gap
    OUT.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)} ({canvas.width}x{canvas.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
