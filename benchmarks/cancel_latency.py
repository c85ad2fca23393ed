"""Cancel in a real ComfyUI: the time from ``POST /interrupt`` to the node stopping, at several points of a run.

Starts ComfyUI (``COMFYUI_DIR``, ``COMFYUI_PYTHON``; see ``grounded_inpaint.testing.comfy_server``)
with this pack and real-size random-weight GroundingDINO Swin-T and SAM ViT-B (Meta's layout),
loads them once, then queues Load Image (a 3000x2000 photo: coffee.png enlarged) → Grounded Segment
→ Mask from Segmentation → Save Image again and again, each time with a new prompt, the pack's
feature cache turned off in the server (``GROUNDED_INPAINT_CACHE_MB=0``, so every run computes
every stage), and sends ``POST /interrupt`` at points spread over the run — inside GroundingDINO's
backbone, encoder and decoder, SAM's encoder and decoder, the mask upsampling and the node's
preview. The latency is measured until ``/history`` reports the prompt ended (polled every 20 ms).
Prints every latency and the worst case.

Usage: ``COMFYUI_DIR=... COMFYUI_PYTHON=... python benchmarks/cancel_latency.py [--delays 1,3,6,9,12,15]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_WORKDIR = Path(os.environ.get("GROUNDED_INPAINT_BENCH_DIR", "/tmp/grounded-inpaint-bench"))


def graph(prompt: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "photo_3000x2000.png"}},
        "2": {"class_type": "GroundedInpaintLoadGroundingDino", "inputs": {"model_name": "grounding-dino-swint-random", "device": "auto", "precision": "auto"}},
        "3": {"class_type": "GroundedInpaintLoadSam", "inputs": {"model_name": "sam_vit_b_random.pth", "device": "auto", "precision": "auto"}},
        "4": {"class_type": "GroundedInpaintGroundedSegment", "inputs": {
            "image": ["1", 0], "detector": ["2", 0], "sam_model": ["3", 0], "prompt": prompt, "box_threshold": 0.0,
            "text_threshold": 0.0, "max_detections": 4, "multimask": "auto"}},
        "5": {"class_type": "GroundedInpaintMaskFromSegments", "inputs": {
            "segments": ["4", 0], "invert": True, "grow": 0, "feather": 0.0, "fill_holes": False, "min_area": 0}},
        "6": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"cancel_{uuid.uuid4().hex[:8]}"}},
    }


def wait_ended(server, prompt_id: str, timeout: float) -> tuple[float, str]:
    """Poll /history every 20 ms until ``prompt_id`` ended; ``(time it was seen, status)``."""
    from grounded_inpaint.testing.comfy_server import get

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        entry = get(f"{server.base}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("status_str"):
            interrupted = any(kind == "execution_interrupted" for kind, _ in entry["status"].get("messages", []))
            return time.perf_counter(), "interrupted" if interrupted else entry["status"]["status_str"]
        time.sleep(0.02)
    raise SystemExit(f"prompt {prompt_id} did not end within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0.5,2,4,6,8,10,12,14,16,18,20,22,24,26",
                        help="seconds after queueing to press Cancel (those past the length of a whole run are skipped)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the random-weight models are kept")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_DIR"):
        raise SystemExit("set COMFYUI_DIR to a ComfyUI checkout (and COMFYUI_PYTHON to its Python)")
    from PIL import Image

    from grounded_inpaint.testing.comfy_server import ROOT, ComfyServer, post
    from grounded_inpaint.testing.real_size import write_real_size_models

    write_real_size_models(args.workdir, hf_sam=False)
    work = Path(tempfile.mkdtemp(prefix="cancel-latency-"))
    server = ComfyServer(work, args.workdir, env={"GROUNDED_INPAINT_CACHE_MB": "0"})
    Image.open(ROOT / "assets" / "coffee.png").convert("RGB").resize((3000, 2000), Image.BICUBIC).save(work / "input" / "photo_3000x2000.png")
    try:
        server.wait_ready()
        start = time.perf_counter()
        ended, status = wait_ended(server, server.queue(graph("cup")), 900)
        whole = ended - start
        print(f"a whole run (models loading): {whole:.1f} s, {status}")
        start = time.perf_counter()
        ended, status = wait_ended(server, server.queue(graph("cup . saucer")), 900)
        compute = ended - start
        print(f"a whole run (models loaded, new prompt): {compute:.1f} s, {status}")
        latencies = []
        for i, delay in enumerate(float(d) for d in args.delays.split(",")):
            if delay >= compute:
                continue
            prompt_id = server.queue(graph(f"cup . spoon {i}"))
            queued = time.perf_counter()
            time.sleep(max(0.0, delay - (time.perf_counter() - queued)))
            pressed = time.perf_counter()
            post(f"{server.base}/interrupt", {})
            ended, status = wait_ended(server, prompt_id, 300)
            latency = ended - pressed
            latencies.append(latency)
            print(f"Cancel {delay:4.1f} s into the run: stopped after {latency:.3f} s ({status})")
        ended, status = wait_ended(server, server.queue(graph("cup . saucer . spoon")), 900)
        print(f"the next prompt after the cancels: {status}")
        if latencies:
            print(f"worst Cancel latency: {max(latencies):.3f} s over {len(latencies)} presses "
                  f"(median {sorted(latencies)[len(latencies) // 2]:.3f} s; /history polled every 20 ms)")
        log = server.log()
        for line in log.splitlines():
            if "Requested to load" in line:
                print("log:", line.strip())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
