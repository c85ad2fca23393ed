"""A real ComfyUI server for the integration tests and benchmarks: started with this pack's
checkout linked and a models folder of the caller's, talked to over its HTTP API, stopped at the end.

Nothing of ComfyUI is imported: it runs as its own process. ``COMFYUI_DIR`` names the ComfyUI
checkout; ``COMFYUI_PYTHON`` the Python with ComfyUI's and this pack's requirements (default: the
Python running this).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The pack's checkout (this file is ``py/testing/comfy_server.py`` in it).
ROOT = Path(__file__).resolve().parents[2]
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post(url: str, payload: dict, timeout: float = 30.0):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if body.strip() else {}
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"POST {url} -> {exc.code}: {exc.read().decode(errors='replace')}") from None


class ComfyServer:
    """``python main.py --cpu`` in ``work`` (its own input/output/temp folders and models folder)."""

    def __init__(self, work: Path, models: Path, *, extra_folders: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.work, self.models = work, models
        nodes_dir = work / "custom_nodes"
        nodes_dir.mkdir(exist_ok=True)
        link = nodes_dir / "grounded-inpaint"
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        folders = {"grounding-dino": "grounding-dino", "sams": "sams", "sam2": "sam2", "sam3": "sam3",
                   "vitmatte": "vitmatte", "checkpoints": "checkpoints", **(extra_folders or {})}
        self.config = work / "extra_model_paths.yaml"
        self.config.write_text(
            "grounded_inpaint_test:\n"
            f"  base_path: {models}\n"
            + "".join(f"  {k}: {v}\n" for k, v in folders.items())
            + f"  custom_nodes: {nodes_dir}\n"
        )
        for sub in ("input", "output", "temp"):
            (work / sub).mkdir(exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "comfy.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
             "--extra-model-paths-config", str(self.config), "--input-directory", str(work / "input"),
             "--output-directory", str(work / "output"), "--temp-directory", str(work / "temp"), *extra_args],
            cwd=COMFYUI_DIR, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                get(f"{self.base}/object_info/GroundedInpaintDetect", timeout=2)
                return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """The server process's resident memory in MB (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    def queue(self, workflow: dict, client_id: str = "grounded-inpaint-test") -> str:
        return post(f"{self.base}/prompt", {"prompt": workflow, "client_id": client_id})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300, statuses: tuple[str, ...] = ("success",)) -> dict:
        """Wait for ``prompt_id`` to end and return its /history entry; its status must be one of ``statuses``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = get(f"{self.base}/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and entry["status"].get("status_str"):
                assert entry["status"]["status_str"] in statuses, json.dumps(entry["status"], indent=1)[-3000:]
                return entry
            time.sleep(0.2)
        raise AssertionError(f"the workflow did not finish within {timeout} s")

    def run(self, workflow: dict, timeout: float = 300) -> dict:
        """Queue ``workflow``, wait for it, and return its /history entry (fails on an error)."""
        return self.wait(self.queue(workflow), timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
