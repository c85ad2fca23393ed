"""Headless client for a running ComfyUI server: queue an API-format workflow, follow it, fetch the images.

``python -m grounded_inpaint.client run WORKFLOW_api.json --image photo.png --set 6.text="red shoes" --out out/``

1. loads the workflow (the ``*_api.json`` file written by ComfyUI's "Export (API)"), applies every
   ``--set NODE.INPUT=VALUE`` and checks every ``--image`` against the workflow's LoadImage nodes;
2. opens the websocket ``/ws?clientId=...`` *before* queueing so that no progress message is missed;
3. uploads each image (``POST /upload/image``) and writes the name the server answers into the
   LoadImage node's ``image`` input;
4. queues the workflow (``POST /prompt``) and follows its progress messages; if the websocket drops,
   it polls ``GET /history/{prompt_id}`` once a second instead;
5. downloads every output image (``GET /view``) into the output folder as ``<node id>_<file name>``.

Exit codes of ``main``:

* 0: the workflow ran and its images were saved;
* 1: the server cannot be reached, answered something unexpected, or aiohttp is not installed;
* 2: the workflow or the options are invalid (checked here, or rejected by the server's validation);
* 3: the workflow failed on the server (``execution_error``) or was interrupted;
* 4: ``--timeout`` passed first;
* 5: fewer output images than ``--expect-images``.

The library part (:class:`ComfyClient`, :func:`run_workflow`, the pure helpers) never prints; it logs
with :mod:`logging` and raises a :class:`ClientError` subclass whose ``exit_code`` ``main`` returns.
aiohttp is imported only when the server is contacted, so importing this module does not need it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import mimetypes
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

__all__ = [
    "ClientError",
    "ComfyClient",
    "ExecutionFailedError",
    "MissingDependencyError",
    "OutputImage",
    "PromptRejectedError",
    "RunResult",
    "RunTimeoutError",
    "ServerResponseError",
    "ServerUnreachableError",
    "WorkflowError",
    "apply_sets",
    "assign_images",
    "build_parser",
    "collect_images",
    "load_api_workflow",
    "main",
    "normalize_server",
    "parse_set",
    "patch_images",
    "run_workflow",
    "run_workflow_async",
]

log = logging.getLogger(__name__)

Workflow = dict[str, dict[str, Any]]
"""An API-format workflow: node id -> ``{"class_type": str, "inputs": {name: value or [node id, slot]}}``."""

ProgressFn = Callable[[str], None]

DEFAULT_SERVER = "127.0.0.1:8188"
DEFAULT_TIMEOUT_S = 600.0
LOAD_IMAGE_CLASS = "LoadImage"
TRACEBACK_LINES = 8
WS_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # previews can be large; a too-large frame would close the socket
WS_HEARTBEAT_S = 30.0
WS_CLOSE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------------------------------
# Errors


class ClientError(Exception):
    """An expected failure, reported to the user as a message without traceback."""

    exit_code = 1


class MissingDependencyError(ClientError):
    """aiohttp is not installed."""

    exit_code = 1


class ServerUnreachableError(ClientError):
    """Nothing answers at the server address."""

    exit_code = 1

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(
            f"cannot connect to ComfyUI at {server} ({reason}); start ComfyUI "
            f"(python main.py --port {_port_of(server)}) or pass the right --server HOST:PORT"
        )


class ServerResponseError(ClientError):
    """The server answered, but not with what the API promises (wrong status, not JSON, ...)."""

    exit_code = 1


class WorkflowError(ClientError, ValueError):
    """The workflow file or an option (``--set``, ``--image``) is invalid."""

    exit_code = 2


class PromptRejectedError(ClientError):
    """``POST /prompt`` answered 400: the server's validation rejected the workflow."""

    exit_code = 2

    def __init__(self, error: Mapping[str, Any], node_errors: Mapping[str, Any], workflow: Mapping[str, Any]) -> None:
        self.error = dict(error)
        self.node_errors = dict(node_errors)
        super().__init__(format_rejection(error, node_errors, workflow))


class ExecutionFailedError(ClientError):
    """The workflow failed while running (``execution_error``) or was interrupted."""

    exit_code = 3

    def __init__(self, event: str, data: Mapping[str, Any], prompt_id: str) -> None:
        self.event = event
        self.data = dict(data)
        self.prompt_id = prompt_id
        super().__init__(format_execution_failure(event, data, prompt_id))


