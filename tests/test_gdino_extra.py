"""MM-GroundingDINO folders and original GroundingDINO checkpoints: loading, exact conversion, errors, nodes."""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import shutil

import pytest
import torch

from grounded_inpaint import gdino_convert, models
from grounded_inpaint.checkpoints import load_state_dict
from grounded_inpaint.errors import CheckpointError, ModelNotFoundError
from grounded_inpaint.registry import find_known, known_models
from grounded_inpaint.testing import tiny_gdino_extra as extra
from grounded_inpaint.testing import TINY_IMAGE_SIZE
from grounded_inpaint.testing.tiny_gdino import write_bert_tokenizer
from test_nodes import call, comfy, pack  # noqa: F401 - fixtures of the node tests
from tolerance import assert_close, assert_same_weights

PROMPT = "red shoes, cat"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A folder holding only the tiny BERT tokenizer files (the stand-in for bert-base-uncased/)."""
    folder = tmp_path_factory.mktemp("tok") / "bert-base-uncased"
    folder.mkdir()
    write_bert_tokenizer(folder, max_length=64)
    return folder


def _raw(model: torch.nn.Module, seed: int = 0):
    """Raw outputs of ``model`` on a fixed 64 px image and prompt."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=generator)
    ids = torch.tensor([[101, 1012, 102, 1012, 102]])
    with torch.inference_mode():
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))
    return out.logits, out.pred_boxes


# ----------------------------------------------------------------------------- MM-GroundingDINO


def test_mm_grounding_dino_through_the_loader(models_dir):
    from transformers import MMGroundingDinoForObjectDetection

    root, paths = models_dir
    detector = models.load_detector(paths["mm_grounding_dino"].name, root, download=False)
    assert isinstance(detector.model, MMGroundingDinoForObjectDetection)
    reference = extra.build_tiny_mm_grounding_dino(0)
    assert_same_weights(detector.model.state_dict(), reference.state_dict())  # the folder holds exactly the built model
    for mine, theirs in zip(_raw(detector.model), _raw(reference)):
        assert_close(mine, theirs)  # same weights; the kernels may round tensors read from a file differently
    dets = detector.detect(torch.rand(2, 40, 56, 3), PROMPT, box_threshold=0.3)
    assert len(dets) == 2 and all(len(d) > 0 for d in dets)
    assert all(d.image_size == (40, 56) for d in dets)
    assert detector.detect(torch.rand(1, 40, 56, 3), PROMPT, box_threshold=0.99)[0].boxes.shape == (0, 4)


# ----------------------------------------------------------------------------- original checkpoints


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("swin-t", dict(swin_embed_dim=8, swin_depths=(1, 1, 1, 1), swin_num_heads=(1, 1, 1, 1), swin_window_size=4)),
        ("swin-b", dict(swin_embed_dim=10, swin_depths=(1, 1, 2, 1), swin_num_heads=(1, 2, 2, 4), swin_window_size=2)),
    ],
)
def test_original_round_trip_is_exact(tmp_path, tokenizer_dir, variant, expected):
    """transformers model → original layout on disk → conversion → the same weights and outputs."""
    path = extra.write_tiny_original_grounding_dino(tmp_path / f"{variant}.pth", variant=variant)
    state_dict = load_state_dict(path)
    assert any(k.endswith(".attn.qkv.weight") for k in state_dict)  # really the original layout
    assert any(k.endswith("in_proj_weight") for k in state_dict)
    arch = gdino_convert.infer_original_arch(state_dict, str(path))
    for field, value in expected.items():
        assert getattr(arch, field) == value, field
    assert (arch.d_model, arch.encoder_layers, arch.decoder_layers, arch.num_queries, arch.num_heads) == (64, 1, 2, 10, 2)
    assert (arch.encoder_n_points, arch.decoder_n_points, arch.num_feature_levels, arch.out_indices) == (1, 1, 4, (2, 3, 4))
    assert arch.decoder_bbox_embed_share

    detector = gdino_convert.load_original_grounding_dino(path, tokenizer_folder=tokenizer_dir)
    source = extra.build_tiny_original_source(0, variant)
    mine, theirs = detector.model.state_dict(), source.state_dict()
    assert set(mine) == set(theirs)
    # the Swin model's own final norm (transformers 5 names it .swin.layernorm.): never read by the backbone
    unused = {k for k in mine if re.search(r"backbone\.conv_encoder\.model\.(swin\.)?layernorm\.", k)}
    assert len(unused) in (0, 2)
    differing = [k for k in mine if k not in unused and not torch.equal(mine[k], theirs[k])]
    assert differing == []
    for a, b in zip(_raw(detector.model), _raw(source)):
        assert_close(a, b)
    for a, b in zip(_raw(detector.model, seed=3), _raw(source, seed=3)):
        assert_close(a, b)


