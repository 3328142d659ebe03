"""Sessions: checking that a token is still valid, revoking it, and families of tokens.

A login begins a *family*: every access token it issues carries the family's id, and so does its
refresh token, if it asked for one. A family lives in `family:{<name>}:<id>` until its last token
expires; ending it (logout, `DELETE /sessions/{id}/`, a reused refresh token) ends every token
of it at once, since every authenticated request checks that its family exists in the same
round trip as its own work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage import keys, scripts
from storage.connection import Client, Monitor
from storage.errors import (
    NoSuchFamily,
    RefreshCsrfFailed,
    RefreshInvalid,
    RefreshReused,
    SessionEnded,
    SessionRevoked,
    UnknownUser,
)
from storage.models import FamilyInfo, NewFamily, Rotation, Session
from storage.pipeline import AutoPipeline
from storage.store import Script, Store, translate_errors

# A family keeps the digests of its used refresh tokens (to recognise one presented again) for
# the refresh token lifetime, and at most this many of them.
USED_TOKENS_KEPT = 1000
# Denylist entries kept per user, at most (past that, those that expire first go: their tokens'
# families have ended as well).
DENYLIST_KEPT = 1000
# Live sessions kept per user unless the settings say otherwise (SESSIONS_MAX_PER_USER).
DEFAULT_MAX_SESSIONS = 100
USER_AGENT_MAX_CHARS = 200

_ERRORS = {
    scripts.SESSION_REVOKED: SessionRevoked,
    scripts.SESSION_ENDED: SessionEnded,
    scripts.SESSION_UNKNOWN_USER: UnknownUser,
}
_REFRESH_ERRORS = {
    scripts.REFRESH_INVALID: RefreshInvalid,
    scripts.REFRESH_REUSED: RefreshReused,
    scripts.REFRESH_CSRF_FAILED: RefreshCsrfFailed,
}


def session_keys(session: Session, *extra: str) -> list[str]:
    """KEYS for a session script: the user hash, the token's session key (its family, or for a
    token of before families its denylist entry), then `extra`."""
    if session.family is not None:
        token_key = keys.family(session.name, session.family)
    else:
        token_key = keys.revoked(session.name, session.jti)
    return [keys.user(session.name), token_key, *extra]


def session_args(session: Session, *extra: Any) -> list[Any]:
    """ARGV for a session script: the generation, then `marker` for a token of before families
    or else the token's denylist entry, then `extra`."""
    if session.family is None:
        return [session.generation, scripts.SESSION_MARKER, *extra]
    return [session.generation, keys.revoked(session.name, session.jti), *extra]


