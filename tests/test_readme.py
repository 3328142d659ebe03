"""The README's walkthrough, pasted into a shell as a new user would, against a real service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from support.processes import ROOT, start_service


def _walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Try it") : text.index("## The API")]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def test_the_try_it_blocks_work_when_pasted() -> None:
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is not installed (CI must install it)")
            pytest.skip(f"{tool} is not installed")
    running = start_service({"REDIS_URL": "memory://"})
    try:
        script = _walkthrough().replace("API=http://localhost:8000", f"API={running.url}")
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
    out = result.stdout
    for expected in (
        '{"name":"some_name"}',
        '{"2":"some_text","1":"another_text"}',
        '{"from":"some_name","to":"some_name","text":"another_text"}',
        '{"error":"token_revoked","message":"the token\'s session has ended"}',
        '{"status":"logged out everywhere"}',
        'Set-Cookie: token=""; Path=/; Max-Age=0',
        '{"status":"ready"}',
        '["refresh_token","token"]',
        '{"error":"token_reused"',
        '"current":true}',
        '{"name":"some_name","messages":3}',
        "204",
    ):
        assert expected in out, expected
    assert out.count('{"status":"Сообщение создано"}') == 3
