"""Write the known-model list (``grounded_inpaint.registry.KNOWN_MODELS``) into README.md and pyproject.toml.

``python tools/sync_models.py`` rewrites the README table between the ``models-table`` markers and
the ``Models = [...]`` array of ``[tool.comfy]``; ``--check`` only reports whether they are stale
(exit code 1), which ``tests/test_packaging.py`` relies on.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grounded_inpaint.registry import comfy_registry_models, models_markdown_table

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"
_MODELS_ARRAY = re.compile(r"^Models = \[\n.*?^\]\n", re.M | re.S)


def readme_text(text: str) -> str:
    """``text`` (README.md) with the table between the markers regenerated."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"README.md lacks the {START} … {END} markers")
    return f"{head}{START}\n{models_markdown_table()}{END}{tail}"


def pyproject_text(text: str) -> str:
    """``text`` (pyproject.toml) with ``[tool.comfy] Models`` regenerated."""
    lines = [f'    {{ location = "{m["location"]}", model_url = "{m["model_url"]}" }},' for m in comfy_registry_models()]
    block = "Models = [\n" + "\n".join(lines) + "\n]\n"
    if not _MODELS_ARRAY.search(text):
        raise SystemExit("pyproject.toml lacks a 'Models = [' array under [tool.comfy]")
    return _MODELS_ARRAY.sub(lambda _: block, text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for name, render in (("README.md", readme_text), ("pyproject.toml", pyproject_text)):
        path = ROOT / name
        old = path.read_text()
        new = render(old)
        if new != old:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python tools/sync_models.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
