"""In a real ComfyUI: "Unload models" (``POST /free``) really frees the pack's models, the log names
them, and Cancel stops a model pass while it runs — leaving nothing half-done behind, with the next
prompt running normally. (How fast Cancel is, is measured by ``benchmarks/cancel_latency.py``.)

Skipped unless ``COMFYUI_DIR`` points at a ComfyUI checkout (see ``comfy_server.py``). The models are
real-size random-weight GroundingDINO Swin-T and SAM ViT-B (``grounded_inpaint.testing.real_size``):
for the memory test with 64 px inputs (over 1 GB of weights, passes of a second), for the Cancel
test GroundingDINO at its real 800 px input (several seconds per pass on a CPU).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest
from grounded_inpaint.testing.comfy_server import COMFYUI_DIR, ROOT, ComfyServer, post

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the integration test"),
]

#: After /free the server's RSS must come back to within this of what it was before the models were loaded.
RSS_TOLERANCE_MB = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from grounded_inpaint.testing.real_size import write_real_size_grounding_dino, write_real_size_meta_sam
    from grounded_inpaint.testing.tiny_models import write_models_folder

    work = tmp_path_factory.mktemp("comfy_memory")
    models = work / "models"
    write_models_folder(models)
    write_real_size_grounding_dino(models / "grounding-dino" / "swint-64px-random", input_size=64)
    write_real_size_meta_sam(models / "sams" / "sam_vit_b_64px_random.pth", input_size=64)
    write_real_size_grounding_dino(models / "grounding-dino" / "swint-800px-random")
    comfy = ComfyServer(work, models)
    shutil.copy(ROOT / "assets" / "coffee.png", work / "input" / "coffee.png")
    comfy.wait_ready()
    yield comfy
    comfy.stop()


def _segment_graph(detector: str, sam: str) -> dict:
    """Load Image → Grounded Segment → Mask from Segmentation → Save Image (a new file name each time)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "2": {"class_type": "GroundedInpaintLoadGroundingDino", "inputs": {"model_name": detector, "device": "auto", "precision": "auto"}},
        "3": {"class_type": "GroundedInpaintLoadSam", "inputs": {"model_name": sam, "device": "auto", "precision": "auto"}},
        "4": {"class_type": "GroundedInpaintGroundedSegment", "inputs": {
            "image": ["1", 0], "detector": ["2", 0], "sam_model": ["3", 0], "prompt": "cup", "box_threshold": 0.0,
            "text_threshold": 0.0, "max_detections": 3, "multimask": "auto"}},
        "5": {"class_type": "GroundedInpaintMaskFromSegments", "inputs": {
            "segments": ["4", 0], "invert": True, "grow": 0, "feather": 0.0, "fill_holes": False, "min_area": 0}},
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"mem_{uuid.uuid4().hex[:8]}"}},
    }


def _free(comfy: ComfyServer) -> None:
    """What ComfyUI's "Unload models" button sends."""
    post(f"{comfy.base}/free", {"unload_models": True, "free_memory": True})


def _settle_rss(comfy: ComfyServer, below: float | None = None, seconds: float = 30.0) -> float:
    """The RSS once it stops falling (or drops below ``below``), within ``seconds``."""
    deadline = time.time() + seconds
    last = comfy.rss_mb()
    while time.time() < deadline:
        time.sleep(1.0)
        now = comfy.rss_mb()
        if (below is not None and now <= below) or (below is None and abs(now - last) < 5):
            return now
        last = now
    return comfy.rss_mb()


def test_unload_models_frees_the_pack_memory(server):
    # warm up torch, transformers and the nodes with the tiny models, then free them: the baseline
    server.run(_segment_graph("grounding-dino-tiny-random", "sam_vit_tiny_random.pth"))
    _free(server)
    baseline = _settle_rss(server)

    server.run(_segment_graph("swint-64px-random", "sam_vit_b_64px_random.pth"))
    loaded = server.rss_mb()
    assert loaded - baseline > 800, f"the real-size models should occupy memory: {baseline:.0f} -> {loaded:.0f} MB"
    log = server.log()
    assert "Requested to load GroundingDINO Swin-T" in log and "Requested to load SAM ViT-B" in log, log[-3000:]
    assert "Requested to load _Holder" not in log

    _free(server)
    after = _settle_rss(server, below=baseline + RSS_TOLERANCE_MB)
    print(f"RSS: baseline {baseline:.0f} MB, models loaded {loaded:.0f} MB, after /free {after:.0f} MB")
    assert after - baseline <= RSS_TOLERANCE_MB, f"after /free {after:.0f} MB, before the models {baseline:.0f} MB"

    loads_before = server.log().count("loaded SAM ViT-B")
    server.run(_segment_graph("swint-64px-random", "sam_vit_b_64px_random.pth"))  # loads again, cleanly
    assert server.log().count("loaded SAM ViT-B") == loads_before + 1


