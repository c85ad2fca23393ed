"""What makes a batch resumable: completion records beside the results, atomic result folders, the run manifest.

**Result folders.** Each image's results are written into a hidden temporary folder beside the
final one (``OUT/shoes/.red.tmp-<random>/``), completed with a record ``batch.json``, and only
then moved into place (:class:`ResultFolder`). A run killed at any moment leaves either the old
complete folder, the new complete folder, or hidden leftovers that the next run removes
(:func:`remove_leftovers`) — never a folder that looks complete but is not.

**Completion records.** ``batch.json`` holds the image's content hash (sha256), its size and
modification time, the digest of the settings that decide the results (:func:`settings_digest`),
the status and the files written. An image is complete (:func:`is_complete`) when a record
exists for the same settings, every file it lists is there, and the image is the same: same
size and modification time (the quick check, as ``make`` and ``rsync`` do), or else the same
content hash (the file is read and hashed only then; ``check_content=True`` always hashes). So a
rerun skips finished images without reading them, and redoes an image whose file or settings
changed.

**Run manifest.** One row per input, in input order (:data:`ROW_FIELDS`), written as JSON Lines
or Parquet (:class:`RunManifest`). While the run goes, each finished row is appended to
``<manifest>.partial`` (so ``tail -f`` shows progress and a killed run keeps what it did); at the
end the manifest is written whole, atomically, and the partial file removed.

**Attempts.** A worker that dies while working on an image (a crash, the out-of-memory killer)
cannot write a failed row. So each image's start is marked in ``OUT/.batch-attempts/`` and the
mark removed when the image ends either way; an image whose mark shows that workers already died
:data:`MAX_ATTEMPTS` times on it gets a failed row instead of a third try (:class:`Attempts`) —
the same after a rerun of the embedded engine as for Ray's retries, which would otherwise retry
a poison image forever. A changed file or other settings start the count afresh.

**Lock.** Two runs writing into one output folder would remove each other's temporary folders;
:class:`RunLock` (``OUT/.batch.lock``, an OS file lock that dies with its process) refuses the
second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "RECORD_FILE",
    "STATUSES",
    "ROW_FIELDS",
    "LOCK_FILE",
    "content_hash",
    "settings_digest",
    "read_record",
    "is_complete",
    "ResultFolder",
    "remove_leftovers",
    "RunManifest",
    "RunLock",
    "LockedError",
    "read_run_manifest",
    "ATTEMPTS_FOLDER",
    "MAX_ATTEMPTS",
    "Attempts",
]

log = logging.getLogger(__name__)

#: The completion record inside each result folder.
RECORD_FILE = "batch.json"
#: The status of an image: results written with instances, results written without any selected
#: instance, or no results (see ``reason``).
STATUSES = ("done", "nothing_found", "failed")
#: The columns of the run manifest, in order.
ROW_FIELDS = (
    "index", "input", "output", "status", "reason", "instances", "selected", "files", "seconds", "skipped",
    "input_sha256", "settings_digest", "settings", "run_id", "worker", "finished",
)
#: The lock file in the output folder.
LOCK_FILE = ".batch.lock"
_LEFTOVER = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{8}$")
_CHUNK = 1 << 20


def content_hash(path: str | Path) -> str:
    """The sha256 of the file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A 20-hex-digit digest of ``settings`` (JSON with sorted keys; equal settings, equal digest)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The completion record of a result folder, or ``None`` (no folder, no record, or a damaged one)."""
    try:
        record = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(record: Mapping[str, Any] | None, folder: str | Path, image: str | Path, digest: str, *,
                check_content: bool = False) -> bool:
    """Whether ``folder`` holds the finished results of ``image`` for the settings with ``digest``.

    See the module notes: the record's settings digest must match, every file it lists must
    exist, and the image must be the one recorded — by size and modification time, or, when
    those differ (or with ``check_content``), by its sha256.
    """
    if not record or record.get("settings_digest") != digest or record.get("status") not in ("done", "nothing_found"):
        return False
    folder = Path(folder)
    if not all((folder / name).is_file() for name in record.get("files", [])):
        return False
    try:
        stat = os.stat(image)
    except OSError:
        return False
    if not check_content and record.get("input_size") == stat.st_size and record.get("input_mtime_ns") == stat.st_mtime_ns:
        return True
    try:
        return record.get("input_sha256") == content_hash(image)
    except OSError:
        return False


class ResultFolder:
    """Write one image's results into a temporary folder, then move it into place whole.

    ::

        with ResultFolder(out / item.name) as folder:
            save_mask(mask, folder.temp / "mask.png")
            folder.commit(record)          # writes batch.json, then moves the folder into place

    Leaving the block without :meth:`commit` (or with an exception) removes the temporary folder
    and leaves any earlier results untouched. :meth:`commit` replaces an existing folder (earlier
    results for other settings, or an incomplete folder) by renaming it aside first, then
    removing it.
    """

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        self.temp = self.final.parent / f".{self.final.name}.tmp-{secrets.token_hex(4)}"
        self.committed = False

    def __enter__(self) -> "ResultFolder":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp.mkdir()
        return self

    def commit(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as ``batch.json`` into the temporary folder, then move the folder into place."""
        _write_json_atomically(self.temp / RECORD_FILE, record)
        try:
            os.rename(self.temp, self.final)  # POSIX: fine while the final folder is missing or empty
        except OSError:
            if not self.final.exists():
                raise
            aside = self.final.parent / f".{self.final.name}.old-{secrets.token_hex(4)}"
            os.rename(self.final, aside)
            os.rename(self.temp, self.final)
            shutil.rmtree(aside, ignore_errors=True)
        self.committed = True

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            shutil.rmtree(self.temp, ignore_errors=True)


