"""SAM 3 video tracking (the second engine): the tiny SAM 3 video folder through the real loader, parity
with transformers' documented streaming usage on shared random weights, the bounded memory window,
objects that end, the detector interval, mask NMS, the tracker entry points, the nodes and the
``track --engine sam3`` command."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Sam3VideoModel"):  # transformers 4: test_sam3_video_needs_transformers_5 in test_video.py
    pytest.skip(f"transformers {transformers.__version__} has no Sam3VideoModel", allow_module_level=True)

from comfy_fakes import InterruptProcessingException
from test_nodes import PACK_NAME, call, comfy, pack  # noqa: F401 - fixtures
from tolerance import assert_close, assert_masks_agree, assert_same_weights

from grounded_inpaint.errors import CheckpointError, ModelNotFoundError
from grounded_inpaint.prompts import EmptyPromptError
from grounded_inpaint.structures import Segments
from grounded_inpaint.video import grounded_track, load_sam3_video_model, track_frames
from grounded_inpaint.video.sam3_video import Sam3VideoEngine, mask_nms

#: Settings that make the tiny random model start objects after the first frame and re-condition
#: tracks within a short clip (applied alike to both sides of the parity test).
LIVELY = dict(assoc_iou_thresh=0.7, trk_assoc_iou_thresh=0.7, recondition_every_nth_frame=5, high_conf_thresh=0.5,
              high_iou_thresh=0.5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(models_dir):
    root, paths = models_dir
    return load_sam3_video_model(paths["sam3_video"].name, root, download=False)


def _fresh(models_dir, **settings) -> Sam3VideoEngine:
    root, paths = models_dir
    fresh = load_sam3_video_model(paths["sam3_video"], root, download=False, cache=False)
    for name, value in settings.items():
        setattr(fresh.model, name, value)
    return fresh


def _clip(n: int, h: int = 48, w: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- loading


def test_loads_through_the_real_loader_and_the_folder_also_serves_images(models_dir, engine):
    from grounded_inpaint.models import load_sam3

    root, paths = models_dir
    assert paths["sam3_video"] == root / "sam3" / "sam3-video-tiny-random"
    assert type(engine.model).__name__ == "Sam3VideoModel" and engine.image_size == 56
    assert engine.text_driven and engine.default_detect_every == 1
    # the image nodes read the same folder: Sam3Model gets the video model's detector, bit for bit
    image = load_sam3(paths["sam3_video"].name, root, download=False, cache=False)
    assert_same_weights(image.model.state_dict(), engine.model.detector_model.state_dict())


def test_image_only_folders_and_single_files_are_refused(models_dir, tmp_path):
    root, paths = models_dir
    with pytest.raises(CheckpointError, match="model_type 'sam3_video'.*image model only"):
        load_sam3_video_model(paths["sam3"].name, root, download=False, cache=False)
    single = tmp_path / "sam3" / "sam3.pt"
    single.parent.mkdir()
    single.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelNotFoundError, match="single file.*sam3.pt is not read"):
        load_sam3_video_model(single, tmp_path, download=False, cache=False)


def test_transformers_4_gets_the_pip_command_before_any_download(monkeypatch, pack, comfy):  # noqa: F811
    import builtins

    from grounded_inpaint.video import sam3_video

    real_import = builtins.__import__

    def import_without_sam3_video(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "transformers" and fromlist and "Sam3VideoModel" in fromlist:
            raise ImportError("cannot import name 'Sam3VideoModel' from 'transformers'")  # as transformers 4.x says
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", import_without_sam3_video)
    with pytest.raises(ImportError, match=r'transformers 5.0 or newer.*pip install -U "transformers>=5"'):
        sam3_video.require_sam3_video()
    runtime = __import__(f"{PACK_NAME}.nodes.runtime", fromlist=["x"])
    monkeypatch.setattr(runtime, "resolve_choice", lambda *a, **k: pytest.fail("resolved (and maybe downloaded) first"))
    with pytest.raises(ImportError, match="pip install"):
        call(pack, "GroundedInpaintLoadSam3Video", model_name="sam3", device="auto", precision="auto")


# ----------------------------------------------------------------------------- parity


def test_tracking_equals_transformers_documented_streaming_usage(models_dir):
    """processor.init_video_session() → add_text_prompt → model(inference_session, frame=processor(images=frame))
    → postprocess_outputs, frame by frame, as transformers' SAM 3 video docs show streaming."""
    pytest.importorskip("torchvision")
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    _, paths = models_dir
    frames = _clip(20)  # longer than the 15-frame window: the pruning is exercised
    ours_engine = _fresh(models_dir, **LIVELY)
    stream = ours_engine.start((48, 80), "red block, blue block", max_objects=8, threshold=0.3, new_object_threshold=0.6,
                               forget_after=None, nms_iou=0.0)  # transformers skips NMS without its hub kernel
    ours = [stream.step(frames[i]) for i in range(20)]

    processor = Sam3VideoProcessor.from_pretrained(str(paths["sam3_video"]))
    model = Sam3VideoModel.from_pretrained(str(paths["sam3_video"])).eval()
    for name, value in {**LIVELY, "max_num_objects": 8, "score_threshold_detection": 0.3, "new_det_thresh": 0.6,
                        "det_nms_thresh": 0.0, "fill_hole_area": 0}.items():
        setattr(model, name, value)
    session = processor.init_video_session(inference_device="cpu", processing_device="cpu", video_storage_device="cpu",
                                           dtype=torch.float32)
    session = processor.add_text_prompt(inference_session=session, text=["red block", "blue block"])
    for i in range(20):
        inputs = processor(images=(frames[i] * 255).permute(2, 0, 1), device="cpu", return_tensors="pt")
        if i == 0:
            assert_close(ours_engine.preprocess(frames[0]), inputs.pixel_values[0], dtype=torch.float32, msg="pre-processing")
        out = model(inference_session=session, frame=inputs.pixel_values[0])
        theirs = processor.postprocess_outputs(session, out, original_sizes=inputs.original_sizes)
        visible = theirs["masks"].flatten(1).any(1)  # ours leaves out objects that lost every pixel to overlaps
        theirs = {k: (v[visible] if torch.is_tensor(v) else v) for k, v in theirs.items()}
        ids = [int(k) + 1 for k in theirs["object_ids"]]  # ours count from 1
        assert sorted(ours[i]) == ids, i
        labels = {int(k) + 1: text for text, objs in theirs["prompt_to_obj_ids"].items() for k in objs}
        assert [ours[i][k].label for k in ids] == [labels[k] for k in ids]
        assert_close(torch.tensor([ours[i][k].score for k in ids]), theirs["scores"].float())
        assert_masks_agree(torch.stack([ours[i][k].mask for k in ids]), theirs["masks"])
    assert set(ours[1]) - set(ours[0]), "objects start after the first frame"
    anchors = [len(o["cond_frame_outputs"]) for o in stream.session.output_dict_per_obj.values()]
    assert max(anchors) > 1, "some track was re-conditioned"
    assert max(len(o["non_cond_frame_outputs"]) for o in session.output_dict_per_obj.values()) == 19
    assert max(len(o["non_cond_frame_outputs"]) for o in stream.session.output_dict_per_obj.values()) <= ours_engine.memory_window


