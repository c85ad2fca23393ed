"""Where a batch's images come from: folders, glob patterns, image files and manifests.

A *source* is one of

* a **folder**: every image file in it and in its sub-folders (by extension, see
  :func:`image_extensions`; hidden files and folders — names starting with ``.`` — are skipped,
  and so is the output folder when it lies inside);
* a **glob pattern** (``photos/**/*.jpg``; ``**`` crosses folders): every file it matches;
* an **image file**;
* a **manifest**: a text file of paths (``.txt``, ``.lst``; one per line, ``#`` starts a comment),
  a table (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet`` — Parquet needs ``pyarrow``) with a path
  column (``path``, ``image``, ``file``, ``filename`` or ``input``) and, optionally, an
  ``output`` column (the result folder's name) and per-row settings: columns named like the
  command-line options (``prompt``, ``box_threshold`` or ``box-threshold``, ``invert``, …; an
  empty cell keeps the run's value). Relative paths are relative to the manifest's folder.

Every image becomes a :class:`BatchItem` with the name of its result folder, relative to the
output folder: the image's path relative to its source (a folder, the fixed part of a glob, the
common folder of a manifest's images) without the extension — ``shoes/red.jpg`` →
``OUT/shoes/red/``. Names are made unique (case-insensitively, as on macOS and Windows): images
that differ only by extension get it appended (``red_jpg``, ``red_png``), an image listed twice
gets ``-2``, ``-3``, …, and a name that is also the folder of another result gets its extension,
so no result folder ever holds another. The names depend only on the inputs, so a rerun finds
each image's earlier results.

Missing or unreadable images listed in a manifest are not errors here: they become failed rows of
the run. A source that does not exist, a pattern or folder without images, a manifest without a
path column, a URL, or an ``output`` name that leaves the output folder is an error
(:class:`InputError`, naming the source and the fix) before anything runs.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Collection, Iterable, Mapping, Sequence

__all__ = [
    "BatchItem",
    "InputError",
    "MANIFEST_SUFFIXES",
    "PATH_COLUMNS",
    "OUTPUT_COLUMN",
    "image_extensions",
    "collect_inputs",
    "read_manifest",
    "assign_names",
]

log = logging.getLogger(__name__)

#: Manifest kinds by file extension.
MANIFEST_SUFFIXES = {".txt": "text", ".lst": "text", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
#: Column names accepted for the image path, in order of preference (case-insensitive).
PATH_COLUMNS = ("path", "image", "file", "filename", "input")
#: Column naming the result folder (relative to the output folder).
OUTPUT_COLUMN = "output"
_GLOB_MAGIC = set("*?[")
_PARQUET_HINT = 'pip install pyarrow   (or: pip install "grounded-inpaint[ray]", which brings it)'


class InputError(ValueError):
    """A source of images that cannot be used (the message names it and says what to do)."""


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch.

    Attributes:
        index: position in the input order (0-based); the run manifest keeps this order.
        path: the image file (absolute, or as given when it was already absolute).
        name: the result folder relative to the output folder (POSIX separators, no extension).
        overrides: per-row settings from a manifest, ``{option name: raw value}`` (strings from
            CSV/text, typed values from Parquet/JSONL); empty otherwise.
        source: where it came from, for messages (``"photos.csv row 12"``, ``"folder photos"``).
    """

    index: int
    path: str
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


