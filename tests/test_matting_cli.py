"""``mask --refine`` and ``inpaint --keep --refine`` on real files with the tiny models: the 16-bit
alpha, the RGBA cut-out with clean colours, the product pasted back exactly where it is surely the
product, and clear exits for bad matting options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from grounded_inpaint.cli import main as cli_main
from grounded_inpaint.images import save_image
from test_inpaint import _argv, _run, image_path, sd_folder, smallest  # noqa: F401 - fixtures

import torch


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(72), torch.arange(96), indexing="ij")
    disc = ((yy - 36) ** 2 + (xx - 48) ** 2) < 22**2
    picture = torch.where(disc[..., None], torch.tensor([0.9, 0.3, 0.1]), torch.tensor([0.1, 0.4, 0.9]))
    return save_image((picture + 0.1 * torch.rand(72, 96, 3, generator=g)).clamp(0, 1), tmp_path_factory.mktemp("p") / "photo.png")


def _mask_argv(photo, out, models_dir, *extra):
    root, paths = models_dir
    return ["-q", "mask", str(photo), "--prompt", "cup", "--out", str(out), "--models", str(root), "--detector",
            paths["grounding_dino"].name, "--segmenter", paths["sam_meta"].name, "--no-download", "--box-threshold", "0",
            "--max-detections", "1", *extra]


def test_mask_refine_writes_a_16_bit_alpha_and_a_clean_cutout(photo, models_dir, tmp_path):
    out = tmp_path / "out"
    assert cli_main(_mask_argv(photo, out, models_dir, "--refine", "guided")) == 0
    folder = out / "photo"
    assert sorted(p.name for p in folder.iterdir()) == ["alpha.png", "cutout.png", "detections.json", "mask.png", "overlay.png"]
    alpha = Image.open(folder / "alpha.png")
    assert alpha.mode == "I;16" and alpha.size == (96, 72)
    values = np.asarray(alpha).astype(np.float64) / 65535
    cut = np.asarray(Image.open(folder / "cutout.png"))
    assert cut.shape == (72, 96, 4)
    assert np.abs(cut[..., 3] / 255 - values).max() <= 0.5 / 255 + 1e-9  # the cut-out's alpha is the refined one
    assert (values > 0).any()
    settings = json.loads((folder / "detections.json").read_text())["settings"]
    assert settings["refine"] == "guided" and settings["band_inside"] is None and settings["no_decontaminate"] is False
    plain = tmp_path / "plain"
    assert cli_main(_mask_argv(photo, plain, models_dir)) == 0
    assert not (plain / "photo" / "alpha.png").exists()  # --refine none: as before


def test_mask_refine_with_a_matte_and_vitmatte(photo, models_dir, tmp_path):
    root, paths = models_dir
    matte = tmp_path / "matte.png"
    Image.fromarray(np.full((36, 48), 200, dtype=np.uint8)).save(matte)  # half size: resized
    out = tmp_path / "m"
    assert cli_main(_mask_argv(photo, out, models_dir, "--refine", "guided", "--matte", str(matte), "--band-outside", "3")) == 0
    values = np.asarray(Image.open(out / "photo" / "alpha.png")).astype(np.float64) / 65535
    assert np.isclose(values, 200 / 255, atol=1e-3).any()  # the matte's value inside the band
    out = tmp_path / "v"
    assert cli_main(_mask_argv(photo, out, models_dir, "--refine", "vitmatte", "--matting-model", paths["vitmatte"].name)) == 0
    assert (out / "photo" / "alpha.png").is_file()


def test_bad_matting_options_exit_cleanly(photo, models_dir, tmp_path, capsys):
    out = tmp_path / "bad"
    assert cli_main(_mask_argv(photo, out, models_dir, "--refine", "guided", "--matte", "a.png", "b.png")) == 2
    assert "--matte gives 2 file(s) for 1 image(s)" in capsys.readouterr().err
    assert cli_main(_mask_argv(photo, out, models_dir, "--matte", str(photo))) == 2
    assert "--matte needs --refine" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli_main(_mask_argv(photo, out, models_dir, "--refine", "magic"))
    assert stop.value.code == 2 and "invalid choice: 'magic'" in capsys.readouterr().err
    # a missing matting model is named together with a missing segmenter, before anything loads
    root, _ = models_dir
    argv = ["-q", "mask", str(photo), "--prompt", "cup", "--out", str(out), "--models", str(root), "--segmenter", "sam-vit-base",
            "--no-download", "--refine", "vitmatte"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "models are missing" in err and "vitmatte-small-composition-1k" in err and "sam-vit-base" in err
    assert not (out / "photo").exists()


def test_inpaint_keep_refine_pastes_the_soft_product_back(image_path, models_dir, sd_folder, smallest, tmp_path):  # noqa: F811
    index, _ = smallest
    out = tmp_path / "keep"
    assert _run(*_argv(image_path, out, models_dir, sd_folder, "--keep", "--select", str(index), "--seed", "3",
                       "--refine", "guided", "--band-inside", "1", "--band-outside", "2", "--no-sam-uncertainty")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "detections.json", "mask.png", "overlay.png", "result.png"]
    alpha = np.asarray(Image.open(out / "alpha.png")).astype(np.float64) / 65535
    original = np.asarray(Image.open(image_path)).astype(np.int16)
    result = np.asarray(Image.open(out / "result.png")).astype(np.int16)
    mask = np.asarray(Image.open(out / "mask.png"))
    sure = alpha >= 1.0
    assert sure.any() and (result[sure] == original[sure]).all()  # surely product: exactly the photo
    assert (mask[sure] == 0).all() and (mask[~sure] == 255).all()  # everything else was repainted
    record = json.loads((out / "detections.json").read_text())
    assert record["settings"]["refine"] == "guided" and record["settings"]["no_sam_uncertainty"] is True
