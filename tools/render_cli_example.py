"""Render docs/cli-example.png — input, instances found, mask — by running the README's command.

The README shows the figure with the exact commands below (:data:`COMMANDS`; a test keeps them in
the README), so anyone can make it again: tiny random-weight models are written into a temporary
folder, the ``mask`` command runs on ``assets/coffee.png``, and its ``overlay.png`` and ``mask.png``
are laid out beside the input.

Usage: ``python tools/render_cli_example.py`` (writes docs/cli-example.png).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The commands the README prints under the figure ({models} and {out} are folders of your choice).
COMMANDS = (
    "python -m grounded_inpaint.testing.tiny_models {models}",
    "python -m grounded_inpaint mask assets/coffee.png --prompt cup --invert --models {models} "
    "--detector grounding-dino-tiny-random --segmenter sam_vit_tiny_random.pth --out {out}",
)
#: The folders the README names in :data:`COMMANDS`.
README_FOLDERS = {"models": "/tmp/tiny-models", "out": "/tmp/out"}


def readme_commands() -> list[str]:
    """:data:`COMMANDS` as the README prints them."""
    return [c.format(**README_FOLDERS) for c in COMMANDS]


def main() -> int:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        folders = {"models": str(Path(tmp) / "models"), "out": str(Path(tmp) / "out")}
        for command in COMMANDS:
            argv = shlex.split(command.format(**folders))
            argv[0] = sys.executable
            subprocess.run([*argv[:1], *argv[1:]], check=True, cwd=ROOT)
        result = Path(folders["out"]) / "coffee"
        pictures = [Image.open(ROOT / "assets" / "coffee.png").convert("RGB"),
                    Image.open(result / "overlay.png").convert("RGB"), Image.open(result / "mask.png").convert("RGB")]
    gap = 10
    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    sheet = Image.new("RGB", (width, max(p.height for p in pictures)), (255, 255, 255))
    x = 0
    for picture in pictures:
        sheet.paste(picture, (x, 0))
        x += picture.width + gap
    target = ROOT / "docs" / "cli-example.png"
    sheet.save(target)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
