"""Page cursors of `GET /messages/`: opaque, bound to their user, and impossible to forge.

A cursor names the number of the last message of a page in its owner's history (see
storage.messages): `base64url(number, 8 bytes big-endian + 12 bytes of an HMAC-SHA256 of the owner
and the number)`, keyed by a key derived from the JWT secret (the previous secret's still
verifies). Another user's cursor, or one altered, does not verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

_TAG_BYTES = 12
_SEQ_BYTES = 8
CURSOR_CHARS = 27  # base64url of 20 bytes, without padding


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"messages cursor", hashlib.sha256).digest()


class Cursors:
    """Makes and reads the cursors of one service (its secrets)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._keys = [_key(secret) for secret in secrets]

    def make(self, owner: str, number: int) -> str:
        """The cursor after message `number` of `owner`'s history."""
        body = number.to_bytes(_SEQ_BYTES, "big")
        raw = body + self._tag(self._keys[0], owner, body)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def read(self, owner: str, cursor: str) -> int | None:
        """The message number a cursor of `owner`'s names, None if it is not one."""
        if len(cursor) != CURSOR_CHARS or not cursor.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            return None
        body, tag = raw[:_SEQ_BYTES], raw[_SEQ_BYTES:]
        if len(tag) != _TAG_BYTES:
            return None
        if not any(hmac.compare_digest(tag, self._tag(key, owner, body)) for key in self._keys):
            return None
        return int.from_bytes(body, "big")

    @staticmethod
    def _tag(key: bytes, owner: str, body: bytes) -> bytes:
        message = owner.encode("utf-8") + b"\0" + body
        return hmac.new(key, message, hashlib.sha256).digest()[:_TAG_BYTES]