def test_cancel_stops_a_model_pass_and_the_next_prompt_runs(server):
    graph = _segment_graph("swint-800px-random", "sam_vit_tiny_random.pth")
    started = time.perf_counter()
    server.run(graph, timeout=600)  # loads the detector; the next run is model compute only
    full_run = time.perf_counter() - started
    before = sorted(p.name for p in (server.work / "output").iterdir())
    for delay in (1.0, 2.5):  # stop inside GroundingDINO's backbone, then its encoder
        graph = _segment_graph("swint-800px-random", "sam_vit_tiny_random.pth")
        graph["4"]["inputs"]["prompt"] = f"cup . saucer {delay}"  # a new prompt: no cached result
        prompt_id = server.queue(graph)
        time.sleep(delay)
        start = time.perf_counter()
        post(f"{server.base}/interrupt", {})
        entry = server.wait(prompt_id, timeout=60, statuses=("error",))
        latency = time.perf_counter() - start
        assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"]), entry["status"]
        print(f"Cancel after {delay} s took {latency:.2f} s (a whole run: {full_run:.1f} s)")
        # stopped inside the pass: well before the model could have finished (not a speed target)
        assert latency < max(full_run - delay, 0.0) * 0.8 or latency < 1.0, f"Cancel took {latency:.2f} s"
    assert sorted(p.name for p in (server.work / "output").iterdir()) == before  # no half-written file
    server.run(_segment_graph("swint-800px-random", "sam_vit_tiny_random.pth"))  # the next prompt runs


def _editor_graph(sam: str) -> dict:
    """Load Image → SAM Segment with two editor objects → Preview Image."""
    objects = {"objects": [{"name": "cup", "box": [150, 20, 320, 200], "points": [[235, 110, 1]]},
                           {"name": "saucer", "points": [[80, 215, 1]]}]}
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "3": {"class_type": "GroundedInpaintLoadSam", "inputs": {"model_name": sam, "device": "auto", "precision": "auto"}},
        "4": {"class_type": "GroundedInpaintSegment", "inputs": {
            "image": ["1", 0], "sam_model": ["3", 0], "multimask": "auto", "objects": json.dumps(objects)}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 2]}},
    }


def _live(comfy: ComfyServer, sam: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    body = {"image": {"filename": "coffee.png", "type": "input"}, "model": sam, "node": "4",
            "objects": _editor_graph(sam)["4"]["inputs"]["objects"]}
    req = urllib.request.Request(f"{comfy.base}/grounded_inpaint/sam/preview", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_unload_models_frees_sam_after_the_editors_live_masks(server):
    """The editor's live masks keep only weak references: after a run and live masks, "Unload models"
    still frees SAM, and the next live request says the model is no longer loaded."""
    sam = "sam_vit_b_64px_random.pth"
    _free(server)
    baseline = _settle_rss(server)
    server.run(_editor_graph(sam))
    status, body = _live(server, sam)
    assert status == 200 and [i["label"] for i in body["instances"]] == ["cup", "saucer"], body
    loaded = server.rss_mb()
    assert loaded - baseline > 250, f"SAM ViT-B should occupy memory: {baseline:.0f} -> {loaded:.0f} MB"
    _free(server)
    after = _settle_rss(server, below=baseline + RSS_TOLERANCE_MB)
    print(f"RSS with live masks: baseline {baseline:.0f} MB, SAM loaded {loaded:.0f} MB, after /free {after:.0f} MB")
    assert after - baseline <= RSS_TOLERANCE_MB, f"after /free {after:.0f} MB, before SAM {baseline:.0f} MB"
    status, body = _live(server, sam)
    assert status == 409 and body["need"] == "model", body
