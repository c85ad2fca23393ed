"""ComfyUI workflow files: the two formats, conversion from the canvas format to the API format,
and checks that a graph only uses known nodes and only joins matching socket types.

* The **UI format** is what the canvas saves: ``{"nodes": [...], "links": [...], ...}``; a node's
  widget values sit in ``widgets_values`` in the order of its widget inputs.
* The **API format** is what ``POST /prompt`` takes: ``{node_id: {"class_type", "inputs"}}``;
  a linked input is ``[source_node_id, output_slot]``.

Node schemas come from two places: :data:`CORE_NODES` (the ComfyUI core nodes our example workflows
use, kept here by hand) and the ``INPUT_TYPES`` / ``RETURN_TYPES`` of our own node classes
(:func:`specs_from_classes`). Nothing here imports ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = [
    "InputSpec",
    "NodeSpec",
    "CORE_NODES",
    "UI_ONLY_NODES",
    "specs_from_classes",
    "is_ui_format",
    "ui_to_api",
    "check_ui_workflow",
    "check_api_workflow",
]

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: Nodes that exist only on the canvas (never sent to the server).
UI_ONLY_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # a socket type (IMAGE, MASK, ...) or a widget type (INT, FLOAT, STRING, BOOLEAN, COMBO)
    optional: bool = False
    control_after_generate: bool = False  # the canvas adds a "fixed/increment/randomize" widget after it
    upload: bool = False  # the canvas adds an "upload" widget after it (LoadImage)
    default: Any = None  # the widget's default value, where the schema gives one

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES


@dataclass(frozen=True)
class NodeSpec:
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    output_node: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def widget_inputs(self) -> list[InputSpec]:
        return [i for i in self.inputs if i.is_widget]

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)


def _spec(inputs: Iterable[tuple], outputs: Iterable[str], output_node: bool = False) -> NodeSpec:
    return NodeSpec(tuple(InputSpec(*i) for i in inputs), tuple(outputs), output_node)


#: ComfyUI core nodes used by the example workflows (checked against ComfyUI 0.3.64's /object_info).
CORE_NODES: dict[str, NodeSpec] = {
    "LoadImage": _spec([("image", "COMBO", False, False, True)], ["IMAGE", "MASK"]),
    "LoadVideo": _spec([("file", "COMBO", False, False, True)], ["VIDEO"]),
    "GetVideoComponents": _spec([("video", "VIDEO")], ["IMAGE", "AUDIO", "FLOAT"]),
    "SaveImage": _spec([("images", "IMAGE"), ("filename_prefix", "STRING")], [], True),
    "PreviewImage": _spec([("images", "IMAGE")], [], True),
    "CheckpointLoaderSimple": _spec([("ckpt_name", "COMBO")], ["MODEL", "CLIP", "VAE"]),
    "CLIPTextEncode": _spec([("text", "STRING"), ("clip", "CLIP")], ["CONDITIONING"]),
    "InpaintModelConditioning": _spec(
        [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("vae", "VAE"), ("pixels", "IMAGE"),
         ("mask", "MASK"), ("noise_mask", "BOOLEAN")],
        ["CONDITIONING", "CONDITIONING", "LATENT"],
    ),
    "VAEEncodeForInpaint": _spec([("pixels", "IMAGE"), ("vae", "VAE"), ("mask", "MASK"), ("grow_mask_by", "INT")], ["LATENT"]),
    "KSampler": _spec(
        [("model", "MODEL"), ("seed", "INT", False, True), ("steps", "INT"), ("cfg", "FLOAT"), ("sampler_name", "COMBO"),
         ("scheduler", "COMBO"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT"),
         ("denoise", "FLOAT")],
        ["LATENT"],
    ),
    "VAEDecode": _spec([("samples", "LATENT"), ("vae", "VAE")], ["IMAGE"]),
    "ImageCompositeMasked": _spec(
        [("destination", "IMAGE"), ("source", "IMAGE"), ("x", "INT"), ("y", "INT"), ("resize_source", "BOOLEAN"),
         ("mask", "MASK", True)],
        ["IMAGE"],
    ),
    "GrowMask": _spec([("mask", "MASK"), ("expand", "INT"), ("tapered_corners", "BOOLEAN")], ["MASK"]),
    "InvertMask": _spec([("mask", "MASK")], ["MASK"]),
    "MaskComposite": _spec([("destination", "MASK"), ("source", "MASK"), ("x", "INT"), ("y", "INT"), ("operation", "COMBO")], ["MASK"]),
    "MaskToImage": _spec([("mask", "MASK")], ["IMAGE"]),
    "ImageToMask": _spec([("image", "IMAGE"), ("channel", "COMBO")], ["MASK"]),
    "ThresholdMask": _spec([("mask", "MASK"), ("value", "FLOAT")], ["MASK"]),
}


def specs_from_classes(mapping: Mapping[str, type]) -> dict[str, NodeSpec]:
    """Schemas of node classes (ComfyUI's ``NODE_CLASS_MAPPINGS`` style)."""
    specs = {}
    for node_id, cls in mapping.items():
        declared = cls.INPUT_TYPES()
        inputs = []
        for section in ("required", "optional"):
            for name, entry in declared.get(section, {}).items():
                kind = entry[0]
                opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
                default = opts.get("default", kind[0] if isinstance(kind, list) and kind else None)
                inputs.append(InputSpec(name, "COMBO" if isinstance(kind, list) else kind, section == "optional",
                                        bool(opts.get("control_after_generate")), bool(opts.get("image_upload")), default))
        specs[node_id] = NodeSpec(tuple(inputs), tuple(cls.RETURN_TYPES), bool(getattr(cls, "OUTPUT_NODE", False)))
    return specs


def is_ui_format(data: Any) -> bool:
    """Whether ``data`` is a canvas (UI-format) graph rather than an API-format prompt."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _widget_values(node: Mapping[str, Any], spec: NodeSpec) -> dict[str, Any]:
    """Map a UI node's ``widgets_values`` to input names (skipping the canvas-only extra widgets)."""
    values = list(node.get("widgets_values") or [])
    if isinstance(node.get("widgets_values"), dict):
        return dict(node["widgets_values"])
    linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None and "widget" not in i}
    out: dict[str, Any] = {}
    pos = 0
    for inp in spec.widget_inputs():
        if pos >= len(values):
            break
        if inp.name not in linked:
            out[inp.name] = values[pos]
        pos += 1
        if inp.control_after_generate or inp.upload or inp.name in ("seed", "noise_seed"):
            pos += 1  # the canvas stores its "control after generate" / "upload" widget right after
    return out


