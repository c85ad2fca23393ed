"""Content-keyed feature cache: the cache itself, and the detector / SAM predictors that use it."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from tolerance import assert_close, assert_masks_agree

from grounded_inpaint import cache as cache_mod
from grounded_inpaint.cache import FeatureCache, image_key, tensor_nbytes
from grounded_inpaint.segment import segment_image
from grounded_inpaint.structures import Detections

MB = 1024 * 1024


def _t(nbytes: int) -> torch.Tensor:
    return torch.zeros(nbytes // 4, dtype=torch.float32)


# ----------------------------------------------------------------------------- FeatureCache


def test_image_key_depends_on_content_shape_and_dtype():
    a = torch.rand(8, 6, 3)
    assert image_key(a) == image_key(a.clone())
    b = a.clone()
    b[3, 2, 1] += 1e-3
    assert image_key(b) != image_key(a)
    assert image_key(a.reshape(6, 8, 3)) != image_key(a)
    assert image_key(a.double()) != image_key(a)
    assert image_key(a.permute(1, 0, 2)) == image_key(a.permute(1, 0, 2).contiguous())


def test_byte_budget_and_lru_eviction_order():
    c = FeatureCache(budget_bytes=3 * MB)
    for name in "abc":
        assert c.put(("o", name), _t(MB))
    assert c.stats().nbytes == 3 * MB and len(c) == 3
    assert c.get(("o", "a")) is not None  # a becomes the most recently used
    c.put(("o", "d"), _t(MB))  # evicts b, the least recently used
    assert ("o", "b") not in c and all(("o", k) in c for k in "acd")
    c.put(("o", "e"), (_t(MB), {"x": _t(MB)}))  # a nested value of 2 MB evicts c and a
    assert [k for k in "acde" if ("o", k) in c] == ["d", "e"]
    assert c.stats().nbytes <= c.budget_bytes
    assert not c.put(("o", "huge"), _t(4 * MB))  # larger than the whole budget: not stored
    assert ("o", "huge") not in c and c.stats().nbytes == 3 * MB
    c.set_budget(MB)
    assert c.stats().nbytes <= MB and ("o", "e") not in c


def test_replacing_a_key_does_not_double_count():
    c = FeatureCache(budget_bytes=2 * MB)
    c.put(("o", "a"), _t(MB))
    c.put(("o", "a"), _t(MB))
    assert c.stats().nbytes == MB and len(c) == 1


def test_stored_values_are_private_copies():
    c = FeatureCache(budget_bytes=MB)
    x = torch.ones(4)
    c.put(("o", "x"), x)
    x.add_(1)  # the caller changes its tensor after put
    got = c.get(("o", "x"))
    assert torch.equal(got, torch.ones(4))
    got.add_(5)  # and changes what get returned
    assert torch.equal(c.get(("o", "x")), torch.ones(4))


def test_hits_misses_and_owner_isolation():
    c = FeatureCache(budget_bytes=MB)
    c.put((1, "img"), torch.ones(3))
    c.put((2, "img"), torch.zeros(3))
    assert torch.equal(c.get((1, "img")), torch.ones(3))
    assert c.get((3, "img")) is None
    assert (c.stats().hits, c.stats().misses) == (1, 1)
    assert c.discard_owner(1) == 1
    assert (1, "img") not in c and (2, "img") in c
    assert c.stats().nbytes == tensor_nbytes(torch.zeros(3))


def test_env_var_sets_budget_and_zero_disables(monkeypatch):
    monkeypatch.setenv(cache_mod.CACHE_ENV_VAR, "2")
    assert FeatureCache().budget_bytes == 2 * MB
    monkeypatch.setenv(cache_mod.CACHE_ENV_VAR, "0")
    off = FeatureCache()
    assert not off.enabled
    assert not off.put(("o", "a"), torch.ones(2)) and off.get(("o", "a")) is None
    monkeypatch.setenv(cache_mod.CACHE_ENV_VAR, "lots")
    assert FeatureCache().budget_bytes == int(cache_mod.DEFAULT_CACHE_MB * MB)


def test_thread_safety_keeps_the_budget():
    c = FeatureCache(budget_bytes=10 * 4096)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                c.put((seed, i % 17), torch.zeros(1024))
                c.get((seed, (i * 7) % 17))
                if i % 50 == 0:
                    c.discard_owner(seed)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = c.stats()
    assert stats.nbytes <= stats.budget_bytes
    assert stats.nbytes == sum(tensor_nbytes(c.get(k, copy=False)) for k in list(c._entries))


# ----------------------------------------------------------------------------- SAM predictors


class _CountCalls:
    def __init__(self, obj, name: str) -> None:
        self.calls = 0
        self.obj, self.name = obj, name
        self.original = getattr(obj, name)

    def __enter__(self):
        def wrapper(*a, **k):
            self.calls += 1
            return self.original(*a, **k)

        setattr(self.obj, self.name, wrapper)
        return self

    def __exit__(self, *exc):
        delattr(self.obj, self.name)


@pytest.fixture
def private_cache():
    return FeatureCache(budget_bytes=64 * MB)


@pytest.mark.parametrize("which", ["meta_predictor", "hf_predictor"])
def test_sam_hit_skips_the_encoder_and_gives_identical_masks(request, which, private_cache):
    predictor = request.getfixturevalue(which)
    predictor.feature_cache = private_cache
    try:
        image = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(1))
        dets = Detections(torch.tensor([[4.0, 4.0, 40.0, 30.0], [20.0, 10.0, 60.0, 44.0]]), torch.ones(2), ["a", "b"], (48, 64))
        with _CountCalls(predictor, "_encode") as enc:
            first = segment_image(predictor, image, dets)
            second = segment_image(predictor, image.clone(), dets)  # same content, another tensor
            assert enc.calls == 1
            segment_image(predictor, torch.flip(image, dims=[0]), dets)  # other content: encoded
            assert enc.calls == 2
        predictor.feature_cache = None  # no cache at all
        plain = segment_image(predictor, image, dets)
        for a in (second, plain):  # the same features: masks agree, qualities within fp32 rounding
            assert_masks_agree(a.masks, first.masks)
            assert_close(a.quality, first.quality)
        assert private_cache.stats().hits == 1
        predictor.feature_cache = private_cache
        assert predictor.clear_feature_cache() == 2 and len(private_cache) == 0
    finally:
        predictor.feature_cache = cache_mod.default_cache()


def test_sam_models_do_not_share_features(meta_predictor, hf_predictor, private_cache):
    image = torch.rand(64, 64, 3)
    for p in (meta_predictor, hf_predictor):
        p.feature_cache = private_cache
    try:
        with _CountCalls(meta_predictor, "_encode") as m, _CountCalls(hf_predictor, "_encode") as h:
            meta_predictor.set_image(image)
            hf_predictor.set_image(image)
            assert (m.calls, h.calls) == (1, 1)
        assert len(private_cache) == 2
    finally:
        for p in (meta_predictor, hf_predictor):
            p.feature_cache = cache_mod.default_cache()
            p.reset_image()


def test_sam_features_are_cached_on_the_cpu_and_freed_with_the_model(models_dir):
    from grounded_inpaint.sam.predictor import MetaSamPredictor

    _, paths = models_dir
    predictor = MetaSamPredictor.from_checkpoint(paths["sam_meta"])
    shared = cache_mod.default_cache()
    before = len(shared)
    predictor.set_image(torch.rand(32, 40, 3))
    owner = predictor._cache_owner
    keys = [k for k in list(shared._entries) if k[0] == owner]
    assert len(keys) == 1 and len(shared) == before + 1
    assert shared.get(keys[0], copy=False).device.type == "cpu"
    del predictor
    gc.collect()
    assert not any(k[0] == owner for k in list(shared._entries))


def test_cache_disabled_by_zero_budget(meta_predictor):
    meta_predictor.feature_cache = FeatureCache(budget_bytes=0)
    try:
        with _CountCalls(meta_predictor, "_encode") as enc:
            image = torch.rand(40, 40, 3)
            meta_predictor.set_image(image)
            meta_predictor.set_image(image)
            assert enc.calls == 2
    finally:
        meta_predictor.feature_cache = cache_mod.default_cache()
        meta_predictor.reset_image()


# ----------------------------------------------------------------------------- detector


def _same(a: Detections, b: Detections) -> bool:
    """The same detections: labels equal, boxes and scores within fp32 rounding."""
    assert a.labels == b.labels
    assert_close(a.boxes, b.boxes)
    assert_close(a.scores, b.scores)
    return True


def test_detector_threshold_change_reuses_outputs(detector, private_cache):
    detector.feature_cache = private_cache
    images = torch.rand(2, 64, 80, 3, generator=torch.Generator().manual_seed(3))
    try:
        with _CountCalls(detector.model, "forward") as model, _CountCalls(detector._backbone_module(), "forward") as bb:
            first = detector.detect(images, "cat, dog", 0.3, 0.25)
            assert (model.calls, bb.calls) == (2, 2)
            again = detector.detect(images, "cat . dog", 0.3, 0.25)  # same normalised prompt: all cached
            lower = detector.detect(images, "cat, dog", 0.1, 0.1, max_detections=3, nms_iou=0.9)
            assert model.calls == 2
            other = detector.detect(images, "shoes", 0.3, 0.25)  # new prompt: model runs, backbone cached
            assert (model.calls, bb.calls) == (4, 2)
        detector.feature_cache = None
        assert all(_same(a, b) for a, b in zip(again, first))
        assert all(_same(a, b) for a, b in zip(lower, detector.detect(images, "cat, dog", 0.1, 0.1, max_detections=3, nms_iou=0.9)))
        assert all(_same(a, b) for a, b in zip(other, detector.detect(images, "shoes", 0.3, 0.25)))
        assert "forward" not in detector._backbone_module().__dict__  # the temporary patch is gone
    finally:
        detector.feature_cache = cache_mod.default_cache()


def test_detector_batches_mix_hits_and_misses(detector, private_cache):
    detector.feature_cache = private_cache
    g = torch.Generator().manual_seed(4)
    a, b, c = (torch.rand(64, 64, 3, generator=g) for _ in range(3))
    try:
        detector.detect([a], "cat")
        with _CountCalls(detector.model, "forward") as model:
            mixed = detector.detect([a, b, c], "cat", batch_size=4)
            assert model.calls == 1  # a from the cache, b and c in one batch
        detector.feature_cache = None
        plain = detector.detect([a, b, c], "cat")
        assert all(torch.allclose(x.boxes, y.boxes, atol=1e-5) and x.labels == y.labels for x, y in zip(mixed, plain))
    finally:
        detector.feature_cache = cache_mod.default_cache()


def test_nested_features_keep_their_container_types():
    from typing import NamedTuple

    from grounded_inpaint.cache import to_cpu_copy, to_device

    class Feats(NamedTuple):
        embeddings: torch.Tensor
        extra: tuple

    value = Feats(torch.ones(2), (torch.zeros(1), {"a": torch.ones(3)}))
    c = FeatureCache(budget_bytes=MB)
    c.put(("o", "f"), to_cpu_copy(value), copy=False)
    got = to_device(c.get(("o", "f")), "cpu")
    assert isinstance(got, Feats) and torch.equal(got.embeddings, torch.ones(2))
    assert torch.equal(got.extra[1]["a"], torch.ones(3)) and c.stats().nbytes == 4 * (2 + 1 + 3)