def image_extensions() -> frozenset[str]:
    """The file extensions Pillow can open here (lower case, with the dot: ``.png``, ``.jpg``, …)."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _is_glob(text: str) -> bool:
    return any(ch in _GLOB_MAGIC for ch in text)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _walk_folder(folder: Path, extensions: frozenset[str], exclude: Sequence[Path]) -> tuple[list[Path], dict[str, int]]:
    """Image files under ``folder`` in sorted order, and ``{extension: count}`` of the other files skipped."""
    found: list[Path] = []
    skipped: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not any(_same(here / d, ex) for ex in exclude))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in extensions:
                found.append(here / name)
            else:
                skipped[suffix or "(none)"] = skipped.get(suffix or "(none)", 0) + 1
    return found, skipped


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:  # pragma: no cover - a path that cannot be resolved is not the output folder
        return False


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (``photos/2024/*.jpg`` → ``photos/2024``)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _relative_name(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return PurePosixPath(*rel.with_suffix("").parts).as_posix() if rel.parts else path.stem


def _check_output_name(value: str, where: str) -> str:
    name = PurePosixPath(str(value).replace("\\", "/"))
    if str(value).strip() == "" or name.is_absolute() or ".." in name.parts or Path(str(value)).is_absolute():
        raise InputError(f"{where}: output {value!r} must be a relative folder name inside the output folder "
                         "(no leading /, no ..)")
    return name.as_posix().strip("/")


def _table_rows(path: Path, kind: str) -> list[dict[str, Any]]:
    """The rows of a CSV / TSV / JSONL / Parquet manifest as dicts (column → value)."""
    if kind in ("csv", "tsv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="," if kind == "csv" else "\t")
            if not reader.fieldnames:
                raise InputError(f"manifest {path} is empty; it needs a header line with a column named "
                                 f"{' or '.join(PATH_COLUMNS)}")
            return [dict(row) for row in reader]
    if kind == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"manifest {path} line {number} is not JSON ({exc.msg}); each line must be one "
                                     "JSON object") from None
                if not isinstance(row, dict):
                    raise InputError(f"manifest {path} line {number} is a JSON {type(row).__name__}, not an object")
                rows.append(row)
        return rows
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"reading the Parquet manifest {path} needs pyarrow: {_PARQUET_HINT}") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        raise InputError(f"cannot read the Parquet manifest {path}: {exc}") from None


def _path_column(columns: Iterable[str], path: Path) -> str:
    by_lower = {c.strip().lower(): c for c in columns}
    for wanted in PATH_COLUMNS:
        if wanted in by_lower:
            return by_lower[wanted]
    raise InputError(f"manifest {path} has no path column: its columns are {', '.join(map(repr, by_lower.values())) or 'none'}; "
                     f"name the column of image paths one of {', '.join(PATH_COLUMNS)}")


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN from pandas-written files
        return True
    return isinstance(value, str) and value.strip() == ""


def read_manifest(path: str | Path, setting_names: Collection[str] = ()) -> list[tuple[str, str | None, dict[str, Any], str]]:
    """Read a manifest file.

    Arguments:
        path: a ``.txt`` / ``.lst`` / ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.parquet`` file (see the module notes).
        setting_names: the option names a row may set (``box_threshold``, …); a column named like
            one of them (``-`` and ``_`` alike, any case) becomes a per-row setting. Other
            columns are ignored (logged once).

    Returns:
        One ``(image path, output name or None, {setting: value}, where)`` per row, in file order;
        relative image paths are resolved against the manifest's folder.

    Raises:
        InputError: unreadable manifest, no path column, an empty path cell, a URL, a bad ``output``.
    """
    path = Path(path)
    kind = MANIFEST_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path} is not a manifest: use one of {', '.join(MANIFEST_SUFFIXES)}")
    base = path.parent
    out: list[tuple[str, str | None, dict[str, Any], str]] = []
    if kind == "text":
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                text = line.strip()
                if text and not text.startswith("#"):
                    out.append((_resolve_row_path(text, base, f"{path} line {number}"), None, {}, f"{path.name} line {number}"))
        return out

    rows = _table_rows(path, kind)
    if not rows:
        return out
    columns = list(dict.fromkeys(c for row in rows for c in row))
    path_col = _path_column(columns, path)
    wanted = {name.replace("-", "_").lower(): name for name in setting_names}
    output_col = next((c for c in columns if c.strip().lower() == OUTPUT_COLUMN), None)
    setting_cols = {c: wanted[c.strip().replace("-", "_").lower()] for c in columns
                    if c not in (path_col, output_col) and c.strip().replace("-", "_").lower() in wanted}
    ignored = [c for c in columns if c not in (path_col, output_col) and c not in setting_cols]
    if ignored:
        log.info("manifest %s: columns %s are not settings and are ignored (settings columns: %s)", path,
                 ", ".join(map(repr, ignored)), ", ".join(sorted(wanted)) or "none")
    for number, row in enumerate(rows, start=2 if kind in ("csv", "tsv") else 1):
        where = f"{path.name} {'line' if kind in ('csv', 'tsv', 'jsonl') else 'row'} {number}"
        value = row.get(path_col)
        if _is_blank(value):
            raise InputError(f"{where}: the {path_col!r} cell is empty; every row needs an image path")
        output = row.get(output_col) if output_col else None
        output = None if _is_blank(output) else _check_output_name(str(output), where)
        overrides = {setting: row[col] for col, setting in setting_cols.items() if not _is_blank(row.get(col))}
        out.append((_resolve_row_path(str(value), base, where), output, overrides, where))
    return out


def _resolve_row_path(text: str, base: Path, where: str) -> str:
    text = text.strip()
    if "://" in text:
        raise InputError(f"{where}: {text!r} is a URL; batch reads local files only (mount the storage, or download "
                         "the images first, and list their paths)")
    candidate = Path(os.path.expanduser(text))
    return str(candidate if candidate.is_absolute() else (base / candidate).absolute())


def collect_inputs(
    sources: Sequence[str | Path],
    *,
    setting_names: Collection[str] = (),
    exclude: Sequence[str | Path] = (),
) -> list[BatchItem]:
    """Every image of ``sources`` as :class:`BatchItem`, in order, with unique result-folder names.

    Arguments:
        sources: folders, glob patterns, image files and manifests (see the module notes).
        setting_names: the option names a manifest row may set (see :func:`read_manifest`).
        exclude: folders never walked into (the output folder).

    Raises:
        InputError: a source that does not exist, a folder or pattern without images, a bad manifest.
    """
    if not sources:
        raise InputError("no inputs given: name a folder, a glob pattern, image files or a manifest")
    extensions = image_extensions()
    excluded = [Path(p) for p in exclude]
    entries: list[tuple[str, str, dict[str, Any], str, str]] = []  # (path, name, overrides, where, suffix)
    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            files, skipped = _walk_folder(path, extensions, excluded)
            if skipped:
                log.info("folder %s: skipped %d file(s) that are not images by their extension (%s)", path,
                         sum(skipped.values()), ", ".join(sorted(skipped)))
            if not files:
                raise InputError(f"folder {path} holds no image files (extensions {', '.join(sorted(extensions)[:8])}, …)")
            for f in files:
                entries.append((str(f.absolute()), _relative_name(f, path), {}, f"folder {path}", f.suffix.lower()))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            rows = read_manifest(path, setting_names)
            if not rows:
                raise InputError(f"manifest {path} lists no images")
            parents = [os.path.dirname(r[0]) for r in rows]
            try:
                root = Path(os.path.commonpath(parents))
            except ValueError:  # different drives on Windows
                root = path.parent
            for image, output, overrides, where in rows:
                name = output if output is not None else _relative_name(Path(image), root)
                entries.append((image, name, overrides, where, "" if output is not None else Path(image).suffix.lower()))
        elif path.is_file():
            entries.append((str(path.absolute()), path.stem, {}, f"file {path}", path.suffix.lower()))
        elif _is_glob(text):
            root = _glob_root(text)
            files = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            files = [f for f in files if not any(_inside(f.absolute(), ex.absolute()) for ex in excluded)]
            if not files:
                raise InputError(f"the pattern {text!r} matches no files (quote it so the shell does not expand it)")
            for f in files:
                entries.append((str(f.absolute()), _relative_name(f, root), {}, f"pattern {text}", f.suffix.lower()))
        else:
            raise InputError(f"input {text!r} not found: give a folder, a glob pattern, an image file or a manifest "
                             f"({', '.join(MANIFEST_SUFFIXES)})")
    names = assign_names([(name, suffix) for _, name, _, _, suffix in entries])
    return [BatchItem(i, p, n, o, w) for i, ((p, _, o, w, _), n) in enumerate(zip(entries, names))]


def assign_names(wanted: Sequence[tuple[str, str]]) -> list[str]:
    """Unique result-folder names for ``(name, extension)`` pairs, in order (see the module notes).

    Case-insensitive: ``Red`` and ``red`` collide. Images differing only by extension get it
    appended (``red_jpg``), repeats get ``-2``, ``-3``, …, and a name that is the parent folder of
    another name gets its extension (or a number), so no result folder lies inside another.
    """
    names = [name for name, _ in wanted]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.lower(), []).append(i)
    for members in groups.values():
        if len(members) > 1 and len({wanted[i][1] for i in members}) > 1:
            for i in members:
                if wanted[i][1]:
                    names[i] = f"{names[i]}_{wanted[i][1].lstrip('.')}"
    for _ in range(len(names) + 1):  # each pass fixes every clash it sees; renamed names are re-checked
        changed = False
        parents = {p.lower() for name in names for p in _ancestors(name)}
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            key = name.lower()
            if key in parents:
                suffix = wanted[i][1].lstrip(".")
                names[i] = f"{name}_{suffix}" if suffix and not name.endswith(f"_{suffix}") else f"{name}-file"
                changed = True
                continue
            if key in seen:
                seen[key] += 1
                names[i] = f"{name}-{seen[key]}"
                changed = True
            else:
                seen[key] = 1
        if not changed:
            return names
    raise AssertionError("result-folder names did not settle")  # pragma: no cover - each pass adds suffixes


def _ancestors(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]