def ui_to_api(ui: Mapping[str, Any], specs: Mapping[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """Convert a UI-format graph to the API format (what the canvas's Run button posts).

    Muted/bypassed nodes (mode 2/4) and canvas-only nodes are left out.
    """
    links = {link[0]: link for link in ui.get("links", [])}
    api: dict[str, dict[str, Any]] = {}
    for node in ui["nodes"]:
        kind = node["type"]
        if kind in UI_ONLY_NODES or node.get("mode", 0) in (2, 4):
            continue
        spec = specs.get(kind)
        if spec is None:
            raise ValueError(f"node {node['id']} has the unknown type {kind!r}")
        inputs: dict[str, Any] = _widget_values(node, spec)
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            _, origin, origin_slot, _, _, _ = links[slot["link"]]
            inputs[slot["name"]] = [str(origin), int(origin_slot)]
        entry: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        api[str(node["id"])] = entry
    return api


def check_ui_workflow(ui: Mapping[str, Any], specs: Mapping[str, NodeSpec]) -> list[str]:
    """Problems in a UI-format graph: unknown node types, links between different socket types,
    links to missing nodes or slots, required sockets left open, wrong widget counts."""
    problems: list[str] = []
    nodes = {n["id"]: n for n in ui.get("nodes", [])}
    for node in nodes.values():
        if node["type"] not in specs and node["type"] not in UI_ONLY_NODES:
            problems.append(f"node {node['id']}: unknown type {node['type']!r}")
    for link in ui.get("links", []):
        link_id, origin, origin_slot, target, target_slot, kind = link
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id}: joins a missing node ({origin} -> {target})")
            continue
        src, dst = nodes[origin], nodes[target]
        src_spec, dst_spec = specs.get(src["type"]), specs.get(dst["type"])
        if src_spec is None or dst_spec is None:
            continue
        if origin_slot >= len(src_spec.outputs):
            problems.append(f"link {link_id}: {src['type']} has no output {origin_slot}")
            continue
        out_type = src_spec.outputs[origin_slot]
        try:
            in_name = dst["inputs"][target_slot]["name"]
        except (IndexError, KeyError):
            problems.append(f"link {link_id}: {dst['type']} (node {target}) has no input slot {target_slot}")
            continue
        in_spec = dst_spec.input(in_name)
        if in_spec is None:
            problems.append(f"link {link_id}: {dst['type']} has no input {in_name!r}")
        elif in_spec.type != out_type or kind != out_type:
            problems.append(f"link {link_id}: {src['type']}.{out_type} -> {dst['type']}.{in_name} ({in_spec.type}); link says {kind}")
    for node in nodes.values():
        spec = specs.get(node["type"])
        if spec is None:
            continue
        connected = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for inp in spec.inputs:
            if not inp.is_widget and not inp.optional and inp.name not in connected:
                problems.append(f"node {node['id']} ({node['type']}): required input {inp.name!r} is not connected")
        widths = [1 + (i.control_after_generate or i.upload or i.name in ("seed", "noise_seed")) for i in spec.widget_inputs()]
        expected = sum(widths)
        # a workflow saved before trailing optional widgets were added has fewer values; the canvas
        # gives the new widgets their defaults, so that is not a problem
        fewest = expected
        for inp, width in zip(reversed(spec.widget_inputs()), reversed(widths)):
            if not inp.optional:
                break
            fewest -= width
        values = node.get("widgets_values")
        if isinstance(values, list) and not fewest <= len(values) <= expected:
            wanted = str(expected) if fewest == expected else f"{fewest} to {expected}"
            problems.append(f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {wanted}")
    return problems


def check_api_workflow(api: Mapping[str, Any], specs: Mapping[str, NodeSpec]) -> list[str]:
    """Problems in an API-format prompt: unknown types, missing required inputs, type-mismatched links."""
    problems: list[str] = []
    for node_id, entry in api.items():
        spec = specs.get(entry.get("class_type"))
        if spec is None:
            problems.append(f"node {node_id}: unknown type {entry.get('class_type')!r}")
            continue
        inputs = entry.get("inputs", {})
        for inp in spec.inputs:
            if inp.name not in inputs:
                if not inp.optional:
                    problems.append(f"node {node_id} ({entry['class_type']}): missing input {inp.name!r}")
                continue
            value = inputs[inp.name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                source = api.get(value[0])
                if source is None:
                    problems.append(f"node {node_id}: input {inp.name!r} links to missing node {value[0]}")
                    continue
                src_spec = specs.get(source.get("class_type"))
                if src_spec is None or value[1] >= len(src_spec.outputs):
                    problems.append(f"node {node_id}: input {inp.name!r} links to a missing output")
                elif src_spec.outputs[value[1]] != inp.type:
                    problems.append(f"node {node_id}: {inp.name!r} wants {inp.type}, gets {src_spec.outputs[value[1]]}")
            elif not inp.is_widget:
                problems.append(f"node {node_id} ({entry['class_type']}): socket input {inp.name!r} must be a link")
        for name in inputs:
            if spec.input(name) is None:
                problems.append(f"node {node_id} ({entry['class_type']}): unknown input {name!r}")
    return problems
