"""Against a real ComfyUI: the pack imports, every node is in /object_info with its descriptions and
tooltips, and Load Image → Detect → Segment → Mask from Segmentation → Save Image runs over the
HTTP API on tiny models.

Skipped unless ``COMFYUI_DIR`` points at a ComfyUI checkout. ``COMFYUI_PYTHON`` names the Python
that has ComfyUI's requirements and this pack's (default: the Python running the tests), e.g.
the venv made by ``../shared/tools/comfy_up.sh --setup-only``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the integration test"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url: str, payload: dict, timeout: float = 30.0):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"POST {url} -> {exc.code}: {exc.read().decode(errors='replace')}") from None


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory):
    from grounded_inpaint.testing.tiny_models import write_models_folder

    work = tmp_path_factory.mktemp("comfy")
    models = work / "models"
    write_models_folder(models)
    nodes_dir = work / "custom_nodes"
    nodes_dir.mkdir()
    (nodes_dir / "grounded-inpaint").symlink_to(ROOT, target_is_directory=True)
    config = work / "extra_model_paths.yaml"
    config.write_text(
        "grounded_inpaint_test:\n"
        f"  base_path: {models}\n"
        "  grounding-dino: grounding-dino\n"
        "  sams: sams\n"
        f"  custom_nodes: {nodes_dir}\n"
    )
    for sub in ("input", "output", "temp"):
        (work / sub).mkdir()
    shutil.copy(ROOT / "assets" / "coffee.png", work / "input" / "coffee.png")
    port = _free_port()
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    log = open(work / "comfy.log", "w")
    proc = subprocess.Popen(
        [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(config), "--input-directory", str(work / "input"),
         "--output-directory", str(work / "output"), "--temp-directory", str(work / "temp")],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{(work / 'comfy.log').read_text()[-4000:]}")
        try:
            _get(f"{base}/object_info/GroundedInpaintDetect", timeout=2)
            break
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("ComfyUI did not answer within 180 s:\n" + (work / "comfy.log").read_text()[-4000:])
    yield base, work
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_pack_imports_and_every_node_is_listed(comfy_server):
    base, work = comfy_server
    text = (work / "comfy.log").read_text()
    assert "IMPORT FAILED" not in text and "grounded-inpaint" in text
    info = _get(f"{base}/object_info")
    frozen = json.loads((ROOT / "tests" / "data" / "node_ids.json").read_text())
    for node_id in frozen:
        assert node_id in info, node_id
        entry = info[node_id]
        assert entry["category"] == "Grounded Inpaint" and len(entry["description"]) > 40
        for section in ("required", "optional"):
            for name, spec in entry["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name}"
    assert "grounding-dino-tiny-random" in info["GroundedInpaintLoadGroundingDino"]["input"]["required"]["model_name"][0]


def test_detect_segment_mask_workflow_over_the_api(comfy_server):
    base, work = comfy_server
    workflow = json.loads((ROOT / "tests" / "data" / "detect_segment_mask_api.json").read_text())
    workflow["7"]["inputs"]["filename_prefix"] = f"gi_{uuid.uuid4().hex[:6]}"
    prompt_id = _post(f"{base}/prompt", {"prompt": workflow, "client_id": "grounded-inpaint-test"})["prompt_id"]
    deadline = time.time() + 180
    entry = None
    while time.time() < deadline:
        history = _get(f"{base}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            if entry["status"].get("status_str") in ("success", "error"):
                break
        time.sleep(0.5)
    assert entry is not None, "the workflow did not finish within 180 s"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-3000:]
    images = entry["outputs"]["7"]["images"]
    assert len(images) == 1
    saved = work / "output" / images[0]["subfolder"] / images[0]["filename"]
    mask = np.asarray(Image.open(saved))
    source = Image.open(ROOT / "assets" / "coffee.png")
    assert mask.shape[:2] == (source.height, source.width)
    assert set(np.unique(mask).tolist()) <= {0, 255}  # a hard mask (feather 0)
    assert (mask == 255).any()  # inverted: the background is to be repainted
