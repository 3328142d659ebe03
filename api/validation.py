"""Parsing and validating request bodies and query strings into plain values."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import orjson

from api.auth import Client
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode, ValidationError
from api.live import parse_event_id
from api.security import FAMILY_ID
from storage.sessions import USER_AGENT_MAX_CHARS

NAME_MAX_CHARS = 64
NAME_RULE = (
    f"must be 1-{NAME_MAX_CHARS} letters, digits, underscores, dots or hyphens, "
    "with at least one letter or digit"
)
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 1024


_MARKS = frozenset({"Mn", "Mc", "Me"})
# Letters and marks that show nothing (Unicode's Default_Ignorable_Code_Point among them: Hangul
# fillers, variation selectors, the combining grapheme joiner...): a name of them looks empty.
_INVISIBLE = frozenset(
    {
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
        *range(0x1D173, 0x1D17B),
    }
)


def _letter_or_digit(char: str) -> bool:
    """A visible letter or digit: a name needs at least one."""
    return char.isalnum() and ord(char) not in _INVISIBLE


def _name_character(char: str) -> bool:
    """A visible letter, digit or combining mark (a decomposed letter's accent), "_", "." or "-":
    never "{", "}", ":" or "*", which keys rely on."""
    if ord(char) in _INVISIBLE:
        return False
    return char.isalnum() or char in "_.-" or unicodedata.category(char) in _MARKS


def _character_class(member: Callable[[str], bool]) -> str:
    """The characters of Unicode's Basic Multilingual Plane that are `member`s as the body of a
    regex character class, written as ranges of the characters themselves so that Python and
    ECMA-262 (the dialect of OpenAPI's `pattern`) read it alike: their `\\w` differ (ECMA-262's
    is ASCII only)."""
    ranges: list[str] = []
    start: int | None = None
    for point in range(0x10001):
        inside = point < 0x10000 and chr(point) != "-" and member(chr(point))
        if inside and start is None:
            start = point
        elif not inside and start is not None:
            first, last = chr(start), chr(point - 1)
            ranges.append(first if first == last else f"{first}-{last}")
            start = None
    dash = "\\-" if member("-") else ""  # last and escaped: a literal, not a range
    return "".join(ranges) + dash


_NAME_CHARACTERS = _character_class(_name_character)
_LETTERS_AND_DIGITS = _character_class(_letter_or_digit)
# The rule the OpenAPI document states, and the one the server checks, on the name as sent:
# name characters, at least one of them a letter or digit.
NAME_PATTERN = f"^[{_NAME_CHARACTERS}]*[{_LETTERS_AND_DIGITS}][{_NAME_CHARACTERS}]*$"
_NAME = re.compile(NAME_PATTERN[1:-1])
# "last N" asks for the N newest messages; N is ASCII decimal, whitespace around is allowed.
_LAST_N = re.compile(r"\s*last\s+([0-9]+)\s*")
# More significant digits than this cannot be a real count: clamp instead of parsing the number.
_MAX_COUNT_DIGITS = 9


# An obfuscated identifier a proxy may send instead of an address (RFC 7239 6.3).
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]{1,63}")


def header_text(value: str | None, max_chars: int) -> str:
    """A header's value as text fit to store and show: bytes that are not UTF-8 (which Sanic
    keeps as surrogates) become U+FFFD, characters that do not print are dropped, and it is cut
    to `max_chars`."""
    if not value:
        return ""
    value = value[: 4 * max_chars]  # never more work than the cap needs
    if not (value.isascii() and value.isprintable()):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        value = "".join(char for char in value if char.isprintable())
    return value[:max_chars]


def proxy_address(value: str) -> str | None:
    """The client address a proxy header names, normalised (`[::1]` is `::1`), or an
    obfuscated identifier; None for anything else (a header that names no client)."""
    if _OBFUSCATED.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
    except ValueError:
        return None


def client_address(request: ApiRequest, trust_proxy_headers: bool) -> str:
    """The client's address: from proxy headers (Sanic's `remote_addr`) when the settings trust
    them (`Settings.trusts_proxy_headers`) and they name an address, else the peer's address."""
    ip: str = request.ip  # the peer's, from the socket
    if not trust_proxy_headers:
        return ip  # no proxy is trusted: the peer, without parsing any header
    forwarded: str = request.remote_addr
    return (forwarded and proxy_address(forwarded)) or ip


def client(request: ApiRequest) -> Client:
    """The client making the request, as the auth service knows it: its address and its user
    agent as text."""
    trusted = request.services.settings.trusts_proxy_headers
    return Client(
        address=client_address(request, trusted),
        user_agent=header_text(request.headers.get("user-agent"), USER_AGENT_MAX_CHARS),
    )


def json_object(request: ApiRequest) -> dict[str, Any]:
    """The body as a JSON object: 400 invalid_json if it is not JSON, 422 if not an object."""
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is not valid JSON") from None
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
    """The user name: 1-64 visible Unicode letters, digits, "_", "." or "-" as sent, at least one
    a letter or digit; NFC-normalised. Case and look-alikes are kept here (a new name that looks
    like a taken one is refused at signup: api.names); see docs/api.md."""
    sent = _string(data, field)
    value = unicodedata.normalize("NFC", sent)
    # The documented rule applies to the name as sent. Normalising may leave the Basic Multilingual
    # Plane (U+FAD0 is U+22844 in NFC) but never the name characters: checked all the same.
    if not (
        len(sent) <= NAME_MAX_CHARS
        and _NAME.fullmatch(sent)
        and all(_name_character(char) for char in value)
        and any(_letter_or_digit(char) for char in value)
    ):
        raise ValidationError(field, NAME_RULE)
    return value


