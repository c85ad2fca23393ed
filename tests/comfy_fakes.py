"""Small stand-ins for the ComfyUI modules the nodes use (``comfy.*`` and ``folder_paths``).

They record what the nodes ask for, so tests can check that models go through the memory
manager, progress is reported and the cancel flag is honoured — without a ComfyUI install.
"""

from __future__ import annotations

import enum
import os
import sys
import types
from pathlib import Path

import torch


class InterruptProcessingException(Exception):
    pass


class VRAMState(enum.Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class FakeComfy:
    """Installs fake modules into ``sys.modules`` (through pytest's ``monkeypatch``)."""

    def __init__(self, monkeypatch, models_root: Path, temp_dir: Path) -> None:
        self.loads: list[tuple[list, bool]] = []
        self.unloaded: list = []
        self.progress: list[tuple[str, int]] = []
        self.interrupt = False
        #: Cancel is "pressed" once the interrupt check has been asked this many times (None: never).
        self.interrupt_after: int | None = None
        self.interrupt_checks = 0
        self.patchers: list = []
        fake = self

        mm = types.ModuleType("comfy.model_management")
        mm.VRAMState = VRAMState
        mm.vram_state = VRAMState.NORMAL_VRAM
        mm.current_loaded_models = []
        mm.InterruptProcessingException = InterruptProcessingException
        mm.get_torch_device = lambda: torch.device("cpu")
        mm.unet_offload_device = lambda: torch.device("cpu")
        mm.intermediate_device = lambda: torch.device("cpu")
        mm.should_use_fp16 = lambda device=None, prioritize_performance=True, **k: False
        mm.should_use_bf16 = lambda device=None, prioritize_performance=True, **k: False
        mm.soft_empty_cache = lambda force=False: None

        class LoadedModel:
            def __init__(self, patcher):
                self.model = patcher

            def model_unload(self, memory_to_free=None, unpatch_weights=True):
                fake.unloaded.append(self.model)
                return True

        def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False):
            fake.loads.append((list(models), force_full_load))
            for p in models:
                if not any(lm.model is p for lm in mm.current_loaded_models):
                    mm.current_loaded_models.append(LoadedModel(p))

        def throw_exception_if_processing_interrupted():
            fake.interrupt_checks += 1
            if fake.interrupt_after is not None and fake.interrupt_checks >= fake.interrupt_after:
                fake.interrupt = True
            if fake.interrupt:
                raise InterruptProcessingException()

        mm.load_models_gpu = load_models_gpu
        mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        self.mm = mm

        mp = types.ModuleType("comfy.model_patcher")

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
                self.model, self.load_device, self.offload_device = model, load_device, offload_device
                fake.patchers.append(self)

        mp.ModelPatcher = ModelPatcher

        utils = types.ModuleType("comfy.utils")

        class ProgressBar:
            def __init__(self, total):
                self.total = total
                fake.progress.append(("new", total))

            def update(self, value):
                fake.progress.append(("update", value))

            def update_absolute(self, value, total=None, preview=None):
                fake.progress.append(("absolute", value))

        utils.ProgressBar = ProgressBar

        comfy = types.ModuleType("comfy")
        comfy.model_management, comfy.model_patcher, comfy.utils = mm, mp, utils

        fp = types.ModuleType("folder_paths")
        fp.models_dir = str(models_root)
        fp.folder_names_and_paths = {}

        def add_model_folder_path(name, path, is_default=False):
            paths, exts = fp.folder_names_and_paths.setdefault(name, ([], set()))
            if path not in paths:
                paths.append(path)

        def get_folder_paths(name):
            return list(fp.folder_names_and_paths[name][0])

        fp.add_model_folder_path = add_model_folder_path
        fp.get_folder_paths = get_folder_paths
        fp.get_temp_directory = lambda: str(temp_dir)
        self.folder_paths = fp

        for name, module in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.model_patcher", mp),
                             ("comfy.utils", utils), ("folder_paths", fp)):
            monkeypatch.setitem(sys.modules, name, module)
        os.makedirs(temp_dir, exist_ok=True)
