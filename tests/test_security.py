"""Password hashing and token issue/verify, as pure functions."""

from __future__ import annotations

import time

import bcrypt
import jwt
import pytest

from api.security import (
    TokenExpired,
    TokenInvalid,
    TokenVerifier,
    hash_password,
    issue_token,
    verify_password,
    verify_token,
)
from tests.conftest import claims_of

SECRET = "unit-test-secret-0123456789-abcdefghij"
KEYS = (SECRET,)


def test_hash_is_plain_bcrypt_of_an_hmac() -> None:
    hashed = hash_password("password1", rounds=4)
    assert hashed.startswith("$2b$04$")
    assert len(hashed) == 60
    assert not bcrypt.checkpw(b"password1", hashed.encode())  # never raw bcrypt of the password
    assert verify_password("password1", hashed)
    assert not verify_password("password2", hashed)


@pytest.mark.parametrize(
    "password", ["p" * 73, "p" * 1024, "пароль-" * 40, "with\x00nul byte", "emoji 🔑🔑🔑🔑"]
)
def test_long_and_odd_passwords_compare_in_full(password: str) -> None:
    hashed = hash_password(password, rounds=4)
    assert verify_password(password, hashed)
    assert not verify_password(password[:-1] + "!", hashed)


def test_same_password_hashes_differently() -> None:
    assert hash_password("password1", 4) != hash_password("password1", 4)


@pytest.mark.parametrize("stored", ["", "garbage", "$2b$04$short", "$2b$99$" + "a" * 53])
def test_malformed_hashes_never_raise(stored: str) -> None:
    assert verify_password("password1", stored) is False


def test_issue_and_verify_round_trip() -> None:
    token, claims = issue_token(SECRET, "alice", 3, 60)
    verified = verify_token(token, KEYS, leeway=0)
    assert verified == claims
    assert verified.generation == 3
    assert verified.expires_at - verified.issued_at == 60


def test_expiry_honours_leeway() -> None:
    now = int(time.time())
    token, _ = issue_token(SECRET, "alice", 0, 60, now=now - 65)  # expired 5 s ago
    assert verify_token(token, KEYS, leeway=10).name == "alice"
    with pytest.raises(TokenExpired):
        verify_token(token, KEYS, leeway=0)


def _sign(payload: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


@pytest.mark.parametrize(
    "token",
    [
        _sign(claims_of(), secret="another secret of 32 bytes or more"),
        _sign(claims_of(), algorithm="HS512"),
        _sign(claims_of(sub=None)),
        _sign(claims_of(name=None)),
        _sign(claims_of(jti=None)),
        _sign(claims_of(gen=None)),
        _sign(claims_of(iat=None)),
        _sign(claims_of(exp=None)),
        _sign(claims_of(sub="bob")),
        _sign(claims_of(jti="")),
        _sign(claims_of(gen="0")),
        _sign(claims_of(name=5)),
        jwt.encode(claims_of(), None, algorithm="none"),
        _sign(claims_of())[:-3],
        "a.b",
        "",
    ],
)
def test_invalid_tokens(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_token(token, KEYS, leeway=0)


def test_verifier_caches_a_verified_token_but_rechecks_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(KEYS, leeway=0)
    now = int(time.time())
    token, claims = issue_token(SECRET, "alice", 0, 60, now=now)
    assert verifier.verify(token) == claims
    calls: list[str] = []
    monkeypatch.setattr("api.security.verify_token", lambda t, *a, **k: calls.append(t))
    assert verifier.verify(token) == claims  # from the cache: not verified again
    assert calls == []
    monkeypatch.setattr("api.security.time.time", lambda: now + 61)
    with pytest.raises(TokenExpired):
        verifier.verify(token)


def test_verifier_does_not_cache_failures_and_is_bounded() -> None:
    verifier = TokenVerifier(KEYS, leeway=0, size=2)
    for _ in range(2):
        with pytest.raises(TokenInvalid):
            verifier.verify("not.a.token")
    tokens = [issue_token(SECRET, f"user{n}", 0, 60)[0] for n in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 2
    assert tokens[0] not in verifier._verified


def test_verifier_honours_nbf_on_every_use(monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    token = _sign(claims_of(nbf=now - 1))
    verifier = TokenVerifier(KEYS, leeway=0)
    verifier.verify(token)
    monkeypatch.setattr("api.security.time.time", lambda: now - 100)
    with pytest.raises(TokenInvalid):
        verifier.verify(token)
