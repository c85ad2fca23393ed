"""The node help pages (web/docs/<node id>.md) fit ComfyUI's help panel and match the nodes.

The panel is about 250 px wide: a Markdown table does not fit (it is squeezed or scrolls
sideways), and neither does a long run of characters without a space (a long path or name in
backticks), which cannot wrap. Each page lists every input and output of its node as a bullet
``- **`name`** (type…): …``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "web" / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PACK_NAME = "grounded_inpaint_pack"  # the name tests/test_nodes.py imports the pack under
MAX_UNBROKEN = 32  # characters: about what 250 px of monospace text holds


@pytest.fixture(scope="module")
def pack():
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK_NAME]


def _visible_words(line: str) -> list[str]:
    """The space-separated runs a reader sees: link targets dropped, Markdown marks stripped."""
    line = re.sub(r"\]\([^)]*\)", "]", line)  # [text](url): only the text shows
    line = re.sub(r"<https?://[^>]+>", "link", line)
    return [w.strip("`*_()[],.;:!?\"'") for w in line.split()]


def test_there_are_pages():
    assert len(PAGES) >= 12


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_has_no_markdown_table(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    tables = [n for n, line in enumerate(lines, 1) if line.lstrip().startswith("|")]
    assert not tables, f"{page.name}: table rows on lines {tables}; write them as bullet lists"
    assert "<table" not in page.read_text(encoding="utf-8").lower()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_has_no_long_unbreakable_text(page):
    text = page.read_text(encoding="utf-8")
    too_long = [(n, w) for n, line in enumerate(text.splitlines(), 1) for w in _visible_words(line) if len(w) > MAX_UNBROKEN]
    assert not too_long, f"{page.name}: runs without a space longer than {MAX_UNBROKEN} characters: {too_long}"
    fences = re.findall(r"```.*?\n(.*?)```", text, re.S)
    long_code = [line for block in fences for line in block.splitlines() if len(line) > 40]
    assert not long_code, f"{page.name}: code block lines wider than the panel: {long_code}"


def test_every_page_belongs_to_a_node_and_lists_its_inputs_and_outputs(pack):
    assert {p.stem for p in PAGES} == set(pack.NODE_CLASS_MAPPINGS)
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        text = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
        assert text.startswith("# "), f"{node_id}: the page starts with its title"
        inputs, _, outputs = text.partition("## Outputs")
        spec = cls.INPUT_TYPES()
        for name in [*spec.get("required", {}), *spec.get("optional", {})]:
            assert f"- **`{name}`** (" in inputs, f"{node_id}.md does not describe the input {name!r}"
        for name in cls.RETURN_NAMES:
            assert f"- **`{name}`** (" in outputs, f"{node_id}.md does not describe the output {name!r}"


_BULLET = re.compile(r"^- \*\*`(?P<name>[^`]+)`\*\* \((?P<type>INT|FLOAT|BOOLEAN)[^;]*; default (?P<default>`[^`]+`|on|off)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_documented_defaults_are_the_nodes_defaults(page, pack):
    spec = pack.NODE_CLASS_MAPPINGS[page.stem].INPUT_TYPES()
    inputs = {**spec.get("required", {}), **spec.get("optional", {})}
    checked = 0
    for line in page.read_text(encoding="utf-8").splitlines():
        m = _BULLET.match(line)
        if not m or m["name"] not in inputs:
            continue
        actual = inputs[m["name"]][1]["default"]
        text = m["default"].strip("`")
        documented = {"on": True, "off": False}.get(text, text)
        if m["type"] == "BOOLEAN":
            assert documented is actual, f"{page.name}: {m['name']} documented as default {text}, the node says {actual}"
        else:
            assert float(documented) == pytest.approx(float(actual)), f"{page.name}: {m['name']} default {text}, the node says {actual}"
        checked += 1
    numeric = [k for k, v in inputs.items() if v[0] in ("INT", "FLOAT", "BOOLEAN")]
    assert checked == len(numeric), f"{page.name}: documented defaults found for {checked} of {numeric}"
