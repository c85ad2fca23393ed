"""grounded-inpaint: text → GroundingDINO boxes → SAM instance masks → inpainting masks and overlays.

The library never imports ComfyUI. Heavy dependencies (transformers, segment_anything) are imported
only when a model is loaded, so ``import grounded_inpaint`` is cheap.
"""

__version__ = "0.1.0"
