"""Random-weight stand-ins for every model the package loads, written in the layouts users have.

The modules depend on each other in one direction only: :mod:`.tiny_gdino` and :mod:`.tiny_sam`
build the base models, :mod:`.tiny_gdino_extra`, :mod:`.tiny_sam_extra`, :mod:`.tiny_sam3` and
:mod:`.tiny_diffusers` the other layouts and families, :mod:`.tiny_models` writes them all into a
models folder, and :mod:`.real_size` writes real-size random-weight models for the benchmarks.
"""

#: Side in pixels of the images the tiny models are built for (GroundingDINO and SAM resize to it).
TINY_IMAGE_SIZE = 64
