"""Sessions: checking that a token is still valid, and revoking it."""

from __future__ import annotations

from typing import Any

from storage import keys, scripts
from storage.connection import bounded
from storage.errors import SessionEnded, SessionRevoked, UnknownUser
from storage.models import Session
from storage.store import Store, translate_errors

_ERRORS = {
    scripts.SESSION_REVOKED: SessionRevoked,
    scripts.SESSION_ENDED: SessionEnded,
    scripts.SESSION_UNKNOWN_USER: UnknownUser,
}


def session_keys(session: Session, *extra: str) -> list[str]:
    """KEYS for a session script: the user hash, the revocation marker, then `extra`."""
    return [keys.user(session.name), keys.revoked(session.name, session.jti), *extra]


def raise_for_status(reply: list[Any]) -> list[Any]:
    """Raise the SessionInvalid subclass a session script's status names; return its reply."""
    status = int(reply[0])
    if status != scripts.SESSION_OK:
        raise _ERRORS[status](status)
    return reply


class SessionStore(Store):
    """Revocation markers `revoked:{<name>}:<jti>` and the per-user session generation."""

    def _setup(self) -> None:
        self._check = self._script(scripts.CHECK_SESSION)
        self._end_all = self._script(scripts.END_SESSIONS)

    @translate_errors
    async def check(self, session: Session) -> None:
        """Raise a SessionInvalid subclass unless the session is still valid."""
        raise_for_status(await self._check(keys=session_keys(session), args=[session.generation]))

    @translate_errors
    async def revoke(self, session: Session, ttl_seconds: int) -> None:
        """Mark the session's token revoked for `ttl_seconds` (its remaining life plus leeway)."""
        if ttl_seconds > 0:
            await bounded(
                self._client.set(keys.revoked(session.name, session.jti), "1", ex=ttl_seconds)
            )

    @translate_errors
    async def end_all(self, session: Session) -> None:
        """If the session is valid, invalidate every token of its user issued until now."""
        raise_for_status(await self._end_all(keys=session_keys(session), args=[session.generation]))
