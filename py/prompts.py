"""Text prompts for GroundingDINO.

GroundingDINO was trained on captions where categories are separated by " . " and the caption
ends with a full stop, all lower case. :func:`normalize_prompt` turns what people type
("Shoes, Red Bag", "shoes.bag", "  SHOES  ") into that form.
"""

from __future__ import annotations

import re

__all__ = ["split_categories", "normalize_prompt", "EmptyPromptError"]


class EmptyPromptError(ValueError):
    """The prompt names no category."""


_SEPARATORS = re.compile(r"[.,;\n]+")
_SPACES = re.compile(r"\s+")


def split_categories(prompt: str) -> list[str]:
    """Split a prompt into categories: lower case, separated by ``.``, ``,``, ``;`` or new lines.

    Duplicates are dropped (first occurrence kept); inner whitespace is collapsed.

    >>> split_categories("Shoes, red bag. shoes")
    ['shoes', 'red bag']
    """
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be a string; got {type(prompt).__name__}")
    seen: list[str] = []
    for part in _SEPARATORS.split(prompt.lower()):
        part = _SPACES.sub(" ", part).strip()
        if part and part not in seen:
            seen.append(part)
    return seen


def normalize_prompt(prompt: str) -> str:
    """The GroundingDINO caption for ``prompt``: ``"shoes . red bag ."``.

    Raises:
        EmptyPromptError: when the prompt is empty or only separators/whitespace.
    """
    categories = split_categories(prompt)
    if not categories:
        raise EmptyPromptError(
            f"the prompt {prompt!r} names no object; type what to find, e.g. \"shoes\" or \"dress, bag\" "
            "(separate several objects with '.' or ',')"
        )
    return " . ".join(categories) + " ."
