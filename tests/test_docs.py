"""The OpenAPI document and the Swagger UI describe every endpoint, body and status."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

EXPECTED = {
    ("/signup", "post"): {"201", "400", "409", "415", "422", "429", "503"},
    ("/login", "post"): {"200", "400", "401", "415", "422", "429", "503"},
    ("/logout", "post"): {"200", "503"},
    ("/logout/all", "post"): {"200", "401", "403", "503"},
    ("/me", "get"): {"200", "401", "503"},
    ("/message", "post"): {"200", "201", "400", "401", "403", "415", "422", "503"},
    ("/messages", "get"): {"200", "401", "422", "503"},
    ("/healthz", "get"): {"200"},
    ("/readyz", "get"): {"200", "503"},
}
SECURED = {("/me", "get"), ("/message", "post"), ("/messages", "get"), ("/logout/all", "post")}


@pytest.fixture
def spec(api: Api) -> dict[str, Any]:
    response = api.get("/docs/openapi.json")
    assert response.status == 200
    document: dict[str, Any] = response.json
    return document


def test_every_endpoint_and_status_is_documented(spec: dict[str, Any]) -> None:
    documented = {
        (path, method): set(operation["responses"])
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == EXPECTED


def test_bodies_errors_and_security_are_described(spec: dict[str, Any]) -> None:
    for (path, method), statuses in EXPECTED.items():
        operation = spec["paths"][path][method]
        for status in statuses:
            content = operation["responses"][status]["content"]["application/json"]
            if int(status) >= 400:
                assert content["schema"]["required"] == ["error", "message"]
        assert (operation.get("security") is not None) == ((path, method) in SECURED)
    signup_body = spec["paths"]["/signup"]["post"]["requestBody"]
    assert signup_body["content"]["application/json"]["schema"]["required"] == ["name", "password"]
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == {"tokenHeader", "bearer", "cookie"}


def test_swagger_ui_is_served(api: Api) -> None:
    response = api.get("/docs")
    assert response.status == 200
    assert "swagger" in response.text.lower()
