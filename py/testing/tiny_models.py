"""Tiny random-weight GroundingDINO and SAM models, written to disk in the layouts users have.

No weights can be downloaded in tests, so every model the package loads has a tiny stand-in here
with the same file layout as the real one:

* :func:`write_tiny_grounding_dino`: a transformers folder (``config.json``, ``model.safetensors``,
  ``preprocessor_config.json``, ``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``);
* :func:`write_tiny_meta_sam`: a Meta ``segment_anything`` ``.pth`` state dict;
* :func:`write_tiny_hf_sam`: a transformers ``SamModel`` folder, by default holding the converted
  weights of :func:`build_tiny_meta_sam` (same seed), so both formats compute the same masks;
* :func:`write_models_folder`: all three in a ComfyUI-style ``models`` folder.

Everything is deterministic given ``seed``, runs on the CPU and takes milliseconds (64 px inputs).
The global torch RNG is left untouched.

The tiny detector is calibrated (see :func:`build_tiny_grounding_dino`) so that on any image and
prompt every one of its 10 queries scores roughly 0.4–0.85: ``box_threshold=0.3`` always gives
detections and ``box_threshold=0.99`` never does. Its boxes are mid-sized squares and rectangles
around an anchor grid; they may reach past the image border, as real GroundingDINO boxes can.

Run ``python -m grounded_inpaint.testing.tiny_models DIR`` to write a models folder by hand.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ..sam.convert import hf_sam_config_from_meta, hf_sam_model_from_meta
from ..sam.meta_arch import MetaSamArch, build_meta_sam
from .tiny_sam3 import write_tiny_sam3
from .tiny_gdino_extra import write_tiny_mm_grounding_dino, write_tiny_original_grounding_dino

if TYPE_CHECKING:  # heavy imports happen only when a model is built
    from segment_anything.modeling import Sam
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, SamModel

__all__ = [
    "TINY_IMAGE_SIZE",
    "TINY_VOCAB_WORDS",
    "TINY_SAM_ARCH",
    "tiny_vocab",
    "tiny_grounding_dino_config",
    "build_tiny_grounding_dino",
    "write_tiny_grounding_dino",
    "build_tiny_meta_sam",
    "write_tiny_meta_sam",
    "build_tiny_hf_sam",
    "write_tiny_hf_sam",
    "write_models_folder",
    "main",
]

log = logging.getLogger(__name__)

#: Side in pixels of the images the tiny models are built for (both resize to it).
TINY_IMAGE_SIZE = 64

#: Words the tiny BERT tokenizer knows (lower case; the tokenizer lower-cases its input). The
#: vocabulary also holds ``##s`` so that plurals such as ``cats`` split into ``cat ##s``, and the
#: ASCII punctuation and digits ``!`` … ``?`` at BERT's ids 999–1029.
TINY_VOCAB_WORDS: tuple[str, ...] = (
    "a", "an", "the", "and", "of", "with", "on", "in",
    "red", "blue", "green", "black", "white",
    "shoes", "shoe", "dress", "cat", "dog", "person", "man", "woman", "car", "tree", "bag", "hat",
    "shirt", "chair", "table", "cup", "bottle", "ball", "box", "sky", "grass", "background",
    "object", "mannequin", "face", "hand",
    ",", ".", "?",
)  # fmt: skip

#: Token ids GroundingDINO's modelling code hard-codes (it splits phrases at ``[CLS]``, ``[SEP]``,
#: ``.`` and ``?``), so the tiny vocabulary puts these tokens exactly where BERT's has them.
_FIXED_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
_FIRST_PUNCTUATION_ID = 999  # BERT stores ASCII 33 ('!') .. 63 ('?') at ids 999 .. 1029.
_SUBWORDS = ("##s",)

#: Meta SAM architecture of the tiny SAM: 64 px input, 16 px patches (a 4x4 embedding), 16 channels.
TINY_SAM_ARCH = MetaSamArch(
    encoder_embed_dim=16,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=2,
    patch_size=16,
    img_size=TINY_IMAGE_SIZE,
    mlp_ratio=4.0,
    out_chans=16,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=32,
    decoder_num_heads=8,
    iou_head_depth=3,
    iou_head_hidden_dim=16,
    num_multimask_outputs=3,
)

# Detector calibration: class logit = (decoder query feature) . (text token feature). Both end in a
# LayerNorm; giving both LayerNorms the same bias direction (norm sqrt(_LOGIT_OFFSET)) and a small
# weight makes every logit _LOGIT_OFFSET plus a small query/token-dependent term.
_LOGIT_OFFSET = 0.5
_LAYER_NORM_GAIN = 0.2
#: Added to the width/height logits by each of the 2 decoder refinement steps (boxes grow from the
#: 0.05–0.4 anchors to about 0.15–0.7 of the image side).
_BOX_SIZE_LOGIT_STEP = 0.6

# Tiny SAM: Meta's init leaves positional tensors at 0 and LayerNorms at 1/0; perturbing every
# tensor makes each one matter, so a conversion mistake shows in the outputs.
_SAM_PERTURBATION = 0.1


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def tiny_vocab() -> list[str]:
    """The tiny BERT vocabulary, indexed by token id.

    ``[PAD]``=0, ``[unused0..98]``=1–99, ``[UNK]``=100, ``[CLS]``=101, ``[SEP]``=102,
    ``[MASK]``=103, more ``[unusedN]`` up to 998, ASCII ``!`` … ``?`` at 999–1029 (so ``,``=1010,
    ``.``=1012, ``?``=1029, as in BERT), then :data:`TINY_VOCAB_WORDS` and ``##s`` from 1030 on.
    """
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 99 + _FIRST_PUNCTUATION_ID - len(vocab))]
    vocab += [chr(c) for c in range(ord("!"), ord("?") + 1)]
    vocab += [w for w in TINY_VOCAB_WORDS if w not in vocab] + list(_SUBWORDS)
    for token, token_id in _FIXED_IDS.items():
        assert vocab[token_id] == token, (token, token_id, vocab[token_id])
    assert len(set(vocab)) == len(vocab), "duplicate tokens in the tiny vocabulary"
    return vocab


def _write_tokenizer(folder: Path, max_length: int) -> None:
    """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` and check they load.

    In transformers 5 the tokenizer is built from the vocabulary dict (``BertTokenizer(vocab_file=…)``
    silently ignores the file there and yields a 5-token vocabulary); transformers 4 only knows
    ``vocab_file``. The reload check below catches either going wrong.
    """
    from transformers import BertTokenizer

    vocab = tiny_vocab()
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if "vocab_file" in inspect.signature(BertTokenizer.__init__).parameters and inspect.signature(
        BertTokenizer.__init__
    ).parameters["vocab_file"].default is inspect.Parameter.empty:  # transformers 4
        from transformers import BertTokenizerFast

        # the fast tokenizer writes tokenizer.json, as the hub folders have it
        BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=max_length).save_pretrained(str(folder))
        tokenizer = BertTokenizer(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=max_length)
    else:
        tokenizer = BertTokenizer(
            vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True, model_max_length=max_length
        )
    tokenizer.save_pretrained(str(folder))
    reloaded = BertTokenizer.from_pretrained(str(folder))
    ids = reloaded("red shoes. cat?")["input_ids"]
    expected = [101, vocab.index("red"), vocab.index("shoes"), 1012, vocab.index("cat"), 1029, 102]
    if ids != expected or len(reloaded) != len(vocab):
        raise RuntimeError(
            f"the tokenizer written to {folder} does not use the tiny vocabulary: 'red shoes. cat?' "
            f"gives {ids}, expected {expected} ({len(reloaded)} tokens, expected {len(vocab)})"
        )


# --------------------------------------------------------------------------------------------
# GroundingDINO
# --------------------------------------------------------------------------------------------


def tiny_grounding_dino_config() -> "GroundingDinoConfig":
    """A GroundingDINO config of ~0.35 M parameters that runs on 64 px images.

    Swin backbone (embed 8, one block per stage), a 1-layer 16-dim BERT, ``d_model`` 64 (it must be a
    multiple of 32 for the GroupNorm(32) input projections; 32 fails on 64 px inputs), 1 encoder and
    2 decoder layers (1 breaks the tied box-head pattern), 10 queries and 32 text tokens.
    """
    from transformers import GroundingDinoConfig

    return GroundingDinoConfig(
        backbone_config=dict(
            model_type="swin",
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=TINY_IMAGE_SIZE,
            out_indices=[2, 3, 4],
        ),
        text_config=dict(
            model_type="bert",
            vocab_size=len(tiny_vocab()),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        d_model=64,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=10,
        max_text_len=32,
        encoder_n_points=1,
        decoder_n_points=1,
        num_feature_levels=4,
    )


@torch.no_grad()
def _calibrate_grounding_dino(model: "GroundingDinoForObjectDetection", seed: int) -> None:
    """Make every class score about sigmoid(0.5) ± 0.2 and the boxes mid-sized (see module doc).

    GroundingDINO's class logits have no bias term: ``logits = query_features @ text_features.T``,
    where the query features leave the decoder's final LayerNorm and the text features the last
    encoder layer's text-enhancer LayerNorm. Both LayerNorms get the same bias direction and a small
    gain, so every logit is ``_LOGIT_OFFSET`` plus a small random query/token-dependent part.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    direction = torch.randn(model.config.d_model, generator=generator)
    bias = direction / direction.norm() * math.sqrt(_LOGIT_OFFSET)
    for norm in (
        model.model.decoder.layer_norm,
        model.model.encoder.layers[-1].text_enhancer_layer.layer_norm_after,
    ):
        norm.weight.fill_(_LAYER_NORM_GAIN)
        norm.bias.copy_(bias)
    # The box heads are tied (``bbox_embed.N`` and ``model.decoder.bbox_embed.N``); set every copy.
    for head in (*model.bbox_embed, *model.model.decoder.bbox_embed):
        head.layers[-1].bias[2:] = _BOX_SIZE_LOGIT_STEP


def build_tiny_grounding_dino(seed: int = 0) -> "GroundingDinoForObjectDetection":
    """The tiny calibrated GroundingDINO (eval mode, CPU, float32), deterministic given ``seed``."""
    from transformers import GroundingDinoForObjectDetection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(tiny_grounding_dino_config())
    _calibrate_grounding_dino(model, seed)
    return model.eval()


def write_tiny_grounding_dino(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny GroundingDINO in the Hugging Face hub layout and return the folder.

    The folder loads with ``GroundingDinoForObjectDetection.from_pretrained(folder)`` and
    ``GroundingDinoProcessor.from_pretrained(folder)``; the image processor resizes to 64 px
    (``shortest_edge`` = ``longest_edge`` = 64) and the BERT tokenizer knows
    :data:`TINY_VOCAB_WORDS`.
    """
    from transformers import GroundingDinoImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_grounding_dino(seed)
    model.save_pretrained(str(folder))
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE, "longest_edge": TINY_IMAGE_SIZE}
    )
    image_processor.save_pretrained(str(folder))
    _write_tokenizer(folder, max_length=model.config.text_config.max_position_embeddings)
    log.debug("wrote tiny GroundingDINO (seed %d) to %s", seed, folder)
    return folder


# --------------------------------------------------------------------------------------------
# SAM
# --------------------------------------------------------------------------------------------


def build_tiny_meta_sam(seed: int = 0) -> "Sam":
    """A Meta ``segment_anything`` SAM of architecture :data:`TINY_SAM_ARCH` (eval mode, CPU).

    Every tensor, including those Meta initialises to constants (positional embeddings, relative
    positions, LayerNorms), carries seeded random values.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_meta_sam(TINY_SAM_ARCH)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in sam.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * _SAM_PERTURBATION)
    return sam.eval()


def write_tiny_meta_sam(path: str | Path, seed: int = 0) -> Path:
    """Save :func:`build_tiny_meta_sam` as a plain state dict with ``torch.save`` (Meta's ``.pth``
    layout; loads with ``torch.load(path, weights_only=True)``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().clone().contiguous() for k, v in build_tiny_meta_sam(seed).state_dict().items()}
    torch.save(state_dict, path)
    log.debug("wrote tiny Meta SAM (seed %d) to %s", seed, path)
    return path


def build_tiny_hf_sam(seed: int = 0, from_meta: bool = True) -> "SamModel":
    """A transformers ``SamModel`` with the tiny architecture (eval mode, CPU, float32).

    Args:
        seed: random seed.
        from_meta: hold the converted weights of ``build_tiny_meta_sam(seed)`` (so the two models
            compute the same masks); otherwise use transformers' own seeded initialisation.
    """
    from transformers import SamModel

    if from_meta:
        return hf_sam_model_from_meta(build_tiny_meta_sam(seed).state_dict(), source="tiny Meta SAM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(hf_sam_config_from_meta(TINY_SAM_ARCH))
    return model.eval()


def write_tiny_hf_sam(folder: str | Path, seed: int = 0, from_meta: bool = True) -> Path:
    """Write a tiny transformers ``SamModel`` folder and return it.

    The folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) loads with
    ``SamModel.from_pretrained`` and ``SamProcessor.from_pretrained``. The processor resizes the
    longest side to 64 px, pads to 64x64 and handles 16 px mask prompts (``mask_size`` /
    ``mask_pad_size`` 16). See :func:`build_tiny_hf_sam` for ``from_meta``.
    """
    from transformers import SamImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_hf_sam(seed, from_meta).save_pretrained(str(folder))
    mask_side = TINY_SAM_ARCH.image_embedding_size * 4
    SamImageProcessor(
        size={"longest_edge": TINY_IMAGE_SIZE},
        pad_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    ).save_pretrained(str(folder))
    log.debug("wrote tiny transformers SAM (seed %d, from_meta=%s) to %s", seed, from_meta, folder)
    return folder


# --------------------------------------------------------------------------------------------
# A ComfyUI-style models folder
# --------------------------------------------------------------------------------------------


def write_models_folder(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Lay out a ComfyUI-style ``models`` folder with one tiny model of each kind.

    ::

        root/grounding-dino/grounding-dino-tiny-random/   transformers GroundingDINO folder
        root/sams/sam_vit_tiny_random.pth                 Meta SAM state dict
        root/sams/sam-hf-tiny-random/                     transformers SamModel folder (same weights)
        root/grounding-dino/mm-grounding-dino-tiny-random/  transformers MM-GroundingDINO folder
        root/grounding-dino/groundingdino_tiny_random.pth   original (IDEA-Research) GroundingDINO layout
        root/sams/sam_hq_vit_tiny_random.pth              official SAM-HQ state dict
        root/sams/sam-hq-hf-tiny-random/                  transformers SamHQModel folder (same weights)
        root/sam2/sam2.1_hiera_tiny_random.safetensors    Meta's SAM 2.1 layout (kijai's files)
        root/sam2/sam2.1-hf-tiny-random/                  transformers Sam2Model folder
        root/sam3/sam3-tiny-random/                       transformers Sam3Model folder (text → masks)

    Returns:
        ``{role: path}`` for each model written (roles: ``grounding_dino``, ``mm_grounding_dino``,
        ``grounding_dino_original``, ``sam_meta``, ``sam_hf``, ``sam_hq_meta``, ``sam_hq_hf``,
        ``sam2_file``, ``sam2_hf``, ``sam3``).
    """
    root = Path(root)
    return {
        "grounding_dino": write_tiny_grounding_dino(root / "grounding-dino" / "grounding-dino-tiny-random", seed),
        "sam_meta": write_tiny_meta_sam(root / "sams" / "sam_vit_tiny_random.pth", seed),
        "sam_hf": write_tiny_hf_sam(root / "sams" / "sam-hf-tiny-random", seed, from_meta=True),
        **_extra_sam_models(root, seed),
        "mm_grounding_dino": write_tiny_mm_grounding_dino(root / "grounding-dino" / "mm-grounding-dino-tiny-random", seed),
        "grounding_dino_original": write_tiny_original_grounding_dino(root / "grounding-dino" / "groundingdino_tiny_random.pth", seed),
    } | _sam3_model(root, seed)


def _sam3_model(root: Path, seed: int) -> dict[str, Path]:
    """``{"sam3": path}``, or nothing (with a warning) where transformers predates SAM 3 (before 5.0)."""
    import transformers

    if not hasattr(transformers, "Sam3Model"):
        log.warning("transformers %s has no Sam3Model: the tiny SAM 3 folder is not written", transformers.__version__)
        return {}
    return {"sam3": write_tiny_sam3(root / "sam3" / "sam3-tiny-random", seed)}


def _extra_sam_models(root: Path, seed: int) -> dict[str, Path]:
    """SAM-HQ and SAM 2.1 in each layout users have (see :mod:`.tiny_sam_extra`)::

        root/sams/sam_hq_vit_tiny_random.pth             official SAM-HQ state dict
        root/sams/sam-hq-hf-tiny-random/                 transformers SamHQModel folder (same weights)
        root/sam2/sam2.1_hiera_tiny_random.safetensors   Meta's SAM 2.1 layout (kijai's files)
        root/sam2/sam2.1-hf-tiny-random/                 transformers Sam2Model folder (same weights, 64 px)
    """
    from .tiny_sam_extra import (
        write_tiny_sam2_hf,
        write_tiny_sam2_original,
        write_tiny_sam_hq_hf,
        write_tiny_sam_hq_original,
    )

    return {
        "sam_hq_meta": write_tiny_sam_hq_original(root / "sams" / "sam_hq_vit_tiny_random.pth", seed),
        "sam_hq_hf": write_tiny_sam_hq_hf(root / "sams" / "sam-hq-hf-tiny-random", seed),
        "sam2_file": write_tiny_sam2_original(root / "sam2" / "sam2.1_hiera_tiny_random.safetensors", seed),
        "sam2_hf": write_tiny_sam2_hf(root / "sam2" / "sam2.1-hf-tiny-random", seed),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m grounded_inpaint.testing.tiny_models DIR [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m grounded_inpaint.testing.tiny_models",
        description="Write tiny random-weight GroundingDINO and SAM models in a ComfyUI-style models folder.",
    )
    parser.add_argument("folder", type=Path, help="the models folder to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for role, path in write_models_folder(args.folder, args.seed).items():
        log.info("%s: %s", role, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
