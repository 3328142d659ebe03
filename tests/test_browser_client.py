"""The web client at `/` in headless Chromium, on a real service and Redis."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.processes import PASSWORD, RedisServer, Service, free_port, start_service
from tests.conftest import BrowserPage, TcpProxy, open_browser, token_for

pytestmark = [pytest.mark.redis_server, pytest.mark.browser]

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "client.png"


def _fill_in(page: Any, origin: str, name: str, password: str = PASSWORD) -> None:
    """Open the client and type a name and password into the login form."""
    page.goto(origin + "/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)


def _sign_up_and_log_in(page: Any, origin: str, name: str = "alice") -> None:
    _fill_in(page, origin, name)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Signed in as").wait_for()


def _send(page: Any, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("() => document.getElementById('message').value === ''", timeout=10000)


def _texts(page: Any, selector: str) -> list[str]:
    return [
        item.evaluate("e => e.firstChild.textContent")
        for item in page.locator(f"{selector} > li").all()
    ]


def _token_cookie(page: Any) -> str:
    for cookie in page.context.cookies():
        if cookie["name"] == "token" and cookie["value"]:
            value: str = cookie["value"]
            return value
    return ""


def test_the_whole_service_in_a_browser(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    page = browser_page.page
    _sign_up_and_log_in(page, browser_page.origin)
    assert page.get_by_label("Signed in as").inner_text() == "alice"
    for text in ("first", "second", "third"):
        _send(page, text)

    _send(page, "last 2")
    answer = page.locator("#answer > li")
    assert [item.inner_text() for item in answer.all()] == ["second", "third"]
    assert [item.get_attribute("value") for item in answer.all()] == ["2", "1"]

    history = page.get_by_role("list", name="History")
    history.locator("li").nth(2).wait_for()
    assert _texts(page, "#history") == ["third", "second", "first"]
    stamp = history.locator("li time").first
    assert stamp.get_attribute("datetime").endswith("Z")
    assert stamp.inner_text()  # the send time in the browser's local time

    token = _token_cookie(page)
    assert token
    cookies = page.evaluate("document.cookie")
    assert "csrf_token=" in cookies
    assert token not in cookies
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"

    if os.environ.get("SCREENSHOT") == "1":  # to renew the README's picture
        page.set_viewport_size({"width": 720, "height": 900})
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.get_by_role("button", name="Log out", exact=True).click()
    page.get_by_role("button", name="Log in").wait_for()
    assert page.get_by_text("Logged out.").is_visible()
    status, body, _ = service_for_browser.call("GET", "/me/", headers={"token": token})
    assert (status, body["error"]) == (401, "token_revoked")
    assert browser_page.blocked == []
    assert browser_page.errors == []


def test_the_account_screens(browser_page: BrowserPage, service_for_browser: Service) -> None:
    page = browser_page.page
    _sign_up_and_log_in(page, browser_page.origin)
    _send(page, "kept")
    status, body, _ = service_for_browser.call(
        "POST", "/login/", {"name": "alice", "password": PASSWORD}, {"User-Agent": "other device"}
    )
    assert status == 200
    other = body["token"]
    page.reload()
    sessions = page.get_by_role("list", name="Sessions")
    sessions.get_by_text("other device").wait_for()
    assert sessions.locator("li").count() == 2
    assert sessions.get_by_text("This browser").count() == 1

    # End the other session from here.
    page.get_by_role("button", name="End session: other device").click()
    sessions.get_by_text("other device").wait_for(state="detached")
    assert service_for_browser.call("GET", "/me/", headers={"token": other})[0] == 401

    # Download everything kept.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["name"] == "alice"
    assert [m["text"] for m in exported["messages"]] == ["kept"]

    # Change the password: a wrong current one is said so, the right one works.
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password").fill("a new, longer passphrase")
    page.get_by_role("button", name="Change password").click()
    page.locator("#change-password-error").get_by_text("The current password is wrong.").wait_for()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Password changed: every other session has ended.").wait_for()
    _send(page, "still signed in")

    # Delete the account.
    page.get_by_label("Your password, to confirm").fill("a new, longer passphrase")
    page.get_by_role("button", name="Delete my account").click()
    page.get_by_text("Your account has been deleted.").wait_for()
    status, _, _ = service_for_browser.call(
        "POST", "/login/", {"name": "alice", "password": "a new, longer passphrase"}
    )
    assert status == 401
    assert browser_page.blocked == []


def test_keep_me_signed_in_renews_an_expired_token(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    service_for_browser.call("POST", "/signup/", {"name": "alice", "password": PASSWORD})
    page = browser_page.page
    _fill_in(page, browser_page.origin, "alice")
    page.get_by_label("Keep me signed in").check()
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Signed in as").wait_for()
    refresh = [c for c in page.context.cookies() if c["name"] == "refresh_token"]
    assert refresh
    assert refresh[0]["path"] == "/token/refresh"
    assert refresh[0]["httpOnly"]
    # As if the token had expired: a token cookie the service refuses as expired.
    expired = token_for("alice", ttl=60, now=int(time.time()) - 3600)
    page.context.add_cookies([{"name": "token", "value": expired, "url": browser_page.origin}])
    _send(page, "after renewal")
    page.get_by_role("list", name="History").get_by_text("after renewal").wait_for()
    assert _token_cookie(page) not in ("", expired)


def test_log_out_everywhere_ends_other_sessions(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    page = browser_page.page
    _sign_up_and_log_in(page, browser_page.origin)
    status, body, _ = service_for_browser.call(
        "POST", "/login/", {"name": "alice", "password": PASSWORD}
    )
    assert status == 200
    other = body["token"]
    page.get_by_role("button", name="Log out everywhere").click()
    page.get_by_text("Logged out everywhere.").wait_for()
    assert service_for_browser.call("GET", "/me/", headers={"token": other})[0] == 401


def test_errors_read_as_text_next_to_their_form(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    service_for_browser.call("POST", "/signup/", {"name": "taken", "password": PASSWORD})
    page = browser_page.page
    _fill_in(page, browser_page.origin, "taken")
    page.get_by_role("button", name="Sign up").click()
    alert = page.locator("#credentials-error")
    alert.get_by_text("That name is taken").wait_for()
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()
    alert.get_by_text("Wrong name or password.").wait_for()
    page.get_by_label("Name").fill("a b")
    page.get_by_role("button", name="Log in").click()
    alert.get_by_text("Name: must be 1-64 letters").wait_for()
    # Console errors are the browser's report of the 4xx answers: expected here.
    assert browser_page.blocked == []


@pytest.mark.parametrize("live", [True, False])
def test_a_session_ended_elsewhere_returns_to_the_login_form(
    browser_page: BrowserPage, service_for_browser: Service, live: bool
) -> None:
    page = browser_page.page
    if not live:  # no stream to say so: the next call finds out
        page.route("**/events/**", lambda route: route.abort())
    _sign_up_and_log_in(page, browser_page.origin)
    token = _token_cookie(page)
    service_for_browser.call("POST", "/logout/", headers={"token": token})  # ended elsewhere
    if not live:
        page.get_by_label("Message").fill("too late")
        page.get_by_role("button", name="Send").click()
    # With the stream, the page learns of it by itself, at once.
    page.get_by_text("Your session has ended: log in again.").wait_for(timeout=5000)
    assert page.get_by_role("button", name="Log in").is_visible()


def test_keyboard_only(browser_page: BrowserPage, service_for_browser: Service) -> None:
    service_for_browser.call("POST", "/signup/", {"name": "keys", "password": PASSWORD})
    page = browser_page.page
    page.goto(browser_page.origin + "/")
    page.wait_for_function("() => document.activeElement.id === 'name'")  # focused on arrival
    page.keyboard.type("keys")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")  # the form's first button: Log in
    page.wait_for_function("() => document.activeElement.id === 'message'")  # once signed in
    page.keyboard.type("typed")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # Send
    page.get_by_role("list", name="History").locator("li").first.wait_for()
    assert _texts(page, "#history") == ["typed"]


@pytest.mark.parametrize("signed_in", [False, True])
def test_a_narrow_phone_screen_has_no_horizontal_scroll(
    browser_page: BrowserPage, service_for_browser: Service, signed_in: bool
) -> None:
    page = browser_page.page
    page.set_viewport_size({"width": 360, "height": 740})
    if signed_in:
        _sign_up_and_log_in(page, browser_page.origin)
        _send(page, "a-long-word-without-any-space-" * 8)
        page.get_by_role("list", name="History").locator("li").first.wait_for()
    else:
        page.goto(browser_page.origin + "/")
        page.get_by_label("Name").wait_for()
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width


class _EvilSite(http.server.BaseHTTPRequestHandler):
    api = ""

    def do_GET(self) -> None:
        page = f"""<!doctype html><script>
        Promise.allSettled([
          fetch("{self.api}/message/", {{method: "POST", mode: "no-cors", credentials: "include",
            headers: {{"Content-Type": "text/plain"}}, body: '{{"text": "forged plain"}}'}}),
          fetch("{self.api}/message/", {{method: "POST", credentials: "include",
            headers: {{"Content-Type": "application/json"}}, body: '{{"text": "forged json"}}'}}),
        ]).then(() => {{ document.title = "done"; }});
        </script>"""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def evil_origin(service_for_browser: Service) -> Iterator[str]:
    """A page of another origin on the same site (so the browser sends the cookies along)."""
    handler = type("Evil", (_EvilSite,), {"api": service_for_browser.url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_page_of_another_origin_cannot_post_a_message(
    browser_page: BrowserPage, service_for_browser: Service, evil_origin: str
) -> None:
    page = browser_page.page
    _sign_up_and_log_in(page, browser_page.origin)
    token = _token_cookie(page)
    page.context.route(evil_origin + "/**", lambda route: route.continue_())
    page.goto(evil_origin + "/")
    deadline = time.monotonic() + 10
    while page.title() != "done" and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert page.title() == "done"
    status, body, _ = service_for_browser.call("GET", "/messages/", headers={"token": token})
    assert status == 200
    assert body["messages"] == []


def _log_in(page: Any, origin: str, name: str, *, keep: bool) -> None:
    _fill_in(page, origin, name)
    if keep:
        page.get_by_label("Keep me signed in").check()
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Signed in as").wait_for()


def _cookie(page: Any, name: str) -> str:
    found = [c["value"] for c in page.context.cookies() if c["name"] == name and c["value"]]
    return found[0] if found else ""


# What a script of the page can get from the API with the cookies alone: a refresh by cookie.
SCRIPT_REFRESH = """async () => {
  const csrf = document.cookie.split('; ').find((c) => c.startsWith('csrf_token='));
  const response = await fetch('/token/refresh/', {
    method: 'POST', headers: {'X-CSRF-Token': csrf.split('=')[1]},
  });
  return [response.status, await response.text()];
}"""


def test_real_expiry_keeps_me_signed_in_and_log_out_still_ends_the_session(
    redis_server: RedisServer,
) -> None:
    redis_server.client().flushall()
    service = start_service(
        {"REDIS_URL": redis_server.url, "JWT_TTL_SECONDS": "60", "JWT_LEEWAY_SECONDS": "0"}
    )
    try:
        for name in ("alice", "bob"):
            service.call("POST", "/signup/", {"name": name, "password": PASSWORD})
        with open_browser(service.url) as new_page:
            a, b = new_page(), new_page()
            _log_in(a.page, a.origin, "alice", keep=True)
            _log_in(b.page, b.origin, "bob", keep=True)
            first = _cookie(a.page, "token")
            bob_refresh = _cookie(b.page, "refresh_token")
            assert first
            assert bob_refresh
            # No script of the page ever gets a token in a body.
            status, body = a.page.evaluate(SCRIPT_REFRESH)
            assert (status, json.loads(body)) == (200, {"name": "alice"})
            renewed = _cookie(a.page, "token")
            time.sleep(61)  # every token expires, for real; the browsers keep their cookies
            # Alice's page goes on: its expired token is refused, renewed, and the call made again.
            _send(a.page, "after expiry")
            a.page.get_by_role("list", name="History").get_by_text("after expiry").wait_for()
            assert _cookie(a.page, "token") not in ("", first, renewed)
            assert a.page.get_by_label("Signed in as").is_visible()
            # Bob logs out after his token expired: his session ends anyway.
            b.page.get_by_role("button", name="Log out", exact=True).click()
            b.page.get_by_text("Logged out.").wait_for()
            assert a.blocked == b.blocked == []
        status, reply, _ = service.call("POST", "/token/refresh/", {"refresh_token": bob_refresh})
        assert (status, reply["error"]) == (401, "invalid_token")
        bob = service.login("bob")
        sessions = service.call("GET", "/sessions/", headers={"token": bob})[1]["sessions"]
        assert [s["current"] for s in sessions] == [True]  # only this new one
    finally:
        service.stop()


def test_messages_between_users_and_a_conversation(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    bob = service_for_browser.user("bob")
    service_for_browser.user("carol")
    page = browser_page.page
    _sign_up_and_log_in(page, browser_page.origin)
    page.get_by_label("To", exact=True).fill("bob")
    _send(page, "hello bob")
    page.get_by_label("To", exact=True).fill("")
    _send(page, "a note")
    service_for_browser.call(
        "POST", "/message/", {"text": "hi alice", "to": "alice"}, {"token": bob}
    )
    page.get_by_label("To", exact=True).fill("ghost")
    page.get_by_label("Message").fill("anyone?")
    page.get_by_role("button", name="Send").click()
    page.locator("#compose-error").get_by_text("No user has that name.").wait_for()
    page.reload()
    history = page.get_by_role("list", name="History")
    history.get_by_text("hi alice").wait_for()
    assert _texts(page, "#history") == ["hi alice", "a note", "hello bob"]
    froms = [item.inner_text() for item in history.locator(".from").all()]
    assert froms == ["From bob", "Note to yourself", "To bob"]
    # The conversation with bob: only the messages between alice and bob.
    history.get_by_role("button", name="Conversation with bob").first.click()
    page.get_by_role("heading", name="Conversation with bob").wait_for()
    page.wait_for_function("document.querySelectorAll('#history > li').length === 2")
    assert _texts(page, "#history") == ["hi alice", "hello bob"]
    assert page.get_by_label("To", exact=True).input_value() == "bob"
    page.get_by_role("button", name="All messages").click()
    page.get_by_role("heading", name="History").wait_for()
    assert browser_page.blocked == []


def test_new_messages_appear_live_and_none_is_missed_across_a_network_drop(
    service_for_browser: Service,
) -> None:
    service = service_for_browser
    alice = service.user("alice")
    service.user("bob")
    network = TcpProxy(int(service.url.rsplit(":", 1)[1]))  # between bob's browser and us
    try:
        with open_browser(network.url) as new_page:
            bob = new_page()
            _fill_in(bob.page, bob.origin, "bob")
            bob.page.get_by_role("button", name="Log in").click()
            bob.page.get_by_label("Signed in as").wait_for()
            history = bob.page.get_by_role("list", name="History")
            time.sleep(0.5)  # the stream is open

            def send(text: str) -> None:
                body = {"text": text, "to": "bob"}
                assert service.call("POST", "/message/", body, {"token": alice})[0] == 201

            started = time.monotonic()
            send("live one")
            history.get_by_text("live one").wait_for(timeout=1000)  # within 1 s, no reload
            assert time.monotonic() - started < 1.0
            network.down()  # bob goes offline: his stream is cut
            time.sleep(0.5)
            for n in range(5):
                send(f"while offline {n}")
            time.sleep(0.5)
            network.up = True  # back online: the browser reconnects by itself
            history.get_by_text("while offline 4").wait_for(timeout=15000)
            time.sleep(0.5)  # anything repeated would have come by now
            assert _texts(bob.page, "#history") == [
                *(f"while offline {n}" for n in reversed(range(5))),
                "live one",
            ]
            assert bob.blocked == []
    finally:
        network.close()
    # The page's EventSource came back, resuming after the last event it had.
    assert service.output.count("GET /events/ 200") >= 2
