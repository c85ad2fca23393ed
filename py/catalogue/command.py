"""The ``batch`` subcommand: ``python -m grounded_inpaint batch INPUT... --prompt "shoes" --out DIR``.

Its detection and mask options are the ``mask`` command's own option objects, and its
inpainting options the ``inpaint`` command's (argparse lets parsers share actions, as its
``parents=`` does), so the three commands cannot drift apart: an option added to ``mask`` is an
option, and a setting, of ``batch`` too.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_batch_arguments", "run_batch_command"]

log = logging.getLogger("grounded_inpaint")

#: Options of ``mask`` that ``batch`` defines its own way (or not at all).
#: (``--matte`` gives one file per image of the command line; a catalogue has no such order.)
_NOT_FROM_MASK = {"help", "images", "out", "verbose", "quiet", "matte"}
#: Failed images named at the end of a run (the run manifest has them all), images listed by a dry run without -v.
_FAILURES_SHOWN = 20
#: Options of ``inpaint`` that ``batch --inpaint`` takes over, by their names.
_FROM_INPAINT = ("negative_prompt", "inpaint_model", "inpaint_config", "steps", "guidance", "strength", "seed", "size",
                 "no_safety_checker")


def add_batch_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to ``subparsers`` (after ``mask`` and ``inpaint``) and return it."""
    from ..cli_support import add_logging_options, count_arg
    from .work import DEFAULT_MAX_PIXELS

    mask = subparsers.choices["mask"]
    inpaint = subparsers.choices.get("inpaint")
    b = subparsers.add_parser(
        "batch",
        help="run mask (or, with --inpaint, background generation) over a whole catalogue; resumable, on Ray too",
        description="Run the mask job over every image of folders, glob patterns or manifests: OUT/<name>/ gets what "
        "mask writes (with --inpaint: what inpaint writes) plus batch.json, and OUT/batch-run.jsonl one row per image "
        "(done, nothing_found or failed, with the reason). Results are written whole or not at all, so a run killed at "
        "any point resumes: complete images (same file, same settings) are skipped. Exit code 0, 3 when some images "
        "failed, 1 when the run could not start, 2 for bad options, 130 when interrupted.",
    )
    add_logging_options(b, top_level=False)
    b.add_argument("sources", nargs="+", metavar="INPUT",
                   help="folders (searched with their sub-folders), glob patterns in quotes ('photos/**/*.jpg'), image "
                   "files, or manifests: .txt (one path per line), .csv / .tsv / .jsonl / .parquet with a path column and "
                   "optional output, prompt and settings columns")
    b.add_argument("-o", "--out", required=True, type=Path, help="output folder (one sub-folder per image, and the run manifest)")

    run = b.add_argument_group("run")
    run.add_argument("--engine", choices=["embedded", "ray"], default="embedded",
                     help="embedded: this process (default); ray: Ray Data on a local Ray or a cluster (pip install \"grounded-inpaint[ray]\")")
    run.add_argument("--actors", type=count_arg(1, 100_000), default=None,
                     help="Ray: actors in the pool, each loading the models once (default: one per GPU, else one per 4 CPUs)")
    run.add_argument("--threads", type=count_arg(1, 4096), default=None,
                     help="torch threads per Ray actor (default: the CPUs shared among the actors) or of this process")
    run.add_argument("--ray-address", default=None,
                     help="join this Ray cluster (auto, host:6379, ray://host:10001); default: $RAY_ADDRESS or a local Ray started for the run")
    run.add_argument("--run-manifest", type=Path, default=None,
                     help="where to write the run manifest, .jsonl or .parquet (default OUT/batch-run.jsonl)")
    run.add_argument("--dry-run", action="store_true", help="say what is complete and what would be done; write nothing")
    run.add_argument("--check-content", action="store_true",
                     help="compare the images' content hashes when looking for earlier results even when size and time match")
    run.add_argument("--max-pixels", type=count_arg(1), default=DEFAULT_MAX_PIXELS,
                     help=f"images with more pixels fail with a clear reason instead of exhausting memory (default {DEFAULT_MAX_PIXELS})")

    detect = b.add_argument_group("detection and mask (as in the mask command; a manifest column of the same name sets one per image)")
    for action in mask._actions:  # noqa: SLF001 - share mask's options (argparse's parents= does the same)
        if action.dest in _NOT_FROM_MASK:
            continue
        if action.dest == "prompt":
            action = copy.copy(action)
            action.required = False
            action.help = 'what to find, e.g. "shoes"; a prompt column in a manifest sets it per image'
        detect._add_action(action)  # noqa: SLF001

    paint = b.add_argument_group("inpainting (the inpaint command's job; needs diffusers)")
    paint.add_argument("--inpaint", metavar="PROMPT", default=None,
                       help='also repaint: keep the objects found and paint this around them, e.g. "on a marble podium" '
                       "(writes result.png; --replace repaints the objects instead)")
    if inpaint is not None:
        modes = paint.add_mutually_exclusive_group()
        for action in inpaint._actions:  # noqa: SLF001
            if action.dest == "mode":
                modes._add_action(action)  # noqa: SLF001
            elif action.dest in _FROM_INPAINT:
                if action.dest == "seed":
                    action = copy.copy(action)
                    action.help = "noise seed (default: one per image from its content, so a rerun repeats it)"
                paint._add_action(action)  # noqa: SLF001
    b.set_defaults(func=run_batch_command, mode="keep")
    return b


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``batch`` with parsed ``args``; returns the exit code (0, or 3 when some images failed).

    Raises:
        CliError (exit code 2): a source, a manifest or an option that cannot be used, or another
        run holding the output folder. ModelNotFoundError (exit code 1): missing models.
    """
    from ..cli_support import CliError
    from .engines import RayEngineError, RayMissingError
    from .inputs import InputError
    from .ledger import LockedError
    from .run import run_batch
    from .settings import SettingsError, SettingsSpec

    quiet, verbose = bool(getattr(args, "quiet", False)), bool(getattr(args, "verbose", False))
    spec = SettingsSpec()
    settings = {name: getattr(args, name) for name in spec.names if hasattr(args, name)}
    try:
        summary = run_batch(
            args.sources, args.out, settings, engine=args.engine, actors=args.actors, threads=args.threads,
            ray_address=args.ray_address, run_manifest=args.run_manifest, dry_run=args.dry_run,
            check_content=args.check_content, max_pixels=args.max_pixels, progress=not quiet, verbose=verbose,
        )
    except (InputError, SettingsError, LockedError) as exc:
        raise CliError(str(exc)) from None
    except (RayMissingError, ImportError, RayEngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if summary.dry_run:
        lines = [f"to do: {task.path} -> {args.out / task.name}" for task in summary.to_do]
        lines += [f"would fail: {row['input']} ({row['reason']})" for row in summary.rows if not row.get("skipped")]
        lines += [f"complete: {row['input']}" for row in summary.rows if row.get("skipped")]
        for line in lines if verbose else lines[:_FAILURES_SHOWN]:
            log.info("%s", line)
        if not verbose and len(lines) > _FAILURES_SHOWN:
            log.info("... and %d more (-v lists every image)", len(lines) - _FAILURES_SHOWN)
    else:
        failed = [row for row in summary.rows if row["status"] == "failed"]
        for row in failed[:_FAILURES_SHOWN]:
            log.warning("failed: %s: %s", row["input"], row["reason"])
        if len(failed) > _FAILURES_SHOWN:
            log.warning("... and %d more failed image(s): see %s", len(failed) - _FAILURES_SHOWN, summary.manifest)
    if not quiet:
        print(summary.line())
    return summary.exit_code
