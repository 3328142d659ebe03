"""The README and docs/ against the code: their shell examples pasted into a shell as a new user
would, against a real service, and every error code, metric, Redis key and link they must name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from api.errors import ErrorCode
from api.metrics import COUNTERS, GAUGES, HISTOGRAMS
from storage import keys
from support.processes import ROOT, start_service

# Each file's examples (its ```sh blocks, between two headings) and what their output must hold.
WALKTHROUGHS = {
    ("README.md", "## Try it", "## Documentation"): (
        '{"name":"some_name"}',
        '{"2":"some_text","1":"another_text"}',
        '{"from":"some_name","to":"friend","text":"hello friend"}\n'
        '{"from":"some_name","to":"some_name","text":"another_text"}',
        '{"from":"some_name","text":"hello friend"}\n{"from"',  # one copy, whatever the retry
        '{"from":"some_name","to":"friend","text":"are you there?"}',
        '{"error":"token_revoked","message":"the token\'s session has ended"}',
        '{"status":"logged out everywhere"}',
        'Set-Cookie: token=""; Path=/; Max-Age=0',
        '{"status":"ready"}',
    ),
    ("docs/api.md", "## Messages between users", "## Live delivery"): (
        '["message 1",null]',
        '{"error":"unknown_recipient","message":"no user has this name"}',
        "204",
        '{"error":"recipient_unavailable"',
        '{"blocks":["ann"]}',
    ),
    ("docs/api.md", "## Sessions, cookies and your data", None): (
        '{"name":"cat"}',
        '["refresh_token","token"]',
        '{"error":"token_reused"',
        '{"user_agent":"curl/',
        '{"name":"cat","messages":1,"blocks":[]}',
        "204",
    ),
}


def _section(path: str, start: str, end: str | None) -> str:
    text = (ROOT / path).read_text()
    begin = text.index(start)
    return text[begin : text.index(end, begin) if end else None]


def _examples(path: str, start: str, end: str | None) -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", _section(path, start, end), re.S))


def _run(script: str) -> str:
    running = start_service({"REDIS_URL": "memory://"})
    try:
        script = script.replace("API=http://localhost:8000", f"API={running.url}")
        assert f"API={running.url}" in script
        result = subprocess.run(
            ["bash", "-e", "-u", "-o", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        running.stop()
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("where", "expected"), list(WALKTHROUGHS.items()))
def test_the_examples_work_when_pasted(
    where: tuple[str, str, str | None], expected: tuple[str, ...]
) -> None:
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is not installed (CI must install it)")
            pytest.skip(f"{tool} is not installed")
    out = _run(_examples(*where))
    for text in expected:
        assert text in out, text
    if where[0] == "README.md":
        # some_text, another_text, and the retried message answered twice: four 201s.
        assert out.count('{"status":"Сообщение создано"}') == 4
        assert out.count('{"from":"some_name","text":"hello friend"}') == 1


def test_every_error_code_is_in_the_api_docs() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = {code.slug for code in ErrorCode if f"`{code.slug}`" not in text}
    assert not missing


def test_every_metric_is_in_the_operations_docs() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    names = {*COUNTERS, *HISTOGRAMS, *GAUGES}
    assert not {name for name in names if not re.search(rf"`{name}(_total)?`", text)}


def test_every_redis_key_is_in_the_layout() -> None:
    text = _section("docs/scaling.md", "## Redis layout", None)
    documented = set(re.findall(r"^\| `([^`]+)`", text, re.M))
    made = set()
    for name in dir(keys):
        function = getattr(keys, name)
        if not callable(function) or name.startswith("_") or name.endswith("_prefix"):
            continue
        arity = function.__code__.co_argcount
        made.add(function(*["<x>"] * arity))
    # `user:{<x>}` is documented as `user:{<name>}`, `family:{<x>}:<x>` as `family:{<name>}:<id>`.
    shapes = {re.sub(r"<[^>]+>", "<x>", key) for key in documented}
    assert made <= shapes, made - shapes


def test_links_between_the_docs_lead_somewhere() -> None:
    for page in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "bench/README.md",
    ]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_readme_stays_short() -> None:
    assert len(Path(ROOT / "README.md").read_text().splitlines()) <= 170
