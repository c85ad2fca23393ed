"""Packaging facts the Comfy Registry, ComfyUI-Manager and pip rely on."""

import re
import tomllib
from pathlib import Path

from grounded_inpaint.registry import KNOWN_MODELS, comfy_registry_models

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_project_and_registry_metadata():
    data = _pyproject()
    assert data["project"]["name"] == "grounded-inpaint"
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "Grounded Inpaint"
    assert comfy["Icon"].endswith("web/icon.png") and (ROOT / "web" / "icon.png").is_file()


def test_registry_models_come_from_the_known_models():
    models = _pyproject()["tool"]["comfy"]["Models"]
    assert models == comfy_registry_models()
    for known in KNOWN_MODELS:  # gated ones need the user's hub login, which a manager does not have
        listed = any(m["location"].startswith(f"/{known.folder}/{known.name}") for m in models)
        assert listed != known.gated, known.name
    assert all(m["model_url"].startswith("https://") for m in models)
    for known in KNOWN_MODELS:  # transformers folders are fetched as safetensors only, never a pickle
        assert not any(f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in known.files), known.name


def test_requirements_never_pin_torch():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    names = [re.split(r"[<>=!~\[ ]", line)[0].lower() for line in lines if line]
    assert "torch" not in names and "torchvision" not in names
    assert {"transformers", "segment-anything", "huggingface-hub"} <= set(names)
    deps = [re.split(r"[<>=!~\[ ]", d)[0].lower() for d in _pyproject()["project"]["dependencies"]]
    assert "torch" not in deps


def test_library_never_imports_comfyui():
    pattern = re.compile(r"^\s*(import|from)\s+(comfy|folder_paths|server|nodes)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "py").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_no_print_in_the_library_or_nodes():
    allowed = {"cli.py", "client.py", "inpaint.py", "command.py"}  # user-facing command output
    offenders = []
    for folder in ("py", "nodes"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name not in allowed and re.search(r"^\s*print\(", path.read_text(), re.M):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_no_hard_coded_cuda_in_the_nodes():
    """Devices come from comfy.model_management; comparing a device's type is fine, naming one is not."""
    pattern = re.compile(r"""(torch\.device\(|\.to\(|\.cuda\(|device\s*=\s*)\s*["']cuda""")
    for path in (ROOT / "nodes").rglob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_readme_and_pyproject_model_lists_are_in_sync_with_the_registry():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_models.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    for known in KNOWN_MODELS:
        assert f"| `{known.name}` |" in readme
        if known.sha256:
            assert known.sha256 in readme


def test_every_known_model_has_a_folder_of_its_family_and_an_architecture():
    from grounded_inpaint.registry import FAMILY_FOLDERS

    names = [m.name for m in KNOWN_MODELS]
    assert len(names) == len(set(names))
    for known in KNOWN_MODELS:
        assert known.folder in FAMILY_FOLDERS[known.family], known.name
        assert known.arch, known.name
        assert known.is_folder == bool(known.files), known.name
        assert known.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", known.sha256), known.name


def test_readme_figure_is_made_by_the_commands_it_shows():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_cli_example", ROOT / "tools" / "render_cli_example.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    readme = (ROOT / "README.md").read_text()
    for command in tool.readme_commands():
        assert command in readme, command