def raise_for_status(reply: list[Any]) -> list[Any]:
    """Raise the SessionInvalid subclass a session script's status names; return its reply
    (whose status may be the action's own: a message's refusal, say)."""
    error = _ERRORS.get(int(reply[0]))
    if error is not None:
        raise error(int(reply[0]))
    return reply


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long things live, in seconds: a refresh token from its issue, a family from its
    login, and an access token (with the leeway its expiry is checked with)."""

    refresh: int
    family: int
    access: int


# The settings' defaults: 30 days, 90 days, 3 hours and 10 seconds.
DEFAULT_LIFETIMES = Lifetimes(refresh=30 * 86400, family=90 * 86400, access=3 * 3600 + 10)


def utc_iso(seconds: int) -> str:
    """A time in seconds since the epoch as ISO 8601 UTC: `2026-11-28T13:45:01Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def family_args(family: NewFamily) -> list[Any]:
    """The id, key expiry, time and fields of a new family, as the family scripts take them."""
    return [
        family.id,
        family.expires_at,
        family.now,
        utc_iso(family.now),
        family.user_agent,
        family.refresh_digest,
        family.refresh_expires,
        family.deadline,
        family.csrf_digest,
    ]


def families_of(rows: list[Any]) -> list[FamilyInfo]:
    """The FamilyInfo of the rows the family scripts list, newest first."""
    found = [FamilyInfo(str(i), str(c), str(u), str(a)) for i, c, u, a in rows]
    return sorted(found, key=lambda family: family.created_at, reverse=True)


class SessionStore(Store):
    """Families `family:{<name>}:<id>`, their index `families:{<name>}`, their used refresh
    tokens, the per-user session generation, and the revocation markers of older tokens."""

    _check = Script(scripts.CHECK_SESSION)
    _end_all = Script(scripts.END_SESSIONS)
    _start = Script(scripts.START_FAMILY)
    _refresh = Script(scripts.REFRESH)
    _end_family = Script(scripts.END_FAMILY)
    _end_own = Script(scripts.END_OWN_FAMILY)
    _list = Script(scripts.LIST_FAMILIES)
    _logout = Script(scripts.LOGOUT)

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
        *,
        lifetimes: Lifetimes | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifetimes = lifetimes or DEFAULT_LIFETIMES
        self.max_sessions = max_sessions
        self.clock = clock  # seconds since the epoch: what "now" is for sessions
        super().__init__(client, monitor, pipeline)

    def plan(
        self,
        family_id: str,
        *,
        user_agent: str,
        refresh_digest: str,
        csrf_digest: str,
        now: int | None = None,
    ) -> NewFamily:
        """A family about to begin now, with a refresh token if `refresh_digest` is set."""
        now = int(self.clock()) if now is None else now
        life = self.lifetimes
        refresh_expires = now + life.refresh if refresh_digest else 0
        return NewFamily(
            id=family_id,
            user_agent=user_agent[:USER_AGENT_MAX_CHARS],
            refresh_digest=refresh_digest,
            csrf_digest=csrf_digest,
            now=now,
            refresh_expires=refresh_expires,
            deadline=now + life.family,
            expires_at=max(refresh_expires, now + life.access),
        )

    @translate_errors
    async def check(self, session: Session) -> None:
        """Raise a SessionInvalid subclass unless the session is still valid."""
        raise_for_status(await self._check(keys=session_keys(session), args=session_args(session)))

    @translate_errors
    async def begin(self, name: str, generation: int, family: NewFamily) -> bool:
        """Begin a login's family, ending the user's sessions that expire first past
        `max_sessions`; False if the account changed since the login read it."""
        started = await self._start(
            keys=[keys.user(name), keys.family(name, family.id), keys.families(name)],
            args=[
                family.id,
                generation,
                *family_args(family)[1:],
                keys.family_prefix(name),
                keys.used_prefix(name),
                self.max_sessions,
                int(self.clock() * 1000) % 1000,
            ],
        )
        return bool(started)

    @translate_errors
    async def rotate(
        self, name: str, family_id: str, presented: str, csrf_digest: str, next_: NewFamily
    ) -> Rotation:
        """Use up the refresh token whose secret has digest `presented` for the next one of
        `next_`; raise RefreshInvalid, RefreshReused (the family is ended) or RefreshCsrfFailed.

        `csrf_digest` is the digest of the X-CSRF-Token sent with a cookie, '' for a token sent
        in the body.
        """
        reply = await self._refresh(
            keys=[
                keys.user(name),
                keys.family(name, family_id),
                keys.used_refresh_tokens(name, family_id),
                keys.families(name),
            ],
            args=[
                presented,
                csrf_digest,
                next_.now,
                family_id,
                next_.refresh_digest,
                next_.csrf_digest,
                self.lifetimes.refresh,
                self.lifetimes.access,
                utc_iso(next_.now),
                USED_TOKENS_KEPT,
            ],
        )
        status = int(reply[0])
        if status != scripts.REFRESH_OK:
            raise _REFRESH_ERRORS[status]()
        return Rotation(generation=int(reply[1]), refresh_expires=int(reply[2]))

    @translate_errors
    async def end_family(self, name: str, family_id: str, presented: str = "") -> bool:
        """End a family: any with `presented` empty (its access token was verified), else only
        if `presented` is the digest of its current or a used refresh token. True if it ended."""
        ended = await self._end_family(
            keys=[
                keys.family(name, family_id),
                keys.used_refresh_tokens(name, family_id),
                keys.families(name),
            ],
            args=[family_id, presented],
        )
        return bool(ended)

    @translate_errors
    async def end_own(self, session: Session, family_id: str) -> None:
        """End one of the session user's families by id; raise NoSuchFamily if none is live."""
        name = session.name
        reply = raise_for_status(
            await self._end_own(
                keys=session_keys(
                    session,
                    keys.family(name, family_id),
                    keys.used_refresh_tokens(name, family_id),
                    keys.families(name),
                ),
                args=session_args(session, family_id),
            )
        )
        if not int(reply[1]):
            raise NoSuchFamily(family_id)

    @translate_errors
    async def families(self, session: Session) -> list[FamilyInfo]:
        """The session user's live families, newest first."""
        name = session.name
        reply = raise_for_status(
            await self._list(
                keys=session_keys(session, keys.families(name)),
                args=session_args(
                    session, int(self.clock()), keys.family_prefix(name), self.max_sessions
                ),
            )
        )
        return families_of(reply[1])

    @translate_errors
    async def revoke(self, session: Session, ttl_seconds: int, now: int | None = None) -> bool:
        """Log a token out: end its family, if it has one, and put its id on the denylist for
        `ttl_seconds` (its remaining life plus leeway; none when that is over), in one step. True
        if a live family ended."""
        name = session.name
        now = int(self.clock()) if now is None else now
        denylist = [keys.revoked(name, session.jti), keys.denylist(name)]
        family = session.family or ""
        family_keys = (
            [keys.family(name, family), keys.used_refresh_tokens(name, family), keys.families(name)]
            if family
            else []
        )
        ended = await self._logout(
            keys=[*denylist, *family_keys],
            args=[
                session.jti,
                ttl_seconds,
                now,
                keys.revoked_prefix(name),
                DENYLIST_KEPT,
                family,
            ],
        )
        return bool(ended)

    @translate_errors
    async def end_all(self, session: Session) -> None:
        """If the session is valid, invalidate every token of its user issued until now and end
        every family."""
        name = session.name
        raise_for_status(
            await self._end_all(
                keys=session_keys(session, keys.families(name)),
                args=session_args(session, keys.family_prefix(name), keys.used_prefix(name)),
            )
        )
