"""Stopping inside a model pass: Cancel takes effect between layers, not only between images.

A model pass at real size takes seconds to minutes on a CPU (GroundingDINO at 800x1200, SAM's
encoder at 1024 px, SAM 3, Stable Diffusion's steps). Checking for Cancel only between images makes
the button look broken. So the library takes an ``interrupt`` callable wherever it runs a model —
a function that returns normally, or raises to stop (ComfyUI's
``throw_exception_if_processing_interrupted``; the CLI's own flag) — and, while a pass runs under
:func:`interruptible`, calls it

* before the ``forward`` of every submodule of the model (every encoder block, attention layer,
  MLP, decoder layer, …), through forward pre-hooks that exist only for the duration of the pass,
  and only in the thread that started it (a concurrent pass in another thread is not checked
  with this callable);
* at every :func:`checkpoint` in the library's own loops (attention chunks, mask upsampling
  chunks, the deformable-attention levels, diffusion steps).

The exception propagates out of the model; nothing is stored in a cache until a result is complete,
so a cancelled run leaves no partial entry, and the next run starts clean.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable, Iterator

import torch

__all__ = ["InterruptCheck", "interruptible", "checkpoint", "current_check"]

#: Returns normally to go on, raises to stop.
InterruptCheck = Callable[[], None]

_current: contextvars.ContextVar[InterruptCheck | None] = contextvars.ContextVar("grounded_inpaint_interrupt", default=None)


def current_check() -> InterruptCheck | None:
    """The interrupt check of the innermost active :func:`interruptible` in this thread, or ``None``."""
    return _current.get()


def checkpoint() -> None:
    """Call the active interrupt check (nothing outside :func:`interruptible`); raises to stop."""
    check = _current.get()
    if check is not None:
        check()


@contextlib.contextmanager
def interruptible(check: InterruptCheck | None, *modules: torch.nn.Module | None) -> Iterator[None]:
    """While active, ``check()`` runs before every submodule's forward of ``modules`` and at every
    :func:`checkpoint`; ``check=None`` keeps the enclosing check (or none).

    Arguments:
        check: returns normally, or raises to stop (the exception leaves the model pass as it is).
        modules: the models of the pass; ``None`` entries are skipped. Their hooks are removed on exit.
    """
    if check is None:
        yield
        return
    owner = threading.get_ident()

    def hook(_module: torch.nn.Module, _args: object) -> None:
        if threading.get_ident() == owner:
            check()

    token = _current.set(check)
    handles = []
    try:
        seen: set[int] = set()
        for model in modules:
            if model is None:
                continue
            for module in model.modules():
                if id(module) not in seen:
                    seen.add(id(module))
                    handles.append(module.register_forward_pre_hook(hook))
        check()
        yield
    finally:
        for handle in handles:
            handle.remove()
        _current.reset(token)