class RunTimeoutError(ClientError, TimeoutError):
    """The overall time limit passed; the message says what was still awaited."""

    exit_code = 4


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class OutputImage:
    """One image a node reported in its ``ui`` output (as in ``executed`` messages and ``/history``)."""

    node_id: str
    filename: str
    subfolder: str
    type: str


@dataclass
class RunResult:
    """What :func:`run_workflow` did: the prompt id, every reported image, and the files written."""

    prompt_id: str
    outputs: list[OutputImage]
    saved: list[Path] = field(default_factory=list)

    @property
    def output_images(self) -> list[OutputImage]:
        """The images of type ``output`` (saved by SaveImage-like nodes), without previews."""
        return [image for image in self.outputs if image.type == "output"]


# --------------------------------------------------------------------------------------------------
# Pure helpers: workflow, --set, --image


def _node_label(workflow: Mapping[str, Any], node_id: Any) -> str:
    """``node 5 (KSampler)``, or ``node 5`` when the workflow does not know the id."""
    node = workflow.get(str(node_id)) if node_id is not None else None
    if isinstance(node, Mapping) and node.get("class_type"):
        return f"node {node_id} ({node['class_type']})"
    return f"node {node_id}"


def _is_link(value: Any) -> bool:
    """Whether an input value is a connection ``[source node id, output slot]``."""
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        and isinstance(value[1], int) and not isinstance(value[1], bool)
    )


def _describe_inputs(workflow: Mapping[str, Any], node_id: str) -> str:
    """The node's class and its inputs, split into widget values and connections, for error messages."""
    inputs = workflow[node_id].get("inputs", {})
    widgets = [name for name, value in inputs.items() if not _is_link(value)]
    links = [name for name, value in inputs.items() if _is_link(value)]
    return (f"{_node_label(workflow, node_id)} has inputs {', '.join(widgets) or '(none)'}"
            f"; connected (not settable): {', '.join(links) or '(none)'}")


def load_api_workflow(path: str | Path) -> Workflow:
    """Read an API-format workflow (node id -> ``{"class_type", "inputs"}``) from a JSON file.

    Raises :class:`WorkflowError` for a missing or unreadable file, invalid JSON, a UI-format file
    (the one the editor saves, with ``nodes`` and ``links``) or a node without ``class_type``/``inputs``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(f"workflow file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read workflow file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return validate_api_workflow(data, source=str(path))


def validate_api_workflow(data: Any, source: str = "workflow") -> Workflow:
    """Check that ``data`` is an API-format workflow and return it; see :func:`load_api_workflow`."""
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"{source} is a UI-format workflow (it has 'nodes' and 'links'); the API needs the API format: "
            "in ComfyUI use Workflow > Export (API) (enable dev mode options in older versions), "
            "or pass the matching *_api.json file"
        )
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{source} is not an API-format workflow: expected a JSON object of node id -> node")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs"), dict):
            raise WorkflowError(
                f"{source}: node {node_id!r} is not an API-format node (needs 'class_type' text and an 'inputs' object)"
            )
    return data


def parse_set(text: str) -> tuple[str, str, Any]:
    """Parse ``NODE.INPUT=VALUE`` into ``(node id, input name, value)``.

    VALUE is read as JSON when it parses (``42``, ``0.5``, ``true``, ``[1, 2]``, ``"42"``), otherwise it
    is taken as text (``red shoes``).
    """
    target, sep, raw = text.partition("=")
    node_id, dot, name = target.partition(".")
    if not sep or not dot or not node_id.strip() or not name.strip():
        raise WorkflowError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. 3.seed=42 or 6.text=\"a cat\"")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node_id.strip(), name.strip(), value


def apply_sets(workflow: Mapping[str, Any], sets: Sequence[tuple[str, str, Any]]) -> Workflow:
    """Return a copy of ``workflow`` with each ``(node id, input, value)`` written into the node's inputs.

    Only existing widget inputs can be set: an unknown node, an unknown input name (a typo the server
    would silently ignore) or an input that is a connection raises :class:`WorkflowError`.
    """
    result = copy.deepcopy(dict(workflow))
    for node_id, name, value in sets:
        if node_id not in result:
            raise WorkflowError(f"--set {node_id}.{name}: the workflow has no node {node_id!r} (nodes: {', '.join(result)})")
        inputs = result[node_id]["inputs"]
        if name not in inputs:
            raise WorkflowError(f"--set {node_id}.{name}: no input {name!r}; {_describe_inputs(result, node_id)}")
        if _is_link(inputs[name]):
            source, slot = inputs[name]
            raise WorkflowError(
                f"--set {node_id}.{name}: input {name!r} is connected to output {slot} of "
                f"{_node_label(result, source)}, not a value; {_describe_inputs(result, node_id)}"
            )
        log.debug("set %s.%s = %r (was %r)", node_id, name, value, inputs[name])
        inputs[name] = value
    return result


def load_image_nodes(workflow: Mapping[str, Any]) -> list[str]:
    """Ids of the workflow's LoadImage nodes, in file order."""
    return [node_id for node_id, node in workflow.items() if node.get("class_type") == LOAD_IMAGE_CLASS]


