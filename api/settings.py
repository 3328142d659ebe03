"""Service configuration: a frozen dataclass read from the environment and a `.env` file."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from redis.connection import parse_url

from storage.connection import MEMORY_URL

MIN_SECRET_BYTES = 32

CookieSecure = Literal["auto", "true", "false"]
SameSite = Literal["Lax", "Strict", "None"]
LogFormat = Literal["text", "json"]
COOKIE_SECURE_VALUES: tuple[str, ...] = get_args(CookieSecure)
SAMESITE_VALUES: tuple[str, ...] = get_args(SameSite)
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service can be configured with; secrets are kept out of repr."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_cluster: bool = False
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_ttl_seconds: int = 10800
    jwt_leeway_seconds: int = 10
    refresh_ttl_seconds: int = 2592000
    refresh_max_age_seconds: int = 7776000
    bcrypt_rounds: int = 12
    message_history_limit: int = 1000
    message_max_chars: int = 4096
    cookie_secure: CookieSecure = "auto"
    cookie_samesite: SameSite = "Lax"
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    access_log: bool = True
    metrics: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    metrics_dir: str | None = None
    # Hardening.
    jwt_secret_previous: str | None = field(default=None, repr=False)
    csrf_protection: bool = True
    sessions_max_per_user: int = 100
    login_max_failures: int = 10
    login_window_seconds: int = 900
    login_addr_max_failures: int = 100
    signup_addr_max: int = 100
    forwarded_secret: str | None = field(default=None, repr=False)
    proxies_count: int = 0
    request_max_size: int = 65536
    request_timeout: float = 10.0
    response_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    graceful_shutdown_timeout: float = 10.0

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "PORT", "must be between 1 and 65535")
        _check(self.workers >= 1, "WORKERS", "must be at least 1")
        _check(self.jwt_ttl_seconds >= 60, "JWT_TTL_SECONDS", "must be at least 60")
        _check(0 <= self.jwt_leeway_seconds <= 30, "JWT_LEEWAY_SECONDS", "must be 0 to 30")
        _check(self.refresh_ttl_seconds >= 60, "REFRESH_TTL_SECONDS", "must be at least 60")
        _check(
            self.refresh_max_age_seconds >= self.refresh_ttl_seconds,
            "REFRESH_MAX_AGE_SECONDS",
            "must be at least REFRESH_TTL_SECONDS",
        )
        _check(4 <= self.bcrypt_rounds <= 31, "BCRYPT_ROUNDS", "must be between 4 and 31")
        _check(self.message_history_limit >= 1, "MESSAGE_HISTORY_LIMIT", "must be at least 1")
        _check(self.message_max_chars >= 1, "MESSAGE_MAX_CHARS", "must be at least 1")
        _check_one_of("COOKIE_SECURE", self.cookie_secure, COOKIE_SECURE_VALUES)
        _check_one_of("COOKIE_SAMESITE", self.cookie_samesite, SAMESITE_VALUES)
        _check(
            self.cookie_samesite != "None" or self.cookie_secure == "true",
            "COOKIE_SAMESITE",
            "None requires COOKIE_SECURE=true (browsers drop insecure SameSite=None cookies)",
        )
        _check_one_of("LOG_LEVEL", self.log_level, LOG_LEVELS)
        _check_one_of("LOG_FORMAT", self.log_format, LOG_FORMATS)
        _check(
            self.metrics_token is None or len(self.metrics_token) >= 16,
            "METRICS_TOKEN",
            "must be at least 16 characters",
        )
        for name, secret in (
            ("JWT_SECRET", self.jwt_secret),
            ("JWT_SECRET_PREVIOUS", self.jwt_secret_previous),
        ):
            if secret is not None:
                _check_secret(name, secret)
        for name, value in (
            ("LOGIN_MAX_FAILURES", self.login_max_failures),
            ("LOGIN_WINDOW_SECONDS", self.login_window_seconds),
            ("LOGIN_ADDR_MAX_FAILURES", self.login_addr_max_failures),
            ("SIGNUP_ADDR_MAX", self.signup_addr_max),
            ("SESSIONS_MAX_PER_USER", self.sessions_max_per_user),
            ("REQUEST_MAX_SIZE", self.request_max_size),
        ):
            _check(value >= 1, name, "must be at least 1")
        _check(self.proxies_count >= 0, "PROXIES_COUNT", "must be 0 or more")
        if self.redis_url is not None and self.redis_url != MEMORY_URL:
            _check_redis_url(self.redis_url)
        _check(
            not self.redis_cluster or (self.redis_url or MEMORY_URL) != MEMORY_URL,
            "REDIS_CLUSTER",
            "needs REDIS_URL naming a node of the cluster",
        )
        for name, seconds in (
            ("REQUEST_TIMEOUT", self.request_timeout),
            ("RESPONSE_TIMEOUT", self.response_timeout),
            ("KEEP_ALIVE_TIMEOUT", self.keep_alive_timeout),
            ("GRACEFUL_SHUTDOWN_TIMEOUT", self.graceful_shutdown_timeout),
        ):
            _check(seconds > 0, name, "must be more than 0 seconds")

    @property
    def trusts_proxy_headers(self) -> bool:
        """True when FORWARDED_SECRET or PROXIES_COUNT says a proxy's headers name the client."""
        return bool(self.forwarded_secret or self.proxies_count)

    @property
    def uses_memory_store(self) -> bool:
        """True when the embedded in-process store is used instead of a Redis server."""
        return self.redis_url == MEMORY_URL

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def with_generated_secret(self) -> Settings:
        """Return a copy with a random JWT secret when none is configured."""
        if self.jwt_secret is not None:
            return self
        return self.replace(jwt_secret=secrets.token_urlsafe(48))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Build settings from `environ` (default `os.environ`) over the `.env` file, if any."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        for name in SECRET_SETTINGS:
            _read_secret_file(values, name)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = values.get(f.name.upper())
            if raw is None or raw.strip() == "":
                continue
            kwargs[f.name] = CASTERS[f.name](f.name.upper(), raw.strip())
        return cls(**kwargs)


