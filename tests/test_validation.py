"""Bad input, table by table: exact status and body, never a 500 or an HTML page."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from api.validation import NAME_PATTERN
from support.processes import PASSWORD
from tests.conftest import Api

JSON = {"Content-Type": "application/json"}
NAME_RULE = (
    "name: must be 1-64 letters, digits, underscores, dots or hyphens, "
    "with at least one letter or digit"
)
PASSWORD_RULE = "password: must be 8-1024 characters"


def invalid(message: str) -> dict[str, str]:
    return {"error": "validation_error", "message": message}


CREDENTIAL_CASES: list[tuple[Any, dict[str, str]]] = [
    ({"password": PASSWORD}, invalid("name: field required")),
    ({"name": "alice"}, invalid("password: field required")),
    ({"name": 5, "password": PASSWORD}, invalid("name: must be a string")),
    ({"name": None, "password": PASSWORD}, invalid("name: must be a string")),
    ({"name": ["alice"], "password": PASSWORD}, invalid("name: must be a string")),
    ({"name": "alice", "password": 12345678}, invalid("password: must be a string")),
    ({"name": "", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "a" * 65, "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "al ice", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "{alice}", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "al:ice", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "al*", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "alice\n", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": ".", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "..", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "-", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "_.-", "password": PASSWORD}, invalid(NAME_RULE)),
    ({"name": "\u3164", "password": PASSWORD}, invalid(NAME_RULE)),  # Hangul filler
    ({"name": "a\ufe0f", "password": PASSWORD}, invalid(NAME_RULE)),  # a variation selector
    ({"name": "\u0301\u0302", "password": PASSWORD}, invalid(NAME_RULE)),  # marks only
    ({"name": "alice", "password": "short"}, invalid(PASSWORD_RULE)),
    ({"name": "alice", "password": "p" * 1025}, invalid(PASSWORD_RULE)),
    ([], invalid("body: must be a JSON object")),
    ("alice", invalid("body: must be a JSON object")),
    (None, invalid("body: must be a JSON object")),
]


@pytest.mark.parametrize("path", ["/signup/", "/login/"])
@pytest.mark.parametrize(("body", "expected"), CREDENTIAL_CASES)
def test_bad_credentials_bodies(api: Api, path: str, body: Any, expected: dict[str, str]) -> None:
    response = api.post(path, content=orjson.dumps(body), headers=JSON)
    assert response.status == 422
    assert response.json == expected


@pytest.mark.parametrize("name", ["alice", "Алиса", "李小龍", "a.b-c_d", "x", "a" * 64, "007"])
def test_good_names(api: Api, name: str) -> None:
    assert api.signup(name).json == {"name": name}
    assert api.login(name)


@pytest.mark.parametrize(
    ("sent", "accepted"),
    [
        ("alice", True),
        ("\u00eeZo\u00e9", True),  # precomposed
        ("Zoe\u0301", True),  # decomposed: stored as "Zo\u00e9"
        ("\u00cc\ufad0\u0107", True),  # U+FAD0 is U+22844 (outside the BMP) once normalised
        ("\u674e\u5c0f\u9f8d", True),
        ("a.b-c_d", True),
        ("al ice", False),
        ("{alice}", False),
        ("al:ice", False),
        ("al*", False),
        ("alice\n", False),
        ("\U0001d400", False),  # a letter outside the Basic Multilingual Plane
        ("\u20ac", False),  # a symbol
        (".", False),  # punctuation only
        ("..", False),
        ("-", False),
        ("_a", True),
        ("\u3164", False),  # invisible: a Hangul filler, a letter to Unicode
        ("a\u3164", False),
        ("\u0301", False),  # combining marks only
        ("e\u0301", True),
        ("\u034f", False),  # combining grapheme joiner
    ],
)
def test_the_documented_name_pattern_is_the_rule(api: Api, sent: str, accepted: bool) -> None:
    # What Python and ECMA-262 read alike: literal characters and ranges, and "\-" only.
    assert re.sub(r"\\-", "", NAME_PATTERN).count("\\") == 0
    documented = bool(re.fullmatch(NAME_PATTERN[1:-1], sent))
    assert documented == accepted
    assert (api.signup(sent).status == 201) == accepted


@pytest.mark.parametrize("path", ["/signup/", "/login/", "/message/"])
@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"name": "a",}', b"\xff\xfe"])
def test_invalid_json_is_400(api: Api, path: str, raw: bytes) -> None:
    token = api.user("someone")
    response = api.post(
        path, content=raw, headers={"Content-Type": "application/json", "token": token}
    )
    assert response.status == 400
    assert response.json == {
        "error": "invalid_json",
        "message": "the request body is not valid JSON",
    }


MESSAGE_CASES: list[tuple[Any, dict[str, str]]] = [
    ({}, invalid("text: field required")),
    ({"text": None}, invalid("text: must be a string")),
    ({"text": 42}, invalid("text: must be a string")),
    ({"text": {"a": 1}}, invalid("text: must be a string")),
    ({"text": ""}, invalid("text: must be 1-4096 characters")),
    ({"text": "x" * 4097}, invalid("text: must be 1-4096 characters")),
    ({"text": "hi", "name": 7}, invalid("name: must be a string")),
    ({"text": "hi", "name": None}, invalid("name: must be a string")),
    ([{"text": "hi"}], invalid("body: must be a JSON object")),
    (None, invalid("body: must be a JSON object")),
]


@pytest.mark.parametrize(("body", "expected"), MESSAGE_CASES)
def test_bad_message_bodies(api: Api, body: Any, expected: dict[str, str]) -> None:
    token = api.user("alice")
    response = api.post("/message/", content=orjson.dumps(body), headers={**JSON, "token": token})
    assert response.status == 422
    assert response.json == expected


def test_unknown_path_is_json_404(api: Api) -> None:
    response = api.get("/nowhere")
    assert response.status == 404
    assert response.json == {"error": "not_found", "message": "Requested URL /nowhere not found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("get", "/signup/", {"POST"}),
        ("put", "/message/", {"POST"}),
        ("post", "/messages/", {"GET", "HEAD"}),
        ("put", "/me", {"GET", "HEAD", "DELETE"}),
        ("get", "/password/", {"POST"}),
        ("post", "/sessions/", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_json_405_with_allow(
    api: Api, method: str, path: str, allow: set[str]
) -> None:
    response = api.request(method, path)
    assert response.status == 405
    assert response.json["error"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) == allow


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/signup", 422),
        ("/signup/", 422),
        ("/login", 422),
        ("/login/", 422),
        ("/logout", 200),
        ("/logout/", 200),
    ],
)
def test_paths_answer_with_and_without_trailing_slash(api: Api, path: str, status: int) -> None:
    response = api.post(path, json={})
    assert response.status == status
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz", 200),
        ("/healthz/", 200),
        ("/readyz", 200),
        ("/readyz/", 200),
        ("/me", 401),
        ("/me/", 401),
    ],
)
def test_get_paths_with_and_without_slash(api: Api, path: str, status: int) -> None:
    assert api.get(path).status == status
