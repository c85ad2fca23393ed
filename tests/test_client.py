"""The ComfyUI HTTP client, against a small fake ComfyUI served by aiohttp on 127.0.0.1 (all offline).

The fake answers like ComfyUI's server: ``/upload/image``, ``/prompt`` (400 with ``node_errors`` for a
"Broken" node), ``/ws`` progress messages, ``/history/{id}`` and ``/view``. Its ``mode`` chooses how
the queued prompt "runs": ``ok``, ``error`` (execution_error), ``drop`` (websocket closed after
execution_start, result only in /history) or ``hang`` (never finishes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounded_inpaint.client import (
    OutputImage,
    WorkflowError,
    _Tracker,
    apply_sets,
    assign_images,
    collect_images,
    format_rejection,
    load_api_workflow,
    main,
    normalize_server,
    parse_set,
    patch_images,
)

web = pytest.importorskip("aiohttp.web")

OUTPUT_NAME = "ComfyUI_00001_.png"
PREVIEW_NAME = "ComfyUI_temp_00001_.png"
FOREIGN_NAME = "someone_else.png"


def png_bytes(tag: str) -> bytes:
    """Distinct bytes per file, starting with the PNG signature."""
    return b"\x89PNG\r\n\x1a\n" + tag.encode() * 50


WORKFLOW: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": "example.png", "upload": "image"}},
    "12": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.0, "model": ["4", 0],
                                               "positive": ["6", 0], "latent_image": ["12", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ComfyUI"}},
}


class FakeComfy:
    """Just enough of ComfyUI's server; records what it received."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.uploads: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []
        self.inputs: set[str] = set()
        self.history: dict[str, Any] = {}
        self.sockets: dict[str, Any] = {}
        self.tasks: set[asyncio.Task] = set()
        self.files = {("output", "", OUTPUT_NAME): png_bytes("output"), ("temp", "", PREVIEW_NAME): png_bytes("temp"),
                      ("output", "", FOREIGN_NAME): png_bytes("foreign")}

    def app(self) -> Any:
        app = web.Application()
        app.router.add_post("/upload/image", self.upload)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/history/{prompt_id}", self.history_entry)
        app.router.add_get("/view", self.view)
        app.on_shutdown.append(self.shutdown)
        return app

    async def shutdown(self, app: Any) -> None:
        for task in self.tasks:
            task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()

    async def upload(self, request: Any) -> Any:
        post = await request.post()
        image = post["image"]
        data = image.file.read()
        self.uploads.append({"filename": image.filename, "data": data, "type": post.get("type"),
                             "overwrite": post.get("overwrite")})
        name = f"cli_{image.filename}"  # differs from the sent name: the client must use the answer
        self.inputs.add(name)
        return web.json_response({"name": name, "subfolder": "", "type": post.get("type", "input")})

    async def prompt(self, request: Any) -> Any:
        body = await request.json()
        self.prompts.append(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, dict) or not body.get("client_id"):
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided"}, "node_errors": {}},
                                     status=400)
        node_errors = {}
        for node_id, node in prompt.items():
            if node["class_type"] == "Broken":
                reason = {"type": "value_not_in_list", "message": "Value not in list",
                          "details": "mode: 'sideways' not in ['up', 'down']", "extra_info": {}}
                node_errors[node_id] = {"errors": [reason], "dependent_outputs": ["9"], "class_type": "Broken"}
            if node["class_type"] == "LoadImage" and node["inputs"]["image"] not in self.inputs:
                reason = {"type": "custom_validation_failed", "message": "Custom validation failed for node",
                          "details": f"image - Invalid image file: {node['inputs']['image']}", "extra_info": {}}
                node_errors[node_id] = {"errors": [reason], "dependent_outputs": ["9"], "class_type": "LoadImage"}
        if node_errors:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                     "details": "", "extra_info": {}}
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(uuid.uuid4())
        task = asyncio.get_running_loop().create_task(self.execute(prompt_id, body["client_id"]))
        self.tasks.add(task)
        return web.json_response({"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}})

    async def websocket(self, request: Any) -> Any:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.rel_url.query.get("clientId", "")
        self.sockets[client_id] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}})
        try:
            async for _ in ws:
                pass
        finally:
            self.sockets.pop(client_id, None)
        return ws

    async def history_entry(self, request: Any) -> Any:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def view(self, request: Any) -> Any:
        q = request.rel_url.query
        data = self.files.get((q.get("type", "output"), q.get("subfolder", ""), q.get("filename", "")))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def execute(self, prompt_id: str, client_id: str) -> None:
        await asyncio.sleep(0.05)  # let the client start reading
        ws = self.sockets.get(client_id)

        async def send(kind: str, data: dict[str, Any]) -> None:
            if ws is not None and not ws.closed:
                await ws.send_json({"type": kind, "data": data})

        await send("execution_start", {"prompt_id": prompt_id, "timestamp": 0})
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "drop":
            await ws.close()
            await asyncio.sleep(0.3)
            self.history[prompt_id] = self._history(prompt_id, "success", [])
            return
        await send("execution_cached", {"nodes": ["4"], "prompt_id": prompt_id, "timestamp": 0})
        await send("executing", {"node": "3", "display_node": "3", "prompt_id": prompt_id})
        if ws is not None:
            await ws.send_bytes(b"\x00\x00\x00\x01" + b"preview")  # binary preview frames are ignored
        await send("executed", {"node": "9", "output": {"images": [{"filename": FOREIGN_NAME, "subfolder": "",
                                                                     "type": "output"}]}, "prompt_id": "not-ours"})
        if self.mode == "error":
            error = {"prompt_id": prompt_id, "node_id": "3", "node_type": "KSampler", "executed": ["4"],
                     "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                     "exception_type": "torch.OutOfMemoryError",
                     "traceback": ['  File "execution.py", line 496, in execute\n    output = get_output_data()\n',
                                   '  File "nodes.py", line 1525, in sample\n    return common_ksampler()\n'],
                     "current_inputs": {}, "current_outputs": []}
            await send("execution_error", error)
            self.history[prompt_id] = self._history(prompt_id, "error", [["execution_error", error]])
            await send("executing", {"node": None, "prompt_id": prompt_id})
            return
        for step in (1, 2):
            await send("progress", {"value": step, "max": 2, "prompt_id": prompt_id, "node": "3"})
        await send("executing", {"node": "9", "display_node": "9", "prompt_id": prompt_id})
        await send("executed", {"node": "9", "display_node": "9", "output": self._outputs()["9"], "prompt_id": prompt_id})
        await send("execution_success", {"prompt_id": prompt_id, "timestamp": 0})
        self.history[prompt_id] = self._history(prompt_id, "success", [])
        await send("executing", {"node": None, "prompt_id": prompt_id})

    @staticmethod
    def _outputs() -> dict[str, Any]:
        return {"9": {"images": [{"filename": OUTPUT_NAME, "subfolder": "", "type": "output"},
                                 {"filename": PREVIEW_NAME, "subfolder": "", "type": "temp"}]}}

    def _history(self, prompt_id: str, status: str, messages: list[Any]) -> dict[str, Any]:
        return {"prompt": [1, prompt_id, {}, {}, ["9"]], "outputs": self._outputs() if status == "success" else {},
                "status": {"status_str": status, "completed": status == "success", "messages": messages}}


