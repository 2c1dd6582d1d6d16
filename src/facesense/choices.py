"""Parsing closed choices (enums) from users, with did-you-mean messages."""

from __future__ import annotations

import difflib
import enum
from typing import Any, TypeVar

from facesense.errors import ConfigError

__all__ = ["did_you_mean", "parse_choice"]

E = TypeVar("E", bound=enum.Enum)


def did_you_mean(value: str, options: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(value).lower(), [o.lower() for o in options], n=1, cutoff=0.6)
    if not close:
        return ""
    original = next(o for o in options if o.lower() == close[0])
    return f" (did you mean {original!r}?)"


def parse_choice(kind: type[E], value: Any, what: str) -> E:
    """``value`` as a member of the enum ``kind`` (by member or value, case-insensitive).

    An enum may accept old names through its ``_missing_`` hook (``EmbedderKind``'s
    ``"fusion"``); those are tried after the members' values.

    Raises:
        ConfigError: ``value`` is not one of the choices; the message lists them and
            suggests the closest.
    """
    if isinstance(value, kind):
        return value
    options = [str(m.value) for m in kind]
    text = str(value.value if isinstance(value, enum.Enum) else value)
    for member in kind:
        if str(member.value).lower() == text.strip().lower():
            return member
    try:
        return kind(text.strip().lower())
    except ValueError:
        pass
    raise ConfigError(f"unknown {what} {text!r}{did_you_mean(text, options)}; choose one of {', '.join(options)}")