# ----------------------------------------------------------------------------- the stream


def test_memory_stays_windowed(models_dir):
    engine = _fresh(models_dir, **LIVELY)
    stream = engine.start((16, 24), "red block, blue block", max_objects=3, threshold=0.3)
    frames = _clip(36, 16, 24, seed=3)
    for i in range(36):
        stream.step(frames[i])
    session = stream.session
    assert dict(session.processed_frames) == {} and len(session.processed_frames) == 36  # counted, not kept
    assert len(session.cache._vision_features) <= 1
    for outputs in session.output_dict_per_obj.values():
        assert set(outputs["non_cond_frame_outputs"]) <= set(range(36 - engine.memory_window, 36))
        assert len(outputs["cond_frame_outputs"]) <= engine.model.config.tracker_config.max_cond_frame_num
        assert all("high_res_masks" not in r for r in (*outputs["non_cond_frame_outputs"].values(),
                                                        *outputs["cond_frame_outputs"].values()))
    assert set(session.obj_id_to_tracker_score_frame_wise) == {35} and set(session.suppressed_obj_ids) <= {35}
    assert not session.unmatched_frame_inds and not session.overlap_pair_to_frame_inds


def test_unseen_objects_end_and_ids_are_never_reused(models_dir):
    engine = _fresh(models_dir)
    stream = engine.start((24, 32), "red block", threshold=0.3, forget_after=2, nms_iou=0.0)
    frames = _clip(12, 24, 32, seed=5)
    first = stream.step(frames[0])
    assert first and all(r.new for r in first.values())
    head = engine.model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias
    kept = head.detach().clone()
    with torch.no_grad():
        head.fill_(-30.0)  # the tracker now says "absent" for every object: nothing is visible
    gone = [stream.step(frames[i], detect=False) for i in range(1, 5)]
    assert all(g == {} for g in gone)
    assert stream.object_ids == []  # unseen for more than 2 frames: ended, no memory pass any more
    with torch.no_grad():
        head.copy_(kept)
    again = stream.step(frames[5])
    assert again and min(again) > max(first)  # found again: new ids


