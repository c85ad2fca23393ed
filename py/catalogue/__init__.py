"""Whole catalogues: ``run_batch`` and the ``batch`` command — resumable runs that survive bad
images, in this process or on a Ray cluster.

* :mod:`.inputs`: folders, glob patterns, image files and manifests → the images and their result folders;
* :mod:`.settings`: the settings (the ``mask`` / ``inpaint`` options), checked the same way everywhere;
* :mod:`.ledger`: completion records, atomic result folders, the run manifest, the output-folder lock;
* :mod:`.work`: one image, start to finish (the :class:`~.work.Worker` every engine runs);
* :mod:`.engines`: the embedded engine and the Ray Data engine;
* :mod:`.run`: :func:`run_batch`, the driver;
* :mod:`.command`: the ``batch`` subcommand.

(:mod:`grounded_inpaint.batch` is something else: helpers for ComfyUI's ``[B, H, W, C]`` batches.)
"""

from .run import BatchSummary, run_batch

__all__ = ["BatchSummary", "run_batch"]
