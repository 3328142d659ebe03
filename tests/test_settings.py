"""Settings from the environment and `.env`, their checks, and start-up resolution."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.app import create_app
from api.settings import (
    CONFIGURATION_DOC,
    ENV_DIST,
    PLACEHOLDER_SECRET,
    Settings,
    SettingsError,
    render_configuration,
    render_env_dist,
    sanic_config,
)
from api.startup import StartupError, prepare
from storage.connection import MEMORY_URL
from support.processes import ROOT, SECRET, RedisServer, free_port


def test_defaults() -> None:
    settings = Settings.from_env({}, env_file=None)
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.jwt_ttl_seconds == 10800
    assert settings.bcrypt_rounds == 12
    assert settings.message_history_limit == 1000
    assert settings.message_max_chars == 4096
    assert (settings.cookie_secure, settings.cookie_samesite) == ("auto", "Lax")


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nPORT=9001\nWORKERS='3'\nexport LOG_LEVEL=debug\n\n")
    settings = Settings.from_env({"PORT": "9002"}, env_file=env_file)
    assert (settings.port, settings.workers, settings.log_level) == (9002, 3, "DEBUG")


def test_secret_never_in_repr() -> None:
    secret = "a-very-secret-value-that-is-long-enough"
    assert secret not in repr(Settings(jwt_secret=secret))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"BCRYPT_ROUNDS": "3"}, "BCRYPT_ROUNDS"),
        ({"MESSAGE_HISTORY_LIMIT": "0"}, "MESSAGE_HISTORY_LIMIT"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
        ({"COOKIE_SAMESITE": "none"}, "COOKIE_SAMESITE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env, env_file=None)


def test_short_secret_message_does_not_echo_it() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"JWT_SECRET": "tiny-secret"}, env_file=None)
    assert "tiny-secret" not in str(caught.value)


def test_unset_secret_is_generated_once() -> None:
    settings = prepare(Settings(redis_url=MEMORY_URL))
    assert settings.jwt_secret is not None
    assert len(settings.jwt_secret) >= 32
    assert prepare(settings).jwt_secret == settings.jwt_secret


@pytest.mark.parametrize(
    ("forwarded_secret", "proxies_count", "trusted"),
    [(None, 0, False), ("a-proxy-secret", 0, True), (None, 1, True), ("a-proxy-secret", 2, True)],
)
def test_proxy_headers_are_trusted_only_when_a_proxy_is_configured(
    forwarded_secret: str | None, proxies_count: int, trusted: bool
) -> None:
    settings = Settings(forwarded_secret=forwarded_secret, proxies_count=proxies_count)
    assert settings.trusts_proxy_headers is trusted


def test_memory_store_runs_one_worker() -> None:
    assert prepare(Settings(redis_url=MEMORY_URL, workers=4)).workers == 1


def test_unset_redis_url_falls_back_to_memory_when_local_redis_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("api.startup.LOCAL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert prepare(Settings()).redis_url == MEMORY_URL


@pytest.mark.redis_server
def test_unset_redis_url_uses_local_redis_when_it_answers(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.setattr("api.startup.LOCAL_REDIS_URL", redis_server.url)
    assert prepare(Settings()).redis_url == redis_server.url


def test_unreachable_redis_url_is_a_clear_start_up_error() -> None:
    with pytest.raises(StartupError) as raised:
        prepare(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"), redis_wait_seconds=0.3)
    assert str(raised.value) == (
        "Redis at REDIS_URL did not answer within 0.3 s; check that it runs and that REDIS_URL "
        "is right"
    )


@pytest.mark.parametrize(
    "secret",
    [
        "changethis-changethis-changethis-changethis",
        "CHANGEME-please-0123456789-abcdefghijklmn",
        PLACEHOLDER_SECRET,
        "a" * 64,
        "abababababababababababababababababab",
    ],
)
@pytest.mark.parametrize("variable", ["JWT_SECRET", "JWT_SECRET_PREVIOUS"])
def test_placeholder_secrets_are_refused(secret: str, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: secret}, env_file=None)


def test_env_dist_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env({}, env_file=ROOT / ".env.dist")


@pytest.mark.parametrize("leeway", ["-1", "31"])
def test_leeway_is_at_most_30_seconds(leeway: str) -> None:
    with pytest.raises(SettingsError, match="JWT_LEEWAY_SECONDS"):
        Settings.from_env({"JWT_LEEWAY_SECONDS": leeway}, env_file=None)


def test_env_dist_and_the_configuration_doc_are_made_from_the_declarations() -> None:
    # Stale? `python -m api.settings` writes both.
    assert ENV_DIST.read_text() == render_env_dist()
    assert CONFIGURATION_DOC.read_text() == render_configuration()
    names = {f.name.upper() for f in dataclasses.fields(Settings)}
    env_dist = {line.split("=", 1)[0] for line in ENV_DIST.read_text().splitlines()}
    assert names <= env_dist
    doc = CONFIGURATION_DOC.read_text()
    assert not [name for name in names if f"| `{name}` |" not in doc]


def test_every_setting_is_declared_with_a_doc_and_a_group() -> None:
    for f in dataclasses.fields(Settings):
        assert f.metadata["doc"].endswith("."), f.name
        assert f.metadata["group"], f.name


def test_sanic_is_configured_from_the_settings() -> None:
    settings = Settings(request_max_size=1234, proxies_count=2, response_timeout=3.5)
    config = sanic_config(settings)
    assert config["REQUEST_MAX_SIZE"] == 1234
    assert config["PROXIES_COUNT"] == 2
    assert config["RESPONSE_TIMEOUT"] == 3.5
    app = create_app(settings.replace(jwt_secret=SECRET, redis_url=MEMORY_URL))
    assert (app.config.REQUEST_MAX_SIZE, app.config.PROXIES_COUNT) == (1234, 2)


@pytest.mark.redis_server
def test_eviction_policy_that_could_drop_revocations_is_warned_about(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level("WARNING", logger="api.startup"):
            prepare(Settings(redis_url=redis_server.url, jwt_secret=SECRET))
        assert "maxmemory-policy is allkeys-lru" in caplog.text
        caplog.clear()
        client.config_set("maxmemory-policy", "noeviction")
        with caplog.at_level("WARNING", logger="api.startup"):
            prepare(Settings(redis_url=redis_server.url, jwt_secret=SECRET))
        assert "maxmemory-policy" not in caplog.text
    finally:
        client.config_set("maxmemory-policy", "noeviction")


def test_secrets_can_be_read_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt_secret"
    secret_file.write_text(SECRET + "\n")
    token_file = tmp_path / "metrics_token"
    token_file.write_text("metrics-token-0123456789")
    settings = Settings.from_env(
        {"JWT_SECRET_FILE": str(secret_file), "METRICS_TOKEN_FILE": str(token_file)},
        env_file=None,
    )
    assert settings.jwt_secret == SECRET
    assert settings.metrics_token == "metrics-token-0123456789"
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"JWT_SECRET": SECRET, "JWT_SECRET_FILE": "/x"},
            "JWT_SECRET_FILE and JWT_SECRET are both set: set one",
        ),
        (
            {"REDIS_URL_FILE": "/nonexistent/redis_url"},
            "REDIS_URL_FILE /nonexistent/redis_url cannot be read: No such file or directory",
        ),
        ({"JWT_SECRET_FILE": "{empty}"}, "JWT_SECRET_FILE {empty} is empty"),
        ({"METRICS_TOKEN_FILE": "{empty}"}, "METRICS_TOKEN_FILE {empty} is empty"),
        ({"METRICS_TOKEN_FILE": "{newline}"}, "METRICS_TOKEN_FILE {newline} is empty"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be text or json"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 16 characters"),
    ],
)
def test_bad_secret_files_and_observability_settings(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    files = {"{empty}": tmp_path / "empty", "{newline}": tmp_path / "newline"}
    files["{empty}"].write_text("")
    files["{newline}"].write_text("\n")
    for placeholder, path in files.items():
        env = {name: value.replace(placeholder, str(path)) for name, value in env.items()}
        message = message.replace(placeholder, str(path))
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env, env_file=None)
    assert str(raised.value) == message


@pytest.mark.parametrize("variable", ["JWT_SECRET_FILE", "METRICS_TOKEN_FILE"])
def test_an_empty_secret_file_stops_the_service_with_one_error_line(
    variable: str, tmp_path: Path
) -> None:
    empty = tmp_path / "secret"
    empty.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_URL": "memory://",
        "PORT": str(free_port()),
        "JWT_SECRET": "" if variable == "JWT_SECRET_FILE" else SECRET,
        variable: str(empty),
    }
    result = subprocess.run(
        [sys.executable, "run.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {variable} {empty} is empty\n"


def test_the_factory_never_makes_up_a_secret() -> None:
    with pytest.raises(SettingsError) as raised:
        create_app(Settings(redis_url=MEMORY_URL))
    assert str(raised.value) == (
        "JWT_SECRET is not set: set it, or start the service with run.py, which generates "
        "one for all workers"
    )
