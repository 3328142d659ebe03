"""Service configuration: a frozen dataclass read from the environment and a `.env` file."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MEMORY_URL = "memory://"
MIN_SECRET_BYTES = 32

CookieSecure = Literal["auto", "true", "false"]
SameSite = Literal["Lax", "Strict", "None"]


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service can be configured with; secrets are kept out of repr."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_ttl_seconds: int = 10800
    jwt_leeway_seconds: int = 10
    bcrypt_rounds: int = 12
    message_history_limit: int = 1000
    message_max_chars: int = 4096
    cookie_secure: CookieSecure = "auto"
    cookie_samesite: SameSite = "Lax"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "PORT", "must be between 1 and 65535")
        _check(self.workers >= 1, "WORKERS", "must be at least 1")
        _check(self.jwt_ttl_seconds >= 60, "JWT_TTL_SECONDS", "must be at least 60")
        _check(0 <= self.jwt_leeway_seconds <= 30, "JWT_LEEWAY_SECONDS", "must be 0 to 30")
        _check(4 <= self.bcrypt_rounds <= 31, "BCRYPT_ROUNDS", "must be between 4 and 31")
        _check(self.message_history_limit >= 1, "MESSAGE_HISTORY_LIMIT", "must be at least 1")
        _check(self.message_max_chars >= 1, "MESSAGE_MAX_CHARS", "must be at least 1")
        _check(
            self.cookie_secure in ("auto", "true", "false"),
            "COOKIE_SECURE",
            "must be auto, true or false",
        )
        _check(
            self.cookie_samesite in ("Lax", "Strict", "None"),
            "COOKIE_SAMESITE",
            "must be Lax, Strict or None",
        )
        _check(
            self.cookie_samesite != "None" or self.cookie_secure == "true",
            "COOKIE_SAMESITE",
            "None requires COOKIE_SECURE=true (browsers drop insecure SameSite=None cookies)",
        )
        _check(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            "LOG_LEVEL",
            "must be DEBUG, INFO, WARNING, ERROR or CRITICAL",
        )
        if self.jwt_secret is not None:
            _check(
                len(self.jwt_secret.encode()) >= MIN_SECRET_BYTES,
                "JWT_SECRET",
                f"must be at least {MIN_SECRET_BYTES} bytes; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
            )

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
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = values.get(f.name.upper())
            if raw is None or raw == "":
                continue
            kwargs[f.name] = _PARSERS.get(f.name, _text)(f.name.upper(), raw.strip())
        return cls(**kwargs)


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


def _text(name: str, raw: str) -> str:
    return raw


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _cookie_secure(name: str, raw: str) -> str:
    return raw.lower()


def _samesite(name: str, raw: str) -> str:
    return raw.capitalize()


def _upper(name: str, raw: str) -> str:
    return raw.upper()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "port": _int,
    "workers": _int,
    "jwt_ttl_seconds": _int,
    "jwt_leeway_seconds": _int,
    "bcrypt_rounds": _int,
    "message_history_limit": _int,
    "message_max_chars": _int,
    "cookie_secure": _cookie_secure,
    "cookie_samesite": _samesite,
    "log_level": _upper,
}
