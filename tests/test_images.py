import logging

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
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


# ----------------------------------------------------------------------------- dtypes and strides


@pytest.mark.parametrize(
    "dtype, value, expected",
    [
        (np.uint8, 255, 1.0), (np.int8, 127, 127 / 255), (np.int8, -5, 0.0),
        (np.uint16, 65535, 1.0), (np.uint16, 257, 257 / 65535), (np.int16, 32767, 32767 / 65535),
        (np.int32, 65535, 1.0), (np.int32, 70000, 1.0), (np.int64, -1, 0.0), (np.uint32, 2**31, 1.0),
        (np.uint64, 1000, 1000 / 65535), (">u2", 65535, 1.0), ("<u2", 1, 1 / 65535),
        (np.float16, 0.5, 0.5), (np.float64, 1e300, 1.0), (np.float64, -1e300, 0.0), (np.longdouble, 0.25, 0.25),
    ],
)
def test_numpy_dtypes(dtype, value, expected):
    out = to_rgb(np.full((2, 3), value, dtype=dtype))
    assert out.shape == (2, 3, 3) and out.dtype == torch.float32
    assert out[1, 2].tolist() == pytest.approx([expected] * 3, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn, torch.uint16, torch.uint32, torch.uint64])
def test_torch_dtypes(dtype):
    source = torch.tensor([[[0.0, 0.5, 1.0]]]) if dtype.is_floating_point else torch.tensor([[[0, 32768, 65535]]])
    out = to_rgb(source.to(dtype))
    assert out.dtype == torch.float32 and out.shape == (1, 1, 3)
    assert out[0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0], abs=0.01)
    assert to_mask(source.to(dtype)[..., 0]).dtype == torch.float32


def test_uint16_arrays_are_16bit_for_images_and_masks():
    values = np.array([[0, 32768, 65535]], np.uint16)
    assert to_rgb(values)[0, :, 0].tolist() == pytest.approx([0.0, 32768 / 65535, 1.0])
    assert to_mask(values)[0].tolist() == pytest.approx([0.0, 32768 / 65535, 1.0])
    assert to_mask(np.array([[0, 1, 7]], np.int32)).tolist() == [[0.0, 1.0, 1.0]]  # other ints: label masks


