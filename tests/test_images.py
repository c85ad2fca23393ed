import numpy as np
import pytest
import torch
from PIL import Image

from grounded_inpaint.images import load_image, save_image, save_mask, to_mask, to_rgb, to_rgb_list


def test_layouts_become_hwc_rgb_float():
    rgb = np.random.randint(0, 256, (5, 7, 3), dtype=np.uint8)
    out = to_rgb(rgb)
    assert out.shape == (5, 7, 3) and out.dtype == torch.float32
    assert torch.allclose(out, torch.from_numpy(rgb).float() / 255)
    assert to_rgb(rgb[..., 0]).shape == (5, 7, 3)  # grayscale 2-D
    assert to_rgb(torch.rand(5, 7, 1)).shape == (5, 7, 3)  # 1 channel
    rgba = torch.rand(5, 7, 4)
    assert torch.equal(to_rgb(rgba), rgba[..., :3])  # alpha dropped, colour kept
    assert to_rgb(torch.rand(1, 5, 7, 3)).shape == (5, 7, 3)
    assert to_rgb(Image.new("LA", (7, 5))).shape == (5, 7, 3)
    assert to_rgb(Image.new("P", (7, 5))).shape == (5, 7, 3)


def test_float_values_are_clamped():
    out = to_rgb(torch.tensor([[[-1.0, 0.5, 2.0]]]))
    assert out.min() >= 0 and out.max() <= 1


def test_nan_pixels_are_a_clear_error():
    img = torch.rand(4, 4, 3)
    img[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_rgb(img, name="image 2 of 3")
    with pytest.raises(ValueError, match="image 2 of 2"):
        to_rgb_list(torch.stack([torch.rand(4, 4, 3), img]))


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0)])
def test_zero_size_image(shape):
    with pytest.raises(ValueError, match="empty"):
        to_rgb(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(5, 5, 5), (2, 3, 4, 5, 3), (3,)])
def test_bad_layouts(shape):
    with pytest.raises(ValueError, match="expected"):
        to_rgb(torch.zeros(shape))


def test_batches():
    assert len(to_rgb_list(torch.rand(3, 4, 5, 3))) == 3
    assert [t.shape for t in to_rgb_list([torch.rand(4, 5, 3), torch.rand(2, 2, 3)])] == [(4, 5, 3), (2, 2, 3)]
    assert len(to_rgb_list(torch.rand(4, 5, 3))) == 1


def test_masks():
    assert to_mask(torch.ones(1, 3, 4)).shape == (3, 4)
    assert to_mask(np.full((3, 4), 255, np.uint8)).max() == 1.0
    assert to_mask(torch.tensor([[True, False]])).tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="expected"):
        to_mask(torch.ones(2, 3, 4))


def test_file_round_trip(tmp_path):
    img = torch.rand(6, 9, 3)
    save_image(img, tmp_path / "a.png")
    back = load_image(tmp_path / "a.png")
    assert back.shape == (6, 9, 3) and (back - img).abs().max() <= 1 / 255 + 1e-6
    save_mask(torch.tensor([[0.0, 1.0]]), tmp_path / "m.png")
    assert np.asarray(Image.open(tmp_path / "m.png")).tolist() == [[0, 255]]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
