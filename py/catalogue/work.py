"""One image of a batch, start to finish: the work every engine runs, in one place.

A :class:`Worker` loads the models once (and the inpainting pipeline on first use), then turns
each :class:`Task` into a manifest row: it reads the image, finds the objects, writes the same
files the ``mask`` command writes (or, with ``--inpaint``, the ``inpaint`` command's) through the
very functions those commands use, into a :class:`~grounded_inpaint.catalogue.ledger.ResultFolder`
that moves into place only when complete, with its completion record.

A task whose results are already complete for the same image and settings is not redone: the
worker returns the recorded row. That is what makes a retried task (a Ray worker that died after
finishing an image but before reporting it) harmless: every image is done once.

Any ``Exception`` while working on an image — unreadable or damaged file, an image over
``max_pixels``, a model error, a full disk — becomes a ``failed`` row with the reason; the worker
goes on with the next image. ``KeyboardInterrupt`` and ``SystemExit`` stop it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .ledger import MAX_ATTEMPTS, Attempts, ResultFolder, content_hash, is_complete, read_record
from .settings import INPAINT_SETTINGS, SettingsSpec

__all__ = ["DEFAULT_MAX_PIXELS", "Job", "Task", "Worker", "failed_row", "row_from_record", "derived_seed", "now"]

log = logging.getLogger(__name__)

#: Images with more pixels than this (8192 x 8192) fail with a clear reason instead of
#: exhausting a worker's memory; ``--max-pixels`` changes it.
DEFAULT_MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Job:
    """What every worker of one run needs (plain data: it travels to Ray actors as JSON).

    Attributes:
        out: the output folder.
        run_settings: the run-wide settings (models, device, precision, … see
            :data:`grounded_inpaint.catalogue.settings.RUN_WIDE`) and the defaults of the others.
        run_id: this run's id (recorded in each completion record).
        max_pixels: images above this many pixels fail.
        check_content: always compare content hashes when checking for earlier results.
    """

    out: str
    run_settings: Mapping[str, Any]
    run_id: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    check_content: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Task:
    """One image to do: its place in the input order, its path, its result folder (relative to
    the output folder), its full settings (JSON values) and the digest of those that decide the results."""

    index: int
    path: str
    name: str
    settings: Mapping[str, Any]
    digest: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "Task":
        return cls(**json.loads(text))


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def derived_seed(sha256: str) -> int:
    """The inpainting seed used when none is given: from the image's content, so a rerun repeats it."""
    return int(sha256[:8], 16)