def test_8bit_data_in_a_wide_integer_type_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="grounded_inpaint.images"):
        out = to_rgb(np.full((2, 2, 3), 200, np.int64), name="photo")
    assert out.max() == pytest.approx(200 / 65535)
    assert any("photo" in r.message and "uint8" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grounded_inpaint.images"):
        to_rgb(np.full((2, 2, 3), 200, np.uint16))  # a dark 16-bit picture: no warning
        to_rgb(np.full((2, 2, 3), 60000, np.int32))
    assert not caplog.records


def test_gray_alpha_bool_and_strides():
    ga = np.stack([np.full((2, 2), 51, np.uint8), np.zeros((2, 2), np.uint8)], axis=-1)  # [H, W, 2]
    assert torch.allclose(to_rgb(ga), torch.full((2, 2, 3), 0.2))
    assert to_rgb(np.array([[True, False]]))[0].tolist() == [[1.0] * 3, [0.0] * 3]
    assert to_rgb(torch.tensor([[True, False]]))[0, 1].tolist() == [0.0] * 3
    base = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    for view in (base[::-1], base[:, ::-2], base.transpose(1, 0, 2), base[..., ::-1]):
        assert torch.equal(to_rgb(view), torch.from_numpy(np.ascontiguousarray(view)).float() / 255)
    read_only = base.copy()
    read_only.flags.writeable = False
    assert to_rgb(read_only).shape == (4, 6, 3)
    t = torch.rand(6, 4, 3).transpose(0, 1)  # non-contiguous tensor
    assert torch.equal(to_rgb(t), t) and to_rgb(t).is_contiguous()
    m = np.arange(12, dtype=np.float32).reshape(3, 4)[::-1] / 11
    assert torch.allclose(to_mask(m), torch.from_numpy(m.copy()))


def test_not_images_are_type_errors():
    for bad in ([[0, 1]], "image.png", None, 3.0, np.zeros((2, 2), object), np.zeros((2, 2), "U3"),
                np.zeros((2, 2), np.complex64), torch.zeros(2, 2, dtype=torch.complex64), np.zeros((2, 2), "datetime64[s]")):
        with pytest.raises(TypeError, match="image"):
            to_rgb(bad)
        with pytest.raises(TypeError, match="mask"):
            to_mask(bad)


def test_mask_nan_and_inf():
    out = to_mask(torch.tensor([[float("nan"), float("inf"), -float("inf"), 0.25]]))
    assert out.tolist() == [[0.0, 1.0, 0.0, 0.25]]


def test_zero_size_masks_and_batches():
    assert to_mask(torch.zeros(0, 5)).shape == (0, 5)  # a mask may be empty; images may not
    assert to_rgb_list(torch.zeros(0, 4, 4, 3)) == []
    with pytest.raises(ValueError, match="empty"):
        to_rgb(np.zeros((1, 0, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        to_rgb(torch.zeros(4, 4, 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_output_stays_on_the_gpu():
    for source in (torch.rand(4, 5, 3), torch.randint(0, 256, (4, 5), dtype=torch.uint8), torch.rand(1, 4, 5, 4).half()):
        out = to_rgb(source.cuda())
        assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == (4, 5, 3)
        assert torch.allclose(out.cpu(), to_rgb(source))
    assert to_mask(torch.rand(3, 4, device="cuda")).device.type == "cuda"


# ----------------------------------------------------------------------------- properties

NUMPY_DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.uint32, np.uint64,
                np.float16, np.float32, np.float64, np.dtype(">u2"), np.dtype(">f4")]
TORCH_ONLY = [torch.bfloat16]


def _reference(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """What to_rgb should give, computed in float64 numpy from the stored values."""
    if dtype_name == "bool":
        scaled = values
    elif dtype_name in ("uint8", "int8"):
        scaled = values / 255.0
    elif dtype_name.startswith(("int", "uint")):
        scaled = values / 65535.0
    else:
        scaled = values
    return np.clip(scaled, 0.0, 1.0)


@st.composite
def images(draw, finite: bool = True):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    layout = draw(st.sampled_from(["hw", "hwc", "1hwc"]))
    c = draw(st.integers(1, 4))
    shape = {"hw": (h, w), "hwc": (h, w, c), "1hwc": (1, h, w, c)}[layout]
    use_bf16 = draw(st.booleans()) and draw(st.booleans())
    dtype = np.dtype(np.float32) if use_bf16 else np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
    elements = None
    if dtype.kind == "f":
        width = 16 if dtype.itemsize == 2 else 32 if dtype.itemsize == 4 else 64
        elements = st.floats(allow_nan=not finite, allow_infinity=not finite, width=width)
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    if use_bf16:  # float32 values beyond bfloat16's range would turn into inf; NaN stays NaN
        array = np.clip(array, -1e30, 1e30)
    if draw(st.booleans()) and array.ndim >= 2:
        array = array[::-1]  # negative stride
    if draw(st.booleans()) and array.ndim >= 2:
        array = np.swapaxes(np.ascontiguousarray(np.swapaxes(array, -2, -1) if array.ndim == 2 else np.swapaxes(array, -3, -2)),
                            -2 if array.ndim == 2 else -3, -1 if array.ndim == 2 else -2)  # same shape, transposed strides
    as_tensor = use_bf16 or draw(st.booleans())
    if as_tensor:
        native = array.astype(array.dtype.newbyteorder("=")) if not array.dtype.isnative else array
        tensor = torch.from_numpy(np.array(native, order="C"))
        if use_bf16:
            tensor = tensor.to(torch.bfloat16)
        return tensor, shape
    return array, shape


def _values_and_dtype(image) -> tuple[np.ndarray, str]:
    if torch.is_tensor(image):
        name = str(image.dtype).replace("torch.", "")
        return (image.double().numpy() if name != "bool" else image.numpy().astype(np.float64)), name
    return image.astype(np.float64), image.dtype.newbyteorder("=").name


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_property_valid_images_become_hw3_float32_in_range(case):
    image, shape = case
    out = to_rgb(image)
    h, w = shape[-3:-1] if len(shape) >= 3 else shape
    assert out.shape == (h, w, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    values, dtype_name = _values_and_dtype(image)
    values = values.reshape(h, w, -1)
    first = values[..., :1] if values.shape[-1] <= 2 else values[..., :3]
    expected = np.broadcast_to(_reference(first, dtype_name), (h, w, 3))
    assert np.allclose(out.numpy(), expected, atol=1e-6, rtol=1e-6)


@settings(max_examples=150, deadline=None)
@given(images(finite=False))
def test_property_non_finite_images_are_a_value_error(case):
    image, _ = case
    values, _ = _values_and_dtype(image)
    h, w = values.shape[-3:-1] if values.ndim >= 3 else values.shape
    used = values.reshape(h, w, -1)
    used = used[..., :1] if used.shape[-1] <= 2 else used[..., :3]
    if np.isfinite(used).all():
        assert to_rgb(image).shape == (h, w, 3)
    else:
        with pytest.raises(ValueError, match="NaN or infinite"):
            to_rgb(image)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=0, max_size=5),
    st.sampled_from(NUMPY_DTYPES + [np.complex64, np.object_]),
    st.booleans(),
)
def test_property_any_shape_is_converted_or_refused_clearly(shape, dtype, as_tensor):
    array = np.zeros(shape, dtype=dtype)
    image = array
    if as_tensor and array.dtype.kind in "biuf":
        image = torch.from_numpy(np.array(array.astype(array.dtype.newbyteorder("=")), order="C"))
    for convert, kind in ((to_rgb, "image"), (to_mask, "mask")):
        try:
            out = convert(image)
        except (ValueError, TypeError) as exc:
            assert kind in str(exc)  # names what it was converting
            continue
        assert out.dtype == torch.float32 and out.ndim == (3 if kind == "image" else 2)
        if kind == "image":
            assert out.shape[-1] == 3 and out.numel() > 0
        assert bool(((out >= 0) & (out <= 1)).all())


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 6), st.sampled_from(["hw", "1hw", "hw1"]),
    st.sampled_from(NUMPY_DTYPES), st.booleans(),
)
def test_property_masks_become_hw_float32_in_range(h, w, layout, dtype, reverse):
    rng = np.random.default_rng(h * 7 + w)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.normal(0.5, 2.0, (h, w))
        values[0, 0] = np.nan
        array = values.astype(dtype)
    elif dtype.kind == "b":
        array = rng.random((h, w)) > 0.5
    else:
        info = np.iinfo(dtype)
        array = rng.integers(max(info.min, -1000), min(info.max, 70000), (h, w), endpoint=True).astype(dtype)
    if reverse:
        array = array[::-1]
    shaped = {"hw": array, "1hw": array[None], "hw1": array[..., None]}[layout]
    assume(not (layout == "hw1" and h == 1))  # [1, W, 1] reads as [1, H, W] (documented)
    out = to_mask(shaped)
    assert out.shape == (h, w) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
