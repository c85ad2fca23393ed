"""Video tracking: SAM 2.1 video weights in every layout, parity with transformers' documented video
usage, the streamed memory-bounded propagation, the id rules on synthetic clips (shapes that move,
enter, leave, cross, drift), batch alignment, the nodes and the ``track`` command."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Sam2VideoModel"):  # pragma: no cover - transformers < 4.56
    pytest.skip("transformers has no SAM 2 video classes", allow_module_level=True)

from comfy_fakes import InterruptProcessingException
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures
from tolerance import assert_close, assert_masks_agree, assert_same_weights

from grounded_inpaint.errors import CheckpointError
from grounded_inpaint.prompts import EmptyPromptError
from grounded_inpaint.structures import Segments
from grounded_inpaint.testing.video_clips import ShapeClip, crossing_clip, id_swaps, owner, run_oracle
from grounded_inpaint.video import grounded_track, load_video_model, track_frames
from grounded_inpaint.video.tracks import TrackBook, box_iou, mask_box


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny video models are a few hundred small ops per frame: threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(models_dir):
    root, paths = models_dir
    return load_video_model(paths["sam2_video_hf"].name, root, download=False)


# ----------------------------------------------------------------------------- loading


def test_every_layout_loads_with_the_video_weights(models_dir, tmp_path):
    from grounded_inpaint.testing.tiny_sam2_video import build_tiny_sam2_video_hf, write_tiny_sam2_video_original

    root, paths = models_dir
    reference = build_tiny_sam2_video_hf(0).state_dict()
    kijai = write_tiny_sam2_video_original(tmp_path / "sam2.1_hiera_tiny_video.safetensors")
    for source in (paths["sam2_video_file"], kijai, paths["sam2_video_hf"]):
        loaded = load_video_model(source, root, download=False, cache=False)
        assert type(loaded.model).__name__ == "Sam2VideoModel"
        assert_same_weights(loaded.model.state_dict(), reference)  # bit-identical, memory modules included
    assert load_video_model(paths["sam2_video_file"], root, download=False, cache=False).image_size == 1024  # Meta files
    assert load_video_model(paths["sam2_video_hf"], root, download=False, cache=False).image_size == 64


def test_round_trip_through_metas_layout_is_bit_identical():
    from grounded_inpaint.sam.convert_sam2 import hf_sam2_video_model_from_original, hf_to_original_sam2_state_dict
    from grounded_inpaint.testing.tiny_sam2_video import build_tiny_sam2_video_hf

    model = build_tiny_sam2_video_hf(3)
    original = hf_to_original_sam2_state_dict(model.state_dict())
    assert "memory_encoder.fuser.layers.1.gamma" in original and "obj_ptr_proj.layers.2.weight" in original
    assert "memory_encoder.mask_downsampler.encoder.12.weight" in original and "maskmem_tpos_enc" in original
    back = hf_sam2_video_model_from_original(original, "round trip")
    assert_same_weights(back.state_dict(), model.state_dict())
    buffers = dict(model.named_buffers())
    for name, buffer in back.named_buffers():  # non-persistent rotary buffers rebuilt, not left on the meta device
        assert torch.equal(buffer, buffers[name]), name


def test_image_only_files_are_refused_with_what_is_missing(models_dir):
    root, paths = models_dir
    with pytest.raises(CheckpointError, match="no SAM 2 video-tracking weights.*image model only"):
        load_video_model(paths["sam2_file"], root, download=False, cache=False)
    with pytest.raises(CheckpointError, match="model_type 'sam2_video'"):
        load_video_model(paths["sam2_hf"], root, download=False, cache=False)


def test_a_file_with_a_wrong_video_tensor_does_not_load(tmp_path):
    from grounded_inpaint.sam.convert_sam2 import hf_sam2_video_model_from_original
    from grounded_inpaint.testing.tiny_sam2_video import tiny_sam2_video_original_state_dict

    sd = tiny_sam2_video_original_state_dict(0)
    sd["memory_attention.layers.0.linear2.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="shape mismatches.*linear2"):
        hf_sam2_video_model_from_original(sd, "bad")
    sd = tiny_sam2_video_original_state_dict(0)
    sd["memory_attention.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        hf_sam2_video_model_from_original(sd, "bad")


def test_the_video_file_still_serves_the_image_predictor(models_dir):
    from grounded_inpaint.models import load_segmenter

    root, paths = models_dir
    predictor = load_segmenter(paths["sam2_video_file"].name, root, download=False, cache=False)
    video = load_video_model(paths["sam2_video_file"], root, download=False, cache=False)
    image_weights = predictor.model.state_dict()
    assert_same_weights(image_weights, {k: v for k, v in video.model.state_dict().items() if k in image_weights})


# ----------------------------------------------------------------------------- propagation


def _clip(n: int = 24, h: int = 48, w: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


BOXES = {1: torch.tensor([5.0, 5.0, 40.0, 30.0]), 2: torch.tensor([30.0, 10.0, 70.0, 45.0])}


def _ours(engine, frames, prompts_at=None, **start):
    stream = engine.start(tuple(frames.shape[1:3]), **start)
    prompts_at = prompts_at or {0: BOXES}
    return stream, [stream.step(frames[i], prompts_at.get(i)) for i in range(frames.shape[0])]


def test_propagation_equals_transformers_documented_video_usage(engine, models_dir):
    """init_video_session(video) → add_inputs_to_inference_session(boxes) → model(frame 0) →
    propagate_in_video_iterator → post_process_masks, as transformers' SAM 2 video docs show it."""
    pytest.importorskip("torchvision")
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    processors = pytest.importorskip("transformers").models.sam2_video
    _, paths = models_dir
    frames = _clip()  # 24 frames: longer than the memory window, so the pruning is exercised
    _, ours = _ours(engine, frames)
    size = {"height": engine.image_size, "width": engine.image_size}
    image_processor = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    processor = Sam2VideoProcessor(image_processor(size=size, mask_size={"height": 16, "width": 16}),
                                   processors.Sam2VideoVideoProcessor(size=size))
    model = Sam2VideoModel.from_pretrained(str(paths["sam2_video_hf"]))
    session = processor.init_video_session(video=frames.permute(0, 3, 1, 2) * 255, inference_device="cpu")
    assert_close(engine.preprocess(frames[0]), session.processed_frames[0], dtype=torch.float32, msg="pre-processing")
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1, 2],
                                              input_boxes=[[BOXES[1].tolist(), BOXES[2].tolist()]])
    model(inference_session=session, frame_idx=0)
    theirs = {}
    for out in model.propagate_in_video_iterator(session):
        theirs[out.frame_idx] = processor.post_process_masks([out.pred_masks], original_sizes=[[48, 80]])[0][:, 0]
    assert sorted(theirs) == list(range(24))
    for i in range(24):
        ours_masks = torch.stack([ours[i][1].mask, ours[i][2].mask])
        assert ours_masks.any(), i
        assert_masks_agree(ours_masks, theirs[i])