def _split_image_arg(text: str, workflow: Mapping[str, Any]) -> tuple[str | None, Path]:
    """``NODE=PATH`` -> (node, path) when NODE is a node id of the workflow; a plain ``PATH`` -> (None, path)."""
    node_id, sep, rest = text.partition("=")
    if sep and node_id in workflow:
        return node_id, Path(rest)
    if sep and not Path(text).exists() and node_id and "/" not in node_id and "\\" not in node_id:
        raise WorkflowError(
            f"--image {text}: the workflow has no node {node_id!r} "
            f"(LoadImage nodes: {', '.join(load_image_nodes(workflow)) or 'none'})"
        )
    return None, Path(text)


def assign_images(workflow: Mapping[str, Any], image_args: Sequence[str]) -> dict[str, Path]:
    """Map each ``--image`` argument to the node whose ``image`` input it fills.

    ``PATH`` goes to the only LoadImage node; with several, each needs ``NODE_ID=PATH``. The files must
    exist. Raises :class:`WorkflowError` otherwise.
    """
    loaders = load_image_nodes(workflow)
    assigned: dict[str, Path] = {}
    for text in image_args:
        node_id, path = _split_image_arg(text, workflow)
        if node_id is None:
            if not loaders:
                raise WorkflowError(f"--image {text}: the workflow has no {LOAD_IMAGE_CLASS} node to put it in")
            if len(loaders) > 1:
                raise WorkflowError(
                    f"--image {text}: the workflow has {len(loaders)} {LOAD_IMAGE_CLASS} nodes ({', '.join(loaders)}); "
                    "say which one with --image NODE_ID=PATH"
                )
            node_id = loaders[0]
        current = workflow[node_id]["inputs"].get("image")
        if current is None or _is_link(current):
            raise WorkflowError(f"--image {text}: {_node_label(workflow, node_id)} has no image file input to set")
        if node_id in assigned:
            raise WorkflowError(f"--image {text}: {_node_label(workflow, node_id)} already gets {assigned[node_id]}")
        if not path.is_file():
            raise WorkflowError(f"--image {text}: image file not found: {path}")
        assigned[node_id] = path
    return assigned


def patch_images(workflow: Mapping[str, Any], names: Mapping[str, str]) -> Workflow:
    """Return a copy of ``workflow`` whose nodes' ``image`` inputs hold the uploaded file names."""
    result = copy.deepcopy(dict(workflow))
    for node_id, name in names.items():
        if node_id not in result:
            raise WorkflowError(f"cannot set the image of node {node_id!r}: the workflow has no such node")
        result[node_id]["inputs"]["image"] = name
    return result


def collect_images(outputs: Mapping[str, Any]) -> list[OutputImage]:
    """The images listed in node outputs (``{node id: {"images": [{filename, subfolder, type}]}}``)."""
    images: list[OutputImage] = []
    for node_id, output in outputs.items():
        if not isinstance(output, Mapping):
            continue
        for item in output.get("images") or []:
            if isinstance(item, Mapping) and item.get("filename"):
                images.append(OutputImage(str(node_id), str(item["filename"]), str(item.get("subfolder") or ""),
                                          str(item.get("type") or "output")))
    return images


def normalize_server(server: str) -> str:
    """``127.0.0.1:8188`` or ``http://host:port/`` -> base URL without trailing slash."""
    server = server.strip().rstrip("/")
    if not server:
        raise WorkflowError("--server is empty; expected HOST:PORT, e.g. 127.0.0.1:8188")
    if "://" not in server:
        server = "http://" + server
    if not server.startswith(("http://", "https://")):
        raise WorkflowError(f"--server {server}: only http:// and https:// servers are supported")
    return server


