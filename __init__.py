"""grounded-inpaint as a ComfyUI custom node pack.

ComfyUI imports this file and reads ``NODE_CLASS_MAPPINGS``, ``NODE_DISPLAY_NAME_MAPPINGS`` and
``WEB_DIRECTORY``. Outside ComfyUI (tests, tools) the import works too: the node modules import
ComfyUI's own modules only when they are available.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
