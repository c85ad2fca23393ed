"""Draw the example video clip: two coloured blocks that cross (example_workflows/inputs/crossing.mp4).

    python tools/render_example_clip.py

24 frames of 160x96 at 12 frames per second: a red block moving right and a blue block moving left,
overlapping in the middle, on a gray floor. The "video_track" example workflow follows both with
their ids through the crossing. Drawn here (no photo), so it is ours to ship; needs PyAV.
"""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "example_workflows" / "inputs" / "crossing.mp4"
FRAMES, HEIGHT, WIDTH, FPS = 24, 96, 160, 12


def crossing_frames(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> list[torch.Tensor]:
    """The clip as ``[H, W, 3]`` float frames (0..1)."""
    out = []
    for t in range(frames):
        frame = torch.full((height, width, 3), 0.55)
        frame[int(height * 0.7):] = torch.tensor([0.35, 0.33, 0.3])  # the floor
        red_x = int(10 + t * (width - 60) / (frames - 1))
        blue_x = int(width - 50 - t * (width - 60) / (frames - 1))
        frame[30:70, blue_x:blue_x + 40] = torch.tensor([0.15, 0.3, 0.85])
        frame[26:66, red_x:red_x + 40] = torch.tensor([0.85, 0.15, 0.1])  # the red block passes in front
        out.append(frame)
    return out


def block_segments(t: int, frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH):
    """The two blocks of frame ``t`` as Segments with their ids (the drawing's ground truth, for the thumbnail)."""
    from grounded_inpaint.structures import Segments

    red_x = int(10 + t * (width - 60) / (frames - 1))
    blue_x = int(width - 50 - t * (width - 60) / (frames - 1))
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    masks[0, 26:66, red_x:red_x + 40] = True
    masks[1, 30:70, blue_x:blue_x + 40] = True
    masks[1] &= ~masks[0]  # the red block is in front
    boxes = torch.tensor([[red_x, 26, red_x + 40, 66], [blue_x, 30, blue_x + 40, 70]], dtype=torch.float32)
    return Segments(masks, boxes, torch.ones(2), torch.ones(2), ["#1 red square", "#2 blue square"], (height, width),
                    torch.tensor([1, 2]))


def thumbnail(size: tuple[int, int] = (512, 320)):
    """Three frames of the clip with the two ids drawn (what the workflow's preview shows), over a caption band."""
    from PIL import Image, ImageDraw, ImageFont

    from grounded_inpaint.overlay import draw_segments

    frames = crossing_frames()
    w, h = size
    band = 72
    canvas = Image.new("RGB", size, (32, 32, 36))
    slot = (w - 8 * 4) // 3
    for i, t in enumerate((0, FRAMES // 2 - 2, FRAMES - 1)):
        drawn = draw_segments(frames[t], block_segments(t), scores=False)
        im = Image.fromarray((drawn * 255).round().to(torch.uint8).numpy())
        im.thumbnail((slot, h - band - 16))
        canvas.paste(im, (8 + i * (slot + 8) + (slot - im.width) // 2, 8 + (h - band - 16 - im.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.text((12, h - band + 8), "Video tracking", fill=(240, 240, 240), font=ImageFont.load_default(size=26))
    draw.text((12, h - band + 42), "words to masks with ids through a clip; no SD model", fill=(190, 190, 200),
              font=ImageFont.load_default(size=18))
    return canvas


def main() -> int:
    from grounded_inpaint.video.frames import write_video

    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_video(crossing_frames(), OUT, FPS)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")
    thumb = ROOT / "example_workflows" / "video_track.jpg"
    thumbnail().save(thumb, quality=88)
    print(f"wrote {thumb.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
