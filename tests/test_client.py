"""The web client's files: served at / and /app/ with ETags, under a strict policy."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Api

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
    ],
)
def test_files_are_served_with_etags_under_a_strict_policy(
    api: Api, path: str, content_type: str
) -> None:
    response = api.get(path)
    assert response.status == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == POLICY
    assert response.headers["x-frame-options"] == "DENY"
    etag = response.headers["etag"]
    again = api.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.content == b""
    assert api.get(path, headers={"If-None-Match": '"another"'}).status == 200
    assert api.request("head", path).status == 200


def test_the_page_loads_nothing_from_elsewhere_and_has_no_inline_code(api: Api) -> None:
    page = api.get("/").text
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == ["/app/app.css", "/app/app.js"]
    assert "<script>" not in page
    assert "style=" not in page
    assert "<style" not in page


def test_unknown_files_are_404(api: Api) -> None:
    for path in ("/app/nothing.js", "/app/..%2Findex.html", "/app/"):
        assert api.get(path).status == 404, path
