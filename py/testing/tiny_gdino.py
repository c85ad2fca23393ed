"""Tiny random-weight GroundingDINO (transformers layout) and its tiny BERT tokenizer.

* :func:`write_tiny_grounding_dino`: a transformers folder (``config.json``, ``model.safetensors``,
  ``preprocessor_config.json``, ``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``);
* :func:`write_bert_tokenizer`: the BERT tokenizer files alone, for any vocabulary that places the
  token ids GroundingDINO hard-codes where BERT has them (:func:`tiny_vocab`, or a real-size one).

The tiny detector is calibrated (see :func:`build_tiny_grounding_dino`) so that on any image and
prompt every one of its 10 queries scores roughly 0.4–0.85: ``box_threshold=0.3`` always gives
detections and ``box_threshold=0.99`` never does. Its boxes are mid-sized squares and rectangles
around an anchor grid; they may reach past the image border, as real GroundingDINO boxes can.
Everything is deterministic given ``seed``; the global torch RNG is left untouched.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from . import TINY_IMAGE_SIZE

if TYPE_CHECKING:  # heavy imports happen only when a model is built
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

__all__ = [
    "TINY_VOCAB_WORDS",
    "tiny_vocab",
    "write_bert_tokenizer",
    "tiny_grounding_dino_config",
    "build_tiny_grounding_dino",
    "write_tiny_grounding_dino",
]

log = logging.getLogger(__name__)

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

# Detector calibration: class logit = (decoder query feature) . (text token feature). Both end in a
# LayerNorm; giving both LayerNorms the same bias direction (norm sqrt(_LOGIT_OFFSET)) and a small
# weight makes every logit _LOGIT_OFFSET plus a small query/token-dependent term.
_LOGIT_OFFSET = 0.5
_LAYER_NORM_GAIN = 0.2
#: Added to the width/height logits by each of the 2 decoder refinement steps (boxes grow from the
#: 0.05–0.4 anchors to about 0.15–0.7 of the image side).
_BOX_SIZE_LOGIT_STEP = 0.6


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


def write_bert_tokenizer(folder: Path, max_length: int, vocab: Sequence[str] | None = None) -> None:
    """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder`` and check they load.

    Arguments:
        folder: an existing folder (a GroundingDINO model folder, or a bert-base-uncased stand-in).
        max_length: the tokenizer's ``model_max_length``.
        vocab: tokens by id; must hold the tiny words ``red``, ``shoes`` and ``cat`` and place the
            ids GroundingDINO hard-codes as BERT does. Default: :func:`tiny_vocab`.

    In transformers 5 the tokenizer is built from the vocabulary dict (``BertTokenizer(vocab_file=…)``
    silently ignores the file there and yields a 5-token vocabulary); transformers 4 only knows
    ``vocab_file``. The reload check below catches either going wrong.
    """
    from transformers import BertTokenizer

    vocab = list(vocab) if vocab is not None else tiny_vocab()
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
    write_bert_tokenizer(folder, max_length=model.config.text_config.max_position_embeddings)
    log.debug("wrote tiny GroundingDINO (seed %d) to %s", seed, folder)
    return folder

