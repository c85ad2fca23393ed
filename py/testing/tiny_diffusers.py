"""A tiny random-weight Stable Diffusion inpainting pipeline, written to disk offline.

Real inpainting checkpoints are gigabytes and cannot be downloaded in tests, so
:func:`write_tiny_inpaint_pipeline` builds a stand-in with the same folder layout as a diffusers
hub repository (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``) that loads with ``StableDiffusionInpaintPipeline.from_pretrained(folder)``:

* ``unet``: :class:`diffusers.UNet2DConditionModel` with 9 input channels (4 noisy latents + 1 mask
  + 4 masked-image latents, as real inpainting UNets), two blocks of 32/64 channels;
* ``vae``: :class:`diffusers.AutoencoderKL` with 4 latent channels and four blocks, so its
  ``vae_scale_factor`` is 8 as in Stable Diffusion (a 64 px image gives 8x8 latents);
* ``text_encoder``: a 2-layer, 32-wide :class:`transformers.CLIPTextModel`;
* ``tokenizer``: a byte-level BPE :class:`transformers.CLIPTokenizer` built from a ``vocab.json``
  and ``merges.txt`` written here (all 256 byte symbols, with and without the end-of-word
  marker ``</w>``, a few merges for common prompt words, ``<|startoftext|>`` and
  ``<|endoftext|>``), so any prompt tokenizes;
* ``scheduler``: :class:`diffusers.DDIMScheduler` with Stable Diffusion's beta schedule;
* no safety checker and no feature extractor (``requires_safety_checker`` is False).

The weights are random, so the pictures are noise; what matters is that every code path of the
real pipeline runs (a 64 px, 2-step run takes well under a second on a CPU). Everything is
deterministic given ``seed`` and the global torch RNG is left untouched.

Run ``python -m grounded_inpaint.testing.tiny_diffusers DIR`` to write one by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # diffusers is optional; it is imported only when a pipeline is built
    from diffusers import StableDiffusionInpaintPipeline

__all__ = [
    "TINY_TOKENIZER_WORDS",
    "TEXT_MAX_LENGTH",
    "byte_alphabet",
    "tiny_clip_vocab_and_merges",
    "write_tiny_clip_tokenizer",
    "build_tiny_inpaint_pipeline",
    "write_tiny_inpaint_pipeline",
    "main",
]

log = logging.getLogger(__name__)

#: Words the tiny tokenizer knows as whole tokens (others split into bytes, which always works).
TINY_TOKENIZER_WORDS: tuple[str, ...] = (
    "a", "on", "in", "the", "and", "with", "of",
    "shoes", "shoe", "cup", "dress", "bag", "marble", "podium", "studio", "light", "wooden", "table",
    "background", "blurry", "photo",
)  # fmt: skip

#: Token sequence length of the tiny text encoder and tokenizer (as CLIP's).
TEXT_MAX_LENGTH = 77

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_END_OF_WORD = "</w>"


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def byte_alphabet() -> list[str]:
    """The 256 printable symbols a byte-level BPE uses for the bytes 0..255, indexed by byte.

    Bytes that are printable, non-space Latin-1 characters (``!``..``~``, ``¡``..``¬``,
    ``®``..``ÿ``) stand for themselves; the 68 others (control characters, space, soft hyphen, …)
    are given the code points 256, 257, … in byte order, so that every byte has a visible,
    non-whitespace symbol. This is the alphabet CLIP's and GPT-2's tokenizers use.
    """
    printable = set(range(ord("!"), ord("~") + 1))
    printable |= set(range(ord("¡"), ord("¬") + 1))
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    symbols: list[str] = []
    extra = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that build ``word + "</w>"`` from its characters.

    ``"cup"`` gives ``("c", "u")``, ``("cu", "p</w>")``: the last character carries the end-of-word
    marker, as CLIP's BPE splits a word into ``c u p</w>`` before merging.
    """
    pieces = list(word[:-1]) + [word[-1] + _END_OF_WORD]
    merges = []
    current = pieces[0]
    for piece in pieces[1:]:
        merges.append((current, piece))
        current += piece
    return merges