def test_hub_layout_round_trip_of_the_key_mapping(models_dir):
    """original → hub → original gives back every key and tensor of the original layout."""
    _, paths = models_dir
    original = load_state_dict(paths["grounding_dino_original"])
    hub = gdino_convert.original_to_hub_state_dict(original)
    again = gdino_convert.hub_to_original_state_dict(hub, decoder_layers=2)
    dropped = {k for k in original if "pooler" in k or k.endswith(("position_ids", "relative_position_index"))}
    assert set(again) == set(original) - dropped
    assert all(torch.equal(again[k], original[k]) for k in again)


@pytest.mark.parametrize("layout", ["wrapped+module", "bare", "namespace", "safetensors"])
def test_original_file_layouts(tmp_path, tokenizer_dir, layout):
    kwargs = {
        "wrapped+module": dict(wrap=True, module_prefix=True),
        "bare": dict(wrap=False, module_prefix=False),
        "namespace": dict(extra={"args": argparse.Namespace(backbone="swin_T_224_1k", nheads=8)}),
    }.get(layout, {})
    name = "model.safetensors" if layout == "safetensors" else "model.pth"
    path = extra.write_tiny_original_grounding_dino(tmp_path / name, **kwargs)
    detector = gdino_convert.load_original_grounding_dino(path, tokenizer_folder=tokenizer_dir)
    source = extra.build_tiny_original_source(0)
    unused = {k for k in source.state_dict() if re.search(r"backbone\.conv_encoder\.model\.(swin\.)?layernorm\.", k)}
    mine = {k: v for k, v in detector.model.state_dict().items() if k not in unused}
    assert_same_weights(mine, {k: v for k, v in source.state_dict().items() if k not in unused})
    for a, b in zip(_raw(detector.model), _raw(source)):
        assert_close(a, b)


def test_original_through_the_loader_uses_a_transformers_folder_tokenizer(models_dir):
    root, paths = models_dir
    detector = models.load_detector(paths["grounding_dino_original"].name, root, download=False)
    assert detector.source == str(paths["grounding_dino_original"])
    assert detector.shortest_edge == TINY_IMAGE_SIZE  # preprocessing of the folder the tokenizer came from
    assert len(detector.tokenizer) == detector.model.config.text_config.vocab_size
    dets = detector.detect(torch.rand(1, 48, 80, 3), PROMPT, box_threshold=0.3)
    assert len(dets[0]) > 0 and dets[0].image_size == (48, 80)
    assert models.load_detector(str(paths["grounding_dino_original"]), None, download=False) is detector  # cached


def test_default_preprocessing_without_a_processor_config(tmp_path, tokenizer_dir):
    path = extra.write_tiny_original_grounding_dino(tmp_path / "m.pth")
    detector = gdino_convert.load_original_grounding_dino(path, tokenizer_folder=tokenizer_dir)
    assert (detector.shortest_edge, detector.longest_edge) == (800, 1333)  # GroundingDINO's own resize rule
    assert detector.preprocess([torch.rand(24, 32, 3)])[0].shape == (1, 3, 800, 1066)


# ----------------------------------------------------------------------------- errors


def test_foreign_state_dicts_are_named(tmp_path, models_dir, tokenizer_dir):
    _, paths = models_dir
    with pytest.raises(CheckpointError, match=r"sam_vit_tiny_random\.pth.*Segment Anything"):
        gdino_convert.load_original_grounding_dino(paths["sam_meta"], tokenizer_folder=tokenizer_dir)

    good = load_state_dict(paths["grounding_dino_original"])
    missing = dict(good)
    del missing["transformer.decoder.layers.1.linear2.weight"]
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth.*no value.*decoder\.layers\.1\.fc2\.weight"):
        gdino_convert.load_original_grounding_dino(tmp_path / "missing.pth", tokenizer_folder=tokenizer_dir)

    unknown = dict(good, **{"transformer.label_enc.weight": torch.zeros(3, 4)})
    torch.save({"model": unknown}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match=r"unknown\.pth.*unknown role.*transformer\.label_enc\.weight"):
        gdino_convert.load_original_grounding_dino(tmp_path / "unknown.pth", tokenizer_folder=tokenizer_dir)

    resized = dict(good)
    resized["transformer.decoder.layers.0.linear1.bias"] = torch.zeros(7)
    torch.save({"model": resized}, tmp_path / "resized.pth")
    with pytest.raises(CheckpointError, match=r"resized\.pth"):
        gdino_convert.load_original_grounding_dino(tmp_path / "resized.pth", tokenizer_folder=tokenizer_dir)


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_with_code_is_refused(tmp_path, tokenizer_dir):
    path = tmp_path / "groundingdino_evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"model": {"x": _RunsCode()}}, handle)
    with pytest.raises(CheckpointError, match=r"groundingdino_evil\.pth was refused"):
        gdino_convert.load_original_grounding_dino(path, tokenizer_folder=tokenizer_dir)


