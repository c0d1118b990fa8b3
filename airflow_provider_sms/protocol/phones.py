"""Mainland China mobile numbers: normalise, validate, mask (GATEWAYS.md section 3)."""

from __future__ import annotations

import re

_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)  # ASCII digits only: what the gateways take
_SEPARATORS = re.compile(r"[\s\-().]")
_PREFIXES = ("+86", "0086", "86")
# A number inside free text (an error message): standing on its own, not part of a longer id.
_IN_TEXT = re.compile(r"(?<![0-9A-Za-z*])(?:\+86|0086|86)?1[3-9]\d{9}(?![0-9A-Za-z])", re.ASCII)


class InvalidPhoneNumber(ValueError):
    """A number that no mainland carrier would accept; ``reason`` says why, without the number."""

    def __init__(self, masked: str, reason: str) -> None:
        super().__init__(f"invalid phone number {masked}: {reason}")
        self.masked = masked
        self.reason = reason


def mask(number: object) -> str:
    """Mask a number for logs: ``13812348000`` -> ``138****8000``. Shorter input (a landline, a typo)
    shows only its last two characters, so that at least half of it is always hidden."""
    text = str(number)
    if len(text) >= 11:
        return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}"
    if len(text) >= 4:
        return f"{'*' * (len(text) - 2)}{text[-2:]}"
    return "*" * len(text)


def mask_in_text(text: str) -> str:
    """Mask every mobile number written out in ``text`` (with or without +86/0086/86): for messages
    that may quote what a user passed, such as a template's error."""
    return _IN_TEXT.sub(lambda hit: mask(hit.group()), text)


def normalize(raw: object) -> str:
    """Return the 11-digit form of ``raw`` or raise :class:`InvalidPhoneNumber`.

    Accepts ``+86``/``0086``/``86`` prefixes, spaces, dashes, dots and parentheses, and ints.
    """
    if type(raw) is str and _MOBILE.fullmatch(raw):  # already normal: most rows of a big file
        return raw
    if raw is None or isinstance(raw, bool):
        raise InvalidPhoneNumber("<none>", "empty number")
    if isinstance(raw, float):
        # A float has already lost the number's identity (e.g. 1.38e10); refuse rather than guess.
        raise InvalidPhoneNumber(mask(raw), "numbers must be strings or ints, not floats")
    text = _SEPARATORS.sub("", str(raw))
    if not text:
        raise InvalidPhoneNumber("<empty>", "empty number")
    for prefix in _PREFIXES:
        if text.startswith(prefix) and len(text) == len(prefix) + 11:
            text = text[len(prefix) :]
            break
    if not text.isdigit():
        raise InvalidPhoneNumber(mask(text), "contains characters other than digits")
    if len(text) != 11:
        raise InvalidPhoneNumber(mask(text), f"{len(text)} digits, a mainland mobile number has 11")
    if not _MOBILE.fullmatch(text):
        raise InvalidPhoneNumber(mask(text), "not a mainland mobile number (must match 1[3-9]xxxxxxxxx)")
    return text


def is_valid(raw: object) -> bool:
    """True when ``raw`` normalises to a mainland mobile number."""
    try:
        normalize(raw)
    except InvalidPhoneNumber:
        return False
    return True


def split_numbers(value: str | int | list[str] | list[int] | tuple[str, ...] | None) -> list[object]:
    """Accept one number, a comma/semicolon/newline separated string, or a sequence of numbers."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, int):
        return [value]
    return [part for part in re.split(r"[,;\n]", value) if part.strip()]
