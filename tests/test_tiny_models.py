"""The tiny random-weight models load through the ordinary loaders and run.

``models_dir`` (tests/conftest.py) is a models folder written once per session by
``write_models_folder``.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import transformers
import torch
from PIL import Image

from grounded_inpaint.sam.meta_arch import build_meta_sam, infer_meta_sam_arch, load_meta_sam_state_dict
from grounded_inpaint.testing import tiny_models
from grounded_inpaint.testing.tiny_gdino import TINY_VOCAB_WORDS, build_tiny_grounding_dino, tiny_vocab, write_tiny_grounding_dino
from grounded_inpaint.testing.tiny_sam import TINY_SAM_ARCH, build_tiny_meta_sam, write_tiny_hf_sam, write_tiny_meta_sam

transformers = pytest.importorskip("transformers")


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.RandomState(seed).randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def paths(models_dir):
    return models_dir[1]


@pytest.fixture(scope="module")
def grounding_dino(paths):
    folder = paths["grounding_dino"]
    model, info = transformers.GroundingDinoForObjectDetection.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # no missing / unexpected / mismatched keys
    return model.eval(), transformers.GroundingDinoProcessor.from_pretrained(folder)


# ------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------


def test_models_folder_layout(models_dir):
    root, paths = models_dir
    assert paths == {
        "grounding_dino": root / "grounding-dino" / "grounding-dino-tiny-random",
        "sam_meta": root / "sams" / "sam_vit_tiny_random.pth",
        "sam_hf": root / "sams" / "sam-hf-tiny-random",
        "sam_hq_meta": root / "sams" / "sam_hq_vit_tiny_random.pth",
        "sam_hq_hf": root / "sams" / "sam-hq-hf-tiny-random",
        "sam2_file": root / "sam2" / "sam2.1_hiera_tiny_random.safetensors",
        "sam2_hf": root / "sam2" / "sam2.1-hf-tiny-random",
        **({"sam3": root / "sam3" / "sam3-tiny-random",
            "sam3_video": root / "sam3" / "sam3-video-tiny-random"} if hasattr(transformers, "Sam3Model") else {}),
        "mm_grounding_dino": root / "grounding-dino" / "mm-grounding-dino-tiny-random",
        "grounding_dino_original": root / "grounding-dino" / "groundingdino_tiny_random.pth",
        **({"sam2_video_file": root / "sam2" / "sam2.1_hiera_tiny_video_random.pt",
            "sam2_video_hf": root / "sam2" / "sam2.1-video-hf-tiny-random"} if hasattr(transformers, "Sam2VideoModel") else {}),
        "vitmatte": root / "vitmatte" / "vitmatte-tiny-random",
    }
    gd_files = {p.name for p in paths["grounding_dino"].iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "vocab.txt",
            "tokenizer_config.json", "tokenizer.json"} <= gd_files  # fmt: skip
    assert {p.name for p in paths["sam_hf"].iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert paths["sam_meta"].is_file() and paths["sam_meta"].stat().st_size < 1_000_000


def test_vocab_layout():
    vocab = tiny_vocab()
    fixed = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ",": 1010, ".": 1012, "?": 1029}
    assert {token: vocab.index(token) for token in fixed} == fixed
    assert set(TINY_VOCAB_WORDS) <= set(vocab) and len(set(vocab)) == len(vocab)
    assert all(vocab[i].startswith("[unused") for i in (*range(1, 100), *range(104, 999)))


# ------------------------------------------------------------------------------------------
# GroundingDINO
# ------------------------------------------------------------------------------------------


def test_grounding_dino_tokenizer_uses_tiny_vocab(grounding_dino):
    _, processor = grounding_dino
    vocab = tiny_vocab()
    ids = processor(text="red shoes. cat.")["input_ids"]
    ids = ids[0] if isinstance(ids[0], list) else ids
    assert ids == [101, vocab.index("red"), vocab.index("shoes"), 1012, vocab.index("cat"), 1012, 102]
    words = " ".join(w for w in TINY_VOCAB_WORDS if w.isalpha())
    all_ids = processor.tokenizer(words)["input_ids"]
    assert 100 not in all_ids  # no [UNK]
    assert processor.tokenizer.tokenize("Cats?") == ["cat", "##s", "?"]


def test_grounding_dino_vocab_txt_alone_gives_same_ids(paths, tmp_path):
    # Older hub folders have vocab.txt + tokenizer_config.json but no tokenizer.json.
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(paths["grounding_dino"] / name, tmp_path / name)
    tokenizer = transformers.BertTokenizer.from_pretrained(tmp_path)
    assert tokenizer("a red dress, a hat?")["input_ids"] == [
        101, *(tiny_vocab().index(t) for t in ["a", "red", "dress", ",", "a", "hat", "?"]), 102
    ]  # fmt: skip


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_grounding_dino_runs_and_detects(grounding_dino, size):
    model, processor = grounding_dino
    inputs = processor(images=_image(*size), text="red shoes. cat.", return_tensors="pt")
    assert max(inputs["pixel_values"].shape[-2:]) == 64
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.logits.shape == (1, 10, 32) and outputs.pred_boxes.shape == (1, 10, 4)
    scores = outputs.logits.sigmoid()[0, :, : inputs["input_ids"].shape[1]].max(-1).values
    assert scores.min() > 0.3 and scores.max() < 0.99  # the calibration documented in tiny_models

    def detect(threshold: float):
        return processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=threshold, text_threshold=0.25, target_sizes=[size]
        )[0]

    found = detect(0.3)
    assert len(found["scores"]) == 10 and found["boxes"].shape == (10, 4)
    widths = found["boxes"][:, 2] - found["boxes"][:, 0]
    assert (widths > 0.1 * size[1]).all() and (widths < size[1]).all()  # mid-sized boxes
    assert len(detect(0.99)["scores"]) == 0


def test_grounding_dino_is_deterministic():
    a, b, c = build_tiny_grounding_dino(0), build_tiny_grounding_dino(0), build_tiny_grounding_dino(1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_write_grounding_dino_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    write_tiny_grounding_dino(tmp_path / "gd", seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


# ------------------------------------------------------------------------------------------
# SAM
# ------------------------------------------------------------------------------------------


def test_meta_sam_file_loads_and_runs(paths):
    state_dict = torch.load(paths["sam_meta"], weights_only=True, map_location="cpu")
    arch = infer_meta_sam_arch(state_dict, str(paths["sam_meta"]))
    assert arch == TINY_SAM_ARCH
    sam = build_meta_sam(arch)
    load_meta_sam_state_dict(sam, state_dict, str(paths["sam_meta"]))
    with torch.no_grad():
        embeddings = sam.image_encoder(torch.randn(1, 3, 64, 64))
        sparse, dense = sam.prompt_encoder(points=None, boxes=torch.tensor([[4.0, 4.0, 40.0, 30.0]]), masks=None)
        masks, iou = sam.mask_decoder(
            image_embeddings=embeddings,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    assert embeddings.shape == (1, 16, 4, 4) and masks.shape == (1, 3, 16, 16) and iou.shape == (1, 3)
    assert torch.isfinite(masks).all()


def test_meta_sam_is_deterministic(tmp_path):
    a = torch.load(write_tiny_meta_sam(tmp_path / "a.pth", seed=3), weights_only=True)
    b = build_tiny_meta_sam(3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image_encoder.pos_embed"], build_tiny_meta_sam(4).state_dict()["image_encoder.pos_embed"])
    assert a["image_encoder.pos_embed"].abs().sum() > 0  # Meta's zero init was perturbed


def test_hf_sam_folder_matches_meta_file(paths):
    model, info = transformers.SamModel.from_pretrained(paths["sam_hf"], output_loading_info=True)
    assert not any(info.values()), info
    processor = transformers.SamProcessor.from_pretrained(paths["sam_hf"])
    inputs = processor(images=_image(48, 80), input_boxes=[[[8.0, 8.0, 40.0, 30.0]]], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    assert inputs["reshaped_input_sizes"].tolist() == [[38, 64]]
    boxes = inputs["input_boxes"].float()  # the processor returns float64, in the 64 px frame
    torch.testing.assert_close(boxes, torch.tensor([[[6.4, 8 * 38 / 48, 32.0, 30 * 38 / 48]]]))

    sam = build_meta_sam(TINY_SAM_ARCH)
    load_meta_sam_state_dict(sam, torch.load(paths["sam_meta"], weights_only=True), "tiny.pth")
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], input_boxes=boxes, multimask_output=False)
        embeddings = sam.image_encoder(inputs["pixel_values"])
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[0], masks=None)
        masks, iou = sam.mask_decoder(embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
    torch.testing.assert_close(out.pred_masks[0], masks, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], iou, atol=1e-4, rtol=0)
    full = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    assert full[0].shape == (1, 1, 48, 80)


def test_hf_sam_with_own_init(tmp_path):
    folder = write_tiny_hf_sam(tmp_path / "own", seed=0, from_meta=False)
    model = transformers.SamModel.from_pretrained(folder)
    converted = transformers.SamModel.from_pretrained(write_tiny_hf_sam(tmp_path / "conv", seed=0))
    key = "vision_encoder.layers.0.attn.qkv.weight"
    assert not torch.equal(model.state_dict()[key], converted.state_dict()[key])
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 64, 64), input_points=torch.tensor([[[[10.0, 20.0]]]]))
    assert out.pred_masks.shape == (1, 1, 3, 16, 16)


def test_main_writes_folder(tmp_path):
    assert tiny_models.main([str(tmp_path / "models"), "--seed", "2"]) == 0
    assert (tmp_path / "models" / "sams" / "sam_vit_tiny_random.pth").is_file()
    assert (tmp_path / "models" / "grounding-dino" / "grounding-dino-tiny-random" / "config.json").is_file()