def _port_of(server: str) -> str:
    """The port part of a base URL, for the "start ComfyUI" hint (8188 when none is given)."""
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else "8188"


def format_rejection(error: Mapping[str, Any], node_errors: Mapping[str, Any], workflow: Mapping[str, Any]) -> str:
    """A readable summary of a ``POST /prompt`` 400 answer: the error, then each node and its errors."""
    message = error.get("message") if isinstance(error, Mapping) else str(error)
    lines = [f"the server rejected the workflow: {message or 'invalid prompt'}"]
    for node_id, info in node_errors.items():
        info = info if isinstance(info, Mapping) else {}
        class_type = info.get("class_type") or workflow.get(node_id, {}).get("class_type", "?")
        lines.append(f"  node {node_id} ({class_type}):")
        for err in info.get("errors") or []:
            err = err if isinstance(err, Mapping) else {"message": str(err)}
            details = f": {err['details']}" if err.get("details") else ""
            lines.append(f"    - {err.get('message', 'error')}{details}")
    if not node_errors and isinstance(error, Mapping) and error.get("details"):
        lines.append(f"  {error['details']}")
    return "\n".join(lines)


def _traceback_tail(traceback: Any, count: int = TRACEBACK_LINES) -> list[str]:
    """The last ``count`` lines of a ComfyUI traceback (a list of multi-line strings, or one string)."""
    text = "".join(traceback) if isinstance(traceback, list) else str(traceback or "")
    lines = [line for line in text.splitlines() if line.strip()][-count:]
    return textwrap.dedent("\n".join(lines)).splitlines()


def format_execution_failure(event: str, data: Mapping[str, Any], prompt_id: str) -> str:
    """A readable summary of an ``execution_error`` or ``execution_interrupted`` message."""
    known = data.get("node_id") is not None
    node = f"node {data.get('node_id')} ({data.get('node_type', '?')})" if known else f"prompt {prompt_id}"
    if event == "execution_interrupted":
        return f"prompt {prompt_id} was interrupted" + (f" at {node}" if known else "")
    lines = [f"{node} failed: {data.get('exception_type', 'error')}: {data.get('exception_message', '(no message)')}".rstrip()]
    tail = _traceback_tail(data.get("traceback"))
    if tail:
        lines.append(f"  traceback (last {len(tail)} lines):")
        lines.extend(f"    {line}" for line in tail)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Following one prompt


