"""Downloads are atomic, checked, and fail offline with a message naming the file and folder."""

import hashlib
import http.server
import threading

import pytest

from grounded_inpaint import download as dl
from grounded_inpaint.errors import ModelNotFoundError
from grounded_inpaint.models import resolve_model
from grounded_inpaint.registry import FAMILY_FOLDERS, KNOWN_MODELS, find_known, known_models

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/model.pth":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/cut.pth":  # announces the full size, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_url_with_checksum_and_progress(server, tmp_path):
    seen = []
    out = dl.download_url(f"{server}/model.pth", tmp_path / "m.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                          progress=lambda d, t: seen.append((d, t)), show_progress=False)
    assert out.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert _leftovers(tmp_path) == []


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    with pytest.raises(ValueError, match="damaged"):
        dl.download_url(f"{server}/model.pth", tmp_path / "m.pth", sha256="0" * 64, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_keeps_nothing(server, tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        dl.download_url(f"{server}/cut.pth", tmp_path / "cut.pth", show_progress=False)
    assert "cut.pth" in str(info.value) and str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_file_and_folder(server, tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        dl.download_url(f"{server}/missing.pth", tmp_path / "x.pth", show_progress=False)
    text = str(info.value)
    assert "x.pth" in text and f"{server}/missing.pth" in text and "by hand" in text


def test_hf_folder_failure_midway_keeps_nothing(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, *, local_dir, **kwargs):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("connection reset")
        (local_dir / filename).write_text("{}")
        return str(local_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(dl, "host_reachable", lambda url, timeout=5.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelNotFoundError) as info:
        dl.download_hf_folder("org/model", ("config.json", "model.safetensors", "x.json"), tmp_path / "model",
                              show_progress=False)
    assert "connection reset" in str(info.value) and "org/model" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a hidden partial one


def test_hf_folder_success_is_atomic(tmp_path, monkeypatch):
    import huggingface_hub

    def fake_download(repo_id, filename, *, local_dir, **kwargs):
        (local_dir / ".cache").mkdir(exist_ok=True)
        (local_dir / filename).write_text(filename)
        return str(local_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(dl, "host_reachable", lambda url, timeout=5.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    steps = []
    out = dl.download_hf_folder("org/model", ("config.json", "model.safetensors"), tmp_path / "model",
                                progress=lambda d, t: steps.append((d, t)), show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert steps == [(1, 2), (2, 2)]
    assert _leftovers(tmp_path) == []


def test_offline_known_model_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("grounding-dino-tiny", "grounding-dino", tmp_path)
    text = str(info.value)
    assert "grounding-dino-tiny" in text
    assert str(tmp_path / "grounding-dino" / "grounding-dino-tiny") in text
    assert "https://huggingface.co/IDEA-Research/grounding-dino-tiny" in text
    assert "model.safetensors" in text


def test_no_download_flag_message(tmp_path):
    with pytest.raises(ModelNotFoundError, match="downloads are turned off"):
        resolve_model("sam_vit_b_01ec64.pth", "sam", tmp_path, download=False)


def test_unknown_name_lists_choices(tmp_path):
    (tmp_path / "sams").mkdir()
    (tmp_path / "sams" / "mine.pth").write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("sam_vit_q.pth", "sam", tmp_path)
    assert "mine.pth" in str(info.value) and "sam-vit-base" in str(info.value)


def test_registry_is_consistent():
    names = [m.name for m in KNOWN_MODELS]
    assert len(names) == len(set(names))
    for m in KNOWN_MODELS:
        assert (m.repo_id is None) != (m.url is None)
        assert not m.is_folder or "model.safetensors" in m.files  # never a pickle from the hub
        assert m.folder in FAMILY_FOLDERS[m.family]
    assert find_known("IDEA-Research/grounding-dino-tiny").name == "grounding-dino-tiny"
    assert {m.family for m in known_models()} == set(FAMILY_FOLDERS)


def test_gated_repository_failure_says_how_to_log_in(tmp_path, monkeypatch):
    import huggingface_hub

    def refused(repo_id, filename, *, local_dir, **kwargs):
        raise OSError("401 Client Error: Unauthorized")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    monkeypatch.setattr(dl, "host_reachable", lambda url, timeout=5.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    gated = [m for m in KNOWN_MODELS if m.gated]
    assert gated, "the registry lists a gated model (SAM 3)"
    with pytest.raises(ModelNotFoundError) as info:
        dl.download_known_model(gated[0], tmp_path, show_progress=False)
    text = str(info.value)
    assert "401" in text and "hf auth login" in text and gated[0].source in text
    assert list(tmp_path.iterdir()) == []


def test_gated_models_are_not_offered_to_managers():
    from grounded_inpaint.registry import comfy_registry_models

    urls = [m["model_url"] for m in comfy_registry_models()]
    for model in KNOWN_MODELS:
        listed = any((model.repo_id and f"huggingface.co/{model.repo_id}/resolve/" in u) or u == model.url for u in urls)
        assert listed != model.gated, model.name
