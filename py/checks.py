"""Checks of numeric parameters: every public function answers a bad number with one clear message.

Library functions are called from the CLI, from ComfyUI's HTTP API (whose JSON may carry any
number, NaN included: ComfyUI's min/max checks let NaN through) and from user code. Each numeric
parameter is checked on entry with :func:`number` (or :func:`fraction`, :func:`count`), which
raises :class:`ValueError` naming the parameter, its valid range and the value received:

    >>> fraction("box_threshold", float("nan"))
    Traceback (most recent call last):
    ValueError: box_threshold must be a number in 0..1; got nan

NaN, ±inf, ``bool`` and non-numbers are refused unless a documented meaning is given
(``allow_none``); integers are checked to be whole. The CLI turns the same checks into argparse
types (:func:`argparse_type`), so ``--grow nan`` exits with code 2 and the same message.
"""

from __future__ import annotations

import argparse
import math
from numbers import Integral, Real
from typing import Callable

__all__ = ["number", "fraction", "count", "describe_range", "argparse_type"]

_INT_LIMIT = 2**62  # larger integers mean nothing for pixels or counts and overflow int64 tensors


def describe_range(low: float | None, high: float | None, *, integer: bool, low_open: bool = False, high_open: bool = False) -> str:
    """Words for a range: ``"a number in 0..1"``, ``"an integer >= 0"``, ``"a number > 0"``, …"""
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None and not low_open and not high_open:
        return f"{kind} in {_fmt(low)}..{_fmt(high)}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {_fmt(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {_fmt(high)}")
    return f"{kind} {' and '.join(parts)}" if parts else f"a finite {'integer' if integer else 'number'}"


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    allow_none: bool = False,
    meaning: str = "",
) -> float | int | None:
    """``value`` as a float (or an int with ``integer``) after checking it lies in the range.

    Arguments:
        name: the parameter's name as the caller knows it (``"grow"``, ``"--box-threshold"``).
        low, high: the bounds (``None``: unbounded); inclusive unless ``low_open`` / ``high_open``.
        integer: the value must be a whole number (``3.0`` is accepted and returned as ``3``).
        allow_none: ``None`` is accepted and returned as it is (its meaning goes in ``meaning``).
        meaning: appended to the message, e.g. ``"(0 keeps all)"``.

    Raises:
        ValueError: NaN, infinity, a ``bool``, a non-number, a fraction where an integer is needed,
            or a value outside the range; the message names ``name``, the range and the value.
    """
    if value is None and allow_none:
        return None
    expected = describe_range(low, high, integer=integer, low_open=low_open, high_open=high_open)
    if allow_none:
        expected += " or None"
    suffix = f" {meaning}" if meaning else ""

    def fail() -> ValueError:
        return ValueError(f"{name} must be {expected}{suffix}; got {value!r}")

    if isinstance(value, (bool, str, bytes)) or not (isinstance(value, Real) or hasattr(value, "__float__")):
        raise fail()
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise fail() from None
    if not math.isfinite(as_float):
        raise fail()
    if integer:
        if isinstance(value, Integral):
            result: float | int = int(value)
        elif as_float.is_integer():
            result = int(as_float)
        else:
            raise fail()
        if abs(result) > _INT_LIMIT:
            raise fail()
    else:
        result = as_float
    if low is not None and (result < low or (low_open and result == low)):
        raise fail()
    if high is not None and (result > high or (high_open and result == high)):
        raise fail()
    return result


def fraction(name: str, value: object, *, allow_none: bool = False, meaning: str = "") -> float | None:
    """A number in ``0..1`` (thresholds, opacities, IoUs)."""
    return number(name, value, low=0.0, high=1.0, allow_none=allow_none, meaning=meaning)  # type: ignore[return-value]


def count(name: str, value: object, *, low: int = 0, high: int | None = None, allow_none: bool = False, meaning: str = "") -> int | None:
    """A whole number ``>= low`` (and ``<= high``): counts, pixels, steps."""
    return number(name, value, low=low, high=high, integer=True, allow_none=allow_none, meaning=meaning)  # type: ignore[return-value]


def argparse_type(check: Callable[[str, object], object], *, integer: bool = False) -> Callable[[str], object]:
    """An argparse ``type=`` that parses a float (or int) and applies ``check(name, value)``.

    argparse reports the :class:`argparse.ArgumentTypeError` as ``argument --grow: <message>`` and
    exits with code 2, so bad options never reach the library.
    """

    def parse(text: str) -> object:
        try:
            value: object = int(text) if integer else float(text)
        except ValueError:
            if integer:
                try:
                    as_float = float(text)
                except ValueError:
                    raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
                value = as_float
            else:
                raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
        try:
            return check("value", value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("value must be", "must be", 1)) from None

    parse.__name__ = "integer" if integer else "number"
    return parse
