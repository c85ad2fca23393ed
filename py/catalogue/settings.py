"""The settings of a batch: one set of names, one validation, for the command line, the library and manifest rows.

The settings are the options of the ``mask`` command (and, with ``--inpaint``, those of the
``inpaint`` command), under their argparse names (``box_threshold``, ``invert``, …). They come
from the ``batch`` parser itself (:func:`batch_parser`): a new option of ``mask`` is a setting of
``batch`` too. A value from a library call or a manifest cell goes through the option's own
argparse type (:meth:`SettingsSpec.parse`), so ``box_threshold=3`` fails the same way everywhere:
``box_threshold: must be a number in 0..1; got 3.0``.

Some settings hold for the whole run (:data:`RUN_WIDE`: the models, the device and precision —
each worker loads one set of models); the others may differ per manifest row. The settings that
decide an image's results (all but :data:`NOT_RESULT_SETTINGS`, and the inpainting ones only with
``--inpaint``) make the image's settings digest (:func:`grounded_inpaint.catalogue.ledger.settings_digest`).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

__all__ = [
    "RUN_OPTIONS",
    "RUN_WIDE",
    "NOT_RESULT_SETTINGS",
    "INPAINT_SETTINGS",
    "SettingsError",
    "SettingsSpec",
    "batch_parser",
    "subcommand_parser",
]

#: Options of the ``batch`` command that steer the run rather than the results.
RUN_OPTIONS = frozenset({
    "help", "sources", "out", "engine", "actors", "threads", "ray_address", "run_manifest", "dry_run", "check_content",
    "max_pixels", "verbose", "quiet", "func", "command",
})
#: Settings that cannot differ between manifest rows (every worker loads one set of models).
RUN_WIDE = frozenset({
    "detector", "segmenter", "models", "device", "precision", "no_download", "inpaint_model", "inpaint_config",
    "no_safety_checker", "matting_model",
})
#: Settings that do not change results (left out of the settings digest).
NOT_RESULT_SETTINGS = frozenset({"models", "device", "no_download"})
#: The settings of the inpainting job (part of the digest only with ``--inpaint``).
INPAINT_SETTINGS = frozenset({
    "inpaint", "mode", "negative_prompt", "inpaint_model", "inpaint_config", "steps", "guidance", "strength", "seed",
    "size", "no_safety_checker",
})
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class SettingsError(ValueError):
    """A setting with a bad value or a name that is not a setting (the message names it)."""


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` inside ``parser`` (argparse keeps subparsers in its actions)."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:  # noqa: SLF001
            return action.choices[name]
    raise KeyError(name)


def batch_parser() -> argparse.ArgumentParser:
    """The ``batch`` subcommand's parser (built with the whole command line)."""
    from ..cli import build_parser

    return subcommand_parser(build_parser(), "batch")


class SettingsSpec:
    """The settings of the ``batch`` command: their names, defaults, and the parsing of a value.

    Arguments:
        parser: the ``batch`` parser (default :func:`batch_parser`).
    """

    def __init__(self, parser: argparse.ArgumentParser | None = None) -> None:
        parser = parser if parser is not None else batch_parser()
        self._actions: dict[str, list[argparse.Action]] = {}
        for action in parser._actions:  # noqa: SLF001 - the parser's options are the settings
            if action.dest not in RUN_OPTIONS and action.dest != argparse.SUPPRESS:
                self._actions.setdefault(action.dest, []).append(action)
        self.names = frozenset(self._actions)
        self.per_row = frozenset(self.names - RUN_WIDE)

    def defaults(self) -> dict[str, Any]:
        """``{name: default}`` for every setting (what the command line uses when an option is not given)."""
        out = {}
        for name, actions in self._actions.items():
            default = next((a.default for a in actions if a.default is not None), None)
            out[name] = default if default is not argparse.SUPPRESS else None
        return out

    def option(self, name: str) -> str:
        """The command-line spelling of setting ``name`` (``--box-threshold``)."""
        actions = self._actions.get(name, [])
        strings = [s for a in actions for s in a.option_strings if s.startswith("--")]
        return strings[0] if strings else name

    def parse(self, name: str, value: Any) -> Any:
        """``value`` (a string from a manifest, or a Python value) checked and converted as option ``name`` does.

        ``None`` keeps an option's "not given" value where it has one (``max_detections``,
        ``top_k``, ``seed``). Flags take booleans or ``1/0, true/false, yes/no, on/off``.

        Raises:
            SettingsError: naming the setting, the value and the valid range or choices.
        """
        if name not in self._actions:
            raise SettingsError(f"{name!r} is not a setting; settings are {', '.join(sorted(self.names))}")
        actions = self._actions[name]
        action = actions[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
            return self._flag(name, value)
        if isinstance(action, argparse._StoreConstAction):  # noqa: SLF001 - --keep / --replace write "mode"
            choices = [a.const for a in actions if isinstance(a, argparse._StoreConstAction)]  # noqa: SLF001
            if value not in choices:
                raise SettingsError(f"{name}: must be one of {', '.join(map(str, choices))}; got {value!r}")
            return value
        if value is None:
            if action.default is None:
                return None
            raise SettingsError(f"{name}: a value is needed (default {action.default!r})")
        if action.type is not None and not isinstance(value, str):
            if isinstance(value, bool):
                raise SettingsError(f"{name}: expected a number; got {value!r}")
            if isinstance(value, float) and value.is_integer() and getattr(action.type, "__name__", "") == "integer":
                value = int(value)  # 5.0 from a table whose column became float
            value = str(value)
        if action.type is not None:
            try:
                value = action.type(value)
            except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
                raise SettingsError(f"{name}: {exc}") from None
        elif not isinstance(value, str):
            value = str(value)
        if action.choices is not None and value not in action.choices:
            raise SettingsError(f"{name}: must be one of {', '.join(map(str, action.choices))}; got {value!r}")
        return value

    def _flag(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SettingsError(f"{name}: must be true or false (1/0, yes/no, on/off); got {value!r}")

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every setting: the defaults overridden by ``given`` (each value checked with :meth:`parse`)."""
        settings = self.defaults()
        for name, value in (given or {}).items():
            settings[name] = self.parse(name, value)
        return settings

    def apply_row(self, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with a manifest row's ``overrides`` applied (each checked).

        Raises:
            SettingsError: a bad value, or a run-wide setting (models, device, precision) in a row.
        """
        settings = dict(base)
        for name, value in overrides.items():
            if name in RUN_WIDE:
                raise SettingsError(f"{name} cannot differ between rows (each worker loads one set of models); "
                                    f"give {self.option(name)} for the whole run and drop the column")
            settings[name] = self.parse(name, value)
        return settings

    @staticmethod
    def result_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings that decide the results (the digest's input): no models folder, device or
        download flag, and the inpainting settings only when ``inpaint`` is set."""
        inpaint = bool(settings.get("inpaint"))
        return {k: v for k, v in sorted(settings.items())
                if k not in NOT_RESULT_SETTINGS and (inpaint or k not in INPAINT_SETTINGS)}