def test_memory_stays_windowed_and_frames_do_not_stay(engine):
    frames = _clip(40, 24, 32)
    stream, results = _ours(engine, frames, {0: BOXES, 12: {1: BOXES[1]}, 20: {1: BOXES[1]}, 30: {1: BOXES[1]}}, max_anchors=2)
    session = stream.session
    window = engine.memory_window
    assert not session.processed_frames  # no frame is kept once used
    for idx in range(2):
        outputs = session.output_dict_per_obj[idx]
        assert set(outputs["non_cond_frame_outputs"]) <= set(range(40 - window, 40))
        assert all("high_res_masks" not in r for r in outputs["non_cond_frame_outputs"].values())
    assert sorted(session.output_dict_per_obj[0]["cond_frame_outputs"]) == [0, 30]  # the first and the latest anchor
    assert results[12][1].prompted and not results[12][2].prompted


def test_removing_an_object_leaves_the_others_as_if_it_never_was(engine):
    frames = _clip(14, 24, 32, seed=1)
    stream = engine.start((24, 32))
    both = [stream.step(frames[i], {1: BOXES[1] / 2, 2: BOXES[2] / 2} if i == 0 else None, remove=[2] if i == 6 else ())
            for i in range(14)]
    assert set(both[5]) == {1, 2} and set(both[6]) == {1} and stream.object_ids == [1]
    alone = engine.start((24, 32))
    single = [alone.step(frames[i], {1: BOXES[1] / 2, 2: BOXES[2] / 2} if i == 0 else None) for i in range(6)]
    single += [alone.step(frames[i], remove=[2] if i == 6 else ()) for i in range(6, 14)]
    for i in range(14):
        assert torch.equal(both[i][1].mask, single[i][1].mask), i