def failed_row(task: Task, out: str | Path, reason: str, *, seconds: float = 0.0, run_id: str | None = None,
               settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest row of an image that failed (no results written)."""
    return {
        "index": task.index, "input": task.path, "output": str(Path(out) / task.name), "status": "failed",
        "reason": reason, "instances": None, "selected": None, "files": [], "seconds": round(seconds, 4),
        "skipped": False, "input_sha256": None, "settings_digest": task.digest,
        "settings": SettingsSpec.result_settings(settings if settings is not None else task.settings), "run_id": run_id,
        "worker": worker_id(), "finished": now(),
    }


def row_from_record(record: Mapping[str, Any], task: Task, folder: Path, run_id: str) -> dict[str, Any]:
    """The manifest row of an image whose results are complete in ``folder`` (``skipped`` when an
    earlier run made them)."""
    row = {name: record.get(name) for name in (
        "status", "reason", "instances", "selected", "seconds", "input_sha256", "settings_digest", "settings", "run_id",
        "worker", "finished")}
    row.update(index=task.index, input=task.path, output=str(folder),
               files=[str(folder / name) for name in record.get("files", [])],
               skipped=record.get("run_id") != run_id)
    return row


def _check_pixels(path: str, max_pixels: int) -> None:
    """Refuse an image above ``max_pixels`` from its header, before decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 - load_image names what is wrong with an unreadable file
        return
    if width * height > max_pixels:
        raise ValueError(f"{path} is {width}x{height} pixels ({width * height / 1e6:.1f} MP), over --max-pixels "
                         f"{max_pixels} ({max_pixels / 1e6:.1f} MP); scale it down or raise --max-pixels")


class Worker:
    """Loads the models of a :class:`Job` once and does its tasks, one image at a time.

    Arguments:
        job: the run's settings and output folder.
        threads: torch threads for this worker (``None``: leave torch's setting).
    """

    def __init__(self, job: Job, *, threads: int | None = None) -> None:
        import torch

        from ..cli_support import load_models, pick_device, pick_dtype

        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        self.job = job
        self.out = Path(job.out)
        run = argparse.Namespace(**job.run_settings)
        run.models = Path(run.models) if run.models is not None else None
        self.device = pick_device(run.device)
        self.dtype = pick_dtype(run.precision, self.device)
        self.models = load_models(run, self.device, self.dtype)  # already resolved by the driver: nothing downloads here
        self._matting: Any = None
        self._run = run
        self._pipe: Any = None
        self.attempts = Attempts(self.out)

    def _pipeline(self) -> Any:
        if self._pipe is None:
            from ..inpaint import _quiet_diffusers, load_inpaint_pipeline

            run = self._run
            _quiet_diffusers(False, True)
            self._pipe = load_inpaint_pipeline(
                run.inpaint_model, device=self.device, dtype=self.dtype, local_files_only=run.no_download,
                models_dir=run.models, safety_checker=not run.no_safety_checker, config=run.inpaint_config,
            )
            self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def _matting_model(self, args: argparse.Namespace) -> Any:
        """The ViTMatte model when an image asks for ``--refine vitmatte`` (loaded once), else ``None``."""
        if self._matting is None and args.refine == "vitmatte":
            from ..matting.command import load_matting

            self._matting = load_matting(args, self.device)  # resolved by the driver: nothing downloads here
        return self._matting if args.refine == "vitmatte" else None

    def __call__(self, task: Task) -> dict[str, Any]:
        """Do one image; returns its manifest row (never raises for a problem with the image)."""
        start = time.perf_counter()
        folder = self.out / task.name
        record = read_record(folder)
        if is_complete(record, folder, task.path, task.digest, check_content=self.job.check_content):
            return row_from_record(record, task, folder, self.job.run_id)  # type: ignore[arg-type]
        died = self.attempts.begin(task.name, task.digest, task.path)
        if died >= MAX_ATTEMPTS:  # the mark stays: a rerun fails it again until the file or settings change
            return failed_row(task, self.out, f"workers died {died} times while working on this image (a crash or the "
                              "out-of-memory killer); it is not tried again until the file or the settings change",
                              run_id=self.job.run_id)
        try:
            row = self._work(task, folder, start)
        except Exception as exc:  # noqa: BLE001 - one bad image never stops the run; the row says why
            reason = str(exc) if isinstance(exc, (ValueError, OSError)) and str(exc) else f"{type(exc).__name__}: {exc}"
            log.debug("%s failed: %s\n%s", task.path, reason, traceback.format_exc())
            self._free_device_memory()
            row = failed_row(task, self.out, reason, seconds=time.perf_counter() - start, run_id=self.job.run_id)
        self.attempts.end(task.name, task.digest, task.path)
        return row

    def _free_device_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _work(self, task: Task, folder: Path, start: float) -> dict[str, Any]:
        from ..cli_support import find_instances

        path = Path(task.path)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}" if not path.is_dir() else f"{path} is a folder, not an image file")
        _check_pixels(task.path, self.job.max_pixels)
        stat = os.stat(path)
        sha256 = content_hash(path)
        from ..images import load_image

        image = load_image(path)
        args = argparse.Namespace(**{**self.job.run_settings, **task.settings})
        args.models = self._run.models
        (detector, _), (predictor, _) = self.models
        segments, selected = find_instances(args, image, args.prompt, detector, predictor)
        with ResultFolder(folder) as result:
            if args.inpaint:
                status, reason, files = self._inpaint(args, path, image, segments, selected, sha256, result.temp)
            else:
                status, reason, files = self._mask(args, path, image, segments, selected, result.temp)
            seconds = time.perf_counter() - start
            record = {
                "status": status, "reason": reason, "instances": len(segments), "selected": len(selected),
                "files": [f.name for f in files], "seconds": round(seconds, 4), "input": str(path),
                "input_sha256": sha256, "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
                "settings_digest": task.digest, "settings": SettingsSpec.result_settings(task.settings),
                "run_id": self.job.run_id,
                "worker": worker_id(), "finished": now(),
            }
            result.commit(record)
        return row_from_record(record, task, folder, self.job.run_id)

    def _mask(self, args: argparse.Namespace, path: Path, image: Any, segments: Any, selected: list[int],
              folder: Path) -> tuple[str, str | None, list[Path]]:
        from ..cli_support import write_mask_outputs

        names = sorted(set(self.job.run_settings) - INPAINT_SETTINGS)
        files = write_mask_outputs(args, path, image, segments, selected, folder, setting_names=names,
                                   model_paths=(self.models[0][1], self.models[1][1]), device=self.device, dtype=self.dtype,
                                   matting=self._matting_model(args))
        if selected:
            return "done", None, files
        return "nothing_found", _nothing_reason(args, len(segments)), files

    def _inpaint(self, args: argparse.Namespace, path: Path, image: Any, segments: Any, selected: list[int], sha256: str,
                 folder: Path) -> tuple[str, str | None, list[Path]]:
        from ..cli_support import detections_record, write_json
        from ..images import save_image
        from ..inpaint import _DETECT_SETTINGS, NothingDetectedError, objects_to_inpaint, write_inpaint_outputs
        from ..overlay import draw_segments

        job = argparse.Namespace(**vars(args))
        job.detect, job.prompt, job.image, job.out = args.prompt, args.inpaint, path, folder
        try:
            masks = objects_to_inpaint(job, path, segments, selected)
        except NothingDetectedError as exc:  # nothing to keep or repaint: say what was found, write no result
            overlay = save_image(draw_segments(image, segments, opacity=args.opacity), folder / "overlay.png")
            record = detections_record(job, path, job.detect, segments, selected, _DETECT_SETTINGS,
                                       (self.models[0][1], self.models[1][1]), self.device, self.dtype, overlay_shows="all")
            reason = str(exc).split(". Nothing was written")[0]
            return "nothing_found", reason, [overlay, write_json(folder / "detections.json", record)]
        seed = job.seed if job.seed is not None else derived_seed(sha256)
        files = write_inpaint_outputs(job, path, image, segments, selected, masks, self._pipeline(), seed, folder,
                                      device=self.device, dtype=self.dtype, models=self.models,
                                      matting=self._matting_model(args))
        return "done", None, files



def _nothing_reason(args: argparse.Namespace, found: int) -> str:
    if found == 0:
        return f"nothing matching {args.prompt!r} above --box-threshold {args.box_threshold}"
    return f"{found} instance(s) found but none passed --select/--top-k/--labels/--min-score"

