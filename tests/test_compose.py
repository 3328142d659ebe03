"""The compose stack: it parses, and every service runs what the app actually reads."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings
from tests.conftest import ROOT

SETTINGS = {f.name.upper() for f in dataclasses.fields(Settings)}
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


@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]])
def test_compose_file_validates(tmp_path: Path, profile: list[str]) -> None:
    cli = _compose_cli()
    if cli is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no compose parser installed (CI must install one)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.dist", tmp_path / ".env")
    result = subprocess.run(
        [*cli, "-f", str(tmp_path / "docker-compose.yml"), *profile, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_app_services_run_the_app_with_settings_it_reads(services: dict[str, Any]) -> None:
    apps = {name: s for name, s in services.items() if "build" in s}
    assert set(apps) == {"app", "app-cluster"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "run.py"]' in dockerfile
    assert "USER app" in dockerfile
    for service in apps.values():
        assert "command" not in service  # the image's CMD: python run.py
        assert set(service["environment"]) <= SETTINGS
        assert service["env_file"] == ".env"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["HOST"] == "0.0.0.0"  # noqa: S104 (inside the container)
    assert services["app"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    cluster_app = services["app-cluster"]
    assert cluster_app["environment"]["REDIS_CLUSTER"] == "true"
    node = cluster_app["environment"]["REDIS_URL"].split("//")[1].split(":")[0]
    assert node in services
    assert cluster_app["depends_on"] == {
        "redis-cluster-init": {"condition": "service_completed_successfully"}
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
        ):
            assert option in command
        assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    init = " ".join(_command(services["redis-cluster-init"]))
    assert "--cluster create" in init
    assert "--cluster-replicas 0" in init
