"""The OpenAPI document and the Swagger UI describe every endpoint, body and status."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.errors import ErrorCode
from tests.conftest import Api

EXPECTED = {
    ("/signup", "post"): {"201", "400", "409", "415", "422", "429", "503"},
    ("/login", "post"): {"200", "400", "401", "415", "422", "429", "503"},
    ("/logout", "post"): {"200", "400", "415", "422", "503"},
    ("/logout/all", "post"): {"200", "401", "403", "415", "503"},
    ("/me", "get"): {"200", "401", "503"},
    ("/me", "delete"): {"204", "400", "401", "403", "415", "422", "429", "503"},
    ("/me/export", "get"): {"200", "401", "503"},
    ("/password", "post"): {"200", "400", "401", "403", "415", "422", "429", "503"},
    ("/token/refresh", "post"): {"200", "400", "401", "403", "415", "422", "503"},
    ("/sessions", "get"): {"200", "401", "503"},
    ("/sessions/{session_id}", "delete"): {"204", "401", "403", "404", "415", "503"},
    ("/message", "post"): {
        "200",
        "201",
        "400",
        "401",
        "403",
        "404",
        "409",
        "415",
        "422",
        "429",
        "503",
    },
    ("/blocks", "post"): {"204", "400", "401", "403", "404", "415", "422", "503"},
    ("/blocks", "get"): {"200", "401", "503"},
    ("/blocks/{name}", "delete"): {"204", "401", "403", "404", "415", "503"},
    ("/events", "get"): {"200", "401", "422", "429", "503"},
    ("/ws", "get"): {"101", "400", "401", "403", "422", "426", "429", "503"},
    ("/messages", "get"): {"200", "401", "422", "503"},
    ("/healthz", "get"): {"200"},
    ("/readyz", "get"): {"200", "503"},
}
SECURED = {
    ("/me", "get"),
    ("/message", "post"),
    ("/messages", "get"),
    ("/logout/all", "post"),
    ("/me", "delete"),
    ("/me/export", "get"),
    ("/password", "post"),
    ("/sessions", "get"),
    ("/sessions/{session_id}", "delete"),
    ("/blocks", "post"),
    ("/blocks", "get"),
    ("/blocks/{name}", "delete"),
    ("/events", "get"),
    ("/ws", "get"),
}


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
        for status in statuses - {"204", "101"}:  # a 204 has no body, nor a switch to a socket
            response = operation["responses"][status]
            if (path, status) == ("/events", "200"):
                assert set(response["content"]) == {"text/event-stream"}
                continue
            content = response["content"]["application/json"]
            if int(status) >= 400:
                assert content["schema"]["required"] == ["error", "message"]
        assert (operation.get("security") is not None) == ((path, method) in SECURED)
    signup_body = spec["paths"]["/signup"]["post"]["requestBody"]
    assert signup_body["content"]["application/json"]["schema"]["required"] == ["name", "password"]
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == {"tokenHeader", "bearer", "cookie"}


def _error_codes(spec: dict[str, Any], path: str, method: str, status: str) -> list[str]:
    response = spec["paths"][path][method]["responses"][status]
    codes: list[str] = response["content"]["application/json"]["schema"]["properties"]["error"][
        "enum"
    ]
    return codes


def test_each_route_lists_only_its_own_error_codes(spec: dict[str, Any]) -> None:
    assert _error_codes(spec, "/login", "post", "401") == ["invalid_credentials"]
    assert _error_codes(spec, "/me", "get", "401") == [
        "missing_token",
        "invalid_token",
        "token_expired",
        "token_revoked",
    ]
    assert _error_codes(spec, "/message", "post", "403") == [
        "csrf_failed",
        "name_mismatch",
        "recipient_unavailable",
    ]
    assert _error_codes(spec, "/message", "post", "422") == [
        "validation_error",
        "idempotency_key_reused",
    ]
    assert _error_codes(spec, "/signup", "post", "503") == ["busy", "storage_unavailable"]
    assert _error_codes(spec, "/readyz", "get", "503") == ["storage_unavailable", "shutting_down"]
    described = spec["paths"]["/login"]["post"]["responses"]["401"]["description"]
    assert described.startswith("`invalid_credentials`: Wrong name or password")
    for path in ("/events", "/ws"):  # the live limits, not the login ones
        responses = spec["paths"][path]["get"]["responses"]
        assert (
            responses["429"]["description"] == f"`rate_limited`: {ErrorCode.STREAMS_FULL.meaning}"
        )
        assert responses["503"]["description"].startswith(f"`busy`: {ErrorCode.LIVE_BUSY.meaning}")


def test_request_bodies_have_real_examples(spec: dict[str, Any]) -> None:
    def example(path: str) -> Any:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return body["schema"]["example"]

    assert example("/signup") == {"name": "alice", "password": "correct horse battery"}
    assert example("/login") == {
        "name": "alice",
        "password": "correct horse battery",
        "refresh": True,
    }
    assert example("/password") == {
        "password": "correct horse battery",
        "new_password": "a new, longer passphrase",
    }
    assert example("/message") == {"text": "hello"}
    name = spec["paths"]["/signup"]["post"]["requestBody"]["content"]["application/json"]
    rule = name["schema"]["properties"]["name"]
    assert "at least one letter or digit" in rule["description"]
    assert rule["pattern"].startswith("^[")


def test_the_description_says_how_to_try_state_changing_calls(spec: dict[str, Any]) -> None:
    description = spec["info"]["description"]
    assert "cannot send the `X-CSRF-Token`" in description
    assert "Authorize" in description


def test_swagger_ui_is_served_by_the_service_under_a_strict_policy(api: Api) -> None:
    page = api.get("/docs")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'self';")
    assert "frame-ancestors 'none'" in policy
    # Every script and stylesheet the page loads is the service's own.
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui.css",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/docs.js",
    ]
    for asset in assets:
        response = api.get(asset)
        assert response.status == 200, asset
        assert response.headers["content-security-policy"] == policy
    assert "SwaggerUIBundle" in api.get("/docs/assets/swagger-ui-bundle.js").text
    assert api.get("/docs/assets/nothing.js").status == 404
    assert api.get("/docs/assets/..%2Fdocs.html").status == 404


def test_sanic_ext_serves_no_ui_of_its_own(api: Api) -> None:
    for path in ("/docs/swagger", "/docs/redoc", "/docs/oauth2-redirect.html"):
        assert api.get(path).status == 404, path