@dataclass
class _Tracker:
    """Reads a prompt's progress messages; knows whether it is done and what it has output so far."""

    prompt_id: str
    workflow: Mapping[str, Any]
    progress: ProgressFn | None = None
    started: bool = False
    done: bool = False
    succeeded: bool = False
    polling: bool = False
    node: str | None = None
    step: tuple[int, int] | None = None
    last_poll_error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        """Pass one progress line to the progress callback, if any."""
        if self.progress is not None:
            self.progress(line)

    def feed(self, message: Mapping[str, Any]) -> None:
        """Handle one websocket message ``{"type", "data"}``; raises :class:`ExecutionFailedError`."""
        kind, data = message.get("type"), message.get("data")
        if not isinstance(data, Mapping):
            return
        if "prompt_id" in data and data["prompt_id"] != self.prompt_id:
            return  # another prompt of this client id, or another client's broadcast
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data)

    def _on_execution_start(self, data: Mapping[str, Any]) -> None:
        self.started = True
        self.say(f"prompt {self.prompt_id} started")

    def _on_execution_cached(self, data: Mapping[str, Any]) -> None:
        self.started = True
        cached = data.get("nodes") or []
        if cached:
            self.say(f"{len(cached)} node(s) cached: {', '.join(map(str, cached))}")

    def _on_executing(self, data: Mapping[str, Any]) -> None:
        node = data.get("node")
        if node is None:
            if data.get("prompt_id") == self.prompt_id:
                self.done = True
            return
        self.started, self.node, self.step = True, str(node), None
        self.say(f"running {_node_label(self.workflow, node)}")

    def _on_progress(self, data: Mapping[str, Any]) -> None:
        value, total = data.get("value"), data.get("max")
        if not isinstance(value, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
            return
        if data.get("node") is not None:
            self.node = str(data["node"])
        self.started, self.step = True, (int(value), int(total))
        where = f" {_node_label(self.workflow, self.node)}" if self.node is not None else ""
        self.say(f"[{int(100 * value / total)}%]{where} {int(value)}/{int(total)}")

    def _on_executed(self, data: Mapping[str, Any]) -> None:
        node, output = data.get("node"), data.get("output")
        if node is not None and isinstance(output, Mapping):
            self.outputs[str(node)] = dict(output)

    def _on_execution_success(self, data: Mapping[str, Any]) -> None:
        self.succeeded = True

    def _on_execution_error(self, data: Mapping[str, Any]) -> None:
        raise ExecutionFailedError("execution_error", data, self.prompt_id)

    def _on_execution_interrupted(self, data: Mapping[str, Any]) -> None:
        raise ExecutionFailedError("execution_interrupted", data, self.prompt_id)

    def finish_from_history(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Take the outcome from a ``/history/{prompt_id}`` entry: outputs, or the recorded failure."""
        status = entry.get("status") if isinstance(entry.get("status"), Mapping) else {}
        if status.get("status_str") == "error":
            for event, data in _history_messages(status):
                if event in ("execution_error", "execution_interrupted"):
                    raise ExecutionFailedError(event, data, self.prompt_id)
            raise ExecutionFailedError("execution_error", {"exception_message": "failed (no error recorded in /history)"},
                                       self.prompt_id)
        outputs = entry.get("outputs")
        if isinstance(outputs, Mapping):
            self.outputs.update({str(k): v for k, v in outputs.items()})
        self.done = self.succeeded = True
        return self.outputs

    def describe(self) -> str:
        """What is still awaited, for the timeout message."""
        if not self.started:
            text = f"prompt {self.prompt_id} to start (still queued, or the server is busy with other prompts)"
        else:
            where = f"; last seen running {_node_label(self.workflow, self.node)}" if self.node else ""
            step = f" step {self.step[0]}/{self.step[1]}" if self.step and self.node else ""
            text = f"prompt {self.prompt_id} to finish{where}{step}"
        if self.polling:
            text += "; the websocket had closed, so /history was being polled"
            if self.last_poll_error:
                text += f" (last poll failed: {self.last_poll_error})"
        return text


def _history_messages(status: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``status.messages`` of a history entry as (event, data) pairs; malformed entries are skipped."""
    pairs = []
    for item in status.get("messages") or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], Mapping):
            pairs.append((str(item[0]), item[1]))
    return pairs


# --------------------------------------------------------------------------------------------------
# The HTTP / websocket client


