"""load_image / save_image / save_mask on real files of every kind Pillow opens.

Each file is written in tmp_path with Pillow, numpy or (for 16-bit colour PNGs, which Pillow
cannot write) a few lines of PNG encoding below; nothing is downloaded.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, features

import grounded_inpaint.images as images_module
from grounded_inpaint.images import ImageWriteError, load_image, save_image, save_mask, to_mask, to_rgb


def write_png16(path: Path, pixels: np.ndarray, color_type: int) -> None:
    """Write ``pixels`` (uint16 ``[H, W, C]``) as a 16-bit PNG (colour type 0 gray, 2 RGB, 4 LA, 6 RGBA)."""
    h, w = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def no_warnings(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


# ----------------------------------------------------------------------------- 16-bit and other depths


def test_16bit_gray_png_keeps_its_full_range(tmp_path):
    values = np.array([[0, 1000, 32768], [40000, 65000, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I;16B", "I")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (2, 3, 3) and out.dtype == torch.float32
    expected = torch.from_numpy(values.astype(np.float32) / 65535.0)
    assert torch.allclose(out[..., 0], expected, atol=1e-6)  # not clipped to white at 255
    assert torch.equal(out[..., 0], out[..., 2])


def test_16bit_gray_png_written_by_hand(tmp_path):
    write_png16(tmp_path / "g.png", np.array([[[0], [21845], [65535]]], np.uint16), 0)
    assert load_image(tmp_path / "g.png")[0, :, 1].tolist() == pytest.approx([0.0, 1 / 3, 1.0], abs=1e-6)


def test_16bit_big_endian_tiff(tmp_path):
    values = np.array([[0, 256, 65535]], np.uint16)
    Image.fromarray(values.astype(">u2")).save(tmp_path / "be.tif")
    assert Image.open(tmp_path / "be.tif").mode == "I;16B"
    assert load_image(tmp_path / "be.tif")[0, :, 0].tolist() == pytest.approx([0.0, 256 / 65535, 1.0], abs=1e-6)


def test_32bit_integer_tiff_is_read_as_16bit_range(tmp_path):
    values = np.array([[-5, 0, 32768, 65535, 1_000_000]], np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    out = load_image(tmp_path / "i.tif")[0, :, 0]
    assert out.tolist() == pytest.approx([0.0, 0.0, 32768 / 65535, 1.0, 1.0], abs=1e-6)


def test_float_tiff_is_read_as_0_to_1(tmp_path):
    Image.fromarray(np.array([[-1.0, 0.25, 0.5, 3.0]], np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert load_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0.0, 0.25, 0.5, 1.0]
    Image.fromarray(np.array([[0.5, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="nan.tif.*NaN"):
        load_image(tmp_path / "nan.tif")


@pytest.mark.parametrize("color_type, channels", [(2, 3), (6, 4), (4, 2)])
def test_16bit_colour_png_has_8bit_precision_but_the_right_picture(tmp_path, color_type, channels):
    """Pillow decodes 16-bit colour PNGs to 8 bits (the high byte): right picture, not white or black."""
    rng = np.random.default_rng(color_type)
    pixels = rng.integers(0, 65536, (5, 6, channels), dtype=np.uint16)
    pixels[0, 0] = 65535
    pixels[0, 1] = 0
    write_png16(tmp_path / "c16.png", pixels, color_type)
    out = load_image(tmp_path / "c16.png")
    colour = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    expected = torch.from_numpy(colour.astype(np.float32) / 65535.0)
    assert out.shape == (5, 6, 3)
    assert (out - expected).abs().max() <= 1 / 255 + 1e-6
    assert out[0, 0].tolist() == [1.0, 1.0, 1.0] and out[0, 1].tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- modes


def test_8bit_modes(tmp_path):
    Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png")[0, :, 2].tolist() == pytest.approx([0, 128 / 255, 1.0])

    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bilevel.png")
    assert Image.open(tmp_path / "bilevel.png").mode == "1"
    assert load_image(tmp_path / "bilevel.png")[0].tolist() == [[1.0] * 3, [0.0] * 3]

    la = np.array([[[200, 0], [50, 255]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png")[0, :, 0].tolist() == pytest.approx([200 / 255, 50 / 255])  # alpha dropped

    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert torch.allclose(out, torch.from_numpy(rgba[..., :3]).float() / 255)  # transparent pixel keeps colour


@pytest.mark.parametrize("transparency", [None, 1, bytes([255, 0, 128])])
def test_palette_images_without_warnings(tmp_path, transparency):
    p = Image.new("P", (3, 1))
    p.putpalette([10, 20, 30, 200, 100, 50, 1, 2, 3] + [0] * 759)
    p.putpixel((1, 0), 1)
    p.putpixel((2, 0), 2)
    if transparency is not None:
        p.info["transparency"] = transparency
    p.save(tmp_path / "p.png")
    out = no_warnings(load_image, tmp_path / "p.png")
    expected = torch.tensor([[[10, 20, 30], [200, 100, 50], [1, 2, 3]]]) / 255
    assert torch.allclose(out, expected)  # transparent pixels keep their palette colour
    mask = no_warnings(to_mask, Image.open(tmp_path / "p.png"))
    if transparency is None:
        assert mask.shape == (1, 3)  # gray level
    else:
        assert mask[0].tolist() == pytest.approx([1.0, 0.0, 1.0 if transparency == 1 else 128 / 255])


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk_files_become_the_right_colours(tmp_path, ext):
    im = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # red
    im.paste((255, 0, 255, 0), (8, 0, 16, 8))  # green
    im.save(tmp_path / f"cmyk.{ext}", quality=95)
    assert Image.open(tmp_path / f"cmyk.{ext}").mode == "CMYK"
    out = load_image(tmp_path / f"cmyk.{ext}")
    assert out.shape == (8, 16, 3)
    assert torch.allclose(out[4, 2], torch.tensor([1.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(out[4, 13], torch.tensor([0.0, 1.0, 0.0]), atol=0.05)


def test_pil_modes_without_files():
    assert torch.allclose(to_rgb(Image.new("LAB", (1, 1), (255, 128, 128))), torch.ones(1, 1, 3), atol=0.01)  # white
    assert to_rgb(Image.new("La", (1, 1), (255, 255))).tolist() == [[[1.0, 1.0, 1.0]]]
    assert to_rgb(Image.new("YCbCr", (2, 2), (255, 128, 128))).min() > 0.99
    assert to_mask(Image.new("LAB", (1, 1), (0, 255, 0))).item() < 0.2  # dark: the A of LAB is colour, not alpha
    assert to_mask(Image.new("La", (1, 1), (255, 51))).item() == pytest.approx(0.2)
    assert to_mask(Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)))[0].tolist() == pytest.approx(
        [0.0, 32768 / 65535, 1.0])


# ----------------------------------------------------------------------------- orientation, frames


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_exif_orientation_is_applied(tmp_path, ext):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall; a red block in the stored top-left corner
    stored[:8, :8] = [255, 0, 0]
    for orientation in (6, 3):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.{ext}"
        Image.fromarray(stored).save(path, exif=exif, quality=95)
        out = load_image(path)
        red = out[..., 0] > 0.5
        if orientation == 6:  # rotate 90° clockwise to view: 20 wide, 40 tall, block top-right
            assert out.shape == (40, 20, 3)
            assert bool(red[2, 17]) and not bool(red[2, 2]) and not bool(red[37, 17])
        else:  # 180°: block bottom-right
            assert out.shape == (20, 40, 3)
            assert bool(red[17, 37]) and not bool(red[2, 2])


def _frames():
    return [Image.new("RGB", (6, 4), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]


@pytest.mark.parametrize("ext", ["gif", "webp", "tif", "png"])
def test_animated_and_multipage_files_give_the_first_frame(tmp_path, ext, caplog):
    if ext == "webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    first, *rest = _frames()
    first.save(tmp_path / f"anim.{ext}", save_all=True, append_images=rest)
    with caplog.at_level(logging.INFO, logger="grounded_inpaint.images"):
        out = load_image(tmp_path / f"anim.{ext}")
    assert out.shape == (4, 6, 3)
    assert torch.allclose(out[1, 1], torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    assert any("3 frames" in r.message and "first" in r.message for r in caplog.records)


def test_single_frame_file_logs_nothing(tmp_path, caplog):
    Image.new("RGB", (3, 3)).save(tmp_path / "one.gif")
    with caplog.at_level(logging.INFO, logger="grounded_inpaint.images"):
        load_image(tmp_path / "one.gif")
    assert not caplog.records


# ----------------------------------------------------------------------------- broken files


def test_missing_empty_folder_and_non_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(FileNotFoundError, match="dir.png is a folder"):
        load_image(tmp_path / "dir.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.png.*empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("just some text\n")
    with pytest.raises(ValueError, match="notes.jpg.*does not recognise"):
        load_image(tmp_path / "notes.jpg")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # PNG signature, garbage after
    with pytest.raises(ValueError, match="fake.png"):
        load_image(tmp_path / "fake.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "TIFF", "BMP"])
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_files_are_an_error_not_a_grey_picture(tmp_path, fmt, fraction):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match=f"cut.{fmt.lower()}.*truncated"):
        load_image(path)


def test_truncated_with_pillow_flag_set_warns(tmp_path, monkeypatch, caplog):
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:60])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(images_module, "_truncated_flag_warned", False)
    with caplog.at_level(logging.WARNING, logger="grounded_inpaint.images"):
        load_image(tmp_path / "cut.png")  # Pillow pads it; we say we cannot tell
    assert any("LOAD_TRUNCATED_IMAGES" in r.message for r in caplog.records)


def test_decompression_bombs(tmp_path, monkeypatch, caplog):
    Image.new("RGB", (12, 12), (9, 9, 9)).save(tmp_path / "big.png")  # 144 pixels
    Image.new("RGB", (20, 20)).save(tmp_path / "bomb.png")  # 400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # warning above 100, error above 200
    with caplog.at_level(logging.WARNING, logger="grounded_inpaint.images"):
        out = no_warnings(load_image, tmp_path / "big.png")
    assert out.shape == (12, 12, 3)
    assert any("big.png" in r.message and "12x12" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match=r"bomb.png.*decompression bomb.*MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "bomb.png")


def test_bomb_sized_header_is_refused_before_decoding(tmp_path):
    """A 30000x30000 PNG header with no real data: Pillow's default limit refuses it at once."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    with pytest.raises(ValueError, match="huge.png.*decompression bomb"):
        load_image(tmp_path / "huge.png")


