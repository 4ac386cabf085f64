"""Argument checks of the public functions: one message shape per kind of bad value, naming the argument."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def is_int(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int | None = 1, high: int | None = None, *, what: str = "",
              optional: bool = False) -> int | None:  # fmt: skip
    """`value` as an int in ``low..high`` (None: no bound on that side); ValueError naming `name` otherwise.
    `what` adds why the range is what it is; ``optional=True`` lets None through."""
    if optional and value is None:
        return None
    if is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    if high is not None:
        want = f"an int in {low}..{high}"
    elif low is None:
        want = "an int"
    else:
        want = "a positive integer" if low == 1 else f"an int >= {low}"
    why = f" ({what})" if what else ""
    raise ValueError(f"{name} must be {want}{' or None' if optional else ''}{why}, got {value!r}")


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> float:
    """`value` as a float, at least `low` (more than `low` with ``strict=True``); ValueError otherwise."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and (value > low if strict else value >= low):
        return float(value)
    want = ("a positive number" if low == 0 else f"a number > {low}") if strict else f"a number >= {low:g}"
    raise ValueError(f"{name} must be {want}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`; ValueError listing them otherwise."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use one of: {', '.join(choices)}")
    return value
