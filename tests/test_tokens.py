"""Token strictness on every transport, log out everywhere, and secret rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import jwt
import pytest

from api.settings import Settings
from support.processes import PASSWORD, SECRET
from tests.conftest import Api, claims_of, csrf_of, token_for


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_signed(header: dict[str, object], payload: dict[str, object]) -> str:
    """Sign with HMAC-SHA256 and the right secret whatever `alg` the header claims."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


GOOD = jwt.encode(claims_of(), SECRET, algorithm="HS256")
HEADER, PAYLOAD, SIGNATURE = GOOD.split(".")

BAD_TOKENS = {
    "hs384": jwt.encode(claims_of(), SECRET, algorithm="HS384"),
    "hs512": jwt.encode(claims_of(), SECRET, algorithm="HS512"),
    "none": jwt.encode(claims_of(), None, algorithm="none"),
    "none-with-signature": _hand_signed({"alg": "none", "typ": "JWT"}, claims_of()),
    "rs256-header": _hand_signed({"alg": "RS256", "typ": "JWT"}, claims_of()),
    "kid": jwt.encode(claims_of(), SECRET, algorithm="HS256", headers={"kid": "1"}),
    "jku": jwt.encode(claims_of(), SECRET, algorithm="HS256", headers={"jku": "http://x/k"}),
    "x5u": jwt.encode(claims_of(), SECRET, algorithm="HS256", headers={"x5u": "http://x/c"}),
    "wrong-key": jwt.encode(
        claims_of(), "another-secret-0123456789-abcdefghijk", algorithm="HS256"
    ),
    "tampered": f"{HEADER}.{_b64(json.dumps(claims_of(name='bob', sub='bob')).encode())}."
    f"{SIGNATURE}",
    "truncated-signature": f"{HEADER}.{PAYLOAD}.{SIGNATURE[:-4]}",
    "two-segments": f"{HEADER}.{PAYLOAD}",
    "four-segments": f"{GOOD}.{SIGNATURE}",
    "not-base64": "a.b.c",
    "oversized": jwt.encode(claims_of(pad="p" * 5000), SECRET, algorithm="HS256"),
    "future-nbf": jwt.encode(claims_of(nbf=int(time.time()) + 43200), SECRET, algorithm="HS256"),
    "missing-jti": jwt.encode({**claims_of(), "jti": None}, SECRET, algorithm="HS256"),
    "missing-gen": jwt.encode(
        {k: v for k, v in claims_of().items() if k != "gen"}, SECRET, algorithm="HS256"
    ),
}
TRANSPORTS: dict[str, Callable[[str], dict[str, object]]] = {
    "token-header": lambda t: {"headers": {"token": t}},
    "bearer": lambda t: {"headers": {"Authorization": f"Bearer {t}"}},
    "cookie": lambda t: {"cookie": f"token={t}", "headers": {"X-CSRF-Token": "a-csrf"}},
}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_401_on_every_transport(api: Api, kind: str, transport: str) -> None:
    api.signup("alice")
    options = TRANSPORTS[transport](BAD_TOKENS[kind])
    for response in (
        api.get("/me/", **options),
        api.post("/message/", json={"text": "hi"}, **options),
    ):
        assert response.status == 401, (kind, transport, response.text)
        assert response.json["error"] == "invalid_token"


def test_a_well_formed_token_passes(api: Api) -> None:
    api.signup("alice")
    token = jwt.encode(claims_of(gen=api.generation()), SECRET, algorithm="HS256")
    assert api.get("/me/", headers={"token": token}).status == 200


def test_nbf_in_the_past_is_fine(api: Api) -> None:
    api.signup("alice")
    claims = claims_of(nbf=int(time.time()) - 5, gen=api.generation())
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert api.get("/me/", headers={"token": token}).status == 200


def test_logout_everywhere_ends_every_token_and_a_new_login_works(api: Api) -> None:
    api.signup("alice")
    first, second = api.login("alice"), api.login("alice")
    response = api.post("/logout/all/", headers={"token": first})
    assert response.status == 200
    assert response.json == {"status": "logged out everywhere"}
    assert response.headers["cache-control"] == "no-store"
    for token in (first, second):
        ended = api.get("/me/", headers={"token": token})
        assert ended.status == 401
        assert ended.json == {
            "error": "token_revoked",
            "message": "every session of the user was ended (log out everywhere or a new "
            "password) since this token was issued",
        }
        assert api.send(token, "after").status == 401
    fresh = api.login("alice")  # in the same second: must work
    assert api.get("/me/", headers={"token": fresh}).status == 200
    assert api.send(fresh, "hello").status == 201


def test_logout_everywhere_by_cookie_with_csrf(api: Api) -> None:
    token = api.user("alice")
    response = api.post(
        "/logout/all/", cookie=f"token={token}", headers={"X-CSRF-Token": csrf_of(token)}
    )
    assert response.status == 200
    assert api.get("/me/", headers={"token": token}).status == 401


def test_logout_everywhere_needs_a_valid_token(api: Api) -> None:
    assert api.post("/logout/all/").status == 401
    token = api.user("alice")
    assert api.post("/logout/", headers={"token": token}).json == {"status": "logged out"}
    assert api.post("/logout/all/", headers={"token": token}).json["error"] == "token_revoked"


def test_previous_secret_still_verifies_but_new_tokens_use_the_current(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(
        settings.replace(
            jwt_secret="rotated-secret-0123456789-abcdefghijklmnop", jwt_secret_previous=SECRET
        )
    )
    api.signup("alice")
    old_token = token_for("alice", generation=api.generation())
    assert api.get("/me/", headers={"token": old_token}).status == 200
    fresh = api.login("alice", PASSWORD)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(fresh, SECRET, algorithms=["HS256"])
    assert api.get("/me/", headers={"token": fresh}).status == 200
