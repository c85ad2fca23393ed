"""ComfyUI adapters over the ``py`` library (filled in by the nodes module)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
