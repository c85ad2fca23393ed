"""Downloads that leave either a complete model or nothing behind.

Every download is written into a hidden temporary file or folder next to its destination and moved
into place only when it is complete (and its sha256 matches, where one is known). If anything goes
wrong — no network, a server error, Ctrl-C — the temporary copy is removed and the error says which
file is missing, which folder it belongs in and where to get it by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import ModelNotFoundError
from .registry import KnownModel

__all__ = ["download_known_model", "download_hf_folder", "download_url", "sha256_of", "host_reachable", "Progress"]

log = logging.getLogger(__name__)

#: ``progress(done, total)`` — called as a download advances (bytes for files, files for folders).
Progress = Callable[[int, int], None]

_CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _offline_error(model_name: str, dest: Path, source: str, reason: str, files: tuple[str, ...] = ()) -> ModelNotFoundError:
    """The error for a model that is missing and could not be fetched: what, where, and how by hand."""
    if files:
        how = f"download the files {', '.join(files)} from {source} into the folder {dest}"
    else:
        how = f"download {source} and save it as {dest}"
    return ModelNotFoundError(
        f"{model_name} is not in {dest.parent} and could not be downloaded ({reason}). To install it by hand, {how}."
    )


def host_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether the host of ``url`` resolves and accepts a TCP connection within ``timeout`` seconds.

    Used to fail in seconds when offline, instead of waiting for a client's retries.
    """
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_url(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    show_progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to the file ``dest`` atomically.

    Arguments:
        url: http(s) address of the file.
        dest: final path; its folder is created.
        sha256: expected hex digest; a mismatch deletes the download and raises.
        progress: optional ``progress(bytes_done, bytes_total)`` callback (total 0 if unknown).
        show_progress: also show a tqdm bar on stderr.

    Raises:
        ModelNotFoundError: the download failed (the message says how to get the file by hand).
        ValueError: the checksum did not match.
    """
    dest = Path(dest)
    if not host_reachable(url):
        raise _offline_error(dest.name, dest, url, f"offline: {url.split('/')[2] if '//' in url else url} cannot be reached")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    bar = None
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            if show_progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name, leave=False)
            done = 0
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if bar is not None:
                    bar.update(len(block))
                if progress is not None:
                    progress(done, total)
            if total and done != total:
                raise urllib.error.URLError(f"connection closed after {done} of {total} bytes")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise ValueError(
                f"the download of {url} is damaged: sha256 {digest.hexdigest()} instead of {sha256}; "
                "nothing was saved — try again"
            )
        os.replace(tmp, dest)
        log.info("downloaded %s -> %s", url, dest)
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _offline_error(dest.name, dest, url, _first_line(exc)) from None
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def download_hf_folder(
    repo_id: str,
    files: tuple[str, ...],
    dest: str | Path,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    show_progress: bool = True,
    gated: bool = False,
    revision: str | None = None,
) -> Path:
    """Download ``files`` of the Hugging Face repo ``repo_id`` into the folder ``dest`` atomically.

    The files go into a hidden sibling folder first; ``dest`` appears only when all of them are
    there. ``sha256`` (if given) is checked against ``model.safetensors``. ``gated`` repositories get
    a failure message that says how to accept the licence and log in. ``revision``: a branch, tag
    or ``refs/pr/N`` (default ``main``).

    Raises:
        ModelNotFoundError: offline, repository or file missing, or any transfer error.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.constants import ENDPOINT

    dest = Path(dest)
    source = f"https://huggingface.co/{repo_id}"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise _offline_error(dest.name, dest, source, "HF_HUB_OFFLINE is set", files)
    if not host_reachable(ENDPOINT):
        raise _offline_error(dest.name, dest, source, f"offline: {ENDPOINT} cannot be reached", files)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        tqdm_class = None
        if not show_progress:
            from tqdm import tqdm as _tqdm

            class tqdm_class(_tqdm):  # type: ignore[no-redef]  # silent bar
                def __init__(self, *args, **kwargs):
                    kwargs["disable"] = True
                    super().__init__(*args, **kwargs)

        for index, name in enumerate(files):
            try:
                hf_hub_download(repo_id, name, local_dir=tmp, tqdm_class=tqdm_class, revision=revision)
            except Exception as exc:  # network, HTTP, offline mode, missing file: all end the same way
                reason = f"{name}: {_first_line(exc)}"
                if gated:
                    reason += (f"; {repo_id} is gated: accept its licence at {source} and log in with "
                               "`hf auth login` (or set HF_TOKEN), then try again")
                raise _offline_error(dest.name, dest, source, reason, files) from None
            if progress is not None:
                progress(index + 1, len(files))
        weights = tmp / "model.safetensors"
        if sha256 and weights.is_file() and sha256_of(weights) != sha256.lower():
            raise ValueError(f"the download of {repo_id}/model.safetensors is damaged (sha256 mismatch); try again")
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        if dest.exists():  # an incomplete folder a user started by hand: keep nothing of ours half-done
            for child in tmp.iterdir():
                os.replace(child, dest / child.name)
        else:
            os.replace(tmp, dest)
        log.info("downloaded %s -> %s", repo_id, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_known_model(
    model: KnownModel,
    folder: str | Path,
    *,
    progress: Progress | None = None,
    show_progress: bool = True,
) -> Path:
    """Download a known model into ``folder`` (e.g. ``models/sams``) and return its path.

    Returns the existing path without downloading when the model is already there.
    """
    target = Path(folder) / model.name
    if model.is_folder:
        if target.is_dir() and all((target / f).is_file() for f in model.files if f.endswith((".json", ".safetensors"))):
            return target
        log.info("downloading %s (%d MB) from %s into %s", model.name, model.size_mb, model.source, target)
        return download_hf_folder(
            model.repo_id or "", model.files, target, sha256=model.sha256, progress=progress,
            show_progress=show_progress, gated=model.gated, revision=model.revision,
        )
    if target.is_file():
        return target
    log.info("downloading %s (%d MB) from %s into %s", model.name, model.size_mb, model.source, folder)
    return download_url(model.url or "", target, sha256=model.sha256, progress=progress, show_progress=show_progress)
