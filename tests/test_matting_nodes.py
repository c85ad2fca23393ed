"""Refine Mask Edges and Load Matting Model, executed without ComfyUI (the fakes of tests/comfy_fakes.py):
aligned batches, every output's shape and range, the memory manager, Cancel, clear errors, and Cut Out
with the clean colours."""

from __future__ import annotations

import sys

import pytest
import torch

from comfy_fakes import InterruptProcessingException
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures


def _pack_segments(pack, masks, logits=None):  # noqa: F811
    """Segments of the pack's own copy of the library, as SAM Segment makes them upstream."""
    cls = sys.modules[f"{PACK_NAME}.py.structures"].Segments
    n = masks.shape[0]
    boxes = torch.tensor([[0.0, 0.0, masks.shape[2], masks.shape[1]]] * n).reshape(n, 4)
    return cls(masks, boxes, torch.ones(n), torch.ones(n), ["object"] * n, logits=logits)


def _photo(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (h / 3) ** 2
    image = torch.where(disc[..., None], torch.tensor([0.9, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.9]))
    return (image + 0.05 * torch.rand(h, w, 3, generator=g)).clamp(0, 1), disc


_SETTINGS = dict(method="guided", band_inside=-1, band_outside=-1, decontaminate=True)


def test_refine_outputs_for_an_aligned_batch(pack, comfy):  # noqa: F811
    a, disc = _photo(seed=0)
    b, _ = _photo(seed=1)
    images = torch.stack([a, b])
    segments = [_pack_segments(pack, disc[None]), _pack_segments(pack, torch.zeros(0, 48, 64, dtype=torch.bool))]
    out = pack.NODE_CLASS_MAPPINGS["GroundedInpaintRefineMask"]().refine(image=images, segments=segments, **_SETTINGS)
    alpha, foreground, rgba, trimap, preview = out["result"]
    assert alpha.shape == (2, 48, 64) and foreground.shape == rgba.shape[:3] + (3,) == (2, 48, 64, 3)
    assert rgba.shape == (2, 48, 64, 4) and trimap.shape == (2, 48, 64) and preview.shape == (2, 48, 64, 3)
    assert torch.equal(rgba[..., 3], alpha) and torch.equal(rgba[..., :3], foreground)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 and not bool(torch.isnan(foreground).any())
    assert set(torch.unique(trimap).tolist()) <= {0.0, 0.5, 1.0}
    assert bool(((alpha[0] > 0) & (alpha[0] < 1)).any())  # a soft edge
    assert torch.equal(alpha[1], torch.zeros(48, 64))  # nothing found: alpha 0, not an error
    assert len(out["ui"]["images"]) == 4  # trimap overlay and cut-out, for each image
    assert [v for kind, v in comfy.progress if kind == "absolute"] == [1, 2]


def test_refine_with_a_mask_a_matte_and_an_unknown_region(pack, comfy):  # noqa: F811
    image, disc = _photo()
    matte = torch.nn.functional.interpolate(disc.float()[None, None], size=(24, 32), mode="bilinear")[0]  # half size
    glass = torch.zeros(1, 48, 64)
    glass[:, 2:10, 2:20] = 1
    alpha, _, _, trimap, _ = call(pack, "GroundedInpaintRefineMask", image=image[None].expand(3, -1, -1, -1),
                                  mask=disc.float()[None], matte=matte, unknown_mask=glass, **_SETTINGS)
    assert alpha.shape == (3, 48, 64)  # one mask and one matte serve three images
    assert bool((trimap[:, 2:10, 2:20] == 0.5).all())
    band = trimap[0] == 0.5
    resized = torch.nn.functional.interpolate(matte[None], size=(48, 64), mode="bilinear", antialias=True)[0, 0]
    assert torch.allclose(alpha[0][band], resized.clamp(0, 1)[band], atol=1e-6)


def test_refine_errors_name_the_fix(pack, comfy):  # noqa: F811
    image, disc = _photo()
    with pytest.raises(ValueError, match="connect segments"):
        call(pack, "GroundedInpaintRefineMask", image=image[None], **_SETTINGS)
    with pytest.raises(ValueError, match="Load Matting Model"):
        call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None],
             **{**_SETTINGS, "method": "vitmatte"})
    bad = torch.rand(1, 48, 64)
    bad[0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None], matte=bad, **_SETTINGS)
    with pytest.raises(ValueError, match="image has 2.*mask has 3"):
        call(pack, "GroundedInpaintRefineMask", image=image[None].expand(2, -1, -1, -1), mask=disc.float()[None].expand(3, -1, -1),
             **_SETTINGS)
    with pytest.raises(ValueError, match="mask entry 1 is 10x8 but the images are 64x48"):
        call(pack, "GroundedInpaintRefineMask", image=image[None], mask=torch.ones(1, 8, 10), **_SETTINGS)


def test_band_zero_returns_the_mask(pack, comfy):  # noqa: F811
    image, disc = _photo()
    alpha, foreground, _, _, _ = call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None],
                                      **{**_SETTINGS, "band_inside": 0, "band_outside": 0})
    assert torch.equal(alpha[0], disc.float()) and torch.equal(foreground[0], image)


def test_load_matting_model_and_vitmatte_through_the_memory_manager(pack, comfy, models_dir):  # noqa: F811
    root, paths = models_dir
    comfy.folder_paths.add_model_folder_path("vitmatte", str(root / "vitmatte"))
    info = pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadMattingModel"].INPUT_TYPES()["required"]["model_name"][0]
    assert info[0] == paths["vitmatte"].name and "vitmatte-small-composition-1k  (download 103 MB)" in info
    (model,) = call(pack, "GroundedInpaintLoadMattingModel", model_name=paths["vitmatte"].name, device="auto", precision="auto")
    assert len(comfy.patchers) == 1 and model.display_name.startswith("ViTMatte")
    image, disc = _photo()
    alpha, _, _, trimap, _ = call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None],
                                  matting_model=model, **{**_SETTINGS, "method": "vitmatte"})
    assert [force for _, force in comfy.loads] == [True]  # moved to the device for the pass
    band = trimap[0] == 0.5
    assert torch.equal(alpha[0][~band], trimap[0][~band]) and float(alpha[0][band].std()) > 0
    comfy.interrupt_after = comfy.interrupt_checks + 3
    with pytest.raises(InterruptProcessingException):
        call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None], matting_model=model,
             **{**_SETTINGS, "method": "vitmatte"})
    assert pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadMattingModel"].VALIDATE_INPUTS("nonsense") != True  # noqa: E712


def test_cut_out_takes_the_clean_colours(pack, comfy):  # noqa: F811
    image, disc = _photo()
    alpha, foreground, _, _, _ = call(pack, "GroundedInpaintRefineMask", image=image[None], mask=disc.float()[None], **_SETTINGS)
    rgb, mask, rgba = call(pack, "GroundedInpaintCutOut", image=image[None], mask=alpha, crop=False, padding=0, foreground=foreground)
    assert torch.equal(rgb, foreground) and torch.equal(mask, alpha) and torch.equal(rgba[..., :3], foreground)
    with pytest.raises(ValueError, match="foreground is 32x24"):
        call(pack, "GroundedInpaintCutOut", image=image[None], mask=alpha, crop=False, padding=0, foreground=torch.rand(1, 24, 32, 3))
