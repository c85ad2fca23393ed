"""Write the input pictures the example workflows load into ``example_workflows/inputs/``.

* ``coffee.png`` and ``chelsea.png``: the CC0 photos in ``assets/`` (see ``assets/ATTRIBUTION.md``),
  centre-cropped so both sides are multiples of 8 (what the SD VAE needs for an exact round trip).
* ``mannequin_dress.png`` and ``studio_backdrop.png``: drawn here — a dress on a dress form, and
  an empty studio backdrop — for the product-placement workflow; ``mannequin_dress_matte.png``:
  the dress's soft alpha, standing in for a background remover's matte (the external-matte workflow).
* ``example_workflows/<name>.jpg``: the thumbnail ComfyUI shows next to each template.

    python tools/render_example_inputs.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "example_workflows" / "inputs"


def crop_to_multiple(image: Image.Image, multiple: int = 8) -> Image.Image:
    w, h = image.size
    nw, nh = w - w % multiple, h - h % multiple
    left, top = (w - nw) // 2, (h - nh) // 2
    return image.crop((left, top, left + nw, top + nh))


def _vertical_gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(h):
        t = y / max(1, h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def mannequin_dress(size: tuple[int, int] = (320, 400)) -> Image.Image:
    """A red dress on a grey dress form in front of a pale wall."""
    w, h = size
    image = _vertical_gradient(size, (232, 228, 220), (206, 200, 190))
    draw = ImageDraw.Draw(image)
    cx = w // 2
    draw.rectangle([cx - 6, int(h * 0.80), cx + 6, int(h * 0.95)], fill=(70, 60, 50))  # stand
    draw.ellipse([cx - 50, int(h * 0.94), cx + 50, int(h * 0.99)], fill=(60, 52, 44))
    draw.ellipse([cx - 22, int(h * 0.06), cx + 22, int(h * 0.16)], fill=(150, 150, 150))  # neck cap
    torso = [(cx - 58, int(h * 0.18)), (cx + 58, int(h * 0.18)), (cx + 48, int(h * 0.42)), (cx - 48, int(h * 0.42))]
    draw.polygon(torso, fill=(160, 40, 50))  # bodice
    skirt = [(cx - 48, int(h * 0.42)), (cx + 48, int(h * 0.42)), (cx + 105, int(h * 0.80)), (cx - 105, int(h * 0.80))]
    draw.polygon(skirt, fill=(175, 45, 55))  # skirt
    for i in range(-3, 4):  # pleats
        x0 = cx + i * 12
        draw.line([(x0, int(h * 0.43)), (cx + i * 28, int(h * 0.79))], fill=(140, 30, 42), width=2)
    draw.rectangle([cx - 48, int(h * 0.40), cx + 48, int(h * 0.43)], fill=(120, 25, 35))  # belt
    for side in (-1, 1):  # shoulder straps
        draw.line([(cx + side * 30, int(h * 0.18)), (cx + side * 18, int(h * 0.12))], fill=(160, 40, 50), width=6)
    return image.filter(ImageFilter.SMOOTH)


def dress_matte(size: tuple[int, int] = (320, 400)) -> Image.Image:
    """The alpha of the dress in :func:`mannequin_dress` (white = dress), soft at the edge: a stand-in
    for the matte a background-removal model would hand over (grayscale, as matte files are)."""
    w, h = size
    matte = Image.new("L", size, 0)
    draw = ImageDraw.Draw(matte)
    cx = w // 2
    draw.polygon([(cx - 58, int(h * 0.18)), (cx + 58, int(h * 0.18)), (cx + 48, int(h * 0.42)), (cx - 48, int(h * 0.42))], fill=255)
    draw.polygon([(cx - 48, int(h * 0.42)), (cx + 48, int(h * 0.42)), (cx + 105, int(h * 0.80)), (cx - 105, int(h * 0.80))], fill=255)
    draw.rectangle([cx - 48, int(h * 0.40), cx + 48, int(h * 0.43)], fill=255)
    for side in (-1, 1):
        draw.line([(cx + side * 30, int(h * 0.18)), (cx + side * 18, int(h * 0.12))], fill=255, width=6)
    return matte.filter(ImageFilter.SMOOTH)


def studio_backdrop(size: tuple[int, int] = (512, 384)) -> Image.Image:
    """An empty studio: a warm wall, a wooden floor and a soft spot of light."""
    w, h = size
    image = _vertical_gradient(size, (214, 200, 180), (180, 160, 140))
    draw = ImageDraw.Draw(image)
    floor_top = int(h * 0.70)
    floor = _vertical_gradient((w, h - floor_top), (140, 100, 70), (100, 68, 46))
    image.paste(floor, (0, floor_top))
    for x in range(0, w, 48):  # floor boards
        draw.line([(x, floor_top), (x - 40, h)], fill=(90, 62, 42), width=1)
    light = Image.new("L", size, 0)
    ImageDraw.Draw(light).ellipse([w * 0.30, h * 0.10, w * 0.70, h * 0.75], fill=70)
    light = light.filter(ImageFilter.GaussianBlur(40))
    return Image.composite(Image.new("RGB", size, (255, 245, 225)), image, light)


THUMBNAILS = {
    "background_generation": (["coffee.png"], "Background generation", "keep the cup, repaint the rest"),
    "product_placement": (["mannequin_dress.png", "studio_backdrop.png"], "Product placement", "dress -> new picture, blend the edge"),
    "object_replacement": (["chelsea.png"], "Object replacement", "find the cat, paint something new"),
    "mask_only": (["coffee.png"], "Mask only", "mask, overlay and cut-out; no SD model"),
    "external_matte": (["mannequin_dress.png", "mannequin_dress_matte.png"], "Matte from a background remover",
                       "the detector picks the dress, the matte its edge"),
}


def thumbnail(inputs: list[str], title: str, subtitle: str, size: tuple[int, int] = (512, 320)) -> Image.Image:
    """The input picture(s) side by side over a caption band (what the workflow starts from)."""
    from PIL import ImageFont

    w, h = size
    band = 72
    canvas = Image.new("RGB", size, (32, 32, 36))
    slot = (w - 8 * (len(inputs) + 1)) // len(inputs)
    for i, name in enumerate(inputs):
        with Image.open(OUT / name) as im:
            im = im.convert("RGB")
            im.thumbnail((slot, h - band - 16))
            canvas.paste(im, (8 + i * (slot + 8) + (slot - im.width) // 2, 8 + (h - band - 16 - im.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.text((12, h - band + 8), title, fill=(240, 240, 240), font=ImageFont.load_default(size=26))
    draw.text((12, h - band + 42), subtitle, fill=(190, 190, 200), font=ImageFont.load_default(size=18))
    return canvas


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("coffee", "chelsea"):
        crop_to_multiple(Image.open(ROOT / "assets" / f"{name}.png").convert("RGB")).save(OUT / f"{name}.png", optimize=True)
    mannequin_dress().save(OUT / "mannequin_dress.png", optimize=True)
    dress_matte().save(OUT / "mannequin_dress_matte.png", optimize=True)
    studio_backdrop().save(OUT / "studio_backdrop.png", optimize=True)
    for name, (inputs, title, subtitle) in THUMBNAILS.items():
        thumbnail(inputs, title, subtitle).save(OUT.parent / f"{name}.jpg", quality=88)
    for path in sorted(OUT.glob("*.png")):
        with Image.open(path) as im:
            print(f"{path.relative_to(ROOT)}: {im.size[0]}x{im.size[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
