"""ViTMatte without its weights: the pack's path equals transformers' documented usage on shared
random weights, tiling changes nothing for a model whose reach fits the margin, the loader reads
only what it should, and the vitmatte method runs end to end (known pixels exact, Cancel honoured)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_inpaint.errors import CheckpointError, ModelNotFoundError
from grounded_inpaint.matting import make_trimap, refine
from grounded_inpaint.matting.trimap import unknown_of
from grounded_inpaint.matting.vitmatte import VitMatte
from grounded_inpaint.models import load_matting_model, model_display_name
from grounded_inpaint.testing.tiny_vitmatte import write_tiny_vitmatte

from tolerance import assert_close


@pytest.fixture(scope="module")
def matting_model(models_dir):
    root, paths = models_dir
    return load_matting_model(paths["vitmatte"].name, root, download=False)


def _scene(h: int = 120, w: int = 150, seed: int = 0):
    """An 8-bit photo (as floats) with a disc, and its trimap (band of 8 px)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2
    pixels = np.where(disc[..., None], [200, 60, 40], [40, 90, 200]) + g.integers(-30, 30, (h, w, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    trimap = make_trimap(torch.from_numpy(disc), inner=8, outer=8)
    return pixels, trimap


def test_loads_through_the_loader_and_is_named(matting_model, models_dir):
    assert isinstance(matting_model, VitMatte)
    assert model_display_name(matting_model) == "ViTMatte (custom ViT, width 16)"
    root, paths = models_dir
    assert load_matting_model(paths["vitmatte"].name, root, download=False) is matting_model  # cached


def test_alpha_equals_transformers_documented_usage(matting_model, models_dir):
    """processor(images=..., trimaps=...) → model(**inputs).alphas, cropped: the reference."""
    from transformers import VitMatteForImageMatting, VitMatteImageProcessor

    _, paths = models_dir
    pixels, trimap = _scene()
    h, w = trimap.shape
    trimap_8bit = (trimap.numpy() * 255).round().clip(0, 255).astype(np.uint8)  # 0 / 128 / 255
    assert set(np.unique(trimap_8bit).tolist()) == {0, 128, 255}
    processor = VitMatteImageProcessor.from_pretrained(str(paths["vitmatte"]))
    model = VitMatteForImageMatting.from_pretrained(str(paths["vitmatte"])).eval()
    inputs = processor(images=Image.fromarray(pixels), trimaps=Image.fromarray(trimap_8bit, mode="L"), return_tensors="pt")
    with torch.no_grad():
        reference = model(**inputs).alphas[0, 0, :h, :w]
    ours = matting_model.predict(torch.from_numpy(pixels).float() / 255.0, trimap)
    assert ours.shape == (h, w)
    assert_close(ours, reference)
    assert float(reference.std()) > 1e-3  # the random model's alpha varies: a wrong input would show
    # the band of the library's answer is the model's answer (one tile: the band fits)
    band = unknown_of(trimap)
    alpha = matting_model.estimate_alpha(torch.from_numpy(pixels).float() / 255.0, trimap)
    assert_close(alpha[band], reference[band])
    assert torch.equal(alpha[~band], trimap[~band])


def test_tiles_equal_one_pass_when_the_model_reaches_less_than_the_margin(tmp_path):
    """All-windowed attention and no absolute positions: alpha at a pixel depends on nearby pixels
    only, so tiles read with a margin (and aligned to the attention windows) change nothing."""
    model = VitMatte.from_pretrained(write_tiny_vitmatte(tmp_path / "local", seed=3, local=True))
    pixels, trimap = _scene(150, 180, seed=1)
    image = torch.from_numpy(pixels).float() / 255.0
    whole = model.predict(image, trimap)  # one pass over the whole photo
    tiled = model.estimate_alpha(image, trimap, tile=64, margin=64)  # 6 tiles of 64 px
    band = unknown_of(trimap)
    assert_close(tiled[band], whole[band])
    assert torch.equal(tiled[~band], trimap[~band])
    cramped = model.estimate_alpha(image, trimap, tile=64, margin=0)  # no context: the tiles' seams show
    assert float((cramped - whole)[band].abs().max()) > 1e-3


def test_loader_refuses_what_is_not_a_vitmatte_folder(tmp_path, models_dir):
    root, paths = models_dir
    single = tmp_path / "model.safetensors"
    shutil.copy(paths["vitmatte"] / "model.safetensors", single)
    with pytest.raises(CheckpointError, match="single file"):
        load_matting_model(single, None, download=False)
    with pytest.raises(CheckpointError, match="holds a 'sam' model"):
        load_matting_model(paths["sam_hf"], None, download=False)
    pickle_only = tmp_path / "pickle-only"
    pickle_only.mkdir()
    shutil.copy(paths["vitmatte"] / "config.json", pickle_only / "config.json")
    (pickle_only / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_matting_model(pickle_only, None, download=False)
    broken = tmp_path / "broken"
    shutil.copytree(paths["vitmatte"], broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be loaded as ViTMatte"):
        load_matting_model(broken, None, download=False)
    with pytest.raises(ModelNotFoundError, match="vitmatte-small-composition-1k is not in"):
        load_matting_model("vitmatte-small-composition-1k", root, download=False)


def test_refine_with_vitmatte_keeps_known_pixels_and_honours_cancel(matting_model):
    pixels, trimap = _scene()
    image = torch.from_numpy(pixels).float() / 255.0
    mask = trimap >= 0.5
    result = refine(image, mask, method="vitmatte", model=matting_model, inner=8, outer=8)
    band = unknown_of(result.trimap)
    assert torch.equal(result.alpha[~band], result.trimap[~band])
    assert float(result.alpha[band].std()) > 0 and bool(torch.isfinite(result.foreground).all())

    class Stop(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) > 5:  # inside the model pass: the hooks call it before every layer
            raise Stop

    with pytest.raises(Stop):
        refine(image, mask, method="vitmatte", model=matting_model, inner=8, outer=8, interrupt=check)
