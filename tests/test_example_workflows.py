"""Every bundled workflow parses, uses only our nodes and known ComfyUI core nodes, joins only
matching socket types, and its API twin is exactly what the canvas graph converts to."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from grounded_inpaint.workflows import (
    CORE_NODES,
    check_api_workflow,
    check_ui_workflow,
    is_ui_format,
    specs_from_classes,
    ui_to_api,
)

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "example_workflows"
NAMES = sorted(p.stem for p in FOLDER.glob("*.json"))


@pytest.fixture(scope="module")
def specs():
    name = "grounded_inpaint_pack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return {**CORE_NODES, **specs_from_classes(sys.modules[name].NODE_CLASS_MAPPINGS)}


def _load(name):
    return json.loads((FOLDER / f"{name}.json").read_text()), json.loads((FOLDER / "api" / f"{name}_api.json").read_text())


def test_the_five_workflows_are_there():
    assert NAMES == ["background_generation", "external_matte", "mask_only", "object_replacement", "product_placement",
                     "video_track"]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_is_valid(specs, name):
    ui, api = _load(name)
    assert is_ui_format(ui) and not is_ui_format(api)
    assert check_ui_workflow(ui, specs) == []
    assert check_api_workflow(api, specs) == []
    assert ui_to_api(ui, specs) == api  # the twin matches the canvas graph
    types = {n["type"] for n in ui["nodes"]}
    assert any(t.startswith("GroundedInpaint") for t in types)
    assert "Note" in types  # the steps and models are explained on the canvas
    assert (FOLDER / f"{name}.jpg").is_file(), "a thumbnail with the same base name"


@pytest.mark.parametrize("name", NAMES)
def test_inputs_ship_with_the_pack(name):
    _, api = _load(name)
    images = [n["inputs"]["image"] for n in api.values() if n["class_type"] == "LoadImage"]
    videos = [n["inputs"]["file"] for n in api.values() if n["class_type"] == "LoadVideo"]
    assert images or videos
    for image in images:
        with Image.open(FOLDER / "inputs" / image) as im:
            assert im.size[0] % 8 == 0 and im.size[1] % 8 == 0  # exact VAE round trip size
    for video in videos:
        path = FOLDER / "inputs" / video
        assert path.is_file() and path.stat().st_size < 100_000  # a tiny clip
        if importlib.util.find_spec("av"):
            from grounded_inpaint.video.frames import open_clip

            clip = open_clip(path)
            assert clip.count == sum(1 for _ in clip.frames()) >= 10


def test_checks_catch_broken_graphs(specs):
    ui, api = _load("background_generation")
    bad = copy.deepcopy(ui)
    bad["nodes"][0]["type"] = "SomeMissingNode"
    assert any("unknown type" in p for p in check_ui_workflow(bad, specs))
    bad = copy.deepcopy(ui)
    link = next(link for link in bad["links"] if link[5] == "MASK")
    link[5] = "IMAGE"
    assert any("link says IMAGE" in p for p in check_ui_workflow(bad, specs))
    bad = copy.deepcopy(ui)
    ksampler = next(n for n in bad["nodes"] if n["type"] == "KSampler")
    ksampler["widgets_values"] = ksampler["widgets_values"][:-1]
    assert any("widget values" in p for p in check_ui_workflow(bad, specs))
    bad_api = copy.deepcopy(api)
    decode = next(k for k, v in bad_api.items() if v["class_type"] == "VAEDecode")
    bad_api[decode]["inputs"]["samples"] = [next(k for k, v in bad_api.items() if v["class_type"] == "LoadImage"), 0]
    assert any("wants LATENT, gets IMAGE" in p for p in check_api_workflow(bad_api, specs))
    changed = copy.deepcopy(ui)
    next(n for n in changed["nodes"] if n["type"] == "KSampler")["widgets_values"][2] = 99
    assert ui_to_api(changed, specs) != api


def test_build_script_reproduces_the_files(tmp_path, monkeypatch):
    """The committed files are what tools/build_example_workflows.py writes (nobody edited one twin only)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_example_workflows as builder
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(builder, "OUT", tmp_path)
    builder.main()
    for name in NAMES:
        assert json.loads((tmp_path / f"{name}.json").read_text()) == _load(name)[0]
        assert json.loads((tmp_path / "api" / f"{name}_api.json").read_text()) == _load(name)[1]


@pytest.mark.parametrize("name", NAMES)
def test_settings_that_differ_from_a_fresh_node_are_explained(specs, name):
    """A fresh node's defaults match the examples, or a Note on the canvas says why the example differs."""
    ui, api = _load(name)
    notes = "\n".join(n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "Note")
    changed = []
    for node in api.values():
        if not node["class_type"].startswith("GroundedInpaint"):
            continue
        for inp in specs[node["class_type"]].widget_inputs():
            value = node["inputs"].get(inp.name)
            if inp.name != "model_name" and value != inp.default:
                changed.append(f"{inp.name} = {value!r}")
    for setting in changed:
        assert setting in notes, f"{name}: {setting} differs from the node default and no Note says why"


def test_a_workflow_saved_before_the_editor_still_loads(specs):
    """SAM Segment's ``objects`` input came later: a graph saved before it (three widget values) is
    still valid, converts to the API format it always did, and the node runs it as before."""
    ui, api = _load("mask_only")
    old = copy.deepcopy(ui)
    node = next(n for n in old["nodes"] if n["type"] == "GroundedInpaintSegment")
    assert node["widgets_values"][-1] == ""  # the new objects input, empty by default
    node["widgets_values"] = node["widgets_values"][:-1]
    assert check_ui_workflow(old, specs) == []
    converted = ui_to_api(old, specs)
    assert "objects" not in converted[str(node["id"])]["inputs"]
    assert converted[str(node["id"])]["inputs"] == {k: v for k, v in api[str(node["id"])]["inputs"].items() if k != "objects"}
    assert check_api_workflow(converted, specs) == []
    node["widgets_values"] = []  # the required multimask is missing: still an error
    assert any("0 widget values, expected 1 to 4" in p for p in check_ui_workflow(old, specs))
