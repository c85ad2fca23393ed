"""The inpaint command: detect → mask → diffusers inpainting → pixel-exact paste-back, offline.

Uses the tiny GroundingDINO/SAM of conftest and the tiny random-weight Stable Diffusion inpainting
pipeline of :mod:`grounded_inpaint.testing.tiny_diffusers` on a non-square 60x100 image.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from grounded_inpaint.cli import CliError
from grounded_inpaint.errors import CheckpointError, ModelNotFoundError
from grounded_inpaint.images import load_image, save_image
from grounded_inpaint.inpaint import (
    NothingDetectedError,
    add_inpaint_arguments,
    inpaint_image,
    load_inpaint_pipeline,
    resolve_inpaint_model,
    run_inpaint_command,
    working_size,
)

HEIGHT, WIDTH = 60, 100


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from grounded_inpaint.testing.tiny_diffusers import write_tiny_inpaint_pipeline

    return write_tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    """A smooth 60x100 colour gradient (random noise would hide what the inpainting changed)."""
    y = torch.linspace(0, 1, HEIGHT)[:, None].expand(HEIGHT, WIDTH)
    x = torch.linspace(0, 1, WIDTH)[None, :].expand(HEIGHT, WIDTH)
    picture = torch.stack([x, y, 1 - 0.5 * (x + y)], dim=-1)
    return save_image(picture, tmp_path_factory.mktemp("img") / "product.png")


def _parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_inpaint_arguments(parser.add_subparsers(dest="command"))
    return parser.parse_args(["-q", "inpaint", *argv])


def _argv(image_path, out, models_dir, sd_folder, *extra):
    root, paths = models_dir
    return [str(image_path), "--detect", "shoes", "--prompt", "on a marble podium, studio light", "--out", str(out),
            "--models", str(root), "--detector", paths["grounding_dino"].name, "--segmenter", paths["sam_meta"].name,
            "--no-download", "--inpaint-model", str(sd_folder), "--steps", "2", "--size", "64", *extra]


def _run(*argv):
    return run_inpaint_command(_parse(list(argv)))


def _png(path):
    return np.asarray(Image.open(path)).astype(np.int16)


@pytest.fixture(scope="module")
def smallest(image_path, detector, meta_predictor):
    """``(index, mask)`` of the smallest instance the tiny models find for "shoes" (CLI defaults).

    The tiny SAM's random masks often cover most of the image; the smallest one leaves room to
    repaint around it.
    """
    from grounded_inpaint.segment import segment

    image = load_image(image_path)
    found = detector.detect([image], "shoes", 0.30, 0.25, None, 0.5)[0]
    segments = segment(meta_predictor, [image], [found])[0]
    areas = segments.masks.flatten(1).sum(1)
    index = int(areas.argmin())
    mask = segments.masks[index].numpy()
    assert 0 < mask.sum() < 0.5 * mask.size
    return index, mask


# --------------------------------------------------------------------------------------------
# Sizing and the pure function (a fake pipeline: no diffusers model needed)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [((60, 100), (304, 512)), ((100, 60), (512, 304)), ((3000, 4096), (376, 512)), ((8, 8), (512, 512)),
     ((1, 1), (512, 512)), ((1, 5000), (8, 512)), ((512, 512), (512, 512))],
)
def test_working_size_keeps_aspect_ratio_in_multiples_of_8(size, expected):
    height, width = size
    work = working_size(height, width, long_side=512, multiple=8)
    assert work == expected
    assert work[0] % 8 == 0 and work[1] % 8 == 0 and max(work) == 512
    if min(work) > 8:  # not clamped to the minimum: the aspect ratio is kept to within half a step
        ideal = 512 * min(size) / max(size)
        assert abs(min(work) - ideal) <= 4


def test_working_size_rounds_odd_sizes_and_other_multiples():
    assert working_size(60, 100, long_side=64) == (40, 64)
    assert working_size(60, 100, long_side=500) == (304, 504)  # 500 is not a multiple of 8: rounded up
    assert working_size(300, 1000, long_side=512, multiple=64) == (128, 512)
    with pytest.raises(ValueError, match="height must be an integer >= 1; got 0"):
        working_size(0, 10)
    with pytest.raises(ValueError, match="long_side"):
        working_size(10, 10, long_side=4, multiple=8)


class FakePipe:
    """Stands in for StableDiffusionInpaintPipeline: records its arguments, paints one colour."""

    def __init__(self, vae_scale_factor=8, colour=(1.0, 0.0, 1.0)):
        self.vae_scale_factor = vae_scale_factor
        self.colour = colour
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        h, w = kwargs["height"], kwargs["width"]
        images = np.broadcast_to(np.asarray(self.colour, dtype=np.float32), (1, h, w, 3)).copy()
        return argparse.Namespace(images=images, nsfw_content_detected=None)


def test_inpaint_image_sizes_and_pastes_back_exactly():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(HEIGHT, WIDTH, 3, generator=g)
    mask = torch.zeros(HEIGHT, WIDTH)
    mask[10:50, 20:90] = 1.0
    mask[10:50, 18:20] = 0.5  # a soft edge blends
    keep = torch.zeros(HEIGHT, WIDTH)
    keep[20:30, 40:60] = 1.0  # the product, inside the repaint area
    pipe = FakePipe(vae_scale_factor=16)
    out = inpaint_image(pipe, image, mask, "a podium", steps=3, guidance=5.0, strength=1.0, seed=7, size=96, keep_mask=keep)

    call = pipe.calls[0]
    assert (call["height"], call["width"]) == (64, 96)  # aspect 0.6, multiples of lcm(8, 16) = 16
    assert call["image"].size == (96, 64) and call["mask_image"].size == (96, 64)
    assert call["num_inference_steps"] == 3 and call["guidance_scale"] == 5.0 and call["prompt"] == "a podium"
    assert call["generator"].initial_seed() == 7
    assert out.shape == (HEIGHT, WIDTH, 3)
    outside = mask == 0
    assert torch.equal(out[outside], image[outside])  # untouched area: pixel-exact
    assert torch.equal(out[keep > 0], image[keep > 0])  # the kept product: pixel-exact
    painted = (mask == 1) & (keep == 0)
    assert torch.allclose(out[painted], torch.tensor([1.0, 0.0, 1.0]).expand_as(out[painted]), atol=1e-5)
    soft = out[10:50, 18:20]
    assert torch.allclose(soft, 0.5 * image[10:50, 18:20] + 0.5 * torch.tensor([1.0, 0.0, 1.0]), atol=1e-5)


def test_inpaint_image_with_empty_mask_does_not_run_the_pipeline():
    image = torch.rand(HEIGHT, WIDTH, 3)
    pipe = FakePipe()
    out = inpaint_image(pipe, image, torch.zeros(HEIGHT, WIDTH), "x", seed=1, size=64)
    assert torch.equal(out, image) and pipe.calls == []


@pytest.mark.parametrize(
    "settings, match",
    [(dict(steps=0), "steps"), (dict(strength=0.0), "strength"), (dict(steps=4, strength=0.2), "steps x strength"),
     (dict(size=32), "size"), (dict(guidance=-1.0), "guidance")],
)
def test_inpaint_image_rejects_bad_settings(settings, match):
    with pytest.raises(ValueError, match=match):
        inpaint_image(FakePipe(), torch.rand(8, 8, 3), torch.ones(8, 8), "x", **settings)


# --------------------------------------------------------------------------------------------
# The tiny pipeline and model lookup
# --------------------------------------------------------------------------------------------


def test_tiny_pipeline_loads_offline_by_path_and_by_name(sd_folder, tmp_path):
    pipe = load_inpaint_pipeline(sd_folder, local_files_only=True)
    assert pipe.unet.config.in_channels == 9 and pipe.vae_scale_factor == 8 and pipe.safety_checker is None
    vocab = pipe.tokenizer.get_vocab()
    ids = pipe.tokenizer("Shoes on a marble podium, café!")["input_ids"]
    assert ids[0] == vocab["<|startoftext|>"] and ids[1] == vocab["shoes</w>"] and ids[-1] == vocab["<|endoftext|>"]
    assert (sd_folder / "tokenizer" / "vocab.json").is_file() and (sd_folder / "tokenizer" / "merges.txt").is_file()

    models = tmp_path / "models"
    (models / "diffusers").mkdir(parents=True)
    (models / "diffusers" / "my-inpaint").symlink_to(sd_folder, target_is_directory=True)
    assert resolve_inpaint_model("my-inpaint", models) == ("folder", str(models / "diffusers" / "my-inpaint"))
    assert resolve_inpaint_model("someone/some-model", models) == ("hub", "someone/some-model")


def test_missing_hub_model_offline_names_it_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        load_inpaint_pipeline("nobody/missing-inpainting", models_dir=tmp_path / "models")
    text = str(info.value)
    assert "nobody/missing-inpainting" in text and "HF_HUB_OFFLINE" in text
    assert "https://huggingface.co/nobody/missing-inpainting" in text
    assert str(tmp_path / "models" / "diffusers" / "missing-inpainting") in text
    with pytest.raises(ModelNotFoundError, match="not-a-model.*not an existing file"):
        resolve_inpaint_model("not-a-model", tmp_path)


def test_pickled_single_file_is_refused(tmp_path):
    ckpt = tmp_path / "sd-inpainting.ckpt"
    ckpt.write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match=r"sd-inpainting\.ckpt.*only \.safetensors"):
        load_inpaint_pipeline(ckpt)


# --------------------------------------------------------------------------------------------
# End to end through the command
# --------------------------------------------------------------------------------------------


def test_keep_pastes_the_product_back_pixel_exact(image_path, models_dir, sd_folder, smallest, tmp_path):
    index, objects = smallest
    out = tmp_path / "keep"
    assert _run(*_argv(image_path, out, models_dir, sd_folder, "--keep", "--select", str(index), "--grow", "2",
                       "--feather", "3", "--seed", "11")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "mask.png", "overlay.png", "result.png"]
    original, result, mask = _png(image_path), _png(out / "result.png"), _png(out / "mask.png")
    assert result.shape == (HEIGHT, WIDTH, 3) and mask.shape == (HEIGHT, WIDTH)

    assert (result[objects] == original[objects]).all()  # the product is never altered
    assert (result[mask == 0] == original[mask == 0]).all()  # nor the grown margin around it
    # the feather (3 px) reaches past the grow (2 px) into the object's edge, yet the object stays exact
    assert (mask[objects] > 0).any() and (mask[objects] < 128).all()
    assert (mask == 255).mean() > 0.15  # the rest is repainted...
    assert np.abs(result - original)[mask == 255].mean() > 10  # ...and it did change
    assert ((mask > 0) & (mask < 255)).any()  # feathered edge

    record = json.loads((out / "detections.json").read_text())
    assert record["inpaint"]["mode"] == "keep" and record["inpaint"]["seed"] == 11
    assert record["inpaint"]["working_size"] == [40, 64]  # 60x100 at long side 64, multiples of 8
    assert record["settings"]["invert"] is True and record["selected"] == [index]


def test_replace_changes_only_the_masked_area(image_path, models_dir, sd_folder, smallest, tmp_path):
    index, objects = smallest
    out = tmp_path / "replace"
    assert _run(*_argv(image_path, out, models_dir, sd_folder, "--replace", "--select", str(index), "--grow", "3",
                       "--feather", "1", "--seed", "3")) == 0
    original, result, mask = _png(image_path), _png(out / "result.png"), _png(out / "mask.png")
    assert result.shape == original.shape
    assert (mask == 0).mean() > 0.3
    assert (result[mask == 0] == original[mask == 0]).all()  # outside the (grown, feathered) mask: exact
    assert (mask[objects] == 255).all()  # the object is inside the repaint mask, grown around it
    assert (mask == 255).sum() > objects.sum()
    assert np.abs(result - original)[objects].mean() > 10  # and it was repainted
    assert json.loads((out / "detections.json").read_text())["inpaint"]["mode"] == "replace"


def test_seed_makes_results_repeatable(image_path, models_dir, sd_folder, tmp_path):
    args = ("--replace", "--top-k", "2")
    assert _run(*_argv(image_path, tmp_path / "a", models_dir, sd_folder, *args)) == 0  # random seed
    seed = json.loads((tmp_path / "a" / "detections.json").read_text())["inpaint"]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert _run(*_argv(image_path, tmp_path / "b", models_dir, sd_folder, *args, "--seed", str(seed))) == 0
    assert _run(*_argv(image_path, tmp_path / "c", models_dir, sd_folder, *args, "--seed", str(seed + 1))) == 0
    a, b, c = (_png(tmp_path / name / "result.png") for name in "abc")
    same_seed = np.abs(a.astype(np.int16) - b.astype(np.int16))
    other_seed = np.abs(a.astype(np.int16) - c.astype(np.int16))
    assert same_seed.max() <= 1  # the same noise: at most one 8-bit level of float rounding apart
    assert other_seed.mean() > 10 * max(same_seed.mean(), 1e-3)  # another seed: another picture


@pytest.mark.parametrize("mode", ["--keep", "--replace"])
def test_nothing_detected_stops_before_loading_and_writes_nothing(mode, image_path, models_dir, sd_folder, tmp_path,
                                                                   monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("the inpainting model was loaded although nothing was detected")

    monkeypatch.setattr("grounded_inpaint.inpaint.load_inpaint_pipeline", must_not_load)
    out = tmp_path / "none"
    with pytest.raises(NothingDetectedError, match=r"nothing matching 'shoes'.*--box-threshold.*Nothing was written"):
        _run(*_argv(image_path, out, models_dir, sd_folder, mode, "--box-threshold", "0.99"))
    assert not out.exists()


def test_nothing_selected_says_which_filter(image_path, models_dir, sd_folder, tmp_path):
    with pytest.raises(NothingDetectedError, match="none passed --select/--top-k/--labels"):
        _run(*_argv(image_path, tmp_path / "o", models_dir, sd_folder, "--labels", "handbag"))
    assert not (tmp_path / "o").exists()


def test_empty_object_masks_count_as_nothing_found(image_path, models_dir, sd_folder, smallest, tmp_path):
    index, objects = smallest
    with pytest.raises(NothingDetectedError, match="empty masks after --threshold"):
        _run(*_argv(image_path, tmp_path / "o", models_dir, sd_folder, "--select", str(index),
                    "--min-area", str(int(objects.sum()) + 1)))
    assert not (tmp_path / "o").exists()


def test_missing_inpainting_model_offline_fails_before_detection(image_path, models_dir, sd_folder, tmp_path,
                                                                  monkeypatch):
    def must_not_detect(*args, **kwargs):
        raise AssertionError("detection ran although the inpainting model is missing")

    monkeypatch.setattr("grounded_inpaint.inpaint._find_objects", must_not_detect)
    argv = _argv(image_path, tmp_path / "o", models_dir, sd_folder)
    argv[argv.index("--inpaint-model") + 1] = "nobody/missing-inpainting"
    with pytest.raises(ModelNotFoundError, match=r"nobody/missing-inpainting.*--no-download.*diffusers"):
        _run(*argv)
    argv[argv.index("--inpaint-model") + 1] = str(tmp_path / "no-such-folder")
    with pytest.raises(ModelNotFoundError, match="no-such-folder"):
        _run(*argv)
    assert not (tmp_path / "o").exists()


def test_missing_diffusers_package_says_pip_install(monkeypatch, image_path, models_dir, sd_folder, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    assert _run(*_argv(image_path, tmp_path / "o", models_dir, sd_folder)) == 1
    assert "pip install diffusers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_options_are_checked_before_anything_loads(image_path, models_dir, sd_folder, tmp_path, capsys):
    defaults = _parse([str(image_path), "--detect", "x", "--prompt", "y", "--out", str(tmp_path)])
    assert (defaults.mode, defaults.steps, defaults.guidance, defaults.strength, defaults.size, defaults.seed) == (
        "keep", 30, 7.5, 1.0, 512, None)
    for option, value, message in (("--steps", "0", "1..10000"), ("--size", "16", "64..4096"),
                                   ("--strength", "nan", "> 0 and <= 1"), ("--guidance", "inf", "0..100")):
        with pytest.raises(SystemExit) as stop:  # argparse: exit code 2, the option and its range named
            _parse([str(image_path), "--detect", "x", "--prompt", "y", "--out", str(tmp_path), option, value])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}: must be" in err and message in err
    with pytest.raises(CliError, match="steps x strength"):
        _run(*_argv(image_path, tmp_path / "o", models_dir, sd_folder, "--steps", "2", "--strength", "0.2"))
    with pytest.raises(SystemExit):
        _parse([str(image_path), "--detect", "x", "--prompt", "y", "--out", str(tmp_path), "--keep", "--replace"])


def test_cli_main_runs_the_inpaint_subcommand(image_path, models_dir, sd_folder, tmp_path):
    from grounded_inpaint import cli

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "inpaint" in commands.choices
    assert cli.main(["-q", "inpaint", *_argv(image_path, tmp_path / "ok", models_dir, sd_folder, "--seed", "1")]) == 0
    assert (tmp_path / "ok" / "result.png").is_file()
    assert cli.main(["-q", "inpaint", *_argv(image_path, tmp_path / "no", models_dir, sd_folder, "--box-threshold", "0.99")]) == 1
    assert not (tmp_path / "no").exists()


def test_cancel_inside_the_diffusion_steps(sd_folder):
    """``interrupt`` is checked between the UNet's layers and after every step: it stops mid-run."""
    pipe = load_inpaint_pipeline(sd_folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image, mask = torch.rand(64, 64, 3), torch.ones(64, 64)
    calls = []
    inpaint_image(pipe, image, mask, "a cup", steps=3, size=64, seed=1, interrupt=lambda: calls.append(1))
    per_run = len(calls)
    assert per_run > 3 * 10  # many checks per denoising step, not one per image

    class Cancelled(Exception):
        pass

    seen = []

    def cancel_half_way():
        seen.append(1)
        if len(seen) >= per_run // 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        inpaint_image(pipe, image, mask, "a cup", steps=3, size=64, seed=1, interrupt=cancel_half_way)
    assert len(seen) == per_run // 2
    out = inpaint_image(pipe, image, mask, "a cup", steps=3, size=64, seed=1)  # and the next run works
    assert out.shape == (64, 64, 3)