# ----------------------------------------------------------------------------- writing


def test_format_follows_the_extension(tmp_path):
    img = torch.rand(6, 9, 3)
    for ext, fmt in [("png", "PNG"), ("jpg", "JPEG"), ("jpeg", "JPEG"), ("webp", "WEBP"), ("tif", "TIFF"), ("PNG", "PNG")]:
        path = save_image(img, tmp_path / f"a.{ext}")
        with Image.open(path) as written:
            assert written.format == fmt and written.size == (9, 6)
    save_image(torch.rand(4, 4, 4), tmp_path / "rgba.png")
    assert Image.open(tmp_path / "rgba.png").mode == "RGBA"
    save_mask(torch.tensor([[0.0, 1.0, float("nan")]]), tmp_path / "m.jpg")
    assert Image.open(tmp_path / "m.jpg").mode == "L"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_exact_round_trip(tmp_path):
    img = torch.rand(6, 9, 3)
    back = load_image(save_image(img, tmp_path / "sub" / "dir" / "a.png"))  # folders created
    assert (back - img).abs().max() <= 0.5 / 255 + 1e-6
    save_mask(torch.tensor([[0.0, 1.0]]), tmp_path / "m.png")
    assert np.asarray(Image.open(tmp_path / "m.png")).tolist() == [[0, 255]]


