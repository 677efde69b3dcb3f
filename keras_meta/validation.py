"""Argument checks shared by the whole package, with one set of rules.

Every public argument of keras_meta is checked by one of these helpers, so the
same kind of argument is accepted or refused the same way everywhere: booleans
are never numbers, counts are Python (or numpy) integers, real numbers must be
finite unless a helper says otherwise. Each helper returns the value converted
to a plain Python type, and raises `TypeError` for the wrong type or
`ValueError` for a value out of range, with a message that names the argument,
what was expected, and what was received.

Example:

>>> from keras_meta import validation
>>> validation.check_int("ways", 5)
5
>>> validation.check_number("learning_rate", 0.4, exclusive_minimum=0.0)
0.4
>>> validation.check_choice("bn_mode", "running", ("transductive", "running"))
'running'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable


def _type_name(value) -> str:
    return type(value).__name__


def check_int(name: str, value, minimum: int | None = 1, *, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """Returns `value` as an `int`, or raises unless it is an integer in range.

    Args:
        name: the argument's name, for the message.
        value: the value to check (a Python or numpy integer; `bool` is refused).
        minimum: the smallest accepted value, or `None` for no bound.
        maximum: the largest accepted value, or `None` for no bound.
        allow_none: whether `None` is accepted (and returned).

    Example:

    >>> check_int("shots", 1)
    1
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise TypeError(
            f"`{name}` must be an integer{bound}; received {value!r} of type "
            f"{_type_name(value)}."
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {name}={value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be an integer <= {maximum}; received {name}={value}.")
    return int(value)


def check_number(name: str, value, *, minimum: float | None = None,
                 exclusive_minimum: float | None = None, maximum: float | None = None,
                 exclusive_maximum: float | None = None, allow_none: bool = False
                 ) -> float | None:
    """Returns `value` as a finite `float`, or raises.

    Args:
        name: the argument's name, for the message.
        value: a real number (`bool` is refused); infinities and NaN are refused.
        minimum, exclusive_minimum: inclusive / exclusive lower bound, or `None`.
        maximum, exclusive_maximum: inclusive / exclusive upper bound, or `None`.
        allow_none: whether `None` is accepted (and returned).

    Example:

    >>> check_number("momentum", 0.9, minimum=0.0, exclusive_maximum=1.0)
    0.9
    """
    if value is None and allow_none:
        return None
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
    if exclusive_minimum is not None:
        bounds.append(f"> {exclusive_minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    if exclusive_maximum is not None:
        bounds.append(f"< {exclusive_maximum:g}")
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be {expected}; received {value!r} of type {_type_name(value)}."
        )
    value = float(value)
    ok = math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum)
    ok = ok and (exclusive_minimum is None or value > exclusive_minimum)
    ok = ok and (maximum is None or value <= maximum)
    ok = ok and (exclusive_maximum is None or value < exclusive_maximum)
    if not ok:
        raise ValueError(f"`{name}` must be {expected}; received {name}={value!r}.")
    return value


def check_positive(name: str, value) -> float:
    """Returns `value` as a float, or raises unless it is a finite number > 0.

    Example:

    >>> check_positive("temperature", 2)
    2.0
    """
    return check_number(name, value, exclusive_minimum=0.0)


def check_bool(name: str, value) -> bool:
    """Returns `value`, or raises unless it is a `bool`.

    Example:

    >>> check_bool("first_order", True)
    True
    """
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool; received {value!r} of type {_type_name(value)}.")
    return value


def check_choice(name: str, value, choices: Iterable):
    """Returns `value`, or raises unless it is one of `choices`.

    Example:

    >>> check_choice("split", "val", ("train", "val", "test"))
    'val'
    """
    choices = tuple(choices)
    try:
        known = value in choices
    except TypeError:  # an unhashable or incomparable value is simply not a choice
        known = False
    if not known:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {name}={value!r}.")
    return value


def check_range(name: str, value) -> tuple[float, float]:
    """Returns `(low, high)` as floats, or raises unless it is a finite pair, low <= high.

    Example:

    >>> check_range("amplitude_range", (0.1, 5))
    (0.1, 5.0)
    """
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a pair (low, high) of numbers; received {value!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(
            f"`{name}` must be a finite pair (low, high) with low <= high; received {value!r}."
        )
    return low, high


def check_callable(name: str, value, allow_none: bool = False):
    """Returns `value`, or raises unless it is callable (or `None` when allowed).

    Example:

    >>> check_callable("transform", abs) is abs
    True
    """
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"`{name}` must be a callable; received {value!r}.")
    return value