def recipient(data: dict[str, Any], sender: str) -> str:
    """The message's `to`: a name under the name rules, the sender when absent."""
    return name(data, "to") if "to" in data else sender


IDEMPOTENCY_KEY_MAX_CHARS = 128
_IDEMPOTENCY_KEY = re.compile(rf"[!-~]{{1,{IDEMPOTENCY_KEY_MAX_CHARS}}}")


def idempotency_key(request: ApiRequest) -> str | None:
    """The `Idempotency-Key` header as sent (no Structured Field parsing: quotes are characters),
    None when absent; 422 unless it is 1-128 characters of 0x21-0x7E."""
    values = request.headers.getall("idempotency-key", [])
    if not values:
        return None
    if len(values) > 1:
        raise ValidationError("Idempotency-Key", _IDEMPOTENCY_KEY_RULE)
    return idempotency_key_value(values[0], "Idempotency-Key")


_IDEMPOTENCY_KEY_RULE = (
    f"must be given once, 1-{IDEMPOTENCY_KEY_MAX_CHARS} visible ASCII characters"
)


def idempotency_key_value(value: str, field: str) -> str:
    """An idempotency key as sent (the header's, or a WebSocket frame's `field`); 422 unless it
    is 1-128 characters of 0x21-0x7E."""
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationError(field, _IDEMPOTENCY_KEY_RULE)
    return value


def optional_name(data: dict[str, Any]) -> str | None:
    """The optional `name` of a message body, NFC-normalised; any string is accepted."""
    if "name" not in data:
        return None
    return unicodedata.normalize("NFC", _string(data, "name"))


def password(data: dict[str, Any], field: str = "password") -> str:
    """A password: 8-1024 characters."""
    value = _string(data, field)
    if not PASSWORD_MIN_CHARS <= len(value) <= PASSWORD_MAX_CHARS:
        raise ValidationError(
            field, f"must be {PASSWORD_MIN_CHARS}-{PASSWORD_MAX_CHARS} characters"
        )
    return value


def flag(data: dict[str, Any], field: str) -> bool:
    """An optional boolean field, False when absent."""
    value = data.get(field, False)
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false")
    return value


def optional_string(data: dict[str, Any], field: str) -> str | None:
    """An optional string field, None when absent."""
    return _string(data, field) if field in data else None


def optional_object(request: ApiRequest) -> dict[str, Any]:
    """The body as a JSON object, or an empty one when there is no body."""
    return json_object(request) if request.body else {}


def family_id(value: str) -> str | None:
    """A session id from a path, None unless it has the form of one (22 base64url characters)."""
    return value if FAMILY_ID.fullmatch(value) else None


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
    count = _bounded_int(match.group(1), cap)
    if count == 0:
        raise ValidationError("text", "last N needs N of at least 1")
    return min(count, cap)


def _one_query_value(request: ApiRequest, field: str) -> str | None:
    values = request.get_args(keep_blank_values=True).getlist(field)
    if len(values) > 1:
        raise ValidationError(field, "must be given once")
    return values[0] if values else None


def with_user(request: ApiRequest) -> str | None:
    """The `with` query parameter: a name under the name rules, None when absent."""
    value = _one_query_value(request, "with")
    return None if value is None else name({"with": value}, "with")


def cursor(request: ApiRequest) -> str | None:
    """The `cursor` query parameter as sent, None when absent (its checks are the cursor's)."""
    return _one_query_value(request, "cursor")


def resume_after(request: ApiRequest) -> tuple[int, str] | None:
    """Where a live stream resumes: the event id of `Last-Event-ID` (what EventSource sends on
    reconnect), else of `?after=`; None to start at the newest; 422 for one that is not an event
    id."""
    given = request.headers.getall("last-event-id", [])
    if len(given) > 1:
        raise ValidationError("Last-Event-ID", "must be given once")
    sent: str | None = given[0] if given else None
    field = "Last-Event-ID"
    if not sent:
        sent, field = _one_query_value(request, "after"), "after"
    if not sent:
        return None
    parsed = parse_event_id(sent)
    if parsed is None:
        raise ValidationError(field, "is not an event id of this stream")
    return parsed


def limit(request: ApiRequest, *, default: int, maximum: int) -> int:
    """The `limit` query parameter: an integer from 1 to `maximum`, `default` when absent."""
    values = request.get_args(keep_blank_values=True).getlist("limit")
    if not values:
        return min(default, maximum)
    if len(values) > 1:
        raise ValidationError("limit", "must be given once")
    raw = values[0]
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationError("limit", f"must be an integer from 1 to {maximum}")
    value = _bounded_int(raw, maximum + 1)  # anything above the maximum is refused alike
    if not 1 <= value <= maximum:
        raise ValidationError("limit", f"must be an integer from 1 to {maximum}")
    return value


def _bounded_int(digits: str, cap: int) -> int:
    """The value of ASCII `digits` (leading zeros allowed), or `cap` if it is larger; never
    parses more than a few digits, however many are sent."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_COUNT_DIGITS:
        return cap
    return min(int(significant or "0"), cap)
