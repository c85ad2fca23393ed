"""The command line: outputs per image, batches with empty results, and one-paragraph errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tolerance import assert_masks_agree
from PIL import Image

from grounded_inpaint.cli import main
from grounded_inpaint.images import save_image


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for name, img in (("black", torch.zeros(48, 80, 3)), ("gray", torch.full((48, 80, 3), 0.5)), ("noise", torch.rand(40, 56, 3, generator=g))):
        paths.append(save_image(img, folder / f"{name}.png"))
    return paths


def _model_args(models_dir):
    root, paths = models_dir
    return ["--models", str(root), "--detector", paths["grounding_dino"].name, "--segmenter", paths["sam_meta"].name, "--no-download"]


def _best_score(detector, path):
    from grounded_inpaint.images import load_image

    return float(detector.detect(load_image(path), "red shoes", box_threshold=0.0)[0].scores.max())


def test_batch_with_one_image_without_detection(images, models_dir, detector, tmp_path):
    found, empty = images[0], images[1]
    s_found, s_empty = _best_score(detector, found), _best_score(detector, empty)
    assert s_found != s_empty
    if s_found < s_empty:
        found, empty = empty, found
    threshold = (s_found + s_empty) / 2
    out = tmp_path / "out"
    rc = main(["-q", "mask", str(found), str(empty), "--prompt", "Red shoes", "--out", str(out),
               "--box-threshold", f"{threshold:.6f}", "--invert", "--grow", "1", "--feather", "1", *_model_args(models_dir)])
    assert rc == 0
    for path in (found, empty):
        folder = out / path.stem
        assert sorted(p.name for p in folder.iterdir()) == ["cutout.png", "detections.json", "mask.png", "overlay.png"]
        record = json.loads((folder / "detections.json").read_text())
        mask = np.asarray(Image.open(folder / "mask.png"))
        cut = np.asarray(Image.open(folder / "cutout.png"))
        assert mask.shape == (48, 80) and cut.shape == (48, 80, 4)
        assert record["image_size"] == [48, 80] and record["prompt"] == "Red shoes"
        if path == empty:
            assert record["instances"] == []
            assert (mask == 255).all()  # inverted empty selection: repaint everything
            assert (cut[..., 3] == 0).all()  # nothing cut out
        else:
            assert len(record["instances"]) > 0
            assert all(i["score"] > threshold for i in record["instances"])
            assert {"label", "score", "quality", "box", "area"} <= set(record["instances"][0])
            # the cut-out's alpha is the objects; the inverted mask is white elsewhere
            assert cut[..., 3].max() > 0 and mask.min() < 255


def test_outputs_match_the_library(images, models_dir, detector, meta_predictor, tmp_path):
    from grounded_inpaint.images import load_image
    from grounded_inpaint.masks import make_inpaint_mask
    from grounded_inpaint.segment import segment

    out = tmp_path / "o"
    assert main(["-q", "mask", str(images[2]), "--prompt", "cat", "--out", str(out), "--max-detections", "2", *_model_args(models_dir)]) == 0
    image = load_image(images[2])
    dets = detector.detect(image, "cat", max_detections=2)
    expected = make_inpaint_mask(segment(meta_predictor, [image], dets)[0], image_size=(40, 56))
    written = torch.from_numpy(np.asarray(Image.open(out / "noise" / "mask.png")).copy()).float() / 255
    assert_masks_agree(written > 0.5, expected > 0.5)  # the CLI's run against the library's, in one process
    assert set(written.unique().tolist()) <= {0.0, 1.0}


def _run(*args, env_extra=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "grounded_inpaint", *args], capture_output=True, text=True, env=env, timeout=300)


def test_offline_missing_models_one_paragraph(images, tmp_path):
    proc = _run("mask", str(images[0]), "--prompt", "shoes", "--out", str(tmp_path / "o"), "--models", str(tmp_path / "models"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "grounding-dino-tiny" in proc.stderr and str(tmp_path / "models" / "grounding-dino") in proc.stderr
    assert "huggingface.co/IDEA-Research/grounding-dino-tiny" in proc.stderr


def test_bad_inputs_exit_cleanly(images, models_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image here")
    proc = _run("mask", str(bad), "--prompt", "shoes", "--out", str(tmp_path / "o"), *_model_args(models_dir))
    assert proc.returncode == 1 and "bad.png" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("mask", str(tmp_path / "missing.png"), "--prompt", "shoes", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "missing.png" in proc.stderr
    proc = _run("mask", str(images[0]), "--prompt", " . , ", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "names no object" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("mask", str(images[0]), "--prompt", "shoes", "--out", str(tmp_path / "o"), "--box-threshold", "3")
    assert proc.returncode == 2 and "argument --box-threshold: must be a number in 0..1; got 3.0" in proc.stderr
    proc = _run("mask", str(images[0]), "--prompt", "shoes", "--out", str(tmp_path / "o"), "--select", "a-b")
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    proc = _run("mask", str(images[0]), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "--prompt" in proc.stderr


def test_models_listing(models_dir, capsys):
    root, paths = models_dir
    assert main(["models", "--models", str(root)]) == 0
    text = capsys.readouterr().out
    assert f"{paths['sam_meta'].name}  [present]" in text and "sam-vit-base" in text


def test_every_missing_model_is_named_at_once(images, tmp_path, capsys):
    code = main(["mask", str(images[0]), "--prompt", "shoes", "--out", str(tmp_path / "o"), "--models", str(tmp_path / "m"),
                 "--no-download"])
    err = capsys.readouterr().err
    assert code == 1 and "2 models are missing" in err
    assert "grounding-dino-tiny" in err and "sam-vit-base" in err  # the detector and the segmenter, in one run
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_quiet_and_verbose_work_after_the_command(images, models_dir, tmp_path, capsys):
    for flags in (["-q", "mask"], ["mask", "-q"]):
        out = tmp_path / "_".join(flags)
        assert main([*flags, str(images[0]), "--prompt", "cat", "--out", str(out), *_model_args(models_dir)]) == 0
        assert "wrote" not in capsys.readouterr().out  # quiet: no summary line
    proc = _run("mask", "-v", str(images[0]), "--prompt", "cat", "--out", str(tmp_path / "v"), *_model_args(models_dir))
    assert proc.returncode == 0 and "DEBUG" in proc.stderr


def test_detections_json_records_the_size_order_and_every_setting(images, models_dir, tmp_path):
    out = tmp_path / "o"
    assert main(["-q", "mask", str(images[2]), "--prompt", "cat", "--out", str(out), "--top-k", "1", "--grow", "2",
                 *_model_args(models_dir)]) == 0
    record = json.loads((out / "noise" / "detections.json").read_text())
    assert record["image_size_order"] == "height, width"
    assert record["image_size"] == [record["image_height"], record["image_width"]] == [40, 56]
    settings = record["settings"]
    for option in ("detector", "segmenter", "box_threshold", "text_threshold", "max_detections", "nms_iou", "multimask",
                   "select", "top_k", "labels", "min_score", "invert", "grow", "fill_holes", "min_area", "feather",
                   "threshold", "opacity", "device_used", "precision_used", "detector_path", "segmenter_path"):
        assert option in settings, option
    assert settings["top_k"] == 1 and settings["grow"] == 2
    assert len(record["selected"]) == 1 and record["overlay_shows"] == "selected"
    assert "torch" in record["versions"] and "transformers" in record["versions"]


def test_an_output_folder_that_cannot_be_made_is_one_line(images, models_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run("mask", str(images[0]), "--prompt", "cat", "--out", str(blocker / "sub"), *_model_args(models_dir))
    assert proc.returncode == 2 and "cannot create the output folder" in proc.stderr and "Traceback" not in proc.stderr


def test_without_torch_one_line():
    # a Python where torch cannot be found: importlib's find_spec answers None for it
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
                           "import importlib.util as u; u.find_spec = (lambda f: (lambda n, *a: None if n == 'torch' else f(n, *a)))(u.find_spec); "
                           "from grounded_inpaint.cli import main; raise SystemExit(main(['mask', 'x.png', '--prompt', 'x', '--out', 'o']))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "PyTorch is not installed" in proc.stderr, proc.stderr
