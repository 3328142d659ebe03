"""The compose stack: it parses, and every service runs what the app actually reads."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import PLACEHOLDER_SECRET, SECRET_SETTINGS, Settings
from support.processes import ROOT

SETTINGS = {f.name.upper() for f in dataclasses.fields(Settings)} | {
    f"{name}_FILE" for name in SECRET_SETTINGS
}
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, Any] = document["services"]
    return found


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command if isinstance(command, list) else command.split()


def _compose_cli() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config(tmp_path: Path, *args: str, env: str | None = None) -> str:
    """`compose config` of the file with `.env` as copied from `.env.dist` (or `env`)."""
    cli = _compose_cli()
    if cli is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no compose parser installed (CI must install one)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env if env is not None else (ROOT / ".env.dist").read_text())
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "jwt_secret").write_text("a-secret-from-a-file\n")
    result = subprocess.run(
        [*cli, "-f", str(tmp_path / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]])
def test_compose_file_validates_and_prints_no_secret(tmp_path: Path, profile: list[str]) -> None:
    config = _config(tmp_path, *profile)
    assert PLACEHOLDER_SECRET not in config
    assert "a-secret-from-a-file" not in config
    parsed = yaml.safe_load(config)
    for name, service in parsed["services"].items():
        if "messaging-api" in service.get("image", ""):
            assert service["environment"]["JWT_SECRET"] == "", name
            assert service["environment"]["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"


def test_port_from_env_is_mapped_and_checked(tmp_path: Path) -> None:
    env = (ROOT / ".env.dist").read_text().replace("\nPORT=8000\n", "\nPORT=9001\n")
    app = yaml.safe_load(_config(tmp_path, env=env))["services"]["app"]
    assert app["environment"]["PORT"] == "9001"
    ports = app["ports"][0]
    published, target = (
        (str(ports["published"]), str(ports["target"]))
        if isinstance(ports, dict)
        else tuple(ports.split(":"))
    )
    assert (published, target) == ("9001", "9001")
    # The health check asks the port the service listens on, read inside the container.
    assert app["healthcheck"]["test"] == ["CMD", "python", "-m", "api.healthcheck"]


def test_one_image_with_its_dependencies_in_a_layer_of_their_own(
    services: dict[str, Any],
) -> None:
    assert services["app"]["build"] == "."
    assert "build" not in services["app-cluster"]
    assert services["app"]["image"] == services["app-cluster"]["image"]
    assert services["app-cluster"]["pull_policy"] == "never"
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", froms[0]), froms  # a pinned tag
    text = (ROOT / "Dockerfile").read_text()
    assert (
        text.index("COPY requirements.lock")
        < text.index("--require-hashes")
        < text.index("COPY api")
    )


def test_a_setting_error_is_retried_a_few_times_not_for_ever(services: dict[str, Any]) -> None:
    for name in ("app", "app-cluster"):
        policy = services[name]["restart"]
        assert re.fullmatch(r"on-failure:[1-5]", policy), (name, policy)


def test_cluster_nodes_keep_their_addresses_and_the_init_is_idempotent(
    services: dict[str, Any],
) -> None:
    addresses = set()
    for number in (1, 2, 3):
        node = services[f"redis-node-{number}"]
        command = " ".join(_command(node))
        assert f"--cluster-announce-hostname redis-node-{number}" in command
        addresses.add(node["networks"]["cluster"]["ipv4_address"])
    assert len(addresses) == 3
    init = " ".join(_command(services["redis-cluster-init"]))
    assert "cluster_slots_assigned:16384" in init
    assert init.index("cluster_slots_assigned") < init.index("--cluster create")
    assert "cluster_state:ok" in init


def test_app_services_run_the_app_with_settings_it_reads(services: dict[str, Any]) -> None:
    apps = {name: s for name, s in services.items() if "messaging-api" in s.get("image", "")}
    assert set(apps) == {"app", "app-cluster"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "run.py"]' in dockerfile
    assert 'CMD ["python", "-m", "api.healthcheck"]' in dockerfile
    assert "USER app" in dockerfile
    for service in apps.values():
        assert "command" not in service  # the image's CMD: python run.py
        assert set(service["environment"]) <= SETTINGS
        assert service["env_file"] == ".env"
        assert service.get("healthcheck", services["app"].get("healthcheck"))
        assert service["environment"]["HOST"] == "0.0.0.0"  # noqa: S104 (inside the container)
    assert services["app"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert services["app"]["secrets"] == ["jwt_secret"]
    cluster_app = services["app-cluster"]
    assert cluster_app["environment"]["REDIS_CLUSTER"] == "true"
    node = cluster_app["environment"]["REDIS_URL"].split("//")[1].split(":")[0]
    assert node in services
    assert cluster_app["depends_on"] == {
        "redis-cluster-init": {"condition": "service_completed_successfully"},
        "app": {"condition": "service_started"},  # which builds the shared image
    }


def test_every_redis_is_durable_and_never_evicts(services: dict[str, Any]) -> None:
    redises = [s for s in services.values() if _command(s)[:1] == ["redis-server"]]
    assert len(redises) == 4
    for service in redises:
        command = " ".join(_command(service))
        for option in (
            "--appendonly yes",
            "--appendfsync everysec",
            "--maxmemory-policy noeviction",
            "--maxmemory 256mb",
        ):
            assert option in command
        assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    init = " ".join(_command(services["redis-cluster-init"]))
    assert "--cluster create" in init
    assert "--cluster-replicas 0" in init
