"""Content-keyed feature caches: the same photo is encoded once, whatever the prompt.

In ComfyUI people iterate on one photo: a new prompt, a new threshold, again and again. The heavy
parts of the pipeline depend only on the image (SAM's image embedding, GroundingDINO's Swin
features) or on the image and the prompt (GroundingDINO's raw outputs), so they are kept here,
keyed by **content** (a hash of the pixels), not by object identity:

* :func:`image_key` hashes an image tensor (shape, dtype and bytes, BLAKE2b-128); about 10 ms for
  a 1024×768 float32 image on a 2-core CPU, against seconds of encoder time saved;
* :class:`FeatureCache` is a thread-safe LRU bounded by a byte budget (the summed ``nbytes`` of the
  tensors it holds), with hit/miss counters. It stores detached copies, so nothing the caller does
  to its own tensors afterwards can change a cached entry;
* :func:`default_cache` is the process-wide cache the detector and the SAM predictors share. Its
  budget is ``GROUNDED_INPAINT_CACHE_MB`` megabytes (default 512); ``0`` turns caching off.

Keys start with an *owner* token (:func:`new_owner_token`, one per loaded model), so features of
one model are never served to another, and :meth:`FeatureCache.discard_owner` frees them when the
model goes away (the predictors and the detector do that when they are garbage-collected).

The detector and the predictors store everything in **CPU memory** (:func:`to_cpu_copy`) and move
a hit to the model's device when it is used: cached features never pin GPU memory, so ComfyUI's
memory manager can unload or evict a model as usual; its entries then age out of the LRU, or go
at once when the model object is freed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, Hashable, NamedTuple

import torch

__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_CACHE_MB",
    "CacheStats",
    "FeatureCache",
    "default_cache",
    "detached_copy",
    "image_key",
    "map_tensors",
    "new_owner_token",
    "tensor_nbytes",
    "to_cpu_copy",
    "to_device",
]

log = logging.getLogger(__name__)

#: Environment variable holding the default cache budget in megabytes (``0`` disables caching).
CACHE_ENV_VAR = "GROUNDED_INPAINT_CACHE_MB"
#: Budget of :func:`default_cache` when the environment variable is not set.
DEFAULT_CACHE_MB = 512.0

_MB = 1024 * 1024
_owner_tokens = itertools.count(1)


def new_owner_token() -> int:
    """A process-unique integer naming one model's entries in a cache (never reused, unlike ``id``)."""
    return next(_owner_tokens)