def test_objects_can_start_on_any_frame(engine):
    frames = _clip(8, 24, 32, seed=2)
    stream = engine.start((24, 32))
    out = [stream.step(frames[i], {7: BOXES[1] / 2} if i == 3 else None) for i in range(8)]
    assert out[0] == {} and out[2] == {}  # nothing tracked: the model does not run
    assert set(out[3]) == {7} and out[3][7].prompted and set(out[7]) == {7}


def test_a_frame_of_another_size_is_refused(engine):
    stream = engine.start((24, 32))
    stream.step(torch.rand(24, 32, 3), {1: BOXES[1] / 2})
    with pytest.raises(ValueError, match=r"frame 2 is \(20, 32\).*\(24, 32\)"):
        stream.step(torch.rand(20, 32, 3))


# ----------------------------------------------------------------------------- id rules on synthetic clips


def _run(clip, detect_every=5, drift=None, **options):
    return run_oracle(clip, detect_every, drift, **options)


def test_ids_never_swap_when_two_objects_cross():
    # A goes right, B goes left; they overlap around frame 9 (same size, same label)
    clip = ShapeClip({1: lambda t: (5 + 4 * t, 20, 25 + 4 * t, 40), 2: lambda t: (75 - 4 * t, 22, 95 - 4 * t, 42)}, 18)
    results, _, detector = _run(clip, detect_every=2)
    assert {8, 10} <= set(detector.calls)  # detections in the middle of the crossing
    owners = {}
    for t, seg in enumerate(results):
        assert seg.ids.tolist() == [1, 2]
        for obj_id, mask in zip(seg.ids.tolist(), seg.masks):
            if t in (8, 9, 10):
                continue  # fully overlapping: either owner is right
            owners.setdefault(obj_id, set()).add(owner(clip, t, mask))
    assert owners == {1: {1}, 2: {2}} or owners == {1: {2}, 2: {1}}
    assert all(len(o) == 1 for o in owners.values())
    assert id_swaps(clip, results) == 0
    results, _, _ = _run(crossing_clip(30), detect_every=3)
    assert id_swaps(crossing_clip(30), results) == 0


def test_newcomers_get_new_ids_and_ids_are_never_reused():
    clip = ShapeClip({
        1: lambda t: (5, 5, 25, 25) if t < 8 else None,      # leaves at frame 8
        2: lambda t: (60, 30, 80, 50),                        # stays
        3: lambda t: (30, 5, 50, 25) if t >= 12 else None,   # enters at frame 12
    }, 40)
    results, engine, _ = _run(clip, detect_every=5, forget_after=3)
    assert results[0].ids.tolist() == [1, 2]
    assert results[9].ids.tolist() == [2]                   # the leaver is no longer shown
    assert results[14].ids.tolist() == [2]                  # the newcomer waits for the next detection (frame 15)
    assert results[15].ids.tolist() == [2, 3]               # ... and gets a new id, not 1 again
    assert results[39].ids.tolist() == [2, 3]
    assert len(results) == 40 and all(s.image_size == (60, 100) for s in results)


def test_a_drifting_track_is_re_anchored_and_keeps_its_id():
    clip = ShapeClip({1: lambda t: (20, 20, 40, 40)}, 12)
    results, engine, _ = _run(clip, detect_every=4, drift=lambda t: 3 * (t % 4))
    assert (0, 1) in engine.prompts and (4, 1) in engine.prompts and (8, 1) in engine.prompts
    assert all(s.ids.tolist() == [1] for s in results)


def test_a_steady_track_is_not_re_anchored():
    clip = ShapeClip({1: lambda t: (20 + t, 20, 40 + t, 40)}, 12)
    _, engine, _ = _run(clip, detect_every=4)
    assert engine.prompts == [(0, 1)]


def test_max_objects_keeps_the_best_detections():
    clip = ShapeClip({k: (lambda k: lambda t: (5 + 20 * k, 5, 20 + 20 * k, 20))(k) for k in range(4)}, 3)
    results, _, _ = _run(clip, max_objects=2)
    assert all(len(s) == 2 for s in results)


def test_trackbook_matching_is_optimal_not_greedy():
    book = TrackBook(match_iou=0.1)
    book.plan(0, torch.tensor([[0.0, 0, 10, 10], [8.0, 0, 18, 10]]), [0.9, 0.8], ["a", "a"])
    # track 1 at 0..10, track 2 at 8..18; detections move right by 4: greedy would give 1 the box at 4..14
    plan = book.plan(1, torch.tensor([[12.0, 0, 22, 10], [4.0, 0, 14, 10]]), [0.9, 0.9], ["a", "a"])
    assert plan.matched == {1: 1, 2: 0} and not plan.start


