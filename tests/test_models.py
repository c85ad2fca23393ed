"""Model resolution, loading and caching through the same code users run."""

import shutil

import pytest
import torch

from grounded_inpaint import models
from grounded_inpaint.errors import CheckpointError, ModelNotFoundError


def test_cache_loads_once(models_dir):
    root, paths = models_dir
    models.clear_cache()
    a = models.load_segmenter(paths["sam_meta"].name, root, download=False)
    b = models.load_segmenter(str(paths["sam_meta"]), None, download=False)  # same file by path
    c = models.load_segmenter(paths["sam_meta"].name, root, dtype="bf16", download=False)
    assert a is b and a is not c
    assert c.dtype == torch.bfloat16
    assert len(models.cache_info()) == 2
    models.clear_cache()
    assert models.load_segmenter(paths["sam_meta"].name, root, download=False) is not a


def test_cache_keeps_families_apart(models_dir):
    """A file asked for as a segmenter is never handed out as a detector, and the reverse."""
    root, paths = models_dir
    models.clear_cache()
    sam = models.load_segmenter(str(paths["sam_meta"]), None, download=False)
    with pytest.raises(CheckpointError):
        models.load_detector(str(paths["sam_meta"]), None, download=False)
    assert models.load_segmenter(str(paths["sam_meta"]), None, download=False) is sam
    assert [key[0] for key in models.cache_info()] == ["sam"]
    models.clear_cache()


def test_lists_local_then_known(models_dir):
    root, paths = models_dir
    sams = models.list_model_choices(root, "sam")
    in_sams = sorted(paths[k].name for k in ("sam_meta", "sam_hf", "sam_hq_meta", "sam_hq_hf"))
    in_sam2 = sorted(paths[k].name for k in ("sam2_file", "sam2_hf", "sam2_video_file", "sam2_video_hf") if k in paths)
    assert sams[:len(in_sams) + len(in_sam2)] == in_sams + in_sam2  # models/sams first, then models/sam2, each sorted
    assert "sam-vit-base" in sams and "sam_vit_h_4b8939.pth" in sams
    assert models.list_local_models(root, "grounding-dino") == sorted(
        paths[k].name for k in ("grounding_dino", "mm_grounding_dino", "grounding_dino_original")
    )


def test_hidden_partial_downloads_are_not_listed(tmp_path):
    (tmp_path / "sams").mkdir()
    (tmp_path / "sams" / ".sam_vit_b.pth.abc.part").write_bytes(b"x")
    assert models.list_local_models(tmp_path, "sam") == []


def test_corrupted_sam_checkpoint(tmp_path, models_dir):
    _, paths = models_dir
    bad = tmp_path / "sams" / "sam_broken.pth"
    bad.parent.mkdir()
    data = paths["sam_meta"].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="sam_broken.pth"):
        models.load_segmenter("sam_broken.pth", tmp_path, download=False)


def test_wrong_model_in_sam_folder(tmp_path):
    (tmp_path / "sams").mkdir()
    torch.save({"backbone.0.body.layers.0.weight": torch.zeros(2), "transformer.enc.weight": torch.zeros(2)},
               tmp_path / "sams" / "groundingdino_swint_ogc.pth")
    with pytest.raises(CheckpointError) as info:
        models.load_segmenter("groundingdino_swint_ogc.pth", tmp_path, download=False)
    assert "groundingdino_swint_ogc.pth" in str(info.value) and "GroundingDINO" in str(info.value)


def test_sam_state_dict_with_wrong_shapes(tmp_path, models_dir):
    _, paths = models_dir
    sd = torch.load(paths["sam_meta"], weights_only=True)
    key = next(k for k in sd if k.startswith("mask_decoder.iou_prediction_head"))
    sd[key] = torch.zeros(3, 3, 3)
    (tmp_path / "sams").mkdir()
    torch.save(sd, tmp_path / "sams" / "sam_odd.pth")
    with pytest.raises(CheckpointError, match="sam_odd.pth"):
        models.load_segmenter("sam_odd.pth", tmp_path, download=False)


def test_incomplete_detector_folder(tmp_path, models_dir):
    _, paths = models_dir
    target = tmp_path / "grounding-dino" / "gd-broken"
    shutil.copytree(paths["grounding_dino"], target)
    (target / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="gd-broken"):
        models.load_detector("gd-broken", tmp_path, download=False)


def test_a_detector_file_must_be_an_original_grounding_dino_checkpoint(tmp_path, models_dir):
    """Single files are read as original GroundingDINO checkpoints (see test_gdino_extra.py)."""
    _, paths = models_dir
    (tmp_path / "grounding-dino").mkdir()
    (tmp_path / "grounding-dino" / "x.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"x\.pth .*corrupted"):
        models.load_detector(str(tmp_path / "grounding-dino" / "x.pth"), download=False)
    shutil.copy(paths["sam_meta"], tmp_path / "grounding-dino" / "sam.pth")  # a copy: the cache is keyed by path
    with pytest.raises(CheckpointError, match=r"not an original GroundingDINO checkpoint.*Segment Anything"):
        models.load_detector(str(tmp_path / "grounding-dino" / "sam.pth"), download=False)


def test_unknown_precision():
    with pytest.raises(ValueError, match="fp16"):
        models.parse_dtype("fp8")


def test_empty_name(tmp_path):
    with pytest.raises(ModelNotFoundError, match="choose one of"):
        models.resolve_model("", "sam", tmp_path)


def test_sam3_on_a_transformers_without_it_says_what_to_upgrade(models_dir, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def import_without_sam3(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "transformers" and fromlist and "Sam3Model" in fromlist:
            raise ImportError("cannot import name 'Sam3Model' from 'transformers'")  # as transformers 4.x says
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", import_without_sam3)
    folder = tmp_path / "sam3" / "some-sam3"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "sam3"}')
    models.clear_cache()
    with pytest.raises(ImportError, match=r'pip install -U "transformers>=5"'):
        models.load_sam3(folder.name, tmp_path, download=False)
