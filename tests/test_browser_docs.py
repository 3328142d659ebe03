"""/docs in a real browser (headless Chromium), with nothing reachable but the service."""

from __future__ import annotations

import json
import urllib.request

import pytest

from support.processes import Service
from tests.conftest import BrowserPage

pytestmark = [pytest.mark.redis_server, pytest.mark.browser]


def _operations(service: Service) -> list[tuple[str, str]]:
    with urllib.request.urlopen(service.url + "/docs/openapi.json") as response:  # noqa: S310
        document = json.load(response)
    return sorted(
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    )


def test_docs_render_every_operation_offline(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    page = browser_page.page
    response = page.goto(browser_page.origin + "/docs")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    page.wait_for_selector(".opblock", timeout=15000)
    shown = sorted(
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in page.locator(".opblock").all()
    )
    assert shown == _operations(service_for_browser)
    assert browser_page.blocked == []
    assert browser_page.errors == []


def _open(page: object, method: str, path: str) -> object:
    block = page.locator(f".opblock-{method}").filter(  # type: ignore[attr-defined]
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')  # type: ignore[attr-defined]
    )
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    return block


def test_authorize_then_try_it_out_sends_and_lists_a_message(
    browser_page: BrowserPage, service_for_browser: Service
) -> None:
    token = service_for_browser.user()
    page = browser_page.page
    page.goto(browser_page.origin + "/docs")
    page.wait_for_selector(".opblock", timeout=15000)

    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux")
    header_scheme = dialog.locator(".auth-container").filter(has_text="tokenHeader")
    header_scheme.locator("input").fill(token)
    header_scheme.locator("button.authorize").click()
    dialog.locator("button.btn-done").first.click()

    send = _open(page, "post", "/message")
    send.locator("textarea.body-param__text").fill('{"text": "from the browser"}')  # type: ignore[attr-defined]
    send.locator("button.execute").click()  # type: ignore[attr-defined]
    status = send.locator(".live-responses-table tr.response .response-col_status").first  # type: ignore[attr-defined]
    status.wait_for(timeout=15000)
    assert status.inner_text().strip() == "201"

    listing = _open(page, "get", "/messages")
    listing.locator("button.execute").click()  # type: ignore[attr-defined]
    body = listing.locator(".live-responses-table tr.response .response-col_description pre").first  # type: ignore[attr-defined]
    body.wait_for(timeout=15000)
    assert "from the browser" in body.inner_text()
    # The pasted token is not kept where any script of this origin could read it.
    assert token not in page.evaluate("JSON.stringify(localStorage)")
    assert browser_page.blocked == []
    assert browser_page.errors == []
