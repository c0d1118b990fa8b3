"""Mainland China mobile numbers: normalise, validate, mask."""

from __future__ import annotations

import re

from airflow_provider_sms.errors import InvalidInputError

_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)  # ASCII digits only: what the gateways take
_SEPARATORS = re.compile(r"[\s\-()]")
_PREFIXES = ("+86", "0086", "86")
# Where separators may stand: after the country prefix (itself maybe in parentheses), and between the
# 3-4-4 groups of the number. Anywhere else they would join fragments into a number nobody wrote.
_GAP = r"(?:\s*-\s*|\s+)"
_LAYOUT = re.compile(
    rf"(?:(?:\+86|0086|86|\((?:\+86|0086|86)\)){_GAP}?)?(?:[0-9]{{11}}|[0-9]{{3}}{_GAP}[0-9]{{4}}{_GAP}[0-9]{{4}})"
)
_FLOAT_EXPORT = re.compile(r"([0-9]+)\.0+")  # 13800138000.0: a number column written as floats
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

    Accepts ints, an optional ``+86``/``0086``/``86`` prefix (also in parentheses), and spaces or
    dashes only where people write them: after the prefix and between the 3-4-4 groups
    (``+86 138-0013-8000``, ``(0086)13800138000``, ``138 0013 8000``). A separator anywhere else is
    refused rather than removed: ``1380013800 0`` is a 10-digit typo and a stray digit, not a number.
    A trailing ``.0`` (a number column exported as floats by Excel or pandas) is dropped, and the rest
    judged as written: ``1380013800.0`` has 10 digits. ``.`` is not a separator.
    """
    if type(raw) is str and _MOBILE.fullmatch(raw):  # already normal: most rows of a big file
        return raw
    if raw is None or isinstance(raw, bool):
        raise InvalidPhoneNumber("<none>", "empty number")
    if isinstance(raw, float):
        # A float has already lost the number's identity (e.g. 1.38e10); refuse rather than guess.
        raise InvalidPhoneNumber(mask(raw), "numbers must be strings or ints, not floats")
    written = str(raw).strip()
    if not written:
        raise InvalidPhoneNumber("<empty>", "empty number")
    if written[-1] == "0" and (exported := _FLOAT_EXPORT.fullmatch(written)):
        written = exported.group(1)
    text = _SEPARATORS.sub("", written)
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
    if len(written) != len(text) and not _LAYOUT.fullmatch(written):
        raise InvalidPhoneNumber(
            mask(text),
            "spaces, dashes or parentheses where a number is not split "
            "(write its 11 digits together or in 3-4-4 groups, after an optional +86)",
        )
    return text


def split_numbers(value: str | int | list[str] | list[int] | tuple[str, ...] | None) -> list[object]:
    """Accept one number, a comma/semicolon/newline separated string, or a sequence of numbers."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, int):
        return [value]
    return [part for part in re.split(r"[,;\n]", value) if part.strip()]


def normalize_all(mobiles: str | int | list[str] | list[int] | tuple[str, ...] | None) -> list[str]:
    """Normalise and dedupe for a single call; any invalid number refuses the whole call."""
    raw = split_numbers(mobiles)
    if not raw:
        raise InvalidInputError("no phone number given")
    good: dict[str, None] = {}
    bad: list[str] = []
    for value in raw:
        try:
            good[normalize(value)] = None
        except InvalidPhoneNumber as exc:
            bad.append(f"{exc.masked} ({exc.reason})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InvalidInputError(f"{len(bad)} invalid phone number(s): {shown}")
    return list(good)
