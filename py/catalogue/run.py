"""``run_batch``: a whole catalogue through detection, segmentation and masks (and optionally inpainting).

The driver's part of a run, whichever engine does the images:

1. collect the inputs (:func:`~grounded_inpaint.catalogue.inputs.collect_inputs`) and give each
   its settings — the run's, overridden by its manifest row — checked one by one (a row with a
   bad value becomes a failed row, the others run);
2. find what is already complete (:func:`~grounded_inpaint.catalogue.ledger.is_complete`: same
   image, same settings, every file there) — these are skipped;
3. with ``dry_run``, stop here and say what would be done;
4. check every model once (all missing ones named in one error; downloads happen here, once, not
   in each worker), lock the output folder, remove what an interrupted run left half-written;
5. hand the rest to the engine, recording each row in the run manifest as it arrives, with a
   progress bar (images per second, time left);
6. write the run manifest whole and return a :class:`BatchSummary`.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from .engines import run_embedded, run_ray
from .inputs import BatchItem, collect_inputs
from .ledger import ATTEMPTS_FOLDER, RunLock, RunManifest, is_complete, read_record, remove_leftovers, settings_digest
from .settings import SettingsError, SettingsSpec
from .work import DEFAULT_MAX_PIXELS, Job, Task, row_from_record, failed_row

__all__ = ["DEFAULT_RUN_MANIFEST", "BatchSummary", "run_batch", "format_seconds"]

log = logging.getLogger(__name__)

#: The run manifest's file name in the output folder, unless ``run_manifest`` names another.
DEFAULT_RUN_MANIFEST = "batch-run.jsonl"

Engine = Literal["embedded", "ray"]


@dataclass
class BatchSummary:
    """What a run did (or, with ``dry_run``, would do).

    Attributes:
        total: inputs. done / nothing_found / failed: their final status (skipped ones included).
        skipped: complete from an earlier run, not redone. processed: worked on in this run.
        seconds: wall time of the run; work_seconds: of the engine part (models loading included).
        manifest: the run manifest written (``None`` for a dry run).
        rows: one row per input, in input order (for a dry run: the skipped and the bad-settings rows).
        to_do: for a dry run, the images that would be worked on.
    """

    total: int = 0
    done: int = 0
    nothing_found: int = 0
    failed: int = 0
    skipped: int = 0
    processed: int = 0
    seconds: float = 0.0
    work_seconds: float = 0.0
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    to_do: list[Task] = field(default_factory=list)
    engine: str = "embedded"
    pool: str = ""

    @property
    def exit_code(self) -> int:
        """0 when no image failed, 3 when the run finished with failed images (the ``batch`` command's exit code)."""
        return 3 if self.failed else 0

    @property
    def images_per_second(self) -> float:
        return self.processed / self.work_seconds if self.work_seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the ``batch`` command prints."""
        if self.dry_run:
            bad = f", {self.failed} with bad settings (would fail)" if self.failed else ""
            return (f"dry run: {self.total} image(s): {self.skipped} already complete (skipped), "
                    f"{len(self.to_do)} to do{bad}; nothing was written")
        rate = f"; {self.images_per_second:.2f} images/s" if self.processed else ""
        earlier = f" ({self.skipped} complete from an earlier run, skipped)" if self.skipped else ""
        where = f"; manifest {self.manifest}" if self.manifest else ""
        return (f"batch: {self.total} image(s) in {format_seconds(self.seconds)}: {self.done} done, "
                f"{self.nothing_found} nothing found, {self.failed} failed{earlier}{rate}{where}")


def format_seconds(seconds: float) -> str:
    """``75.2`` → ``"1m15s"``; under a minute ``"12.3s"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _jsonable(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}


def _tasks(items: Sequence[BatchItem], spec: SettingsSpec, base: Mapping[str, Any], out: Path,
           run_id: str) -> tuple[list[Task], list[dict[str, Any]]]:
    """Each item's task, or its failed row when its manifest row has a bad setting or no prompt."""
    from ..prompts import normalize_prompt

    tasks: list[Task] = []
    bad: list[dict[str, Any]] = []
    for item in items:
        try:
            settings = _jsonable(spec.apply_row(base, item.overrides))
            if settings.get("prompt") is None:
                raise SettingsError("no prompt: this row has no prompt and no --prompt was given")
            normalize_prompt(settings["prompt"])
            if settings.get("inpaint") is not None and not str(settings["inpaint"]).strip():
                raise SettingsError("inpaint: the painting prompt is empty; say what to paint")
        except ValueError as exc:  # SettingsError, EmptyPromptError
            settings = _jsonable({**base, **{k: v for k, v in item.overrides.items() if k in spec.names}})
            task = Task(item.index, item.path, item.name, settings, "")
            bad.append(failed_row(task, out, f"{item.source}: {exc}", run_id=run_id, settings=settings))
            continue
        digest = settings_digest(SettingsSpec.result_settings(settings))
        tasks.append(Task(item.index, item.path, item.name, settings, digest))
    return tasks, bad


def _check_models(tasks: Sequence[Task], base: Mapping[str, Any]) -> None:
    """Resolve (and, unless ``no_download``, download) every model once; name all missing ones at once."""
    from ..cli_support import resolve_all

    args = argparse.Namespace(**base)
    models = Path(args.models) if args.models is not None else None
    also: list[str] = []
    if any(t.settings.get("inpaint") for t in tasks):
        from ..inpaint import _import_diffusers, _inpaint_model_problem

        _import_diffusers()
        problem = _inpaint_model_problem(args, models)
        if problem:
            also.append(problem)
    from ..matting.command import matting_problems

    if any(t.settings.get("refine") == "vitmatte" for t in tasks):  # the matting model is run-wide too
        also += matting_problems(argparse.Namespace(**{**base, "refine": "vitmatte"}))
    resolve_all([(args.detector, "grounding-dino"), (args.segmenter, "sam")], models, download=not args.no_download,
                also=also)


def run_batch(
    sources: Sequence[str | Path],
    out: str | Path,
    settings: Mapping[str, Any] | None = None,
    *,
    engine: Engine = "embedded",
    actors: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    run_manifest: str | Path | None = None,
    dry_run: bool = False,
    check_content: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    verbose: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Run the ``mask`` job (or, with ``settings["inpaint"]``, the background-generation job) over a catalogue.

    Arguments:
        sources: folders, glob patterns, image files, manifests (``.txt``, ``.csv``, ``.tsv``,
            ``.jsonl``, ``.parquet``); see :mod:`grounded_inpaint.catalogue.inputs`.
        out: the output folder: ``out/<name>/`` per image (``mask.png``, ``overlay.png``,
            ``cutout.png``, ``detections.json``, ``batch.json``; with inpainting ``result.png``,
            ``mask.png``, ``overlay.png``, ``detections.json``, ``batch.json``) and the run manifest.
        settings: the ``batch`` command's options by their Python names — ``prompt`` (needed,
            here or in every manifest row), ``detector``, ``segmenter``, ``models``,
            ``box_threshold``, ``invert``, ``grow``, …, ``inpaint`` (the painting prompt; turns
            the inpainting job on), ``steps``, ``seed``, … Each is checked like the option.
        engine: ``"embedded"`` (this process) or ``"ray"`` (Ray Data; needs the ``ray`` extra).
        actors, threads: Ray's actor pool and the torch threads per actor (or, embedded, of this
            process); ``None`` = sized to the GPUs or CPUs (see :func:`~grounded_inpaint.catalogue.engines.plan_pool`).
        ray_address: a Ray cluster to join; ``None`` starts a local one (or uses ``RAY_ADDRESS``).
        run_manifest: the run manifest's path, ``.jsonl`` or ``.parquet`` (default ``out/batch-run.jsonl``).
        dry_run: only say what is complete and what would be done; write nothing.
        check_content: compare content hashes even when an image's size and time are unchanged.
        max_pixels: images above this many pixels fail (their row says so).
        progress: show a progress bar (images per second, time left).
        verbose: Ray's own logs too.
        on_row: called with each row as it is recorded (skipped and bad-settings rows first).

    Returns:
        :class:`BatchSummary` (``exit_code`` 3 when an image failed).

    Raises:
        InputError: a source that does not exist, a folder or pattern without images, a bad manifest.
        SettingsError: a bad run setting (named), or no prompt anywhere.
        ModelNotFoundError: missing models (every one named). ImportError: Ray or diffusers missing
            when needed (with the pip command). LockedError: another run writes into ``out``.
    """
    started = time.perf_counter()
    spec = SettingsSpec()
    base = spec.resolve(settings)
    out = Path(out)
    manifest_path = Path(run_manifest) if run_manifest is not None else out / DEFAULT_RUN_MANIFEST
    if engine not in ("embedded", "ray"):
        raise SettingsError(f"engine: must be embedded or ray; got {engine!r}")
    items = collect_inputs(sources, setting_names=spec.per_row, exclude=[out])
    if base.get("prompt") is None and not any("prompt" in item.overrides for item in items):
        raise SettingsError("no prompt: give --prompt (prompt=...) or a prompt column in the manifest")
    run_id = datetime.now().strftime("%Y%m%dT%H%M%S-") + secrets.token_hex(3)
    tasks, bad_rows = _tasks(items, spec, base, out, run_id)
    manifest = RunManifest(manifest_path)  # a Parquet manifest without pyarrow fails here, before any work

    summary = BatchSummary(total=len(items), dry_run=dry_run, engine=engine)
    complete: list[dict[str, Any]] = []
    pending: list[Task] = []
    for task in tasks:
        folder = out / task.name
        record = read_record(folder)
        if is_complete(record, folder, task.path, task.digest, check_content=check_content):
            complete.append(row_from_record(record, task, folder, run_id))  # type: ignore[arg-type]
        else:
            pending.append(task)

    if dry_run:
        summary.rows = sorted(complete + bad_rows, key=lambda r: r["index"])
        summary.skipped, summary.failed, summary.to_do = len(complete), len(bad_rows), pending
        summary.seconds = time.perf_counter() - started
        return summary

    if pending:
        _check_models(pending, base)
    job = Job(out=str(out), run_settings=_jsonable(base), run_id=run_id, max_pixels=int(max_pixels),
              check_content=check_content)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the output folder {out}: {exc.strerror or exc}; choose another --out") from None
    with RunLock(out):
        remove_leftovers(out, [t.name for t in tasks])
        manifest.open()

        def record(row: dict[str, Any]) -> None:
            manifest.add(row)
            if on_row is not None:
                on_row(row)

        try:
            for row in sorted(complete + bad_rows, key=lambda r: r["index"]):
                record(row)
            work_start = time.perf_counter()
            from ..cli_support import progress_bar

            with progress_bar(len(pending), "batch", not progress) as bar:
                counts = {"done": 0, "nothing_found": 0, "failed": 0}

                def finished(row: dict[str, Any]) -> None:
                    record(row)
                    summary.processed += 1
                    counts[row["status"]] = counts.get(row["status"], 0) + 1
                    bar.set_postfix_str(f"done {counts['done']}, nothing {counts['nothing_found']}, failed {counts['failed']}",
                                        refresh=False)
                    bar.update(1)

                if engine == "ray":
                    plan = run_ray(job, pending, finished, actors=actors, threads=threads, address=ray_address,
                                   verbose=verbose)
                    summary.pool = plan.describe() if plan else ""
                else:
                    run_embedded(job, pending, finished, threads=threads)
            summary.work_seconds = time.perf_counter() - work_start
            remove_leftovers(out, [t.name for t in pending])  # of workers that died mid-image (their retries finished it)
            try:
                (out / ATTEMPTS_FOLDER).rmdir()  # empty unless an image keeps killing its workers
            except OSError:
                pass
            summary.manifest = manifest.finish()
        finally:
            manifest.close()
    summary.rows = manifest.rows
    summary.skipped = len(complete)
    for row in summary.rows:
        if row["status"] == "done":
            summary.done += 1
        elif row["status"] == "nothing_found":
            summary.nothing_found += 1
        else:
            summary.failed += 1
    summary.seconds = time.perf_counter() - started
    return summary

