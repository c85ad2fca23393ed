"""Reading weight files without ever running code from them.

Only two readers are used: ``safetensors`` (no code at all) and ``torch.load(weights_only=True)``
(PyTorch's restricted unpickler, which refuses any global that is not a tensor building block).
A pickle that tries to call a function is refused, and the error says so; a truncated or
corrupted file gets an error naming the file and how to replace it.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .errors import CheckpointError

__all__ = ["fit_problems", "load_state_dict", "unwrap_state_dict", "SAFE_SUFFIXES", "PICKLE_SUFFIXES"]

log = logging.getLogger(__name__)

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` dict inside a loaded checkpoint.

    Accepts a plain state dict or one wrapped as ``{"model": ...}`` / ``{"state_dict": ...}``
    (training checkpoints), and strips a ``module.`` prefix left by DataParallel. Non-tensor
    entries (training metadata) are dropped.
    """
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(torch.is_tensor(v) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor); found a {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise CheckpointError(f"{source}: the file holds no tensors, so it is not a model checkpoint")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin``/``.ckpt`` file onto the CPU.

    Returns:
        ``name -> tensor`` (see :func:`unwrap_state_dict`).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is corrupted or truncated, is not a checkpoint, or is a pickle
            that contains code (refused, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    source = str(path)
    if path.suffix.lower() in SAFE_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return unwrap_state_dict(load_file(str(path), device="cpu"), source)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{source} is not a valid safetensors file ({exc}); it is probably truncated or corrupted: "
                "delete it and download it again"
            ) from None
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{source}: unknown checkpoint type {path.suffix!r}; expected one of "
            f"{', '.join(SAFE_SUFFIXES + PICKLE_SUFFIXES)}"
        )
    try:
        # argparse.Namespace is stored (as plain data) in the original GroundingDINO checkpoints.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{source} was refused: it contains Python objects that would run code when loaded "
            f"({first_line}). Only plain weights are accepted. Use the official checkpoint, or a "
            ".safetensors version of it."
        ) from None
    except Exception as exc:  # garbage bytes can fail anywhere in the unpickler: RuntimeError, EOFError, IndexError, ...
        raise CheckpointError(
            f"{source} could not be read as a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no details'}); the file is probably "
            "truncated or corrupted: delete it and download it again"
        ) from None
    return unwrap_state_dict(obj, source)


def _few(items: Iterable[Any], limit: int = 5) -> str:
    """``'a', 'b', 'c' and 7 more`` for error messages."""
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def fit_problems(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Why ``tensors`` would not load strictly into a model whose state dict is ``expected``.

    Returns:
        One phrase per kind of problem, e.g. ``"2 missing keys ('a.weight', 'b.bias')"``,
        ``"1 unexpected keys ('x')"``, ``"1 shape mismatches (k: file (3, 8) vs model (5, 8))"``;
        an empty list when every key is there with its shape and nothing is left over.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({'; '.join(mismatched[:5])})")
    return problems

