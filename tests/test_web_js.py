"""The frontend extension: its pure JavaScript modules are tested with Node's built-in test runner
(``node --test tests/js/``), run from here so that ``pytest -q`` (and CI) runs them; and every module
imports only the pack's own modules and the frontend's documented ``scripts/app.js`` shim — no
frontend internals, so a new frontend release cannot break the imports.

The extension's entry (``web/sam_editor.js``) sits at the top of ``WEB_DIRECTORY``, where ComfyUI
serves it as ``/extensions/<pack>/sam_editor.js``, so the documented ``../../scripts/app.js``
resolves to the frontend's ``/scripts/app.js``; its pure modules are in ``web/js/``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = sorted((ROOT / "tests" / "js").glob("*.test.mjs"))
MODULES = sorted([*(ROOT / "web").glob("*.js"), *(ROOT / "web" / "js").glob("*.js")])
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed: the JavaScript unit tests need Node.js >= 18 (node --test)")
def test_javascript_unit_tests_pass():
    assert JS_TESTS, "tests/js/*.test.mjs"
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))
    if major < 18:
        pytest.skip(f"node {version} has no built-in test runner (needs >= 18)")
    done = subprocess.run([NODE, "--test", *map(str, JS_TESTS)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    summary = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", done.stdout, re.M))
    assert done.returncode == 0 and summary.get("fail") == "0", done.stdout[-6000:] + done.stderr[-2000:]
    assert int(summary["pass"]) >= 20


_IMPORT = re.compile(r"^\s*import\s.*?from\s+['\"]([^'\"]+)['\"]|^\s*import\s+['\"]([^'\"]+)['\"]|import\(\s*['\"]([^'\"]+)['\"]\s*\)", re.M)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_modules_import_only_the_documented_app_shim(module):
    text = module.read_text(encoding="utf-8")
    for match in _IMPORT.finditer(text):
        target = next(g for g in match.groups() if g)
        if target == "../../scripts/app.js":
            assert module.parent == ROOT / "web", f"{module.name}: ../../scripts/app.js resolves to /scripts only from web/"
            continue
        assert target.startswith("./") and (module.parent / target).resolve().is_file(), f"{module.name} imports {target!r}"
    assert "window.comfyAPI" not in text and "LGraphCanvas.prototype" not in text, f"{module.name} reaches into the frontend"


def test_pure_modules_touch_no_dom():
    """The maths and the state machine run under Node as they do in the browser."""
    for name in ("editor_geometry.js", "editor_state.js"):
        text = (ROOT / "web" / "js" / name).read_text(encoding="utf-8")
        assert not re.search(r"\b(document|window|HTMLElement|app)\.", text), name


def test_the_editor_is_documented_with_a_screenshot_and_its_controls():
    from PIL import Image

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/editor.png)" in readme and "tools/render_editor_screenshot.py" in readme
    with Image.open(ROOT / "docs" / "editor.png") as shot:
        assert shot.width >= 800 and shot.height >= 600
    assert (ROOT / "docs" / "editor.png").stat().st_size < 400_000  # a screenshot, not a download
    help_page = (ROOT / "web" / "docs" / "GroundedInpaintSegment.md").read_text(encoding="utf-8")
    for control in ("**Click**", "**Right click**", "**Shift+click**", "**Drag**", "**Delete**", "**Ctrl+Z**",
                    "**+ object**", "**compute**", "**Esc**"):
        assert control in help_page, control
    hint = re.search(r"const HINT = ([^\n]+\n[^\n]+)", (ROOT / "web" / "sam_editor.js").read_text(encoding="utf-8")).group(1)
    for words in ("right click", "Shift+click", "drag", "Del", "Ctrl+Z"):
        assert words in hint, words  # the editor shows the same controls in its tooltip