def _aiohttp() -> Any:
    """Import aiohttp, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        import aiohttp
    except ImportError:
        raise MissingDependencyError("the ComfyUI client needs aiohttp, which is not installed: pip install aiohttp") from None
    return aiohttp


class ComfyClient:
    """Async client for one ComfyUI server; use as ``async with ComfyClient(server) as client``.

    ``connect_events()`` opens the websocket (call it before ``queue`` so no message is missed);
    ``wait()`` follows it and falls back to polling ``/history`` when it is missing or drops.
    """

    def __init__(self, server: str = DEFAULT_SERVER, client_id: str | None = None, *,
                 poll_interval: float = 1.0) -> None:
        self.base_url = normalize_server(server)
        self.client_id = client_id or uuid.uuid4().hex
        self.poll_interval = poll_interval
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._activity: Callable[[], str] = lambda: f"a connection to {self.base_url}"

    async def __aenter__(self) -> ComfyClient:
        aiohttp = _aiohttp()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the websocket and the HTTP session."""
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def describe_activity(self) -> str:
        """What the client is waiting for right now (used in timeout messages)."""
        return self._activity()

    def _set_activity(self, text: str) -> None:
        self._activity = lambda: text

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ComfyClient used outside 'async with'")
        return self._session

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; connection failures become :class:`ServerUnreachableError`."""
        aiohttp = _aiohttp()
        try:
            async with self.session.request(method, self.base_url + path, **kwargs) as response:
                yield response
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ServerUnreachableError(self.base_url, _reason(exc)) from None
        except aiohttp.ClientError as exc:
            raise ServerResponseError(f"{method} {path} to {self.base_url} failed: {_reason(exc)}") from None

    async def _json(self, response: aiohttp.ClientResponse, what: str) -> Any:
        """The JSON body of ``response``, or :class:`ServerResponseError` naming the request."""
        text = await response.text()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ServerResponseError(f"{what}: expected JSON, got HTTP {response.status}: {text[:200]!r}") from None

    async def _fail(self, response: aiohttp.ClientResponse, what: str) -> None:
        """Raise :class:`ServerResponseError` for an unexpected status."""
        body = (await response.text())[:300]
        raise ServerResponseError(f"{what} answered HTTP {response.status} {response.reason}: {body}")

    async def upload_image(self, path: str | Path) -> str:
        """Upload a file to the server's input folder; returns the name a LoadImage node should use."""
        path = Path(path)
        self._set_activity(f"the upload of {path.name} to {self.base_url}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WorkflowError(f"cannot read image {path}: {exc.strerror or exc}") from None
        form = _aiohttp().FormData()
        form.add_field("image", data, filename=path.name,
                       content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        async with self._request("POST", "/upload/image", data=form) as response:
            if response.status != 200:
                await self._fail(response, f"uploading {path} (POST /upload/image)")
            answer = await self._json(response, "POST /upload/image")
        if not isinstance(answer, Mapping) or not answer.get("name"):
            raise ServerResponseError(f"POST /upload/image: answer has no file name: {answer!r}")
        name = f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else str(answer["name"])
        log.info("uploaded %s as %s", path, name)
        return name

    async def connect_events(self) -> bool:
        """Open the websocket ``/ws?clientId=...``; False (and /history polling later) if the server refuses it."""
        aiohttp = _aiohttp()
        self._set_activity(f"the websocket connection to {self.base_url}")
        url = "ws" + self.base_url[len("http"):] + "/ws"
        try:
            self._ws = await self.session.ws_connect(url, params={"clientId": self.client_id}, heartbeat=WS_HEARTBEAT_S,
                                                     max_msg_size=WS_MAX_MESSAGE_BYTES, **_ws_close_timeout(aiohttp))
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ServerUnreachableError(self.base_url, _reason(exc)) from None
        except aiohttp.ClientError as exc:
            log.warning("no websocket at %s (%s); will poll /history instead", url, _reason(exc))
            return False
        return True

    async def queue(self, workflow: Mapping[str, Any]) -> str:
        """``POST /prompt``; returns the prompt id, or raises :class:`PromptRejectedError` on a 400."""
        self._set_activity(f"{self.base_url} to accept the prompt (POST /prompt)")
        body = {"prompt": workflow, "client_id": self.client_id}
        async with self._request("POST", "/prompt", json=body) as response:
            if response.status not in (200, 400):
                await self._fail(response, "POST /prompt")
            answer = await self._json(response, "POST /prompt")
            if response.status == 400:
                if not isinstance(answer, Mapping):
                    raise ServerResponseError(f"POST /prompt answered 400: {answer!r}")
                raise PromptRejectedError(answer.get("error") or {}, answer.get("node_errors") or {}, workflow)
        if not isinstance(answer, Mapping) or not answer.get("prompt_id"):
            raise ServerResponseError(f"POST /prompt: answer has no prompt_id: {answer!r}")
        if answer.get("node_errors"):
            log.warning("%s", format_rejection({"message": "some outputs will be skipped"}, answer["node_errors"], workflow))
        log.info("queued prompt %s (number %s)", answer["prompt_id"], answer.get("number"))
        return str(answer["prompt_id"])

    async def history(self, prompt_id: str) -> Mapping[str, Any] | None:
        """The ``/history/{prompt_id}`` entry, or None while the prompt has not finished."""
        async with self._request("GET", f"/history/{prompt_id}") as response:
            if response.status != 200:
                await self._fail(response, f"GET /history/{prompt_id}")
            answer = await self._json(response, f"GET /history/{prompt_id}")
        entry = answer.get(prompt_id) if isinstance(answer, Mapping) else None
        return entry if isinstance(entry, Mapping) else None

    async def wait(self, prompt_id: str, workflow: Mapping[str, Any] | None = None,
                   progress: ProgressFn | None = None) -> dict[str, Any]:
        """Wait until the prompt finishes; returns its outputs ``{node id: ui output}``.

        Follows the websocket opened by :meth:`connect_events`; when there is none or it closes early,
        polls ``/history/{prompt_id}`` every ``poll_interval`` seconds. Raises
        :class:`ExecutionFailedError` when the prompt fails. Has no time limit of its own: wrap it in
        :func:`asyncio.wait_for`, and read :meth:`describe_activity` on timeout.
        """
        tracker = _Tracker(prompt_id, workflow or {}, progress)
        self._activity = tracker.describe
        if self._ws is not None:
            await self._follow_websocket(tracker)
            if tracker.done:
                return tracker.outputs
            log.log(logging.INFO if progress else logging.WARNING,
                    "the websocket closed before prompt %s finished; polling /history", prompt_id)
            tracker.say("websocket closed; polling /history for the result")
        tracker.polling = True
        return await self._poll_history(tracker)

    async def _follow_websocket(self, tracker: _Tracker) -> None:
        """Feed websocket text messages to ``tracker`` until it is done or the socket closes."""
        aiohttp = _aiohttp()
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    decoded = _decode_message(message.data)
                    if decoded is not None:
                        tracker.feed(decoded)
                        if tracker.done:
                            return
                elif message.type == aiohttp.WSMsgType.ERROR:
                    log.warning("websocket error: %s", self._ws.exception())
                    return
                # binary frames are previews: ignored
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("websocket failed: %s", _reason(exc))

    async def _poll_history(self, tracker: _Tracker) -> dict[str, Any]:
        """Poll ``/history/{prompt_id}`` until the prompt appears there; connection errors are retried."""
        while True:
            try:
                entry = await self.history(tracker.prompt_id)
            except (ServerUnreachableError, ServerResponseError) as exc:
                if tracker.last_poll_error is None:
                    log.warning("polling /history failed (will retry): %s", exc)
                tracker.last_poll_error = str(exc)
                entry = None
            if entry is not None:
                return tracker.finish_from_history(entry)
            await asyncio.sleep(self.poll_interval)

    async def download(self, image: OutputImage, dest: Path) -> Path:
        """``GET /view`` one image into the file ``dest``; returns ``dest``."""
        self._set_activity(f"the download of {image.filename} from {self.base_url}")
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        async with self._request("GET", "/view", params=params) as response:
            if response.status != 200:
                await self._fail(response, f"downloading {image.filename} (GET /view)")
            data = await response.read()
        dest.write_bytes(data)
        log.info("saved %s (%d bytes)", dest, len(data))
        return dest


def _ws_close_timeout(aiohttp: Any) -> dict[str, Any]:
    """``ws_connect`` keyword that bounds how long closing waits for the server's reply (API differs by version)."""
    if hasattr(aiohttp, "ClientWSTimeout"):  # aiohttp >= 3.10
        return {"timeout": aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WS_CLOSE_TIMEOUT_S)}
    return {"timeout": WS_CLOSE_TIMEOUT_S}


def _reason(exc: BaseException) -> str:
    """A short cause for an aiohttp / OS error (``Connection refused`` rather than the full repr)."""
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return str(exc) or type(exc).__name__


def _decode_message(text: str) -> Mapping[str, Any] | None:
    """Parse a websocket text frame; None (logged) when it is not a JSON object."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        log.debug("ignoring a websocket frame that is not JSON: %.80r", text)
        return None
    return message if isinstance(message, Mapping) else None


# --------------------------------------------------------------------------------------------------
# One run


def _local_name(image: OutputImage, taken: set[str]) -> str:
    """``<node>_<filename>`` (node ids like ``12:5`` made file-safe), made unique within ``taken``."""
    stem = f"{image.node_id.replace(':', '-')}_{Path(image.filename).name}"
    name, n = stem, 1
    while name in taken:
        path = Path(stem)
        name, n = f"{path.stem}_{n}{path.suffix}", n + 1
    taken.add(name)
    return name


async def run_workflow_async(server: str, workflow: Mapping[str, Any], *, images: Mapping[str, str | Path] | None = None,
                             out_dir: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                             client_id: str | None = None, include_previews: bool = False,
                             progress: ProgressFn | None = None, poll_interval: float = 1.0) -> RunResult:
    """Upload ``images`` ({LoadImage node id: file}), queue ``workflow``, wait, download the outputs.

    The whole run, uploads and downloads included, must finish within ``timeout`` seconds, else
    :class:`RunTimeoutError` says what was still awaited. Images of type ``output`` (and ``temp`` with
    ``include_previews``) are saved into ``out_dir`` when it is given.
    """
    async with ComfyClient(server, client_id, poll_interval=poll_interval) as client:
        steps = _run_steps(client, workflow, images or {}, out_dir, include_previews, progress)
        try:
            return await asyncio.wait_for(steps, timeout)
        except asyncio.TimeoutError:
            raise RunTimeoutError(f"timed out after {timeout:g} s waiting for {client.describe_activity()}") from None


async def _run_steps(client: ComfyClient, workflow: Mapping[str, Any], images: Mapping[str, str | Path],
                     out_dir: str | Path | None, include_previews: bool, progress: ProgressFn | None) -> RunResult:
    """The body of :func:`run_workflow_async`, without the time limit."""
    await client.connect_events()
    names = {node_id: await client.upload_image(path) for node_id, path in images.items()}
    prompt = patch_images(workflow, names)
    prompt_id = await client.queue(prompt)
    if progress is not None:
        progress(f"queued prompt {prompt_id}")
    outputs = collect_images(await client.wait(prompt_id, prompt, progress))
    result = RunResult(prompt_id, outputs)
    if out_dir is not None:
        wanted = {"output", "temp"} if include_previews else {"output"}
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for image in outputs:
            if image.type in wanted:
                result.saved.append(await client.download(image, folder / _local_name(image, taken)))
    return result


def run_workflow(server: str, workflow: Mapping[str, Any], **kwargs: Any) -> RunResult:
    """Synchronous :func:`run_workflow_async` (for scripts; not from inside a running event loop)."""
    return asyncio.run(run_workflow_async(server, workflow, **kwargs))


# --------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m grounded_inpaint.client`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m grounded_inpaint.client",
        description="Run an API-format workflow on a running ComfyUI server and download its images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines; errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="queue a workflow, follow it, download its images",
        description="Queue WORKFLOW (an API-format file from ComfyUI's Export (API)), follow its progress "
                    "and save its output images into --out as <node id>_<file name>.",
        epilog="exit codes: 0 done, 1 server unreachable or unexpected answer, 2 invalid workflow/options "
               "or rejected by the server, 3 failed or interrupted while running, 4 timeout, 5 too few images",
    )
    run.add_argument("workflow", type=Path, metavar="WORKFLOW", help="API-format workflow JSON (*_api.json)")
    run.add_argument("--server", default=DEFAULT_SERVER, help=f"HOST:PORT or URL of ComfyUI (default {DEFAULT_SERVER})")
    run.add_argument("--image", action="append", default=[], metavar="[NODE=]PATH",
                     help="upload PATH and use it in the LoadImage node (NODE=PATH when there are several)")
    run.add_argument("--set", action="append", default=[], dest="sets", metavar="NODE.INPUT=VALUE",
                     help='set an input; VALUE is JSON when it parses (42, 0.5, true, "42"), else text')
    run.add_argument("-o", "--out", required=True, type=Path, help="folder for the downloaded images")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                     help=f"give up after this many seconds in all (default {DEFAULT_TIMEOUT_S:g})")
    run.add_argument("--client-id", default=None, help="websocket client id (default: a random one)")
    run.add_argument("--include-previews", action="store_true", help="also download preview (temp) images")
    run.add_argument("--expect-images", type=int, default=None, metavar="N",
                     help="exit 5 unless at least N output images were produced")
    return parser


def _progress_printer(line: str) -> None:
    """User-facing progress line on stderr."""
    print(line, file=sys.stderr, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    """``run``: prepare the workflow locally (fail fast), run it, print the saved paths."""
    if args.timeout <= 0:
        raise WorkflowError(f"--timeout must be positive, got {args.timeout:g}")
    workflow = load_api_workflow(args.workflow)
    workflow = apply_sets(workflow, [parse_set(text) for text in args.sets])
    images = assign_images(workflow, args.image)
    result = run_workflow(args.server, workflow, images=images, out_dir=args.out, timeout=args.timeout,
                          client_id=args.client_id, include_previews=args.include_previews,
                          progress=None if args.quiet else _progress_printer)
    for path in result.saved:
        print(path)
    found = len(result.output_images)
    if args.expect_images is not None and found < args.expect_images:
        print(f"error: expected at least {args.expect_images} output image(s), prompt {result.prompt_id} "
              f"produced {found}", file=sys.stderr)
        return 5
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose else (logging.ERROR if args.quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    try:
        return _cmd_run(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. the output folder cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
