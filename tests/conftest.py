"""Shared fixtures: tiny random-weight models written once per test session to a temp models folder.

The models are loaded through the same loaders users run (``grounded_inpaint.models``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the suite never touches the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    from grounded_inpaint.testing.tiny_models import write_models_folder

    root = tmp_path_factory.mktemp("models")
    paths = write_models_folder(root)
    return root, paths


@pytest.fixture(scope="session")
def detector(models_dir):
    from grounded_inpaint.models import load_detector

    root, paths = models_dir
    return load_detector(paths["grounding_dino"].name, root, download=False)


@pytest.fixture(scope="session")
def meta_predictor(models_dir):
    from grounded_inpaint.models import load_segmenter

    root, paths = models_dir
    return load_segmenter(paths["sam_meta"].name, root, download=False)


@pytest.fixture(scope="session")
def hf_predictor(models_dir):
    from grounded_inpaint.models import load_segmenter

    root, paths = models_dir
    return load_segmenter(paths["sam_hf"].name, root, download=False)
