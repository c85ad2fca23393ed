"""The models the pack knows how to fetch, and where each one goes.

Folder names follow what other ComfyUI packs already use, so files users have are found:
``models/grounding-dino`` for detectors and ``models/sams`` for SAM checkpoints.

A known model is either a Hugging Face folder (config + safetensors + processor files, fetched with
``huggingface_hub``) or a single file (Meta's ``.pth`` checkpoints, fetched from their official
address). Downloads are checked against ``sha256`` where it is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "KnownModel",
    "KNOWN_MODELS",
    "DETECTOR_FOLDER",
    "SAM_FOLDER",
    "known_models",
    "find_known",
    "download_urls",
    "comfy_registry_models",
    "FAMILY_FOLDERS",
    "models_markdown_table",
    "SAM2_FOLDER",
    "SAM3_FOLDER",
    "VITMATTE_FOLDER",
]

DETECTOR_FOLDER = "grounding-dino"
SAM_FOLDER = "sams"
#: Where other packs (kijai's ComfyUI-segment-anything-2, LayerStyle) keep SAM 2 / 2.1 files.
SAM2_FOLDER = "sam2"
SAM3_FOLDER = "sam3"
#: Where LayerStyle and other packs keep ViTMatte folders (``models/vitmatte/<name>``).
VITMATTE_FOLDER = "vitmatte"

#: ``grounding-dino``: text → boxes detectors; ``sam``: box/point → mask segmenters (SAM, SAM-HQ,
#: SAM 2.1); ``sam3``: text → instance masks; ``vitmatte``: trimap → alpha matting models.
Family = Literal["grounding-dino", "sam", "sam3", "vitmatte"]

#: The model sub-folders searched for each family, in order; the first is the family's main folder.
FAMILY_FOLDERS: dict[str, tuple[str, ...]] = {
    "grounding-dino": (DETECTOR_FOLDER,),
    "sam": (SAM_FOLDER, SAM2_FOLDER),
    "sam3": (SAM3_FOLDER,),
    "vitmatte": (VITMATTE_FOLDER,),
}

_HF_GDINO_FILES = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
_HF_SAM_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
_HF_MM_GDINO_FILES = tuple(f for f in _HF_GDINO_FILES if f != "special_tokens_map.json")


@dataclass(frozen=True)
class KnownModel:
    """A model that can be downloaded on first use.

    Attributes:
        name: the name shown in dropdowns and accepted by the CLI; also the file or folder name
            it is stored under inside ``folder``.
        family: ``"grounding-dino"``, ``"sam"`` or ``"sam3"``.
        folder: the models sub-folder it is downloaded into (one of ``FAMILY_FOLDERS[family]``).
        backend: which loader reads it: ``"transformers"`` (a HF folder), ``"meta"`` (a Meta SAM ``.pth``)
            or ``"original"`` (an original GroundingDINO / SAM-HQ / SAM 2 checkpoint, converted in memory).
        arch: the architecture (``grounding-dino``, ``mm-grounding-dino``, ``sam``, ``sam-hq``,
            ``sam2``, ``sam3``).
        repo_id: Hugging Face repository for HF folders.
        files: the files of a HF folder that are fetched (weights as safetensors only).
        url: the download address of a single-file model.
        sha256: checksum of the single file (or of ``model.safetensors`` for a folder), if known.
        size_mb: approximate download size.
        license: the weights' licence.
        gated: the hub repository asks users to accept a licence and log in before downloading.
        revision: the hub revision the files are fetched from (``None``: ``main``), e.g. the
            ``refs/pr/N`` that holds a repository's safetensors conversion when ``main`` has only
            a pickle.
    """

    name: str
    family: Family
    folder: str
    backend: Literal["transformers", "meta", "original"]
    size_mb: int
    license: str
    arch: str = ""
    repo_id: str | None = None
    files: tuple[str, ...] = ()
    url: str | None = None
    sha256: str | None = None
    gated: bool = False
    revision: str | None = None

    @property
    def size_text(self) -> str:
        """The download size in words: ``"694 MB"``, ``"1.2 GB"``."""
        return f"{self.size_mb / 1024:.1f} GB" if self.size_mb >= 1024 else f"{self.size_mb} MB"

    @property
    def is_folder(self) -> bool:
        return self.repo_id is not None

    @property
    def source(self) -> str:
        """Where a person can get it by hand (a hub revision other than ``main`` is part of the address)."""
        if not self.repo_id:
            return str(self.url)
        if self.revision:
            from urllib.parse import quote

            return f"https://huggingface.co/{self.repo_id}/tree/{quote(self.revision, safe='')}"
        return f"https://huggingface.co/{self.repo_id}"


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(
        "grounding-dino-tiny", "grounding-dino", DETECTOR_FOLDER, "transformers", 694, "Apache-2.0", arch="grounding-dino",
        repo_id="IDEA-Research/grounding-dino-tiny", files=_HF_GDINO_FILES,
        sha256="1a2412ef99bd74bcd3c2a246fa1e48581f8889a1300c9051974741314fc042f3",
    ),
    KnownModel(
        "grounding-dino-base", "grounding-dino", DETECTOR_FOLDER, "transformers", 933, "Apache-2.0", arch="grounding-dino",
        repo_id="IDEA-Research/grounding-dino-base", files=_HF_GDINO_FILES,
    ),
    KnownModel(
        "sam_vit_b_01ec64.pth", "sam", SAM_FOLDER, "meta", 375, "Apache-2.0", arch="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    KnownModel(
        "sam_vit_l_0b3195.pth", "sam", SAM_FOLDER, "meta", 1250, "Apache-2.0", arch="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    KnownModel(
        "sam_vit_h_4b8939.pth", "sam", SAM_FOLDER, "meta", 2560, "Apache-2.0", arch="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    KnownModel(
        "sam-vit-base", "sam", SAM_FOLDER, "transformers", 375, "Apache-2.0", arch="sam",
        repo_id="facebook/sam-vit-base", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam-vit-large", "sam", SAM_FOLDER, "transformers", 1250, "Apache-2.0", arch="sam",
        repo_id="facebook/sam-vit-large", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam-vit-huge", "sam", SAM_FOLDER, "transformers", 2560, "Apache-2.0", arch="sam",
        repo_id="facebook/sam-vit-huge", files=_HF_SAM_FILES,
    ),
    # --- extra GroundingDINO models (MM-GroundingDINO, original checkpoints) ---
    # MM-GroundingDINO (OpenMMLab), converted to transformers by its maintainers; same processor and
    # BERT tokenizer files as IDEA-Research's folders (special_tokens_map.json is left out: BERT's
    # defaults are the same, and a file a repository may lack must not fail the download).
    KnownModel(
        "mm_grounding_dino_tiny_o365v1_goldg_v3det", "grounding-dino", DETECTOR_FOLDER, "transformers", 695, "Apache-2.0",
        arch="mm-grounding-dino", repo_id="openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det", files=_HF_MM_GDINO_FILES,
    ),
    KnownModel(
        "mm_grounding_dino_base_o365v1_goldg_v3det", "grounding-dino", DETECTOR_FOLDER, "transformers", 935, "Apache-2.0",
        arch="mm-grounding-dino", repo_id="openmmlab-community/mm_grounding_dino_base_o365v1_goldg_v3det", files=_HF_MM_GDINO_FILES,
    ),
    KnownModel(
        "mm_grounding_dino_large_o365v2_oiv6_goldg", "grounding-dino", DETECTOR_FOLDER, "transformers", 1370, "Apache-2.0",
        arch="mm-grounding-dino", repo_id="openmmlab-community/mm_grounding_dino_large_o365v2_oiv6_goldg", files=_HF_MM_GDINO_FILES,
    ),
    # IDEA-Research's original checkpoints, as other packs keep them in models/grounding-dino; converted
    # in memory (grounded_inpaint.gdino_convert); BERT's tokenizer files are fetched once beside them.
    KnownModel(
        "groundingdino_swint_ogc.pth", "grounding-dino", DETECTOR_FOLDER, "original", 694, "Apache-2.0",
        arch="grounding-dino", url="https://huggingface.co/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swint_ogc.pth",
        sha256="3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
    ),
    KnownModel(
        "groundingdino_swinb_cogcoor.pth", "grounding-dino", DETECTOR_FOLDER, "original", 938, "Apache-2.0",
        arch="grounding-dino", url="https://huggingface.co/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swinb_cogcoor.pth",
        sha256="46270f7a822e6906b655b729c90613e48929d0f2bb8b9b76fd10a856f3ac6ab7",
    ),
    # --- SAM-HQ models ---
    KnownModel(
        "sam_hq_vit_b.pth", "sam", SAM_FOLDER, "meta", 379, "Apache-2.0", arch="sam-hq",
        url="https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_b.pth",
    ),
    KnownModel(
        "sam_hq_vit_l.pth", "sam", SAM_FOLDER, "meta", 1250, "Apache-2.0", arch="sam-hq",
        url="https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_l.pth",
    ),
    KnownModel(
        "sam_hq_vit_h.pth", "sam", SAM_FOLDER, "meta", 2570, "Apache-2.0", arch="sam-hq",
        url="https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_h.pth",
        sha256="a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
    ),
    KnownModel(
        "sam-hq-vit-base", "sam", SAM_FOLDER, "transformers", 380, "Apache-2.0", arch="sam-hq",
        repo_id="syscv-community/sam-hq-vit-base", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam-hq-vit-large", "sam", SAM_FOLDER, "transformers", 1250, "Apache-2.0", arch="sam-hq",
        repo_id="syscv-community/sam-hq-vit-large", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam-hq-vit-huge", "sam", SAM_FOLDER, "transformers", 2570, "Apache-2.0", arch="sam-hq",
        repo_id="syscv-community/sam-hq-vit-huge", files=_HF_SAM_FILES,
    ),
    # --- SAM 2.1 models ---
    KnownModel(
        "sam2.1_hiera_tiny.pt", "sam", SAM2_FOLDER, "meta", 156, "Apache-2.0", arch="sam2",
        url="https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt",
    ),
    KnownModel(
        "sam2.1_hiera_small.pt", "sam", SAM2_FOLDER, "meta", 184, "Apache-2.0", arch="sam2",
        url="https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt",
    ),
    KnownModel(
        "sam2.1_hiera_base_plus.pt", "sam", SAM2_FOLDER, "meta", 324, "Apache-2.0", arch="sam2",
        url="https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt",
    ),
    KnownModel(
        "sam2.1_hiera_large.pt", "sam", SAM2_FOLDER, "meta", 898, "Apache-2.0", arch="sam2",
        url="https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt",
    ),
    KnownModel(
        "sam2.1-hiera-tiny", "sam", SAM2_FOLDER, "transformers", 156, "Apache-2.0", arch="sam2",
        repo_id="facebook/sam2.1-hiera-tiny", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam2.1-hiera-small", "sam", SAM2_FOLDER, "transformers", 184, "Apache-2.0", arch="sam2",
        repo_id="facebook/sam2.1-hiera-small", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam2.1-hiera-base-plus", "sam", SAM2_FOLDER, "transformers", 324, "Apache-2.0", arch="sam2",
        repo_id="facebook/sam2.1-hiera-base-plus", files=_HF_SAM_FILES,
    ),
    KnownModel(
        "sam2.1-hiera-large", "sam", SAM2_FOLDER, "transformers", 898, "Apache-2.0", arch="sam2",
        repo_id="facebook/sam2.1-hiera-large", files=_HF_SAM_FILES,
    ),
    # --- SAM 3 models ---
    # facebook/sam3 is a gated repository under Meta's SAM License (not Apache-2.0): accept the licence
    # on its page and log in (`hf auth login` or HF_TOKEN) before the download works. The transformers
    # folder is read; Meta's sam3.pt in the same repository is not fetched (a pickle).
    KnownModel(
        "sam3", "sam3", SAM3_FOLDER, "transformers", 3450,
        "SAM License", arch="sam3", repo_id="facebook/sam3", gated=True,
        # what the loader reads: weights, the CLIP tokenizer and the processor settings
        files=("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json"),
    ),
    # --- ViTMatte (matting: trimap → alpha) ---
    KnownModel(
        "vitmatte-small-composition-1k", "vitmatte", VITMATTE_FOLDER, "transformers", 103, "Apache-2.0", arch="vitmatte",
        repo_id="hustvl/vitmatte-small-composition-1k", files=_HF_SAM_FILES,
    ),
    # main holds only a pickle (pytorch_model.bin); Hugging Face's safetensors conversion of the same
    # weights waits in pull request 3, and only safetensors are read.
    KnownModel(
        "vitmatte-base-composition-1k", "vitmatte", VITMATTE_FOLDER, "transformers", 387, "Apache-2.0", arch="vitmatte",
        repo_id="hustvl/vitmatte-base-composition-1k", files=_HF_SAM_FILES, revision="refs/pr/3",
    ),
)


def known_models(family: Family | None = None) -> list[KnownModel]:
    """The known models, optionally only those of one family, in a stable order."""
    return [m for m in KNOWN_MODELS if family is None or m.family == family]


def download_urls(model: KnownModel) -> list[tuple[str, str]]:
    """``(location, url)`` of every file of ``model``; location is relative to the models folder."""
    if model.is_folder:
        from urllib.parse import quote

        revision = quote(model.revision or "main", safe="")
        return [(f"/{model.folder}/{model.name}/{f}", f"https://huggingface.co/{model.repo_id}/resolve/{revision}/{f}")
                for f in model.files]
    return [(f"/{model.folder}/{model.name}", str(model.url))]


def comfy_registry_models() -> list[dict[str, str]]:
    """The ``[tool.comfy] Models`` entries of pyproject.toml, derived from :data:`KNOWN_MODELS`.

    Gated models are left out: a manager cannot fetch them without the user's hub login.
    """
    return [{"location": loc, "model_url": url} for m in KNOWN_MODELS if not m.gated for loc, url in download_urls(m)]


def find_known(name: str, family: Family | None = None) -> KnownModel | None:
    """The known model called ``name`` (or whose hub id is ``name``), or ``None``."""
    for model in known_models(family):
        if name in (model.name, model.repo_id):
            return model
    return None


_ARCH_NAMES = {
    "grounding-dino": "GroundingDINO",
    "mm-grounding-dino": "MM-GroundingDINO",
    "sam": "SAM",
    "sam-hq": "SAM-HQ",
    "sam2": "SAM 2.1",
    "sam3": "SAM 3",
    "vitmatte": "ViTMatte",
}


def models_markdown_table() -> str:
    """The README's table of known models (one row per :data:`KNOWN_MODELS` entry), as Markdown.

    ``tools/sync_models.py`` writes it into README.md and pyproject.toml; a test keeps them equal.
    """
    rows = [
        "| name | model | size | format | folder | licence | source | sha256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in KNOWN_MODELS:
        size = m.size_text
        kind = "transformers folder" if m.is_folder else ("original checkpoint" if m.backend not in ("transformers",) else "file")
        sha = f"`{m.sha256}`" if m.sha256 else "—"
        label = m.repo_id or (m.url.rsplit("/", 1)[-1] if m.url else m.name)
        licence = f"{m.license} (gated: accept it on the hub page, then `hf auth login`)" if m.gated else m.license
        rows.append(
            f"| `{m.name}` | {_ARCH_NAMES.get(m.arch, m.arch or m.family)} | {size} | {kind} | `models/{m.folder}` "
            f"| {licence} | [{label}]({m.source}) | {sha} |"
        )
    return "\n".join(rows) + "\n"

