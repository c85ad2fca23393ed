"""ComfyUI nodes: thin adapters over the ``py`` library.

Node ids share the ``GroundedInpaint`` prefix and are frozen once published: saved workflows
refer to them by id. Display names can change.
"""

from __future__ import annotations

from . import editor, runtime
from .imaging import Composite, CutOut, Overlay
from .loaders import LoadGroundingDino, LoadSam
from .masking import MaskFromSegments, SegmentsInfo
from .matting import LoadMattingModel, RefineMaskEdges
from .sam3 import LoadSam3, Sam3Segment
from .segmentation import GroundedSegment, GroundingDinoDetect, SamSegment
from .video import GroundedTrack, LoadSam2Video, LoadSam3Video, Sam3Track, SelectObjects

runtime.register_model_folders()
editor.register_routes()  # the editor's live masks, on ComfyUI's own server (nothing outside ComfyUI)

_NODES = (
    ("GroundedInpaintLoadGroundingDino", LoadGroundingDino, "Load GroundingDINO Model"),
    ("GroundedInpaintLoadSam", LoadSam, "Load SAM Model"),
    ("GroundedInpaintDetect", GroundingDinoDetect, "GroundingDINO Detect"),
    ("GroundedInpaintSegment", SamSegment, "SAM Segment"),
    ("GroundedInpaintGroundedSegment", GroundedSegment, "Grounded Segment (text → masks)"),
    ("GroundedInpaintMaskFromSegments", MaskFromSegments, "Mask from Segmentation"),
    ("GroundedInpaintSegmentsInfo", SegmentsInfo, "Segments Info"),
    ("GroundedInpaintOverlay", Overlay, "Overlay Segments"),
    ("GroundedInpaintCutOut", CutOut, "Cut Out Object"),
    ("GroundedInpaintComposite", Composite, "Composite Object"),
    ("GroundedInpaintLoadSam3", LoadSam3, "Load SAM 3 Model"),
    ("GroundedInpaintSam3Segment", Sam3Segment, "SAM 3 Segment (text → masks)"),
    ("GroundedInpaintLoadSam2Video", LoadSam2Video, "Load SAM 2.1 Video Model"),
    ("GroundedInpaintGroundedTrack", GroundedTrack, "Grounded Track (text → tracked masks)"),
    ("GroundedInpaintSelectObjects", SelectObjects, "Select Objects (by id or label)"),
    ("GroundedInpaintRefineMask", RefineMaskEdges, "Refine Mask Edges (matting)"),
    ("GroundedInpaintLoadMattingModel", LoadMattingModel, "Load Matting Model"),
    ("GroundedInpaintLoadSam3Video", LoadSam3Video, "Load SAM 3 Video Model"),
    ("GroundedInpaintSam3Track", Sam3Track, "SAM 3 Track (text → tracked masks)"),
)

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: name for node_id, _, name in _NODES}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