def test_new_objects_start_only_where_the_detector_runs(models_dir):
    engine = _fresh(models_dir, **LIVELY)
    frames = _clip(7, 24, 32, seed=7)
    every = grounded_track(None, engine, frames, "red block, blue block", detect_every=3, threshold=0.3,
                           new_object_threshold=0.3)
    first_seen = {}
    for t, seg in enumerate(every):
        for i in seg.ids.tolist():
            first_seen.setdefault(i, t)
    assert set(first_seen.values()) <= {0, 3, 6} and len(set(first_seen.values())) > 1
    once = grounded_track(None, engine, frames, "red block", detect_every=0, threshold=0.3)
    assert {i for s in once for i in s.ids.tolist()} <= set(once[0].ids.tolist())


def test_mask_nms_keeps_the_best_of_overlapping_detections():
    masks = torch.full((4, 8, 8), -1.0)
    masks[0, :4, :4] = masks[1, :4, :5] = 1.0  # 1 overlaps 0 (IoU 0.8)
    masks[2, 4:, 4:] = 1.0
    masks[3, 4:, :4] = 1.0
    probs = torch.tensor([0.6, 0.9, 0.8, 0.2])
    assert mask_nms(probs, masks, 0.5, 0.5).tolist() == [False, True, True, False]  # 3 is under the threshold
    assert mask_nms(probs, masks, 0.5, 0.9).tolist() == [True, True, True, False]
    assert not mask_nms(probs, masks, 0.95, 0.5).any()


def test_duplicates_are_suppressed_by_default(engine):
    """The tiny model's masks overlap heavily: NMS (on by default, as in SAM 3) keeps one per concept."""
    frames = _clip(2, 24, 32, seed=9)
    with_nms = grounded_track(None, engine, frames, "red block", threshold=0.3)
    stream = engine.start((24, 32), "red block", threshold=0.3, nms_iou=0.0)
    without = stream.step(frames[0])
    assert 1 <= len(with_nms[0]) < len(without)


# ----------------------------------------------------------------------------- entry points


def test_grounded_track_with_sam3_b_in_b_out(engine, monkeypatch):
    from transformers.models.sam3_video import modeling_sam3_video

    def no_hub_code():
        raise AssertionError("transformers was asked to fetch its cv-utils kernel from the Hub")

    monkeypatch.setattr(modeling_sam3_video, "_load_cv_utils_kernel_once", no_hub_code)  # NMS and hole filling stay local
    frames = _clip(5, 40, 56)
    seen = []
    segments = grounded_track(None, engine, frames, "red block, blue block", max_objects=3, threshold=0.3,
                              progress=lambda d, t: seen.append((d, t)))
    assert len(segments) == 5 and seen[-1] == (5, 5)
    assert segments[0].ids.tolist()[0] == 1 and len(segments[0]) <= 3
    for seg in segments:
        assert isinstance(seg, Segments) and seg.image_size == (40, 56) and seg.ids is not None
        assert set(seg.labels) <= {"red block", "blue block"} and bool(seg.masks.flatten(1).any(1).all())
        assert bool(((seg.scores > 0.3) & (seg.scores <= 1)).all())
    nothing = grounded_track(None, engine, frames[:2], "red block", threshold=1.0)
    assert [len(s) for s in nothing] == [0, 0] and all(s.ids.numel() == 0 for s in nothing)