def test_tokenizer_missing_offline_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = extra.write_tiny_original_grounding_dino(tmp_path / "grounding-dino" / "groundingdino_tiny.pth")
    target = tmp_path / "grounding-dino" / "bert-base-uncased"
    for download in (True, False):
        with pytest.raises(ModelNotFoundError) as info:
            gdino_convert.load_original_grounding_dino(path, download_tokenizer=download)
        message = str(info.value)
        assert str(target) in message and "vocab.txt" in message and "bert-base-uncased" in message
    assert not target.exists()  # nothing half-written


def test_tokenizer_is_downloaded_once_with_a_message(tmp_path, monkeypatch, caplog, tokenizer_dir):
    import grounded_inpaint.download as download

    calls = []

    def fake_download(repo_id, files, dest, **kwargs):
        calls.append((repo_id, files, dest))
        shutil.copytree(tokenizer_dir, dest)
        return dest

    monkeypatch.setattr(download, "download_hf_folder", fake_download)
    root = tmp_path / "models"
    path = extra.write_tiny_original_grounding_dino(root / "grounding-dino" / "groundingdino_tiny.pth")
    models.clear_cache()
    with caplog.at_level(logging.WARNING, logger="grounded_inpaint.gdino_convert"):
        models.load_detector(path.name, root, download=False, download_tokenizer=True)
    assert calls == [(gdino_convert.BERT_TOKENIZER_REPO, gdino_convert.BERT_TOKENIZER_FILES, root / "grounding-dino" / "bert-base-uncased")]
    assert "downloading bert-base-uncased's tokenizer" in caplog.text and "groundingdino_tiny.pth" in caplog.text
    models.clear_cache()
    models.load_detector(path.name, root, download=False, download_tokenizer=True)
    assert len(calls) == 1  # found beside the checkpoint the second time
    assert models.list_local_models(root, "grounding-dino") == ["groundingdino_tiny.pth"]  # the tokenizer is no model
    models.clear_cache()


def test_a_tokenizer_that_does_not_fit_is_refused(tmp_path):
    from transformers import BertTokenizer

    folder = tmp_path / "bert-base-uncased"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "."]) + "\n")
    BertTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))  # works on transformers 4 and 5
    path = extra.write_tiny_original_grounding_dino(tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"does not fit .*m\.pth"):
        gdino_convert.load_original_grounding_dino(path)


# ----------------------------------------------------------------------------- registry and nodes


def test_known_models_and_listing(models_dir):
    root, paths = models_dir
    local = models.list_local_models(root, "grounding-dino")
    assert {paths["mm_grounding_dino"].name, paths["grounding_dino_original"].name} <= set(local)
    names = [m.name for m in known_models("grounding-dino")]
    assert {"mm_grounding_dino_tiny_o365v1_goldg_v3det", "groundingdino_swint_ogc.pth", "groundingdino_swinb_cogcoor.pth"} <= set(names)
    assert find_known("openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det").arch == "mm-grounding-dino"
    assert find_known("groundingdino_swint_ogc.pth").url.startswith("https://huggingface.co/ShilongLiu/GroundingDINO/")


@pytest.mark.parametrize("key", ["mm_grounding_dino", "grounding_dino_original"])
def test_detect_node_runs_on_each_family(pack, comfy, models_dir, key):  # noqa: F811 - fixtures
    _, paths = models_dir
    assert paths[key].name in pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadGroundingDino"].INPUT_TYPES()["required"]["model_name"][0]
    (detector,) = call(pack, "GroundedInpaintLoadGroundingDino", model_name=paths[key].name, device="auto", precision="auto")
    images = torch.rand(2, 40, 56, 3)
    dets, preview, count = call(pack, "GroundedInpaintDetect", image=images, detector=detector, prompt="red shoes",
                                box_threshold=0.3, text_threshold=0.25, max_detections=2)
    assert len(dets) == 2 and preview.shape == (2, 40, 56, 3) and count == sum(len(d) for d in dets) > 0