def tensor_nbytes(value: Any) -> int:
    """Bytes held by the tensors in ``value`` (a tensor, or tuples / lists / dicts of them)."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(tensor_nbytes(v) for v in value)
    return 0


def map_tensors(value: Any, fn: Any) -> Any:
    """``value`` with ``fn`` applied to every tensor in it (tuples / lists / dicts rebuilt, other objects shared)."""
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [map_tensors(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # NamedTuples keep their type
    if isinstance(value, list):
        return [map_tensors(v, fn) for v in value]
    return value


def to_cpu_copy(value: Any) -> Any:
    """A detached CPU copy of every tensor in ``value`` (what the caches store: never device memory)."""
    return map_tensors(value, lambda t: t.detach().to("cpu", copy=True))


def to_device(value: Any, device: torch.device | str) -> Any:
    """Every tensor in ``value`` on ``device`` (no copy for tensors already there)."""
    return map_tensors(value, lambda t: t.to(device))


def detached_copy(value: Any) -> Any:
    """A copy of ``value`` whose tensors are detached clones (containers rebuilt, other objects shared)."""
    return map_tensors(value, lambda t: t.detach().clone())


def image_key(image: torch.Tensor) -> str:
    """Content key of an image tensor: BLAKE2b-128 of its shape, dtype and bytes, as hex.

    Any change of one pixel, of the size or of the dtype gives another key. GPU tensors are copied
    to the CPU to be hashed.

    Arguments:
        image: any tensor, typically ``[H, W, 3]`` float32.

    Returns:
        a 32-character hex string.
    """
    data = image.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(data.shape)}|{data.dtype}|".encode())
    if data.numel():
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


class CacheStats(NamedTuple):
    """Counters of a :class:`FeatureCache`."""

    hits: int
    misses: int
    entries: int
    nbytes: int
    budget_bytes: int


def _budget_from_env() -> int:
    text = os.environ.get(CACHE_ENV_VAR, "").strip()
    if not text:
        return int(DEFAULT_CACHE_MB * _MB)
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:  # also catches NaN
        log.warning("%s=%r is not a number of megabytes >= 0; using %g", CACHE_ENV_VAR, text, DEFAULT_CACHE_MB)
        megabytes = DEFAULT_CACHE_MB
    return int(megabytes * _MB)


class FeatureCache:
    """A thread-safe least-recently-used cache of tensors, bounded by their total size in bytes.

    Values are tensors or (nested) tuples / lists / dicts of tensors. :meth:`put` stores a detached
    copy; :meth:`get` returns a copy by default, so callers can never change what is cached.
    Adding an entry evicts the least recently used ones until the total fits the budget; a value
    larger than the whole budget is not stored. A budget of 0 disables the cache (every ``get``
    misses, ``put`` stores nothing).

    Arguments:
        budget_bytes: the byte budget, a whole number ``>= 0``; ``None`` reads ``GROUNDED_INPAINT_CACHE_MB``
            (default 512 MB).
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self._entries: "OrderedDict[Hashable, tuple[Any, int]]" = OrderedDict()
        self._lock = threading.RLock()
        self._nbytes = 0
        self.hits = 0
        self.misses = 0
        self._budget = _budget_from_env() if budget_bytes is None else self._checked_budget(budget_bytes)

    @staticmethod
    def _checked_budget(budget_bytes: int) -> int:
        from .checks import count

        return count("budget_bytes", budget_bytes, low=0, meaning="(0 turns the cache off)")  # type: ignore[return-value]

    # ------------------------------------------------------------------ budget

    @property
    def budget_bytes(self) -> int:
        """The byte budget (0 = disabled)."""
        return self._budget

    @property
    def enabled(self) -> bool:
        """Whether anything can be stored (budget > 0)."""
        return self._budget > 0

    def set_budget(self, budget_bytes: int) -> None:
        """Change the budget, evicting least recently used entries until the total fits."""
        budget = self._checked_budget(budget_bytes)
        with self._lock:
            self._budget = budget
            self._evict(0)

    # ------------------------------------------------------------------ access

    def get(self, key: Hashable, *, copy: bool = True) -> Any | None:
        """The value stored under ``key`` (a copy unless ``copy=False``), or ``None``; counts a hit or a miss.

        ``copy=False`` returns the cached tensors themselves: only for callers that never modify
        them (e.g. tensors fed straight into a model).
        """
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            value = item[0]
        return detached_copy(value) if copy else value

    def put(self, key: Hashable, value: Any, *, copy: bool = True) -> bool:
        """Store a detached copy of ``value`` under ``key``; returns whether it was stored.

        ``copy=False`` stores ``value`` itself: only for a fresh copy nobody else holds (e.g. the
        result of :func:`to_cpu_copy`).
        """
        size = tensor_nbytes(value)
        if not self.enabled or size > self._budget:
            if self.enabled:
                log.debug("not caching %s: %.1f MB is over the %.1f MB budget", key, size / _MB, self._budget / _MB)
            return False
        stored = detached_copy(value) if copy else value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            self._evict(size)
            if size > self._budget:  # the budget shrank meanwhile
                return False
            self._entries[key] = (stored, size)
            self._nbytes += size
        return True

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # ------------------------------------------------------------------ housekeeping

    def _evict(self, incoming: int) -> None:
        """Drop least recently used entries until ``incoming`` more bytes fit (lock held)."""
        while self._entries and self._nbytes + incoming > self._budget:
            _, (_, size) = self._entries.popitem(last=False)
            self._nbytes -= size

    def discard_owner(self, owner: Hashable) -> int:
        """Drop every entry whose key is a tuple starting with ``owner``; returns how many."""
        with self._lock:
            doomed = [k for k in self._entries if isinstance(k, tuple) and k and k[0] == owner]
            for key in doomed:
                self._nbytes -= self._entries.pop(key)[1]
            return len(doomed)

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
            self.hits = 0
            self.misses = 0

    def stats(self) -> CacheStats:
        """Hits, misses, entries, bytes held and budget."""
        with self._lock:
            return CacheStats(self.hits, self.misses, len(self._entries), self._nbytes, self._budget)


_default: FeatureCache | None = None
_default_lock = threading.Lock()


def default_cache() -> FeatureCache:
    """The process-wide cache shared by the detector and the SAM predictors (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FeatureCache()
        return _default