# Settings that may hold a secret, and so may be read from the file named by NAME_FILE.
SECRET_SETTINGS = (
    "JWT_SECRET",
    "JWT_SECRET_PREVIOUS",
    "REDIS_URL",
    "FORWARDED_SECRET",
    "METRICS_TOKEN",
)


def _read_secret_file(values: dict[str, str], name: str) -> None:
    path = values.get(f"{name}_FILE", "").strip()
    if not path:
        return
    _check(not values.get(name, "").strip(), f"{name}_FILE", f"and {name} are both set: set one")
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{name}_FILE {path} cannot be read: {exc.strerror}") from None
    value = content.removesuffix("\n").removesuffix("\r")
    # An empty file would leave the setting unset (an open /metrics, a random JWT secret): a
    # mistake to stop at, not a choice.
    _check(value.strip() != "", f"{name}_FILE", f"{path} is empty")
    values[name] = value


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines, skipping blanks and comments and stripping matching quotes."""
    result: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[key.strip()] = value
    return result


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"{name} {message}")


def _check_one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    words = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
    _check(value in allowed, name, f"must be {words}")


# Values that are placeholders, not secrets: refused even when long enough.
PLACEHOLDER_SECRET = "change-me-to-a-random-string-of-at-least-32-bytes"  # noqa: S105
_PLACEHOLDER_WORDS = ("changethis", "changeme", "change-me", "change_me", "change-this", "secret")
_MIN_DISTINCT_CHARS = 8


def _check_secret(name: str, secret: str) -> None:
    _check(
        len(secret.encode()) >= MIN_SECRET_BYTES,
        name,
        f"must be at least {MIN_SECRET_BYTES} bytes; generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
    )
    folded = secret.lower()
    _check(
        secret != PLACEHOLDER_SECRET
        and not any(folded.startswith(word) for word in _PLACEHOLDER_WORDS)
        and len(set(secret)) >= _MIN_DISTINCT_CHARS,
        name,
        "looks like a placeholder, not a random secret; generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
    )


REDIS_URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/socket "
    "or memory://"
)


def _check_redis_url(url: str) -> None:
    # The URL may hold a password: no message repeats it.
    scheme = url.partition("://")[0] if "://" in url else ""
    _check(
        scheme in ("redis", "rediss", "unix"),
        "REDIS_URL",
        f"must be a URL of one of the forms {REDIS_URL_FORMS}; "
        + (f"{scheme}:// is not one" if scheme else "it has no scheme (add redis://)"),
    )
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise SettingsError(f"REDIS_URL is not a valid Redis URL: {exc}") from None
    if scheme != "unix":
        path = urlsplit(url).path.strip("/")
        _check(
            path == "" or path.isdigit(),
            "REDIS_URL",
            "must end with a database number (/0, /1...) or nothing after the host",
        )


def _text(name: str, raw: str) -> str:
    return raw


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _bool(name: str, raw: str) -> bool:
    folded = raw.lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _lower(name: str, raw: str) -> str:
    return raw.lower()


def _upper(name: str, raw: str) -> str:
    return raw.upper()


def _capitalized(name: str, raw: str) -> str:
    return raw.capitalize()


# How each setting is read from its environment variable: one caster per field, checked against
# the fields by a test. The values allowed are checked by Settings itself.
CASTERS: dict[str, Callable[[str, str], Any]] = {
    "host": _text,
    "port": _int,
    "workers": _int,
    "redis_url": _text,
    "redis_cluster": _bool,
    "jwt_secret": _text,
    "jwt_ttl_seconds": _int,
    "jwt_leeway_seconds": _int,
    "refresh_ttl_seconds": _int,
    "refresh_max_age_seconds": _int,
    "bcrypt_rounds": _int,
    "message_history_limit": _int,
    "message_max_chars": _int,
    "cookie_secure": _lower,
    "cookie_samesite": _capitalized,
    "log_level": _upper,
    "log_format": _lower,
    "access_log": _bool,
    "metrics": _bool,
    "metrics_token": _text,
    "metrics_dir": _text,
    "jwt_secret_previous": _text,
    "csrf_protection": _bool,
    "sessions_max_per_user": _int,
    "login_max_failures": _int,
    "login_window_seconds": _int,
    "login_addr_max_failures": _int,
    "signup_addr_max": _int,
    "forwarded_secret": _text,
    "proxies_count": _int,
    "request_max_size": _int,
    "request_timeout": _float,
    "response_timeout": _float,
    "keep_alive_timeout": _float,
    "graceful_shutdown_timeout": _float,
}