@contextlib.contextmanager
def serve(fake: FakeComfy) -> Iterator[str]:
    """Run ``fake`` on a free 127.0.0.1 port in a thread with its own event loop; yields HOST:PORT."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app(), shutdown_timeout=1.0)
    ready = threading.Event()

    def serve_forever() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert ready.wait(10), "fake ComfyUI did not start"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "inpaint_api.json"
    path.write_text(json.dumps(WORKFLOW))
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes("input photo"))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# End to end against the fake server


def test_success_uploads_sets_queues_and_downloads(workflow_file, photo, tmp_path, capsys):
    fake = FakeComfy("ok")
    out = tmp_path / "out"
    with serve(fake) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--image", str(photo), "--set", "3.seed=42",
                   "--set", "6.text=red shoes", "--set", "3.cfg=5.5", "--out", str(out), "--client-id", "tester",
                   "--expect-images", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # what the server received
    assert [(u["filename"], u["data"], u["type"], u["overwrite"]) for u in fake.uploads] == [
        ("photo.png", photo.read_bytes(), "input", "true")]
    (body,) = fake.prompts
    assert body["client_id"] == "tester"
    sent = body["prompt"]
    assert sent["10"]["inputs"]["image"] == "cli_photo.png"  # the name the server answered
    assert sent["3"]["inputs"]["seed"] == 42 and sent["3"]["inputs"]["cfg"] == 5.5
    assert sent["6"]["inputs"]["text"] == "red shoes"
    assert sent["3"]["inputs"]["model"] == ["4", 0]
    # what was downloaded: only our prompt's output image, not previews nor another prompt's image
    saved = out / f"9_{OUTPUT_NAME}"
    assert sorted(p.name for p in out.iterdir()) == [saved.name]
    assert saved.read_bytes() == png_bytes("output")
    assert captured.out.split() == [str(saved)]
    assert "[50%] node 3 (KSampler) 1/2" in captured.err and "[100%] node 3 (KSampler) 2/2" in captured.err


def test_include_previews_and_expect_images(workflow_file, photo, tmp_path, capsys):
    out = tmp_path / "out"
    with serve(FakeComfy("ok")) as server:
        rc = main(["-q", "run", str(workflow_file), "--server", server, "--image", f"10={photo}", "--out", str(out),
                   "--include-previews", "--expect-images", "2"])
    captured = capsys.readouterr()
    assert rc == 5
    assert "expected at least 2 output image(s)" in captured.err and "produced 1" in captured.err
    assert (out / f"9_{PREVIEW_NAME}").read_bytes() == png_bytes("temp")
    assert (out / f"9_{OUTPUT_NAME}").read_bytes() == png_bytes("output")
    assert "[50%]" not in captured.err  # -q: no progress lines


def test_validation_error_exits_2_and_names_the_node(workflow_file, photo, tmp_path, capsys):
    broken = dict(WORKFLOW, **{"7": {"class_type": "Broken", "inputs": {"mode": "sideways"}}})
    workflow_file.write_text(json.dumps(broken))
    fake = FakeComfy("ok")
    with serve(fake) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--image", str(photo), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Prompt outputs failed validation" in err
    assert "node 7 (Broken):" in err and "Value not in list: mode: 'sideways' not in ['up', 'down']" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unpatched_load_image_is_rejected_by_the_server(workflow_file, tmp_path, capsys):
    with serve(FakeComfy("ok")) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "node 10 (LoadImage)" in err and "Invalid image file: example.png" in err


def test_execution_error_exits_3_with_the_exception(workflow_file, photo, tmp_path, capsys):
    with serve(FakeComfy("error")) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--image", str(photo), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 3
    assert "node 3 (KSampler) failed: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in err
    assert "return common_ksampler()" in err  # last traceback lines
    assert "Traceback (most recent" not in err


def test_dropped_websocket_falls_back_to_history(workflow_file, photo, tmp_path, capsys):
    out = tmp_path / "out"
    start = time.monotonic()
    with serve(FakeComfy("drop")) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--image", str(photo), "--out", str(out),
                   "--timeout", "10"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "polling /history" in captured.err
    assert (out / f"9_{OUTPUT_NAME}").read_bytes() == png_bytes("output")
    assert time.monotonic() - start < 8


def test_history_records_the_failure_after_a_drop():
    """finish_from_history turns a failed /history entry into the same error as the websocket message."""
    tracker = _Tracker("p1", WORKFLOW)
    entry = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
        ["execution_start", {"prompt_id": "p1"}],
        ["execution_error", {"prompt_id": "p1", "node_id": "9", "node_type": "SaveImage", "exception_type": "OSError",
                             "exception_message": "disk full", "traceback": []}]]}}
    with pytest.raises(Exception) as info:
        tracker.finish_from_history(entry)
    assert getattr(info.value, "exit_code", None) == 3
    assert "node 9 (SaveImage) failed: OSError: disk full" in str(info.value)


def test_never_finishing_prompt_times_out_with_exit_4(workflow_file, photo, tmp_path, capsys):
    start = time.monotonic()
    with serve(FakeComfy("hang")) as server:
        rc = main(["run", str(workflow_file), "--server", server, "--image", str(photo), "--out", str(tmp_path / "o"),
                   "--timeout", "2"])
        elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert rc == 4
    assert 1.9 <= elapsed < 4.5
    assert "timed out after 2 s waiting for prompt" in err and "to finish" in err


def test_nothing_listening_exits_1_naming_the_server(workflow_file, photo, tmp_path, capsys):
    port = free_port()
    rc = main(["run", str(workflow_file), "--server", f"127.0.0.1:{port}", "--image", str(photo),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"127.0.0.1:{port}" in err and "start ComfyUI" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point_exit_code_without_traceback(workflow_file, tmp_path):
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "grounded_inpaint.client", "run", str(workflow_file),
                           "--server", f"127.0.0.1:{port}", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"cannot connect to ComfyUI at http://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_aiohttp_says_how_to_install(workflow_file, tmp_path):
    code = ("import sys; sys.modules['aiohttp'] = None; import grounded_inpaint.client as c; "
            f"sys.exit(c.main(['run', {str(workflow_file)!r}, '--out', {str(tmp_path / 'o')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install aiohttp" in proc.stderr and "Traceback" not in proc.stderr


def test_ui_format_workflow_is_refused(tmp_path, capsys):
    path = tmp_path / "inpaint.json"
    path.write_text(json.dumps({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}))
    rc = main(["run", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "UI-format workflow" in err and "Export (API)" in err and "_api.json" in err
    with pytest.raises(WorkflowError, match="Export \\(API\\)"):
        load_api_workflow(path)


# --------------------------------------------------------------------------------------------------
# Pure helpers


@pytest.mark.parametrize("text, expected", [
    ("3.seed=42", ("3", "seed", 42)),
    ("3.cfg=7.5", ("3", "cfg", 7.5)),
    ("5.flag=true", ("5", "flag", True)),
    ("5.size=[512, 768]", ("5", "size", [512, 768])),
    ('6.text="42"', ("6", "text", "42")),
    ("6.text=red shoes", ("6", "text", "red shoes")),
    ("6.text=a=b", ("6", "text", "a=b")),
    ("6.text=", ("6", "text", "")),
    ("12:5.denoise=0.8", ("12:5", "denoise", 0.8)),
])
def test_parse_set(text, expected):
    assert parse_set(text) == expected


@pytest.mark.parametrize("text", ["3seed=1", "3.seed", ".seed=1", "3.=1"])
def test_parse_set_rejects_malformed(text):
    with pytest.raises(WorkflowError, match="NODE.INPUT=VALUE"):
        parse_set(text)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(), lambda inner: st.lists(inner, max_size=3), max_leaves=5)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_parse_set_reads_any_json_value(value):
    assert parse_set(f"3.x={json.dumps(value)}") == ("3", "x", value)


def test_apply_sets_copies_and_sets():
    result = apply_sets(WORKFLOW, [("3", "seed", 7), ("6", "text", "dog")])
    assert result["3"]["inputs"]["seed"] == 7 and result["6"]["inputs"]["text"] == "dog"
    assert WORKFLOW["3"]["inputs"]["seed"] == 1 and WORKFLOW["6"]["inputs"]["text"] == "a cat"


def test_apply_sets_unknown_node():
    with pytest.raises(WorkflowError, match="no node '99'") as info:
        apply_sets(WORKFLOW, [("99", "seed", 1)])
    assert "nodes: 4, 6, 10, 12, 3, 9" in str(info.value)


def test_apply_sets_linked_input_names_class_and_inputs():
    with pytest.raises(WorkflowError) as info:
        apply_sets(WORKFLOW, [("3", "model", "x")])
    message = str(info.value)
    assert "connected to output 0 of node 4 (CheckpointLoaderSimple)" in message
    assert "node 3 (KSampler) has inputs seed, steps, cfg" in message
    assert "connected (not settable): model, positive, latent_image" in message


def test_apply_sets_unknown_input():
    with pytest.raises(WorkflowError, match="no input 'sede'.*node 3 \\(KSampler\\) has inputs seed"):
        apply_sets(WORKFLOW, [("3", "sede", 1)])


def two_loaders() -> dict[str, Any]:
    wf = json.loads(json.dumps(WORKFLOW))
    wf["11"] = {"class_type": "LoadImage", "inputs": {"image": "mask.png", "upload": "image"}}
    return wf


def test_assign_images_needs_node_ids_with_several_loaders(photo):
    with pytest.raises(WorkflowError, match=r"2 LoadImage nodes \(10, 11\).*--image NODE_ID=PATH"):
        assign_images(two_loaders(), [str(photo)])
    assert assign_images(two_loaders(), [f"11={photo}", f"10={photo}"]) == {"11": photo, "10": photo}


def test_assign_images_errors(photo, tmp_path):
    with pytest.raises(WorkflowError, match="no LoadImage node"):
        assign_images({"9": WORKFLOW["9"]}, [str(photo)])
    with pytest.raises(WorkflowError, match="image file not found"):
        assign_images(WORKFLOW, [str(tmp_path / "missing.png")])
    with pytest.raises(WorkflowError, match=r"no node '77' \(LoadImage nodes: 10\)"):
        assign_images(WORKFLOW, [f"77={photo}"])
    with pytest.raises(WorkflowError, match="already gets"):
        assign_images(WORKFLOW, [str(photo), f"10={photo}"])
    with pytest.raises(WorkflowError, match=r"node 3 \(KSampler\) has no image file input"):
        assign_images(WORKFLOW, [f"3={photo}"])


def test_path_with_equals_sign_is_a_path(tmp_path):
    odd = tmp_path / "a=b.png"
    odd.write_bytes(b"x")
    assert assign_images(WORKFLOW, [str(odd)]) == {"10": odd}


def test_patch_images_copies():
    patched = patch_images(WORKFLOW, {"10": "up.png"})
    assert patched["10"]["inputs"]["image"] == "up.png" and WORKFLOW["10"]["inputs"]["image"] == "example.png"
    with pytest.raises(WorkflowError, match="no such node"):
        patch_images(WORKFLOW, {"5": "x.png"})


def test_load_api_workflow_errors(tmp_path):
    with pytest.raises(WorkflowError, match="not found"):
        load_api_workflow(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"3": {"class_type": "KSampler", "inputs": {}}')
    with pytest.raises(WorkflowError, match="not valid JSON.*line 1"):
        load_api_workflow(bad)
    bad.write_text('{"3": {"inputs": {}}}')
    with pytest.raises(WorkflowError, match="node '3' is not an API-format node"):
        load_api_workflow(bad)


def test_tracker_ignores_other_prompts_and_finishes_on_ours():
    lines: list[str] = []
    tracker = _Tracker("mine", WORKFLOW, lines.append)
    tracker.feed({"type": "executing", "data": {"node": None, "prompt_id": "other"}})
    tracker.feed({"type": "executing", "data": {"node": None}})  # no prompt id: not proof that ours is done
    tracker.feed({"type": "executed", "data": {"node": "9", "output": {"images": []}, "prompt_id": "other"}})
    assert not tracker.done and tracker.outputs == {}
    tracker.feed({"type": "progress", "data": {"value": 3, "max": 25, "node": "3", "prompt_id": "mine"}})
    tracker.feed({"type": "executing", "data": {"node": None, "prompt_id": "mine"}})
    assert tracker.done
    assert lines == ["[12%] node 3 (KSampler) 3/25"]


def test_collect_images_and_format_rejection():
    outputs = {"9": {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"}], "text": ["x"]},
               "8": None, "7": {"gifs": []}}
    assert collect_images(outputs) == [OutputImage("9", "a.png", "s", "output")]
    text = format_rejection({"message": "Prompt outputs failed validation"},
                            {"3": {"errors": [{"message": "Required input is missing", "details": "model"}]}}, WORKFLOW)
    assert text.splitlines() == ["the server rejected the workflow: Prompt outputs failed validation",
                                 "  node 3 (KSampler):", "    - Required input is missing: model"]


@pytest.mark.parametrize("server, url", [("127.0.0.1:8188", "http://127.0.0.1:8188"),
                                         ("https://comfy.example/", "https://comfy.example")])
def test_normalize_server(server, url):
    assert normalize_server(server) == url
