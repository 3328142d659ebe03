"""Service configuration: every setting declared once, read from the environment and `.env`.

Each field of `Settings` is declared with `setting(...)`: its type (the annotation), default,
group, bounds and a one-line doc. From that one declaration come reading it from the environment
(the caster follows the type), checking it, Sanic's configuration (`sanic_config`), `.env.dist`
and `docs/configuration.md` (`python -m api.settings` writes both; a test fails when either is
stale). Secrets are kept out of the repr and may be read from a file (`<NAME>_FILE`).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from redis.connection import parse_url

from storage.connection import MEMORY_URL

MIN_SECRET_BYTES = 32
GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105
# Values that are placeholders, not secrets: refused even when long enough.
PLACEHOLDER_SECRET = "change-me-to-a-random-string-of-at-least-32-bytes"  # noqa: S105
_PLACEHOLDER_WORDS = ("changethis", "changeme", "change-me", "change_me", "change-this", "secret")
_MIN_DISTINCT_CHARS = 8

CookieSecure = Literal["auto", "true", "false"]
SameSite = Literal["Lax", "Strict", "None"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# The groups, in the order .env.dist and docs/configuration.md list them.
GROUPS = {
    "server": "Server",
    "redis": "Redis",
    "tokens": "Tokens and passwords",
    "cookies": "Cookies",
    "limits": "Limits",
    "live": "Live delivery",
    "observability": "Observability",
}
ROOT = Path(__file__).resolve().parent.parent
ENV_DIST = ROOT / ".env.dist"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


Check = Callable[[Any], str | None]  # a problem with a value ("must be ..."), or None


def setting(
    default: Any,
    doc: str,
    *,
    group: str,
    check: Check | None = None,
    secret: bool = False,
    fold: Callable[[str], str] | None = None,
    sanic: str | None = None,
    example: str | None = None,
) -> Any:
    """Declare a setting: its default, one-line doc and group; `check` its bounds, `secret` if it
    is kept out of the repr and may be read from a file, `fold` how its raw text is normalised
    before it is cast (`str.lower`...), `sanic` the Sanic config key it also sets, `example` what
    `.env.dist` shows instead of the default."""
    assert group in GROUPS, group
    metadata = {
        "doc": doc,
        "group": group,
        "check": check,
        "secret": secret,
        "fold": fold,
        "sanic": sanic,
        "example": example,
    }
    return field(default=default, repr=not secret, metadata=metadata)


def at_least(minimum: float) -> Check:
    """Bounds: `minimum` or more."""
    return lambda value: None if value >= minimum else f"must be at least {minimum:g}"


def between(low: float, high: float) -> Check:
    """Bounds: from `low` to `high`."""
    return lambda value: None if low <= value <= high else f"must be between {low:g} and {high:g}"


def positive(value: float) -> str | None:
    """Bounds: more than 0 (seconds)."""
    return None if value > 0 else "must be more than 0 seconds"


def _check_secret(secret: str) -> str | None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"must be at least {MIN_SECRET_BYTES} bytes; generate one with `{GENERATE_SECRET}`"
    folded = secret.lower()
    if (
        secret == PLACEHOLDER_SECRET
        or any(folded.startswith(word) for word in _PLACEHOLDER_WORDS)
        or len(set(secret)) < _MIN_DISTINCT_CHARS
    ):
        return (
            f"looks like a placeholder, not a random secret; generate one with `{GENERATE_SECRET}`"
        )
    return None


REDIS_URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/socket "
    "or memory://"
)


def _check_redis_url(url: str) -> str | None:
    # The URL may hold a password: no message repeats it.
    if url == MEMORY_URL:
        return None
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        found = f"{scheme}:// is not one" if scheme else "it has no scheme (add redis://)"
        return f"must be a URL of one of the forms {REDIS_URL_FORMS}; {found}"
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"is not a valid Redis URL: {exc}"
    path = urlsplit(url).path.strip("/")
    if scheme != "unix" and not (path == "" or path.isdigit()):
        return "must end with a database number (/0, /1...) or nothing after the host"
    return None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service can be configured with; secrets are kept out of repr."""

    # Server.
    host: str = setting(
        "127.0.0.1", "Address to listen on (0.0.0.0 inside a container).", group="server"
    )
    port: int = setting(8000, "Port to listen on.", group="server", check=between(1, 65535))
    workers: int = setting(
        1,
        "Sanic worker processes (1 runs in the main process; the embedded store always runs 1).",
        group="server",
        check=at_least(1),
    )
    request_max_size: int = setting(
        65536,
        "Largest request body in bytes (larger: 413).",
        group="server",
        check=at_least(1),
        sanic="REQUEST_MAX_SIZE",
    )
    request_timeout: float = setting(
        10.0,
        "Seconds to receive a whole request (headers and body), from its first byte; then 408 "
        "and the connection closes.",
        group="server",
        check=positive,
        sanic="REQUEST_TIMEOUT",
    )
    response_timeout: float = setting(
        10.0,
        "Seconds to produce a response.",
        group="server",
        check=positive,
        sanic="RESPONSE_TIMEOUT",
    )
    keep_alive_timeout: float = setting(
        5.0,
        "Seconds an idle keep-alive connection stays open.",
        group="server",
        check=positive,
        sanic="KEEP_ALIVE_TIMEOUT",
    )
    graceful_shutdown_timeout: float = setting(
        10.0,
        "After SIGTERM, seconds to wait at most for requests in flight (the process exits as "
        "soon as none is left).",
        group="server",
        check=positive,
        sanic="GRACEFUL_SHUTDOWN_TIMEOUT",
    )
    forwarded_secret: str | None = setting(
        None,
        "Trust the client address of a `Forwarded` header that carries this secret (your proxy's).",
        group="server",
        secret=True,
        sanic="FORWARDED_SECRET",
    )
    proxies_count: int = setting(
        0,
        "Trust `X-Forwarded-For` through this many proxies for the client address (0: none).",
        group="server",
        check=at_least(0),
        sanic="PROXIES_COUNT",
    )
    # Redis.
    redis_url: str | None = setting(
        None,
        "Redis URL (waited for a few seconds at start). Unset: the local Redis on "
        "127.0.0.1:6379 if it answers, else the embedded in-process store; `memory://`: the "
        "embedded store (data lives only as long as the process).",
        group="redis",
        check=_check_redis_url,
        secret=True,  # may hold a password
    )
    redis_cluster: bool = setting(
        False, "`true`: `REDIS_URL` names any node of a Redis Cluster.", group="redis"
    )
    # Tokens and passwords.
    jwt_secret: str | None = setting(
        None,
        "HS256 signing key, at least 32 random bytes (a placeholder is refused). Unset: a "
        "random one per start (tokens do not survive a restart).",
        group="tokens",
        check=_check_secret,
        secret=True,
        example=PLACEHOLDER_SECRET,
    )
    jwt_secret_previous: str | None = setting(
        None,
        "The secret before a rotation: still accepted to verify tokens, never used to sign.",
        group="tokens",
        check=_check_secret,
        secret=True,
    )
    jwt_ttl_seconds: int = setting(
        10800, "Access token lifetime in seconds (3 hours).", group="tokens", check=at_least(60)
    )
    jwt_leeway_seconds: int = setting(
        10,
        "Clock skew tolerated on `exp` and `nbf`, in seconds.",
        group="tokens",
        check=between(0, 30),
    )
    refresh_ttl_seconds: int = setting(
        2592000,
        "A refresh token's lifetime from its issue, in seconds (30 days).",
        group="tokens",
        check=at_least(60),
    )
    refresh_max_age_seconds: int = setting(
        7776000,
        "A login's chain of refresh tokens ends this long after the login, in seconds (90 "
        "days); at least `REFRESH_TTL_SECONDS`.",
        group="tokens",
    )
    bcrypt_rounds: int = setting(
        12,
        "bcrypt cost; each +1 doubles the work of a login.",
        group="tokens",
        check=between(4, 31),
    )
    # Cookies.
    cookie_secure: CookieSecure = setting(
        "auto",
        "`Secure` on the cookies: `auto` (when the request came over HTTPS), `true`, `false`.",
        group="cookies",
        fold=str.lower,
    )
    cookie_samesite: SameSite = setting(
        "Lax",
        "`SameSite` of the cookies (`None` needs `COOKIE_SECURE=true`).",
        group="cookies",
        fold=str.capitalize,
    )
    csrf_protection: bool = setting(
        True,
        "Cookie-authenticated requests that change state must send `X-CSRF-Token`.",
        group="cookies",
    )
    # Limits.
    message_history_limit: int = setting(
        1000, "Messages kept per user; older ones are dropped.", group="limits", check=at_least(1)
    )
    message_max_chars: int = setting(
        4096, "Longest message, in characters.", group="limits", check=at_least(1)
    )
    message_rate_per_minute: int = setting(
        120,
        "Messages to other users per sender per minute: a token bucket of this size, refilled "
        "continuously, shared by every worker and instance (messages to oneself are not "
        "counted); over it, 429.",
        group="limits",
        check=at_least(1),
    )
    blocks_max_per_user: int = setting(
        1000, "Names a user may block.", group="limits", check=at_least(1)
    )
    sessions_max_per_user: int = setting(
        100,
        "Live sessions (logins) kept per user; a login beyond it ends the one that expires first.",
        group="limits",
        check=at_least(1),
    )
    login_max_failures: int = setting(
        10,
        "Failed logins per account per window; then 429 until the window ends.",
        group="limits",
        check=at_least(1),
    )
    login_window_seconds: int = setting(
        900,
        "The failed-login window in seconds; it starts with the first failure.",
        group="limits",
        check=at_least(1),
    )
    login_addr_max_failures: int = setting(
        100,
        "Failed logins per client address per window (generous: users share addresses).",
        group="limits",
        check=at_least(1),
    )
    signup_addr_max: int = setting(
        100, "Signups per client address per hour.", group="limits", check=at_least(1)
    )
    # Live delivery.
    live_max_per_user: int = setting(
        10,
        "Open live streams (SSE and WebSocket) per user, on every worker and instance together; "
        "the next one is 429.",
        group="live",
        check=at_least(1),
    )
    live_max_connections: int = setting(
        10000,
        "Open live streams per worker; the next one is 503 `busy` (the service raises its "
        "open-file limit as far as this needs).",
        group="live",
        check=at_least(1),
    )
    allowed_origins: str = setting(
        "",
        "Comma-separated origins (`https://app.example.com`) whose pages may open a "
        "cookie-authenticated WebSocket, besides the service's own.",
        group="live",
    )
    # Observability.
    log_level: LogLevel = setting("INFO", "Log level.", group="observability", fold=str.upper)
    log_format: LogFormat = setting(
        "text",
        "`text`, or `json`: one JSON object per line (time, level, logger, message; for "
        "requests also request id, method, path, route, status, duration, client, user).",
        group="observability",
        fold=str.lower,
    )
    access_log: bool = setting(
        True,
        "One line per request to stderr, written in batches; independent of `LOG_LEVEL`.",
        group="observability",
    )
    metrics: bool = setting(
        True,
        "`GET /metrics` in Prometheus's text format; `false` removes the route.",
        group="observability",
    )
    metrics_token: str | None = setting(
        None,
        "When set (16 characters or more), `/metrics` needs `Authorization: Bearer <token>`.",
        group="observability",
        check=lambda token: None if len(token) >= 16 else "must be at least 16 characters",
        secret=True,
    )
    metrics_dir: str | None = setting(
        None,
        "With `WORKERS` > 1, where each worker writes its tallies for the others to add up. "
        "Unset: a temporary directory per start.",
        group="observability",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            allowed = _allowed(f)
            if allowed and value not in allowed:
                words = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
                raise SettingsError(f"{f.name.upper()} must be {words}")
            check = f.metadata["check"]
            problem = check(value) if check is not None else None
            if problem is not None:
                raise SettingsError(f"{f.name.upper()} {problem}")
        # Rules between settings.
        _rule(
            self.refresh_max_age_seconds >= self.refresh_ttl_seconds,
            "REFRESH_MAX_AGE_SECONDS",
            "must be at least REFRESH_TTL_SECONDS",
        )
        _rule(
            self.cookie_samesite != "None" or self.cookie_secure == "true",
            "COOKIE_SAMESITE",
            "None requires COOKIE_SECURE=true (browsers drop insecure SameSite=None cookies)",
        )
        _rule(
            not self.redis_cluster or (self.redis_url or MEMORY_URL) != MEMORY_URL,
            "REDIS_CLUSTER",
            "needs REDIS_URL naming a node of the cluster",
        )

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
            kwargs[f.name] = _cast(f, raw.strip())
        return cls(**kwargs)


def _rule(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"{name} {message}")


def _type(f: dataclasses.Field[Any]) -> Any:
    """The field's type, `X | None` read as X."""
    hint = _HINTS[f.name]
    args = [arg for arg in get_args(hint) if arg is not type(None)]
    return args[0] if get_origin(hint) in (typing.Union, _UNION) and len(args) == 1 else hint


def _allowed(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The values a Literal setting allows, else ()."""
    hint = _type(f)
    return get_args(hint) if get_origin(hint) is Literal else ()


def _cast(f: dataclasses.Field[Any], raw: str) -> Any:
    name = f.name.upper()
    fold = f.metadata["fold"]
    if fold is not None:
        raw = fold(raw)
    kind = _type(f)
    if kind is bool:
        folded = raw.lower()
        if folded in ("1", "true", "yes", "on"):
            return True
        if folded in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    return raw  # text, and Literal values (checked by Settings)


_UNION = type(int | None)
_HINTS = typing.get_type_hints(Settings)
# Settings that may hold a secret, and so may be read from the file named by NAME_FILE.
SECRET_SETTINGS = tuple(
    f.name.upper() for f in dataclasses.fields(Settings) if f.metadata["secret"]
)


def _read_secret_file(values: dict[str, str], name: str) -> None:
    path = values.get(f"{name}_FILE", "").strip()
    if not path:
        return
    _rule(not values.get(name, "").strip(), f"{name}_FILE", f"and {name} are both set: set one")
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{name}_FILE {path} cannot be read: {exc.strerror}") from None
    value = content.removesuffix("\n").removesuffix("\r")
    # An empty file would leave the setting unset (an open /metrics, a random JWT secret): a
    # mistake to stop at, not a choice.
    _rule(value.strip() != "", f"{name}_FILE", f"{path} is empty")
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


def sanic_config(settings: Settings) -> dict[str, Any]:
    """What Sanic's own configuration takes from the settings."""
    return {
        f.metadata["sanic"]: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.metadata["sanic"]
    }


# What .env.dist and docs/configuration.md are made of.


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _by_group() -> dict[str, list[dataclasses.Field[Any]]]:
    grouped: dict[str, list[dataclasses.Field[Any]]] = {group: [] for group in GROUPS}
    for f in dataclasses.fields(Settings):
        grouped[f.metadata["group"]].append(f)
    return grouped


def _plain(doc: str) -> str:
    return doc.replace("`", "")


def render_env_dist() -> str:
    """`.env.dist`: every setting with its doc and default, by group."""
    lines = [
        "# Made by `python -m api.settings` from api/settings.py: edit there, not here.",
        "# Copy to .env and adjust; real environment variables take precedence over this file.",
        "",
    ]
    for group, fields in _by_group().items():
        lines.append(f"# --- {GROUPS[group]} ---")
        for f in fields:
            doc = _plain(f.metadata["doc"])
            allowed = _allowed(f)
            if allowed:
                doc += f" One of: {', '.join(allowed)}."
            lines += _wrap(doc)
            example = f.metadata["example"]
            lines.append(f"{f.name.upper()}={example if example else _shown(f.default)}")
        lines.append("")
    lines += _wrap(_plain(_secret_files()))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 98) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += f" {word}"
    return [*lines, line]


def _secret_files() -> str:
    names = ", ".join(f"`{name}`" for name in SECRET_SETTINGS)
    return (
        f"Every secret setting ({names}) can be read from a file instead: `JWT_SECRET_FILE="
        "/run/secrets/jwt_secret` (Docker secrets). One trailing newline is dropped; setting "
        "both the variable and its `_FILE`, or naming an empty file, is an error."
    )


def render_configuration() -> str:
    """docs/configuration.md: every setting, by group, as a table."""
    lines = [
        "# Configuration",
        "",
        "<!-- Made by `python -m api.settings` from api/settings.py: edit there, not here. -->",
        "",
        "Environment variables, also read from a `.env` file (`cp .env.dist .env`; the "
        "environment wins). A value that is not allowed stops the service at start with one "
        "`error:` line naming the variable (exit status 2).",
        "",
        _secret_files(),
    ]
    for group, fields in _by_group().items():
        lines += [
            "",
            f"## {GROUPS[group]}",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        for f in fields:
            default = _shown(f.default)
            shown = f"`{default}`" if default else "unset"
            doc = f.metadata["doc"]
            allowed = _allowed(f)
            if allowed:
                doc += " One of " + ", ".join(f"`{value}`" for value in allowed) + "."
            lines.append(f"| `{f.name.upper()}` | {shown} | {doc} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write .env.dist and docs/configuration.md from the declarations."""
    ENV_DIST.write_text(render_env_dist())
    CONFIGURATION_DOC.write_text(render_configuration())
    print(f"wrote {ENV_DIST.name} and {CONFIGURATION_DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
