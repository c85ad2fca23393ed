"""Names shared by the node modules: the category, the custom socket types, tooltips."""

from __future__ import annotations

from typing import Any

#: The menu the nodes appear under.
CATEGORY = "Grounded Inpaint"
#: Node ids start with this; ids are frozen once published (saved workflows refer to them).
PREFIX = "GroundedInpaint"

# Custom socket types. Prefixed so they never connect to other packs' look-alike types
# (storyicon's SAM_MODEL holds a different object).
DETECTOR_TYPE = "GI_DETECTOR"
SAM_TYPE = "GI_SAM_MODEL"
DETECTIONS_TYPE = "GI_DETECTIONS"
SEGMENTS_TYPE = "GI_SEGMENTS"
SAM3_TYPE = "GI_SAM3_MODEL"
MATTING_TYPE = "GI_MATTING_MODEL"
#: Input option that gives a STRING input the points-and-boxes editor (web/js/sam_editor.js); its
#: value names the kind of prompts it edits ("sam": named objects with a box and clicks each).
EDITOR_OPTION = "grounded_inpaint_editor"


def tip(text: str, **options: Any) -> dict[str, Any]:
    """Input options with a tooltip: ``tip("...", default=0.3, min=0, max=1)``."""
    return {"tooltip": text, **options}