def test_mask_box_and_box_iou():
    m = torch.zeros(10, 12, dtype=torch.bool)
    m[2:5, 3:9] = True
    assert mask_box(m).tolist() == [3.0, 2.0, 9.0, 5.0] and mask_box(torch.zeros(4, 4, dtype=torch.bool)) is None
    assert float(box_iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 0, 3, 2]))[0, 0]) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- the real models together


def test_grounded_track_batch_alignment_and_ids(detector, engine):
    frames = _clip(9, 40, 56)
    segments = grounded_track(detector, engine, frames, "red shoes", detect_every=4, max_objects=3, box_threshold=0.0)
    assert len(segments) == 9
    ids = segments[0].ids.tolist()
    assert ids == [1, 2, 3]
    for seg in segments:
        assert isinstance(seg, Segments) and seg.image_size == (40, 56) and seg.masks.shape[1:] == (40, 56)
        assert seg.ids is not None and set(seg.ids.tolist()) <= {1, 2, 3} and len(seg.labels) == len(seg)
    nothing = grounded_track(detector, engine, frames[:3], "red shoes", box_threshold=1.0)
    assert [len(s) for s in nothing] == [0, 0, 0] and all(s.ids.numel() == 0 for s in nothing)


def test_one_frame_and_progress_and_interrupt(detector, engine):
    seen = []
    (only,) = grounded_track(detector, engine, _clip(1, 32, 32), "shoes", box_threshold=0.0, max_objects=1,
                             progress=lambda d, t: seen.append((d, t)))
    assert len(only) == 1 and seen == [(1, 1)]

    calls = []

    def stop():
        calls.append(1)
        if len(calls) > 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        grounded_track(detector, engine, _clip(6, 32, 32), "shoes", box_threshold=0.0, interrupt=stop)
    assert len(calls) > 40  # checked inside model passes, not only between frames