def remove_leftovers(out: str | Path, names: Iterable[str]) -> int:
    """Remove the hidden temporary and set-aside folders an interrupted run left beside the result
    folders ``names`` (relative to ``out``); returns how many were removed. Nothing else is touched."""
    out = Path(out)
    removed = 0
    for parent in sorted({(out / name).parent for name in names}):
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            if _LEFTOVER.match(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    if removed:
        log.info("removed %d incomplete result folder(s) left by an interrupted run", removed)
    return removed


def _write_json_atomically(path: Path, data: Any) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class RunManifest:
    """The run manifest: rows appended to ``<path>.partial`` as they finish, written whole by :meth:`finish`.

    Arguments:
        path: ``….jsonl`` (JSON Lines, one object per row) or ``….parquet`` (needs pyarrow; the
            ``settings`` column holds JSON text there, as its keys may vary between rows).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.format = "parquet" if self.path.suffix.lower() == ".parquet" else "jsonl"
        if self.format == "parquet":
            _require_pyarrow(self.path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._rows: dict[int, dict[str, Any]] = {}
        self._fh = None

    def open(self) -> "RunManifest":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.partial, "w", encoding="utf-8")
        return self

    def add(self, row: Mapping[str, Any]) -> None:
        """Record the row of one input (keyed by ``row["index"]``; a later row for the same index replaces it)."""
        row = {name: row.get(name) for name in ROW_FIELDS}
        self._rows[int(row["index"])] = row
        if self._fh is not None:
            self._fh.write(json.dumps(row, default=str) + "\n")
            self._fh.flush()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows recorded so far, in input order."""
        return [self._rows[i] for i in sorted(self._rows)]

    def finish(self) -> Path:
        """Write the manifest (input order) atomically, remove the partial file; returns the manifest's path."""
        self.close()
        rows = self.rows
        handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=str(self.path.parent))
        os.close(handle)
        try:
            if self.format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pylist([dict(r, settings=json.dumps(r["settings"], sort_keys=True)) for r in rows],
                                             schema=_parquet_schema(pa))
                pq.write_table(table, temp)
            else:
                with open(temp, "w", encoding="utf-8") as fh:
                    for row in rows:
                        fh.write(json.dumps(row, default=str) + "\n")
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.partial.unlink(missing_ok=True)
        return self.path

    def close(self) -> None:
        """Close the partial file (kept on disk: it is what a killed or interrupted run did)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _parquet_schema(pa: Any) -> Any:
    return pa.schema([
        ("index", pa.int64()), ("input", pa.string()), ("output", pa.string()), ("status", pa.string()),
        ("reason", pa.string()), ("instances", pa.int64()), ("selected", pa.int64()), ("files", pa.list_(pa.string())),
        ("seconds", pa.float64()), ("skipped", pa.bool_()), ("input_sha256", pa.string()), ("settings_digest", pa.string()),
        ("settings", pa.string()), ("run_id", pa.string()), ("worker", pa.string()), ("finished", pa.string()),
    ])


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError(f"writing the run manifest {path} as Parquet needs pyarrow: pip install pyarrow "
                         '(or: pip install "grounded-inpaint[ray]"); or name a .jsonl manifest') from None


def read_run_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run manifest (``.jsonl`` or ``.parquet``) as dicts, ``settings`` as a dict in both."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        _require_pyarrow(path)
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        for row in rows:
            row["settings"] = json.loads(row["settings"]) if row.get("settings") else None
        return rows
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class LockedError(RuntimeError):
    """Another batch run holds the output folder."""


class RunLock:
    """An exclusive lock on ``OUT/.batch.lock`` for the duration of a run (released when the process ends).

    Uses ``fcntl.flock`` where it exists (Linux, macOS); elsewhere the run goes on unlocked (logged).
    """

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_FILE
        self._fh = None

    def __enter__(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            log.debug("no fcntl: %s is not locked against a second run", self.path.parent)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.seek(0)
            holder = self._fh.read().strip()
            self._fh.close()
            self._fh = None
            raise LockedError(f"another batch run is writing into {self.path.parent}"
                              + (f" ({holder})" if holder else "") + "; wait for it to end or choose another --out") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()}\n")
        self._fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def rows_by_status(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``{status: count}`` over ``rows`` for every status in :data:`STATUSES`."""
    counts = {status: 0 for status in STATUSES}
    for row in rows:
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    return counts


#: Hidden folder of the output folder holding the marks of images being worked on.
ATTEMPTS_FOLDER = ".batch-attempts"
#: Workers that may die on one image before it fails instead of being tried again.
MAX_ATTEMPTS = 2


class Attempts:
    """Count, per image, the workers that died while working on it (see the module notes)."""

    def __init__(self, out: str | Path) -> None:
        self.folder = Path(out) / ATTEMPTS_FOLDER

    def _mark(self, name: str, digest: str, image: str | Path) -> Path:
        try:
            stat = os.stat(image)
            identity = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            identity = "missing"
        key = hashlib.sha256(f"{name}\0{digest}\0{identity}".encode("utf-8")).hexdigest()[:32]
        return self.folder / key

    def begin(self, name: str, digest: str, image: str | Path) -> int:
        """Mark the start of work on an image; returns how many earlier starts never ended."""
        mark = self._mark(name, digest, image)
        try:
            before = int(mark.read_text().strip() or 0)
        except (OSError, ValueError):
            before = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = mark.with_name(f".{mark.name}.tmp-{secrets.token_hex(4)}")
        temp.write_text(f"{before + 1}\n")
        os.replace(temp, mark)
        return before

    def end(self, name: str, digest: str, image: str | Path) -> None:
        """The work on the image ended (done, nothing found or failed with a reason): remove its mark."""
        self._mark(name, digest, image).unlink(missing_ok=True)