def test_png_compress_level_keeps_the_pixels_and_is_checked(tmp_path):
    img = torch.linspace(0, 1, 60).expand(40, 60)[..., None].repeat(1, 1, 3)  # smooth: compresses well
    default = save_image(img, tmp_path / "default.png")
    fast = save_image(img, tmp_path / "fast.png", compress_level=1)
    stored = save_image(img, tmp_path / "stored.png", compress_level=0)
    pixels = np.asarray(Image.open(default))
    assert np.array_equal(np.asarray(Image.open(fast)), pixels) and np.array_equal(np.asarray(Image.open(stored)), pixels)
    assert stored.stat().st_size > default.stat().st_size  # level 0 stores the pixels uncompressed
    for bad in (-1, 10, 1.5, True, "1"):
        with pytest.raises(ValueError, match="compress_level must be an integer from 0 to 9"):
            save_image(img, tmp_path / "bad.png", compress_level=bad)
    with pytest.raises(ValueError, match="PNG files only"):
        save_image(img, tmp_path / "a.jpg", compress_level=1)
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "a.jpg").exists()


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, interruption):
    target = tmp_path / "out.png"
    save_image(torch.zeros(4, 4, 3), target)
    before = target.read_bytes()
    seen = []

    def failing_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG half of it")
        seen.extend(p.name for p in tmp_path.iterdir())
        raise interruption

    monkeypatch.setattr(Image.Image, "save", failing_save)
    expected = ImageWriteError if isinstance(interruption, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        save_image(torch.ones(4, 4, 3), target)
    if expected is ImageWriteError:
        assert "out.png" in str(info.value) and "No space left" in str(info.value)
        assert isinstance(info.value, OSError) and isinstance(info.value, ValueError) and info.value.errno == 28
    assert any(name.startswith(".out.png.tmp-") for name in seen)  # hidden temp file beside the target
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_new_file_is_not_created_when_the_write_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, format=None, **kw: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(ImageWriteError, match="mask.png"):
        save_mask(torch.zeros(3, 3), tmp_path / "mask.png")
    assert list(tmp_path.iterdir()) == []


def test_format_refusals_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"rgba.jpg.*RGBA.*JPEG"):
        save_image(torch.rand(4, 4, 4), tmp_path / "rgba.jpg")
    with pytest.raises(ValueError, match=r"a.xyz.*unknown image extension"):
        save_image(torch.rand(4, 4, 3), tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="unknown image extension"):
        save_mask(torch.rand(4, 4), tmp_path / "noext")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        save_image(torch.rand(4, 4), tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        save_mask(torch.rand(1, 4, 4), tmp_path / "a.png")
    with pytest.raises(TypeError):
        save_image(np.zeros((4, 4, 3)), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_output_folder_that_cannot_be_created_or_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(ImageWriteError, match=r"cannot create the output folder .*file[/\\]sub"):
        save_image(torch.rand(2, 2, 3), tmp_path / "file" / "sub" / "a.png")
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ImageWriteError, match="cannot write .*taken.png"):
        save_image(torch.rand(2, 2, 3), tmp_path / "taken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken.png"]

    real_open = os.open

    def denied(path, *args, **kwargs):  # tests run as root here, so chmod cannot stand in for this
        if ".tmp-" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    (tmp_path / "ro").mkdir()
    with pytest.raises(ImageWriteError, match=r"cannot write to the output folder .*ro: Permission denied"):
        save_mask(torch.rand(2, 2), tmp_path / "ro" / "m.png")
