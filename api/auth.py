"""The auth service: signing up, logging in (throttled), tokens issued and refreshed, passwords
confirmed and changed, sessions ended. It knows nothing of requests: handlers give it plain
values (a name, a password, the client's address and user agent) and the transports
(`api.transports`) carry what it answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from api.errors import ApiError, ErrorCode, unauthorized
from api.hashing import HasherBusy, PasswordHasher, Verdict
from api.metrics import Metrics
from api.names import skeleton_digest
from api.security import (
    TokenClaims,
    TokenError,
    TokenVerifier,
    cost_of,
    digest,
    issue_refresh_token,
    issue_token,
    new_csrf,
    new_family_id,
    parse_refresh_token,
)
from api.settings import Settings
from storage.errors import RefreshReused, StorageUnavailable
from storage.models import AccountData, FamilyInfo, LoginState, NewFamily, Session
from storage.sessions import SessionStore
from storage.throttle import Limits, Throttle, Window
from storage.users import UserStore

# The sessions' events (a reused refresh token) keep the logger they have always had.
logger = logging.getLogger("api.sessions")


@dataclass(frozen=True, slots=True)
class Issued:
    """Tokens issued to a client: its user, the access token and its CSRF value, and the refresh
    token with when it expires (None and 0 without one)."""

    name: str
    token: str
    csrf: str
    refresh_token: str | None = None
    refresh_expires: int = 0


@dataclass(frozen=True, slots=True)
class Client:
    """What the service knows of the client making a call: its address and user agent (both
    decoded at the edge)."""

    address: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A password check that took its places in the login windows."""

    state: LoginState
    verdict: Verdict
    windows: tuple[Window, Window]


def session_of(claims: TokenClaims) -> Session:
    """The storage view of a verified token."""
    return Session(
        name=claims.name, jti=claims.jti, generation=claims.generation, family=claims.family
    )