def tiny_clip_vocab_and_merges(words: Sequence[str] = TINY_TOKENIZER_WORDS) -> tuple[dict[str, int], list[str]]:
    """The vocabulary and merge list of the tiny CLIP tokenizer.

    Arguments:
        words: lower-case ASCII words to make single tokens.

    Returns:
        ``(vocab, merges)``: ``vocab`` maps token → id: the 256 byte symbols (ids 0..255), the same
        with ``</w>`` (256..511), one token per merge result, then ``<|startoftext|>`` and
        ``<|endoftext|>`` as the last two ids (as in CLIP). ``merges`` are ``"left right"`` lines
        in priority order.
    """
    alphabet = byte_alphabet()
    tokens = alphabet + [symbol + _END_OF_WORD for symbol in alphabet]
    merges: list[str] = []
    known = set(tokens)
    for word in words:
        if len(word) < 2:
            continue  # single characters are already tokens
        for left, right in _word_merges(word):
            line = f"{left} {right}"
            if line in merges:
                continue
            merges.append(line)
            if left + right not in known:
                known.add(left + right)
                tokens.append(left + right)
    tokens += [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_tiny_clip_tokenizer(folder: str | Path) -> Path:
    """Write the tiny CLIP tokenizer (``vocab.json``, ``merges.txt`` and transformers' files) to ``folder``.

    The files are written first, then loaded with ``CLIPTokenizer.from_pretrained`` (which builds
    the byte-level BPE from them in transformers 4 and 5 alike) and saved back, so the folder also
    holds ``tokenizer_config.json`` and ``special_tokens_map.json`` / ``tokenizer.json`` as a hub
    folder does. The reloaded tokenizer must encode a prompt with known words into single tokens
    framed by ``<|startoftext|>`` … ``<|endoftext|>``, and pad to :data:`TEXT_MAX_LENGTH`.

    Raises:
        RuntimeError: the written tokenizer does not tokenize as expected (names the folder).
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": TEXT_MAX_LENGTH,
                "bos_token": _BOS,
                "eos_token": _EOS,
                "unk_token": _EOS,
                "pad_token": _EOS,
                "do_lower_case": True,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    _check_tokenizer(CLIPTokenizer.from_pretrained(str(folder)), vocab, folder)
    return folder


def _check_tokenizer(tokenizer, vocab: dict[str, int], folder: Path) -> None:
    """Fail unless ``tokenizer`` uses the tiny vocabulary (known words → one token each)."""
    ids = tokenizer("Shoes on a marble podium, studio light!")["input_ids"]
    expected_start = [vocab[_BOS], vocab["shoes</w>"], vocab["on</w>"], vocab["a</w>"], vocab["marble</w>"]]
    padded = tokenizer("x", padding="max_length", max_length=TEXT_MAX_LENGTH)["input_ids"]
    if ids[: len(expected_start)] != expected_start or ids[-1] != vocab[_EOS] or len(padded) != TEXT_MAX_LENGTH:
        raise RuntimeError(
            f"the tokenizer written to {folder} does not use the tiny vocabulary: a test prompt gives {ids}, "
            f"expected it to start with {expected_start} and end with {vocab[_EOS]}"
        )
    exotic = tokenizer("café ✓ 123")["input_ids"]  # bytes outside ASCII must still encode
    if vocab[_EOS] in exotic[1:-1] or len(exotic) < 5:
        raise RuntimeError(f"the tokenizer written to {folder} cannot encode non-ASCII text: got {exotic}")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=9,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16, 16, 16),  # 4 blocks: vae_scale_factor 2 ** 3 = 8
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )


def _tiny_text_encoder(vocab_size: int, bos_id: int, eos_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_MAX_LENGTH,
        projection_dim=32,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config).eval()


def _tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_tiny_inpaint_pipeline(tokenizer_folder: str | Path, seed: int = 0) -> "StableDiffusionInpaintPipeline":
    """The tiny pipeline in memory (CPU, float32, eval mode), deterministic given ``seed``.

    Arguments:
        tokenizer_folder: a folder written by :func:`write_tiny_clip_tokenizer`.
        seed: seeds the random weights (the global torch RNG is restored afterwards).
    """
    from diffusers import StableDiffusionInpaintPipeline
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_folder))
    vocab = tokenizer.get_vocab()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_unet()
        vae = _tiny_vae()
        text_encoder = _tiny_text_encoder(len(vocab), vocab[_BOS], vocab[_EOS])
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_tiny_inpaint_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny random-weight inpainting pipeline in the diffusers layout and return ``folder``.

    The folder loads with ``StableDiffusionInpaintPipeline.from_pretrained(folder)`` (weights as
    safetensors). Nothing is downloaded.

    Arguments:
        folder: where to write (created if needed; existing files are overwritten).
        seed: seeds the random weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-clip-tokenizer-") as staging:
        write_tiny_clip_tokenizer(staging)
        pipe = build_tiny_inpaint_pipeline(staging, seed=seed)
        pipe.save_pretrained(str(folder), safe_serialization=True)
        for name in ("vocab.json", "merges.txt"):  # hub folders carry them next to tokenizer.json
            (folder / "tokenizer" / name).write_bytes((Path(staging) / name).read_bytes())
    log.info("wrote the tiny inpainting pipeline to %s", folder)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grounded_inpaint.testing.tiny_diffusers DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description="Write a tiny random-weight Stable Diffusion inpainting pipeline.")
    parser.add_argument("folder", type=Path, help="output folder (a diffusers pipeline folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    write_tiny_inpaint_pipeline(args.folder, seed=args.seed)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
