"""Parsing and validating request bodies and query strings into plain values."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson
from sanic import Request

from api.errors import ApiError, ValidationError

NAME_MAX_CHARS = 64
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 1024


_MARKS = frozenset({"Mn", "Mc", "Me"})


def _name_character(char: str) -> bool:
    """A letter, digit or combining mark (a decomposed letter's accent), "_", "." or "-": never
    "{", "}", ":" or "*", which keys rely on."""
    return char.isalnum() or char in "_.-" or unicodedata.category(char) in _MARKS


def _name_characters() -> str:
    """The name characters of Unicode's Basic Multilingual Plane as the body of a regex character
    class, written as ranges of the characters themselves so that Python and ECMA-262 (the
    dialect of OpenAPI's `pattern`) read it alike: their `\\w` differ (ECMA-262's is ASCII only)."""
    ranges: list[str] = []
    start: int | None = None
    for point in range(0x10001):
        inside = point < 0x10000 and chr(point) != "-" and _name_character(chr(point))
        if inside and start is None:
            start = point
        elif not inside and start is not None:
            first, last = chr(start), chr(point - 1)
            ranges.append(first if first == last else f"{first}-{last}")
            start = None
    return "".join(ranges) + "\\-"  # "-" last and escaped: a literal, not a range


_NAME_CHARACTERS = _name_characters()
# The rule the OpenAPI document states, and the one the server checks, on the name as sent.
NAME_PATTERN = f"^[{_NAME_CHARACTERS}]+$"
_NAME = re.compile(f"[{_NAME_CHARACTERS}]+")
# "last N" asks for the N newest messages; N is ASCII decimal, whitespace around is allowed.
_LAST_N = re.compile(r"\s*last\s+([0-9]+)\s*")
# More digits than this cannot be a real count; clamp instead of parsing a huge number.
_MAX_COUNT_DIGITS = 9


def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 400 invalid_json if it is not JSON, 422 if not an object."""
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("body", "must be a JSON object")
    return data


def _string(data: dict[str, Any], field: str) -> str:
    if field not in data:
        raise ValidationError(field, "field required")
    value = data[field]
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def name(data: dict[str, Any], field: str = "name") -> str:
    """The user name: 1-64 Unicode letters, digits, "_", "." or "-" as sent, NFC-normalised."""
    sent = _string(data, field)
    value = unicodedata.normalize("NFC", sent)
    # The documented rule applies to the name as sent. Normalising may leave the Basic Multilingual
    # Plane (U+FAD0 is U+22844 in NFC) but never the name characters: checked all the same.
    if not (
        len(sent) <= NAME_MAX_CHARS
        and _NAME.fullmatch(sent)
        and all(_name_character(char) for char in value)
    ):
        raise ValidationError(
            field, f"must be 1-{NAME_MAX_CHARS} letters, digits, underscores, dots or hyphens"
        )
    return value


def optional_name(data: dict[str, Any]) -> str | None:
    """The optional `name` of a message body, NFC-normalised; any string is accepted."""
    if "name" not in data:
        return None
    return unicodedata.normalize("NFC", _string(data, "name"))


def password(data: dict[str, Any]) -> str:
    """The password: 8-1024 characters."""
    value = _string(data, "password")
    if not PASSWORD_MIN_CHARS <= len(value) <= PASSWORD_MAX_CHARS:
        raise ValidationError(
            "password", f"must be {PASSWORD_MIN_CHARS}-{PASSWORD_MAX_CHARS} characters"
        )
    return value


def text(data: dict[str, Any], max_chars: int) -> str:
    """The message text: 1 to `max_chars` characters."""
    value = _string(data, "text")
    if not 1 <= len(value) <= max_chars:
        raise ValidationError("text", f"must be 1-{max_chars} characters")
    return value


def last_count(text_value: str, cap: int) -> int | None:
    """N if the text is the query `last N` (clamped to `cap`), else None; 422 for N = 0."""
    match = _LAST_N.fullmatch(text_value)
    if match is None:
        return None
    digits = match.group(1)
    count = cap if len(digits) > _MAX_COUNT_DIGITS else int(digits)
    if count == 0:
        raise ValidationError("text", "last N needs N of at least 1")
    return min(count, cap)


def limit(request: Request, *, default: int, maximum: int) -> int:
    """The `limit` query parameter: an integer from 1 to `maximum`, `default` when absent."""
    values = request.get_args(keep_blank_values=True).getlist("limit")
    if not values:
        return min(default, maximum)
    if len(values) > 1:
        raise ValidationError("limit", "must be given once")
    raw = values[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_COUNT_DIGITS):
        raise ValidationError("limit", f"must be an integer from 1 to {maximum}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise ValidationError("limit", f"must be an integer from 1 to {maximum}")
    return value