def test_bad_clips_and_prompts(engine):
    with pytest.raises(EmptyPromptError):
        grounded_track(None, engine, _clip(2, 16, 16), " ; ")
    with pytest.raises(ValueError, match="frame 2 is 20x16 but the clip's first frame is 16x16"):
        grounded_track(None, engine, [torch.rand(16, 16, 3), torch.rand(16, 20, 3)], "cat")
    with pytest.raises(ValueError, match="new_object_threshold"):
        grounded_track(None, engine, _clip(1, 16, 16), "cat", new_object_threshold=-0.5)
    with pytest.raises(ValueError, match="no frames"):
        list(track_frames(None, engine, [], "cat"))


# ----------------------------------------------------------------------------- nodes and the command


def _sam3_video_node(pack, comfy, models_dir):  # noqa: F811
    root, paths = models_dir
    comfy.folder_paths.add_model_folder_path("sam3", str(root / "sam3"))
    (video,) = call(pack, "GroundedInpaintLoadSam3Video", model_name=paths["sam3_video"].name, device="auto", precision="auto")
    return video


def test_sam3_track_node_b_in_b_out(pack, comfy, models_dir):  # noqa: F811
    video = _sam3_video_node(pack, comfy, models_dir)
    assert video.patcher is not None and len(comfy.patchers) == 1  # handed to ComfyUI's memory manager
    node = pack.NODE_CLASS_MAPPINGS["GroundedInpaintSam3Track"]()
    out = node.track(images=_clip(4, 24, 32), sam3_video_model=video, prompt="red block, blue block", detect_every=1,
                     max_objects=2, threshold=0.3, new_object_threshold=0.7)
    segments, mask, preview = out["result"]
    assert len(segments) == 4 and mask.shape == (4, 24, 32) and preview.shape == (4, 24, 32, 3)
    assert segments[0].ids.tolist()[0] == 1 and ("absolute", 4) in comfy.progress and comfy.loads
    picked, _ = call(pack, "GroundedInpaintSelectObjects", segments=segments, ids="1", labels="")
    assert all(s.ids.tolist() in ([1], []) for s in picked)


def test_sam3_track_node_cancel(pack, comfy, models_dir):  # noqa: F811
    video = _sam3_video_node(pack, comfy, models_dir)
    comfy.interrupt_after = 30
    with pytest.raises(InterruptProcessingException):
        call(pack, "GroundedInpaintSam3Track", images=_clip(3, 24, 32), sam3_video_model=video, prompt="cat",
             detect_every=1, max_objects=2, threshold=0.3, new_object_threshold=0.7)


def test_track_command_with_the_sam3_engine(models_dir, tmp_path):
    from grounded_inpaint.cli import main
    from grounded_inpaint.images import save_image

    root, paths = models_dir
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(4):
        save_image(torch.rand(24, 32, 3, generator=torch.Generator().manual_seed(i)), clip / f"f{i}.png")
    out = tmp_path / "out"
    assert main(["track", str(clip), "--prompt", "red block, blue block", "--out", str(out), "--models", str(root),
                 "--engine", "sam3", "--video-model", paths["sam3_video"].name, "--no-download", "-q", "--threshold", "0.3",
                 "--max-objects", "2"]) == 0
    record = json.loads((out / "tracks.json").read_text())
    assert record["frame_count"] == 4 and record["objects"] and record["objects"][0]["id"] == 1
    assert record["settings"]["engine"] == "sam3" and record["settings"]["detector_path"] is None
    assert record["settings"]["detect_every_used"] == 1
    assert {o["label"] for o in record["objects"]} <= {"red block", "blue block"}
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"f{i}.png" for i in range(4)]
