"""Exceptions raised when a model file is missing or is not what the caller said it is.

Both derive from a built-in exception so that callers that only know Python's own types still
catch them: a :class:`CheckpointError` is a ``ValueError`` (the file exists but its contents are
wrong) and a :class:`ModelNotFoundError` is a ``FileNotFoundError``.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ModelNotFoundError"]


class CheckpointError(ValueError):
    """A checkpoint was found but its tensors do not describe the expected model.

    The message names the file (or other source) and says what was expected, what was found and,
    where it can tell, which known format the tensors look like instead.
    """


class ModelNotFoundError(FileNotFoundError):
    """No model file or folder exists at the place the caller named (or in any searched folder)."""