class AuthService:
    """Accounts, logins and sessions over the user and session stores."""

    def __init__(
        self,
        settings: Settings,
        *,
        users: UserStore,
        sessions: SessionStore,
        throttle: Throttle,
        limits: Limits,
        hasher: PasswordHasher,
        tokens: TokenVerifier,
        secret: str,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._users = users
        self._sessions = sessions
        self._throttle = throttle
        self._limits = limits
        self._hasher = hasher
        self._tokens = tokens
        self._secret = secret
        self._metrics = metrics

    # Tokens.

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; raise a TokenError. Whether its session still lives is
        checked by the store, in the same round trip as the request's own work."""
        return self._tokens.verify(token)

    async def check(self, session: Session) -> None:
        """Raise a SessionInvalid error unless the session still lives."""
        await self._sessions.check(session)

    # Accounts.

    async def signup(self, name: str, password: str, client: Client) -> None:
        """Create a user; signups per client address are capped."""
        await self._throttle.take(self._limits.signup_window(client.address))
        password_hash = await self._hasher.hash(password)
        await self._users.create_user(
            name, password_hash, self._hasher.rounds, skeleton_digest(name)
        )

    async def login(self, name: str, password: str, client: Client, *, refresh: bool) -> Issued:
        """Check the credentials and begin a session; the same 401 whether or not the name
        exists.

        Every attempt is taken from the account's and the address's windows before the password
        is checked (a full window is a 429, even with the right password); a success gives them
        back, clearing the account's count, makes the stored hash anew if it needs it, and
        begins the login's family of tokens.
        """
        attempt = await self._attempt(name, password, client.address)
        state, verdict = attempt.state, attempt.verdict
        if not verdict.ok or state.password_hash is None:
            raise unauthorized(ErrorCode.INVALID_CREDENTIALS, "wrong name or password")
        rehash = None
        if verdict.needs_rehash:
            with contextlib.suppress(HasherBusy):  # too busy now: a later login makes it anew
                new_hash = await self._hasher.hash(password)
                old_cost = cost_of(state.password_hash) or self._hasher.rounds
                rehash = (state.password_hash, new_hash, old_cost, self._hasher.rounds)
        family, csrf, refresh_token = self._plan(name, client, refresh=refresh)
        account, address = attempt.windows
        _, started = await asyncio.gather(
            self._users.finish_login(name, clear=(account,), refund=(address,), rehash=rehash),
            self._sessions.begin(name, state.generation, family),
        )
        if not started:  # the account was deleted or all its sessions ended meanwhile
            raise unauthorized(ErrorCode.INVALID_CREDENTIALS, "wrong name or password")
        return self._issue(name, state.generation, family, csrf, refresh_token)

    async def refresh(self, refresh_token: str, client: Client, *, csrf: str | None) -> Issued:
        """Use up a refresh token for a new access token and refresh token (RFC 9700 4.14.2).

        `csrf`: the X-CSRF-Token sent with a refresh token that came as a cookie (it must be the
        CSRF value issued with its family), None for one that came in the body. A token used
        before ends its whole family: 401 `token_reused`.
        """
        csrf_digest = ""
        if csrf is not None and self._settings.csrf_protection:
            if not csrf:
                raise _csrf_failed()
            csrf_digest = digest(csrf)
        named = parse_refresh_token(refresh_token)
        family, next_csrf, next_token = self._plan(
            named.name, client, refresh=True, family_id=named.family
        )
        try:
            rotation = await self._sessions.rotate(
                named.name, named.family, named.digest, csrf_digest, family
            )
        except RefreshReused:
            self._count("refresh_tokens_reused")
            logger.warning(
                "a used refresh token of %s was presented again: session %s ended",
                named.name,
                named.family,
            )
            raise
        self._count("tokens_refreshed")
        return self._issue(
            named.name,
            rotation.generation,
            family,
            next_csrf,
            next_token,
            refresh_expires=rotation.refresh_expires,
        )

    async def logout(self, tokens: list[str], refresh_token: str | None) -> None:
        """End the session of every genuine token presented, expired ones included (their
        session may outlive them), and of the refresh token; anything else is ignored."""
        for token in dict.fromkeys(tokens):
            try:
                claims = self._tokens.verify(token, allow_expired=True)
            except TokenError:
                continue
            await self._sessions.revoke(session_of(claims), self._revocation_ttl(claims))
            self._count("tokens_revoked")
        if refresh_token:
            with contextlib.suppress(TokenError):  # not a refresh token: nothing to end
                named = parse_refresh_token(refresh_token)
                if await self._sessions.end_family(named.name, named.family, named.digest):
                    self._count("tokens_revoked")

    async def logout_all(self, session: Session) -> None:
        """Invalidate every token of the user issued until now (new logins work)."""
        await self._sessions.end_all(session)
        self._count("sessions_ended")

    async def change_password(
        self, session: Session, password: str, new_password: str, client: Client
    ) -> Issued:
        """Set a new password once the current one is confirmed: every session of the user ends
        and this client begins a new one."""
        attempt = await self._confirm(session, password, client)
        new_hash = await self._hasher.hash(new_password)
        old_cost = cost_of(attempt.state.password_hash or "") or self._hasher.rounds
        family, csrf, _ = self._plan(session.name, client, refresh=False)
        account, address = attempt.windows
        generation, _ = await asyncio.gather(
            self._users.change_password(session, new_hash, (old_cost, self._hasher.rounds), family),
            self._users.finish_login(session.name, clear=(account,), refund=(address,)),
        )
        self._count("sessions_ended")
        return self._issue(session.name, generation, family, csrf, None)

    async def delete_account(self, session: Session, password: str, client: Client) -> None:
        """Delete the account and everything kept about it, once its password is confirmed."""
        attempt = await self._confirm(session, password, client)
        cost = cost_of(attempt.state.password_hash or "") or self._hasher.rounds
        await asyncio.gather(
            self._users.delete_user(session, cost, skeleton_digest(session.name)),
            self._throttle.give_back(refund=(attempt.windows[1],)),
        )
        self._count("sessions_ended")

    async def export(self, session: Session) -> AccountData:
        """Everything kept about the session's user."""
        return await self._users.export(session, int(time.time()))

    # Sessions.

    async def sessions(self, session: Session) -> list[FamilyInfo]:
        """The user's live sessions, newest first."""
        return await self._sessions.families(session)

    async def end_session(self, session: Session, family_id: str) -> None:
        """End one of the user's sessions by id (404 if none is live)."""
        await self._sessions.end_own(session, family_id)
        self._count("tokens_revoked")

    # The steps.

    async def _attempt(self, name: str, password: str, address: str) -> _Attempt:
        """One password check of `name`'s, throttled as a login: take its place in the account's
        and the address's windows (RateLimited if either is full), then check the password. A
        check that never ran (HasherBusy) or failed on a server error gives its places back; a
        wrong password keeps them, counted as a failure."""
        windows = self._limits.login_windows(name, address)
        state = await self._users.begin_login(name, *windows)
        try:
            verdict = await self._hasher.verify(
                password, state.password_hash, stored_costs=state.stored_costs
            )
        except Exception:
            with contextlib.suppress(StorageUnavailable):  # Redis down: nothing to give back
                await self._throttle.give_back(refund=windows)
            raise
        return _Attempt(state, verdict, windows)

    async def _confirm(self, session: Session, password: str, client: Client) -> _Attempt:
        """Check the session's user's current password as a login does (throttled the same way,
        a wrong one counted as a failed login); 403 if it is wrong."""
        await self._sessions.check(session)  # a token that no longer works guesses nothing
        attempt = await self._attempt(session.name, password, client.address)
        if not attempt.verdict.ok or attempt.state.password_hash is None:
            raise ApiError(ErrorCode.WRONG_PASSWORD, "the current password is wrong")
        return attempt

    def _plan(
        self, name: str, client: Client, *, refresh: bool, family_id: str | None = None
    ) -> tuple[NewFamily, str, str | None]:
        """The next state of the family `family_id` (a new one by default), its CSRF value and
        refresh token (if `refresh`), before the store has taken it."""
        family_id = family_id or new_family_id()
        csrf = new_csrf()
        refresh_token, refresh_digest = None, ""
        if refresh:
            refresh_token, named = issue_refresh_token(name, family_id)
            refresh_digest = named.digest
        family = self._sessions.plan(
            family_id,
            user_agent=client.user_agent,
            refresh_digest=refresh_digest,
            csrf_digest=digest(csrf),
        )
        return family, csrf, refresh_token

    def _issue(
        self,
        name: str,
        generation: int,
        family: NewFamily,
        csrf: str,
        refresh_token: str | None,
        *,
        refresh_expires: int = 0,
    ) -> Issued:
        token, _ = issue_token(
            self._secret,
            name,
            generation,
            self._settings.jwt_ttl_seconds,
            family=family.id,
            csrf=csrf,
        )
        return Issued(
            name=name,
            token=token,
            csrf=csrf,
            refresh_token=refresh_token,
            refresh_expires=(refresh_expires or family.refresh_expires) if refresh_token else 0,
        )

    def _revocation_ttl(self, claims: TokenClaims) -> int:
        """How long a logout must remember a token: its remaining life plus the leeway (none
        once that is over), and never longer than a token may live."""
        s = self._settings
        remaining = claims.expires_at - int(time.time()) + s.jwt_leeway_seconds
        return max(0, min(remaining, s.jwt_ttl_seconds + 2 * s.jwt_leeway_seconds))

    def _count(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.inc(name)


def _csrf_failed() -> ApiError:
    return ApiError(
        ErrorCode.CSRF_FAILED,
        "a refresh with the refresh_token cookie needs the X-CSRF-Token header set to the "
        "csrf_token cookie",
    )
