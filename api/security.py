"""Pure security functions: password hashing and JWT issue/verify. No request objects here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt
import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "name", "iat", "exp", "jti", "gen")
MAX_TOKEN_BYTES = 4096
# Verified tokens kept, per worker (about 1 KB each); past that the oldest goes.
TOKEN_CACHE_SIZE = 10_000
# Header parameters that point at other keys or demand extensions: never honoured (RFC 8725 3.10).
FORBIDDEN_HEADERS = frozenset({"kid", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"})


class TokenError(Exception):
    """A presented token cannot be used; `code` is the machine-readable reason."""

    code = "invalid_token"


class TokenInvalid(TokenError):
    """Malformed, wrongly signed, or missing a required claim."""


class TokenExpired(TokenError):
    """Correctly signed but past its `exp` (plus leeway)."""

    code = "token_expired"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims of a token."""

    name: str
    jti: str
    issued_at: int
    expires_at: int
    generation: int
    csrf: str | None = None
    not_before: int | None = None
    family: str | None = None  # None for tokens issued before families


def _prehash(password: str, salt: bytes) -> bytes:
    # bcrypt-sha256: bcrypt sees only 44 base64 bytes, so the whole password counts
    # (bcrypt alone ignores everything past 72 bytes) and NUL bytes cannot truncate it.
    digest = hmac.new(salt, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def normalize_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B 5.1.1.2 asks: a password typed as composed or decomposed
    characters (macOS input methods send NFD), or with compatibility forms, is the same one."""
    return unicodedata.normalize("NFKC", password)


def password_forms(password: str) -> tuple[str, ...]:
    """The forms to check a password in: normalised, then as sent if that differs (hashes
    stored before passwords were normalised were made of the password as sent)."""
    normalized = normalize_password(password)
    return (normalized,) if normalized == password else (normalized, password)


def hash_password(password: str, rounds: int) -> str:
    """Return a `$2b$` bcrypt hash of the HMAC-SHA256 of the normalised `password` keyed with
    its own salt."""
    salt = bcrypt.gensalt(rounds)
    return bcrypt.hashpw(_prehash(normalize_password(password), salt), salt).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Return True if `password`, exactly as given, matches `password_hash`; False for any
    malformed hash."""
    stored = password_hash.encode("ascii", "replace")
    salt = stored[:29]  # "$2b$" + cost + "$" + 22 salt characters, as gensalt() made it
    try:
        return bcrypt.checkpw(_prehash(password, salt), stored)
    except ValueError:
        return False


def check_password(password: str, password_hash: str) -> int | None:
    """The index of the first of `password`'s forms that matches `password_hash`, else None.

    A wrong password is checked in every form, whether or not the name exists (the caller
    checks a dummy hash for an unknown one), so refusing takes the same time either way.
    """
    for index, form in enumerate(password_forms(password)):
        if verify_password(form, password_hash):
            return index
    return None


def cost_of(password_hash: str) -> int | None:
    """The bcrypt cost of a `$2b$NN$...` hash, None if it is not one."""
    cost = password_hash[4:6]
    return int(cost) if password_hash.startswith("$2") and cost.isdigit() else None


def issue_token(
    secret: str,
    name: str,
    generation: int,
    ttl_seconds: int,
    *,
    family: str | None = None,
    csrf: str | None = None,
    now: int | None = None,
) -> tuple[str, TokenClaims]:
    """Sign a new HS256 token for `name` with a fresh `jti`, of `family`, carrying `csrf` (a
    fresh CSRF value by default); return both."""
    issued_at = int(time.time()) if now is None else now
    claims = TokenClaims(
        name=name,
        jti=secrets.token_urlsafe(16),
        issued_at=issued_at,
        expires_at=issued_at + ttl_seconds,
        generation=generation,
        csrf=csrf or new_csrf(),
        family=family,
    )
    payload: dict[str, object] = {
        "sub": name,
        "name": name,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.jti,
        "gen": generation,
        "csrf": claims.csrf,
    }
    if family is not None:
        payload["fam"] = family
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def new_csrf() -> str:
    """A new CSRF value (192 random bits) for a token and its `csrf_token` cookie."""
    return secrets.token_urlsafe(24)


def verify_token(
    token: str,
    keys: Sequence[str],
    *,
    leeway: int,
    max_lifetime: int | None = None,
    allow_expired: bool = False,
) -> TokenClaims:
    """Verify an HS256 token against `keys` (current secret first); raise a TokenError.

    Only HS256 is accepted, every claim in REQUIRED_CLAIMS must be there, `nbf` is honoured when
    present, headers that point at other keys (`kid`, `jku`, `x5u`, ...) are refused, and so is
    a token meant to live (`exp` - `iat`) longer than `max_lifetime` plus the leeway. With
    `allow_expired`, a genuine token past its `exp` verifies (for a logout, which may end a
    session its expired token still names).
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenInvalid("the token is too long")
    if not token.isascii():  # a JWT is base64url and dots; other bytes are not one
        raise TokenInvalid("the token is not valid")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenInvalid("the token is not valid") from None
    if header.get("alg") != ALGORITHM or not FORBIDDEN_HEADERS.isdisjoint(header):
        raise TokenInvalid("the token is not valid")
    for index, key in enumerate(keys):
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                leeway=leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": not allow_expired},
            )
        except jwt.InvalidSignatureError:
            if index + 1 < len(keys):
                continue  # maybe signed with the previous secret
            raise TokenInvalid("the token is not valid") from None
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.InvalidTokenError:
            raise TokenInvalid("the token is not valid") from None
        claims = _claims(payload)
        lifetime = claims.expires_at - claims.issued_at
        if max_lifetime is not None and lifetime > max_lifetime + leeway:
            raise TokenInvalid("the token's lifetime is longer than tokens may live")
        return claims
    raise TokenInvalid("no key to verify the token with")


def _claims(payload: dict[str, object]) -> TokenClaims:
    name, jti, csrf = payload["name"], payload["jti"], payload.get("csrf")
    family = payload.get("fam")
    if not (isinstance(name, str) and name and name == payload["sub"]):
        raise TokenInvalid("the token's subject is not valid")
    if not (isinstance(jti, str) and jti):
        raise TokenInvalid("the token's id is not valid")
    if family is not None and not (isinstance(family, str) and FAMILY_ID.fullmatch(family)):
        raise TokenInvalid("the token's family is not valid")
    return TokenClaims(
        name=name,
        jti=jti,
        issued_at=_int_claim(payload, "iat"),
        expires_at=_int_claim(payload, "exp"),
        generation=_int_claim(payload, "gen"),
        csrf=csrf if isinstance(csrf, str) and csrf else None,
        not_before=_int_claim(payload, "nbf") if "nbf" in payload else None,
        family=family,
    )


def _int_claim(payload: dict[str, object], key: str) -> int:
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenInvalid(f"the token's {key} claim is not an integer")
    return value


# A family id: 128 random bits, base64url. A refresh token: `<name>.<family id>.<secret>`, the
# name base64url-encoded (it routes the token to its user's keys) and a 256-bit random secret,
# of which Redis keeps only the SHA-256.
FAMILY_ID_BYTES = 16
REFRESH_SECRET_BYTES = 32
MAX_REFRESH_TOKEN_CHARS = 512
FAMILY_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_REFRESH_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """What a refresh token names: its user and family, and the digest of its secret."""

    name: str
    family: str
    digest: str


def new_family_id() -> str:
    """A new family id (128 random bits)."""
    return secrets.token_urlsafe(FAMILY_ID_BYTES)


def digest(value: str) -> str:
    """The SHA-256 of `value`, hex: what Redis keeps of a refresh token's secret or a CSRF
    value (comparing digests leaks nothing of the values)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def issue_refresh_token(name: str, family: str) -> tuple[str, RefreshToken]:
    """A new opaque refresh token of `family`, and what it names."""
    secret = secrets.token_urlsafe(REFRESH_SECRET_BYTES)
    encoded = base64.urlsafe_b64encode(name.encode()).decode("ascii").rstrip("=")
    return f"{encoded}.{family}.{secret}", RefreshToken(name, family, digest(secret))


def parse_refresh_token(token: str) -> RefreshToken:
    """What a refresh token names; TokenInvalid if it is not one (checked before any lookup)."""
    parts = token.split(".") if len(token) <= MAX_REFRESH_TOKEN_CHARS else []
    if len(parts) != 3:
        raise TokenInvalid("the refresh token is not valid")
    encoded, family, secret = parts
    if not _BASE64URL.fullmatch(encoded):
        raise TokenInvalid("the refresh token is not valid")
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except ValueError:  # UnicodeDecodeError and binascii.Error among them
        raise TokenInvalid("the refresh token is not valid") from None
    if not (
        name
        and name.isprintable()
        and not set(name) & set("{}:*")  # never a key's hash tag or separator
        and FAMILY_ID.fullmatch(family)
        and _REFRESH_SECRET.fullmatch(secret)
    ):
        raise TokenInvalid("the refresh token is not valid")
    return RefreshToken(name, family, digest(secret))


class TokenVerifier:
    """verify_token with a bounded cache of verified tokens, keyed by the exact token string.

    A token's signature and claims cannot change, so each is verified once; the time-bound claims
    (`exp`, `nbf`) are checked again on every use, and revocation and log-out-everywhere are
    checked by the store on every request as before. Only tokens that verified are cached.
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        leeway: int,
        max_lifetime: int | None = None,
        size: int = TOKEN_CACHE_SIZE,
    ) -> None:
        self._keys = tuple(keys)
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._size = size
        self._verified: dict[str, TokenClaims] = {}

    def verify(self, token: str, *, allow_expired: bool = False) -> TokenClaims:
        """The token's claims if it is valid now (or, with `allow_expired`, was); raise
        TokenExpired or TokenInvalid."""
        claims = self._verified.get(token)
        if claims is None:
            claims = verify_token(
                token,
                self._keys,
                leeway=self._leeway,
                max_lifetime=self._max_lifetime,
                allow_expired=allow_expired,
            )
            if len(self._verified) >= self._size:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = claims
            return claims
        now = time.time()
        if now > claims.expires_at + self._leeway and not allow_expired:
            del self._verified[token]
            raise TokenExpired("the token has expired")
        if claims.not_before is not None and now < claims.not_before - self._leeway:
            raise TokenInvalid("the token is not valid yet")
        return claims