def test_bad_clips_and_prompts(detector, engine):
    with pytest.raises(EmptyPromptError):
        grounded_track(detector, engine, _clip(2, 16, 16), "  , ")
    with pytest.raises(ValueError, match="frame 2 is 20x16 but the clip's first frame is 16x16"):
        grounded_track(detector, engine, [torch.rand(16, 16, 3), torch.rand(16, 20, 3)], "shoes")
    with pytest.raises(ValueError, match="detect_every"):
        grounded_track(detector, engine, _clip(2, 16, 16), "shoes", detect_every=-1)
    with pytest.raises(ValueError, match="max_objects"):
        grounded_track(detector, engine, _clip(2, 16, 16), "shoes", max_objects=0)
    with pytest.raises(ValueError, match="no frames"):
        list(track_frames(detector, engine, [], "shoes"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_a_thousand_frames_run_in_bounded_memory(detector, engine):
    """1000 frames streamed through: the session holds a bounded window, and the process does not grow."""
    def frames():
        g = torch.Generator().manual_seed(0)
        for _ in range(1000):
            yield torch.rand(16, 16, 3, generator=g)

    stream_sizes = []
    rss = {}
    original_start = engine.start

    def start(size, **kw):
        stream = original_start(size, **kw)
        stream_sizes.append(stream)
        return stream

    engine.start = start
    try:
        for i, seg in enumerate(track_frames(detector, engine, frames(), "shoes", detect_every=100, max_objects=1,
                                             box_threshold=0.0)):
            if i in (199, 999):
                rss[i] = _rss_mb()
    finally:
        del engine.start
    session = stream_sizes[0].session
    assert stream_sizes[0].frame_index == 999
    assert all(len(o["non_cond_frame_outputs"]) <= engine.memory_window for o in session.output_dict_per_obj.values())
    assert all(len(o["cond_frame_outputs"]) <= 3 for o in session.output_dict_per_obj.values())
    assert not session.processed_frames and len(session.cache._vision_features) <= 1
    assert rss[999] - rss[199] < 40, rss  # 800 more frames: no growth beyond allocator noise


# ----------------------------------------------------------------------------- nodes


def _video_nodes(pack, comfy, models_dir):  # noqa: F811
    root, paths = models_dir
    comfy.folder_paths.add_model_folder_path("sam2", str(root / "sam2"))
    (det,) = call(pack, "GroundedInpaintLoadGroundingDino", model_name=paths["grounding_dino"].name, device="auto", precision="auto")
    (video,) = call(pack, "GroundedInpaintLoadSam2Video", model_name=paths["sam2_video_hf"].name, device="auto", precision="auto")
    return det, video


def test_video_loader_lists_sam2_models_only(pack, comfy, models_dir):  # noqa: F811
    root, paths = models_dir
    comfy.folder_paths.add_model_folder_path("sam2", str(root / "sam2"))
    choices = pack.NODE_CLASS_MAPPINGS["GroundedInpaintLoadSam2Video"].INPUT_TYPES()["required"]["model_name"][0]
    assert paths["sam2_video_file"].name in choices and paths["sam2_video_hf"].name in choices
    assert paths["sam_meta"].name not in choices
    assert any(c.startswith("sam2.1_hiera_large.pt") for c in choices)  # a known download


def test_grounded_track_node_b_in_b_out(pack, comfy, models_dir):  # noqa: F811
    det, video = _video_nodes(pack, comfy, models_dir)
    assert len(comfy.patchers) == 2  # both handed to ComfyUI's memory manager
    frames = _clip(5, 24, 32)
    node = pack.NODE_CLASS_MAPPINGS["GroundedInpaintGroundedTrack"]()
    out = node.track(images=frames, detector=det, video_model=video, prompt="shoes", detect_every=2, max_objects=2,
                     box_threshold=0.0, text_threshold=0.25)
    segments, mask, preview = out["result"]
    assert len(segments) == 5 and mask.shape == (5, 24, 32) and preview.shape == (5, 24, 32, 3)
    assert segments[0].ids.tolist() == [1, 2]
    assert ("absolute", 5) in comfy.progress and comfy.loads  # progress per frame, models loaded by ComfyUI
    picked, picked_mask = call(pack, "GroundedInpaintSelectObjects", segments=segments, ids="2", labels="")
    assert all(s.ids.tolist() in ([2], []) for s in picked) and picked_mask.shape == (5, 24, 32)
    (inverted, _) = call(pack, "GroundedInpaintMaskFromSegments", segments=picked, invert=True, grow=0, feather=0.0,
                         fill_holes=False, min_area=0)
    assert inverted.shape == (5, 24, 32)
    with pytest.raises(ValueError, match="ids"):
        call(pack, "GroundedInpaintSelectObjects", segments=segments, ids="two", labels="")


def test_grounded_track_node_cancel(pack, comfy, models_dir):  # noqa: F811
    det, video = _video_nodes(pack, comfy, models_dir)
    comfy.interrupt_after = 30
    with pytest.raises(InterruptProcessingException):
        call(pack, "GroundedInpaintGroundedTrack", images=_clip(4, 24, 32), detector=det, video_model=video, prompt="shoes",
             detect_every=2, max_objects=2, box_threshold=0.0, text_threshold=0.25)


# ----------------------------------------------------------------------------- the track command


def _frames_folder(folder, n=5, h=24, w=32):
    from grounded_inpaint.images import save_image

    folder.mkdir()
    for i in range(n):
        save_image(torch.rand(h, w, 3, generator=torch.Generator().manual_seed(i)), folder / f"frame{i}.png")
    return folder


def _track_argv(models_dir, clip, out, *extra):
    root, paths = models_dir
    return ["track", str(clip), "--prompt", "shoes", "--out", str(out), "--models", str(root), "--detector",
            paths["grounding_dino"].name, "--video-model", paths["sam2_video_hf"].name, "--no-download", "-q",
            "--box-threshold", "0", "--max-objects", "2", *extra]


def test_track_command_on_a_folder_of_frames(models_dir, tmp_path):
    from PIL import Image

    from grounded_inpaint.cli import main

    clip = _frames_folder(tmp_path / "clip")
    out = tmp_path / "out"
    assert main(_track_argv(models_dir, clip, out, "--detect-every", "2", "--invert", "--ids", "1")) == 0
    record = json.loads((out / "tracks.json").read_text())
    assert record["frame_count"] == 5 and [o["id"] for o in record["objects"]] == [1, 2]
    assert all(f["selected"] in ([1], []) for f in record["frames"])
    assert record["frames"][0]["instances"][0]["id"] == 1 and record["settings"]["detect_every"] == 2
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == [f"frame{i}.png" for i in range(5)]
    mask = Image.open(out / "masks" / "frame0.png")
    assert mask.size == (32, 24)


def test_track_command_on_a_video_file(models_dir, tmp_path):
    av = pytest.importorskip("av")
    from grounded_inpaint.cli import main
    from grounded_inpaint.video.frames import MaskVideoWriter

    video = tmp_path / "clip.mp4"
    with MaskVideoWriter(video, 10) as writer:  # a small gray clip
        for i in range(6):
            writer.write(torch.rand(24, 32, generator=torch.Generator().manual_seed(i)))
    out = tmp_path / "out"
    assert main(_track_argv(models_dir, video, out)) == 0
    assert len(list((out / "masks").iterdir())) == 6
    with av.open(str(out / "masks.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_track_command_without_pyav_names_the_pip_command(models_dir, tmp_path, monkeypatch, capsys):
    from grounded_inpaint.cli import main
    from grounded_inpaint.video import frames

    monkeypatch.setattr(frames, "have_pyav", lambda: False)
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    assert main(_track_argv(models_dir, tmp_path / "clip.mp4", tmp_path / "out")) == 2
    assert 'pip install "grounded-inpaint[video]"' in capsys.readouterr().err
    clip = _frames_folder(tmp_path / "clip")  # folders still work, without masks.mp4
    assert main(_track_argv(models_dir, clip, tmp_path / "out2")) == 0
    assert (tmp_path / "out2" / "tracks.json").is_file() and not (tmp_path / "out2" / "masks.mp4").exists()


def test_track_command_bad_options_exit_2(models_dir, tmp_path, capsys):
    from grounded_inpaint.cli import main

    clip = _frames_folder(tmp_path / "clip", n=1)
    with pytest.raises(SystemExit) as stop:
        main(_track_argv(models_dir, clip, tmp_path / "out", "--detect-every", "-1"))
    assert stop.value.code == 2 and "--detect-every" in capsys.readouterr().err
    assert main(_track_argv(models_dir, clip, tmp_path / "out", "--ids", "x")) == 2
    assert main(_track_argv(models_dir, tmp_path / "missing", tmp_path / "out")) == 2


def test_bf16_tracks_like_fp32(models_dir):
    root, paths = models_dir
    fp32 = load_video_model(paths["sam2_video_hf"], root, download=False, cache=False)
    bf16 = load_video_model(paths["sam2_video_hf"], root, download=False, cache=False, dtype="bf16")
    assert bf16.dtype == torch.bfloat16
    frames = _clip(6, 24, 32, seed=4)
    _, a = _ours(fp32, frames, {0: {1: BOXES[1] / 2}})
    _, b = _ours(bf16, frames, {0: {1: BOXES[1] / 2}})
    for i in range(6):
        inter = (a[i][1].mask & b[i][1].mask).sum().item()
        union = (a[i][1].mask | b[i][1].mask).sum().item()
        assert union and inter / union > 0.9, i


def test_segments_info_lists_the_ids():
    from grounded_inpaint.batch import describe_segments

    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :2, :2] = masks[1, 4:, 4:] = True
    seg = Segments(masks, torch.tensor([[0.0, 0, 2, 2], [4.0, 4, 8, 8]]), torch.ones(2), torch.ones(2), ["a", "b"], (8, 8),
                   torch.tensor([3, 7]))
    text = describe_segments([seg, seg.take([1])])
    assert "image 1 #0 id 3 a" in text and "image 2 #0 id 7 b" in text
    assert seg.to_json()["instances"][1]["id"] == 7 and "id" not in Segments.empty((8, 8)).to_json()
    with pytest.raises(ValueError, match="one object id per mask"):
        Segments(masks, seg.boxes, seg.scores, seg.quality, seg.labels, (8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="whole numbers"):
        Segments(masks, seg.boxes, seg.scores, seg.quality, seg.labels, (8, 8), torch.tensor([1.5, 2.0]))


def test_sam3_video_needs_transformers_5(pack, comfy, monkeypatch):  # noqa: F811
    """On transformers 4 the SAM 3 engine says what to install, before any download (transformers 5 runs the
    same check with the class hidden in test_video_sam3.py)."""
    if hasattr(transformers, "Sam3VideoModel"):
        pytest.skip("transformers 5 has SAM 3 video: tests/test_video_sam3.py covers it")
    from grounded_inpaint.video import load_sam3_video_model

    with pytest.raises(ImportError, match=r'transformers 5.0 or newer.*pip install -U "transformers>=5"'):
        load_sam3_video_model("sam3", download=False)
    runtime = sys.modules[f"{PACK_NAME}.nodes.runtime"]
    monkeypatch.setattr(runtime, "resolve_choice", lambda *a, **k: pytest.fail("resolved (and maybe downloaded) first"))
    with pytest.raises(ImportError, match="pip install"):
        call(pack, "GroundedInpaintLoadSam3Video", model_name="sam3", device="auto", precision="auto")
