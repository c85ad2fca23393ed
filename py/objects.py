"""Named objects drawn in the points-and-boxes editor: the JSON stored in SAM Segment's ``objects`` input.

The editor on the canvas writes, and an API user may write by hand, plain JSON in **pixels of the
original image** (x from the left, y from the top, the same frame as every box in this package)::

    {"objects": [
        {"name": "dress", "box": [120, 40, 380, 610], "points": [[250, 300, 1], [140, 90, 0]]},
        {"name": "handbag", "points": [[420, 330, 1]]}
     ],
     "size": [640, 800]}

* ``name`` (optional): the instance's label; ``"object 1"``, ``"object 2"``, … when absent or blank.
* ``box`` (optional): ``[x0, y0, x1, y1]`` XYXY; corners given the other way round are put in order.
* ``points`` (optional): ``[x, y, label]`` with label 1 = on the object (positive), 0 = not on it
  (negative); ``[x, y]`` and ``{"x": .., "y": .., "positive": true}`` are accepted too.
* ``size`` (optional): ``[width, height]`` of the picture the objects were placed on. When given, a
  run on a picture of another size stops with a message instead of prompting SAM at the wrong places.

A bare list of objects (``[{"name": ...}, ...]``) is accepted as well. Unknown keys are an error (a
typo such as ``"boxes"`` would otherwise be ignored silently). Counts are bounded
(:data:`MAX_OBJECTS` objects, :data:`MAX_TOTAL_POINTS` points in all, names of at most
:data:`MAX_NAME_LENGTH` characters), and every number must be finite. Whether the coordinates lie on
the picture is checked against its size by :func:`check_objects_on_image` (the picture is not known
when the text is parsed).

How the objects become SAM prompts (:func:`grounded_inpaint.segment.segment_image`): an object with
a box is one instance, prompted by its box and all its points; an object without a box refines every
detected box that contains one of its points (as the plain click inputs do), and its points outside
every detected box form one instance of its own when at least one of them is positive.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_OBJECTS",
    "MAX_OBJECTS_TEXT",
    "MAX_TOTAL_POINTS",
    "EditorObject",
    "ObjectsSpec",
    "check_objects_on_image",
    "objects_to_json",
    "parse_objects",
]

#: The most objects one ``objects`` value may hold (each costs one decoder pass of ~0.07 s on a CPU).
MAX_OBJECTS = 32
#: The most points over all objects (SAM's decoder cost grows with them; real edits use a handful).
MAX_TOTAL_POINTS = 256
#: The longest object name, in characters (it becomes a label drawn on previews).
MAX_NAME_LENGTH = 64
#: The longest ``objects`` text accepted, in characters (a full editor state is a few kB).
MAX_OBJECTS_TEXT = 256 * 1024

_OBJECT_KEYS = {"name", "box", "points"}
_TOP_KEYS = {"objects", "size"}


@dataclass(frozen=True)
class EditorObject:
    """One object of the editor: a name, an optional XYXY box and clicks, all in image pixels.

    Attributes:
        name: the label its instance gets.
        box: ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1``, or ``None``.
        points: ``(x, y, positive)`` clicks.
    """

    name: str
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float, bool], ...] = ()

    @property
    def is_empty(self) -> bool:
        """Neither a box nor a point: such an object prompts nothing."""
        return self.box is None and not self.points


@dataclass(frozen=True)
class ObjectsSpec:
    """The parsed ``objects`` value.

    Attributes:
        objects: in the order given (the editor's order and colours).
        size: ``(width, height)`` of the picture they were placed on, or ``None`` when not recorded.
    """

    objects: tuple[EditorObject, ...] = ()
    size: tuple[int, int] | None = None
    #: Notes for the log (e.g. an object with negative clicks only), never errors.
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __len__(self) -> int:
        return len(self.objects)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number (pixels of the image); got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where} must be a finite number (pixels of the image); got {value!r}")
    return number


def _parse_point(item: Any, where: str) -> tuple[float, float, bool]:
    if isinstance(item, dict):
        unknown = set(item) - {"x", "y", "positive", "label"}
        if unknown or "x" not in item or "y" not in item:
            raise ValueError(f'{where} must be [x, y, label] or {{"x": .., "y": .., "positive": true}}; got {item!r}')
        x, y = _finite(item["x"], f"{where} x"), _finite(item["y"], f"{where} y")
        if "positive" in item:
            if not isinstance(item["positive"], bool):
                raise ValueError(f'{where} "positive" must be true or false; got {item["positive"]!r}')
            return x, y, item["positive"]
        return x, y, _label(item.get("label", 1), where)
    if isinstance(item, (list, tuple)) and len(item) in (2, 3):
        x, y = _finite(item[0], f"{where} x"), _finite(item[1], f"{where} y")
        return x, y, _label(item[2], where) if len(item) == 3 else True
    raise ValueError(f"{where} must be [x, y, label] (label 1 = on the object, 0 = not on it); got {item!r}")


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and isinstance(value, (int, float)):
        return bool(value)
    raise ValueError(f"{where} label must be 1 (on the object) or 0 (not on it); got {value!r}")


def _parse_box(value: Any, where: str) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{where} must be [x0, y0, x1, y1] in pixels of the image; got {value!r}")
    x0, y0, x1, y1 = (_finite(v, f"{where}[{i}]") for i, v in enumerate(value))
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ValueError(f"{where} {list(value)} has no area; a box needs two different corners")
    return x0, y0, x1, y1


def _parse_size(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where} must be [width, height] of the picture; got {value!r}")
    sides = []
    for v in value:
        side = _finite(v, where)
        if side < 1 or not side.is_integer():
            raise ValueError(f"{where} must be two whole numbers >= 1 ([width, height]); got {value!r}")
        sides.append(int(side))
    return sides[0], sides[1]


def parse_objects(value: str | dict | Sequence[Any] | None, *, name: str = "objects") -> ObjectsSpec:
    """Parse the ``objects`` JSON (text, or the already decoded dict / list).

    An empty string, ``None``, ``{}`` or ``{"objects": []}`` gives no objects.

    Arguments:
        value: see the module docstring for the format.
        name: the input's name, used in error messages.

    Raises:
        ValueError: naming the input, the object (by number and name) and what is wrong; counts
            over :data:`MAX_OBJECTS` / :data:`MAX_TOTAL_POINTS`, non-finite numbers, unknown keys.
    """
    if value is None:
        return ObjectsSpec()
    if isinstance(value, str):
        if len(value) > MAX_OBJECTS_TEXT:
            raise ValueError(f"{name}: the text is {len(value)} characters long; at most {MAX_OBJECTS_TEXT} are accepted")
        if not value.strip():
            return ObjectsSpec()
        try:
            data: Any = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f'{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected e.g. '
                '{"objects": [{"name": "cup", "box": [10, 20, 200, 180], "points": [[90, 100, 1]]}]}'
            ) from None
    else:
        data = value
    size = None
    if isinstance(data, dict):
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(map(repr, unknown))}; the keys are \"objects\" and \"size\"")
        size = _parse_size(data.get("size"), f"{name}: size")
        data = data.get("objects", [])
    if not isinstance(data, (list, tuple)):
        raise ValueError(f'{name}: "objects" must be a list of objects; got {type(data).__name__}')
    if len(data) > MAX_OBJECTS:
        raise ValueError(f"{name}: {len(data)} objects were given; at most {MAX_OBJECTS} are accepted")
    objects, notes = [], []
    total_points = 0
    for i, item in enumerate(data):
        where = f"{name}: object {i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f'{where} must be {{"name": .., "box": [x0, y0, x1, y1], "points": [[x, y, 1]]}}; got {item!r}')
        unknown = sorted(set(item) - _OBJECT_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; the keys are \"name\", \"box\" and \"points\"")
        label = item.get("name")
        if label is None:
            label = ""
        if not isinstance(label, str):
            raise ValueError(f"{where}: name must be text; got {label!r}")
        label = " ".join(label.split())
        if len(label) > MAX_NAME_LENGTH:
            raise ValueError(f"{where}: the name is {len(label)} characters long; at most {MAX_NAME_LENGTH} are accepted")
        label = label or f"object {i + 1}"
        where = f"{name}: object {i + 1} ({label!r})"
        box = _parse_box(item.get("box"), f"{where} box")
        raw_points = item.get("points") or []
        if not isinstance(raw_points, (list, tuple)):
            raise ValueError(f"{where}: points must be a list of [x, y, label]; got {raw_points!r}")
        total_points += len(raw_points)
        if total_points > MAX_TOTAL_POINTS:
            raise ValueError(f"{name}: more than {MAX_TOTAL_POINTS} points over all objects; at most {MAX_TOTAL_POINTS} are accepted")
        points = tuple(_parse_point(p, f"{where} point {j + 1}") for j, p in enumerate(raw_points))
        if box is None and points and not any(p[2] for p in points):
            notes.append(f"{label!r} has only negative clicks and no box: they refine detected boxes only")
        objects.append(EditorObject(label, box, points))
    return ObjectsSpec(tuple(objects), size, tuple(notes))


def check_objects_on_image(spec: ObjectsSpec, height: int, width: int, *, name: str = "objects") -> None:
    """Every box and point of ``spec`` lies on a ``width x height`` picture (edges included).

    Raises:
        ValueError: the picture's size differs from the recorded ``size``, or a coordinate lies
            outside it; the message names the object and the picture's size.
    """
    if spec.size is not None and tuple(spec.size) != (width, height):
        raise ValueError(
            f"{name}: the objects were placed on a {spec.size[0]}x{spec.size[1]} picture but this image is {width}x{height}; "
            "open the editor on this picture and place them again (or clear them)"
        )
    for i, obj in enumerate(spec.objects):
        where = f"{name}: object {i + 1} ({obj.name!r})"
        if obj.box is not None:
            x0, y0, x1, y1 = obj.box
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise ValueError(
                    f"{where} box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] reaches outside the {width}x{height} image; boxes are "
                    f"in pixels of the image, x in 0..{width} and y in 0..{height}"
                )
        for j, (x, y, _) in enumerate(obj.points):
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(
                    f"{where} point {j + 1} (x={x:g}, y={y:g}) lies outside the {width}x{height} image; points are in "
                    f"pixels of the image, x in 0..{width} and y in 0..{height}"
                )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def objects_to_json(spec: ObjectsSpec | Sequence[EditorObject], size: tuple[int, int] | None = None) -> str:
    """The JSON text :func:`parse_objects` reads back to the same objects (the editor's format)."""
    objects = spec.objects if isinstance(spec, ObjectsSpec) else tuple(spec)
    if size is None and isinstance(spec, ObjectsSpec):
        size = spec.size
    out: dict[str, Any] = {"objects": []}
    for obj in objects:
        entry: dict[str, Any] = {"name": obj.name}
        if obj.box is not None:
            entry["box"] = [_number(v) for v in obj.box]
        if obj.points:
            entry["points"] = [[_number(x), _number(y), 1 if positive else 0] for x, y, positive in obj.points]
        out["objects"].append(entry)
    if size is not None:
        out["size"] = [int(size[0]), int(size[1])]
    return json.dumps(out, separators=(",", ":"))
