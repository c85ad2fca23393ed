"""How close two float results must be: tolerances chosen from the dtype, never bit for bit.

Weights are compared exactly (``assert_same_weights``): the same file must give the same tensors.
Outputs of models and kernels are compared with a tolerance, because the CPU kernels may take
another path for the same numbers — another SIMD width or blocking for a tensor with another
memory alignment (read from a file, copied into a cache), another batch size, another machine —
and such paths round differently (seen: logits 1.9e-8 apart after a safetensors load).

Masks thresholded from logits may flip where a logit is within rounding of 0, so boolean masks
are compared by the fraction of pixels that differ (``assert_masks_agree``).
"""

from __future__ import annotations

from typing import Mapping

import torch

#: ``(rtol, atol)`` per dtype: about 100 units in the last place of float32 after a few dozen
#: layers; a few units of bfloat16's / float16's 8 / 11 significant bits.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}

#: At most this fraction of the pixels of two masks from equivalent computations may differ.
MASK_FLIP_FRACTION = 2e-3


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results computed in ``dtype``."""
    if dtype not in TOLERANCES:
        raise AssertionError(f"no tolerance defined for {dtype}; compare integer and bool results exactly")
    return TOLERANCES[dtype]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, dtype: torch.dtype | None = None, msg: str = "") -> None:
    """``actual`` equals ``expected`` within the tolerance of ``dtype`` (default: ``expected``'s dtype).

    Infinities must sit at the same places with the same sign (masked logits are ``-inf``).
    """
    rtol, atol = tolerance(dtype or expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=(lambda m: f"{msg}: {m}") if msg else None)


def assert_masks_agree(actual: torch.Tensor, expected: torch.Tensor, *, max_fraction: float = MASK_FLIP_FRACTION) -> None:
    """Two boolean masks ``[..., H, W]`` of the same shape differ in at most ``max_fraction`` of their pixels."""
    assert actual.shape == expected.shape, f"mask shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    if actual.numel() == 0:
        return
    flipped = (actual.bool() != expected.bool()).float().mean().item()
    assert flipped <= max_fraction, f"{flipped:.4%} of the mask pixels differ (at most {max_fraction:.4%} may)"


def assert_same_weights(actual: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Two state dicts hold the same names and bit-identical tensors."""
    assert set(actual) == set(expected), f"keys differ: {sorted(set(actual) ^ set(expected))[:5]}"
    differing = [k for k in expected if not torch.equal(actual[k], expected[k])]
    assert differing == [], f"tensors differ: {differing[:5]}"
