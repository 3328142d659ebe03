"""The JSON responses every handler returns: serialised once, with cheaper encoding of the
headers than Sanic's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from sanic.helpers import has_message_body
from sanic.response.types import HEADER_TRANSLATION_TABLE, HTTPResponse


class JsonResponse(HTTPResponse):
    """A JSON body, already serialised, in Sanic's plain HTTPResponse (its JSONResponse keeps the
    object to serialise it again if changed, which nothing here does, and costs more to make);
    header names and values without control characters are sent as is."""

    __slots__ = ()

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        """The headers encoded for sending, as Sanic encodes them (CR, LF and NUL stripped)."""
        # Sanic strips CR, LF and NUL (response splitting) from every header name and value with
        # a str.translate in a method call of its own, about 0.7 us each; a printable string has
        # none of them to strip, and isprintable() tells so ten times faster.
        headers = self.headers
        if has_message_body(self.status):  # type: ignore[no-untyped-call]
            headers.setdefault("content-type", self.content_type)
        encoded = []
        for name, value in headers.items():
            text = value if type(value) is str else f"{value}"
            if not (name.isprintable() and text.isprintable()):
                name = name.translate(HEADER_TRANSLATION_TABLE)
                text = text.translate(HEADER_TRANSLATION_TABLE)
            encoded.append((name.encode("ascii"), text.encode(errors="surrogateescape")))
        return iter(encoded)


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    """`body` serialised as JSON (as the app's dumps does) in a response."""
    return JsonResponse(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        headers=headers,
        content_type="application/json",
    )
