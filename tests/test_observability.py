"""What an operator watches: /metrics, JSON logs, request ids."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import metrics as metrics_module
from api.logs import JsonFormatter, TextFormatter
from api.metrics import Metrics
from api.settings import Settings
from support.processes import PASSWORD, SECRET, RedisServer, Service, start_service
from tests.conftest import Api

METRICS_TOKEN = "metrics-token-0123456789"


def _value(text: str, series: str) -> float:
    """The value of one exact series (name and labels as rendered) in a metrics text."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} not in:\n{text}")


def test_metrics_count_requests_errors_round_trips_and_revocations(api: Api) -> None:
    token = api.user("alice")
    assert api.send(token, "hi").status == 201
    assert api.post("/login/", json={"name": "alice", "password": "wrong password"}).status == 401
    assert api.post("/logout/", headers={"token": token}).status == 200
    response = api.get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert _value(text, 'http_requests_total{method="POST",route="/message",status="201"}') == 1
    assert _value(text, 'http_requests_total{method="POST",route="/login",status="401"}') == 1
    assert _value(text, 'api_errors_total{code="invalid_credentials"}') == 1
    assert _value(text, "tokens_revoked_total") == 1
    assert _value(text, 'http_request_duration_seconds_count{route="/message"}') == 1
    assert _value(text, 'http_request_duration_seconds_bucket{le="+Inf",route="/message"}') == 1
    assert _value(text, "bcrypt_wait_seconds_count") >= 3  # signup, login, failed login
    assert _value(text, "bcrypt_queue_depth") == 0
    # Pipelined (one Redis) or direct (fakeredis, cluster): every call is counted.
    assert _value(text, "redis_calls_total") >= _value(text, "redis_round_trips_total") > 0


def test_metrics_can_need_a_token_or_be_off(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    guarded = make_api(settings.replace(metrics_token=METRICS_TOKEN))
    refused = guarded.get("/metrics")
    assert refused.status == 401
    assert refused.json == {
        "error": "metrics_unauthorized",
        "message": "the metrics need Authorization: Bearer <METRICS_TOKEN>",
    }
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status == 401
    allowed = guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert allowed.status == 200
    off = make_api(settings.replace(metrics=False))
    assert off.get("/metrics").status == 404


def test_refused_redis_calls_are_counted_by_reason(api: Api) -> None:
    api.services.users._monitor.failed("OOM")
    assert _value(api.get("/metrics").text, 'redis_failures_total{reason="OOM"}') == 1


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123", True), ("trace:4bf92f3577b34da6", True), ("x" * 129, False), ("a b", False)],
)
def test_a_short_printable_request_id_is_kept(api: Api, sent: str, kept: bool) -> None:
    echoed = api.get("/healthz", headers={"X-Request-ID": sent}).headers["x-request-id"]
    assert (echoed == sent) == kept
    assert re.fullmatch(r"[!-~]{1,128}", echoed)


def _scrape(service: Service) -> str:
    with urllib.request.urlopen(service.url + "/metrics", timeout=5) as response:  # noqa: S310
        text: str = response.read().decode()
        return text


@pytest.mark.redis_server
def test_two_workers_report_the_whole_services_numbers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    running = start_service(
        {"REDIS_URL": redis_server.url, "WORKERS": "2", "METRICS_DIR": str(tmp_path)}
    )
    series = 'http_requests_total{method="GET",route="/me",status="401"}'
    try:
        for _ in range(40):  # each on a new connection: the two workers share them
            assert running.call("GET", "/me/")[0] == 401
        deadline = time.monotonic() + 15
        seen: list[float] = []
        while time.monotonic() < deadline:
            seen = [_value(_scrape(running), series) for _ in range(6)]
            if seen == [40.0] * 6:
                break
            time.sleep(0.2)
        files = sorted(tmp_path.glob("*.json"))
        # A third, live process's tallies (this test's own pid) are added in as a worker's.
        snapshot = json.loads(files[0].read_text())
        snapshot["pid"] = os.getpid()
        snapshot["counters"]["http_requests"] = [[["/me", "GET", "401"], 5]]
        (tmp_path / f"{os.getpid()}.json").write_text(json.dumps(snapshot))
        with_third = [_value(_scrape(running), series) for _ in range(6)]
    finally:
        running.stop()
    assert seen == [40.0] * 6
    assert len(files) == 2  # one per worker
    assert with_third == [45.0] * 6


@pytest.mark.redis_server
@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_logs_are_one_object_per_line_and_keep_secrets_out(
    redis_server: RedisServer, workers: str
) -> None:
    redis_server.client().flushall()
    running = start_service(
        {"REDIS_URL": redis_server.url, "LOG_FORMAT": "json", "WORKERS": workers}
    )
    credentials = {"name": "logger", "password": PASSWORD}
    try:
        running.call("POST", "/signup/", credentials)
        token = running.call("POST", "/login/", credentials)[1]["token"]
        running.call("POST", "/message/", {"text": "hi"}, {"token": token, "X-Request-ID": "r-1"})
    finally:
        output = running.stop()  # a stopping service writes out its access log
    lines = [line for line in output.splitlines() if line.strip()]
    # The whole output on failure: a line that is not JSON (a traceback?) says where it came from.
    assert all(line.startswith("{") for line in lines), output
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    message = next(e for e in entries if e.get("request_id") == "r-1")
    assert message["logger"] == "api.access"
    assert message["route"] == "/message"
    assert message["status"] == 201
    assert message["client"] == "127.0.0.1"
    assert message["user"] == "logger"
    assert message["duration_ms"] >= 0
    assert any(e["logger"].startswith("sanic") for e in entries)
    for secret in (token, PASSWORD, SECRET):
        assert secret not in output


def test_unknown_methods_share_one_label_and_the_text_stays_well_formed() -> None:
    tallies = Metrics()
    for method in ("GET", "GET\udcff", "FOO", "M" * 200, "get", "PROPFIND"):
        tallies.request("unmatched", method, 405, 0.001)
    labels = {labels[1] for labels in tallies.counters["http_requests"]}
    assert labels == {"GET", "other"}
    families = {f.name: f for f in text_string_to_metric_families(tallies.text().decode())}
    assert len(families["http_requests"].samples) == 2
    orjson.dumps(tallies.snapshot())  # what a worker writes for the others


@pytest.mark.parametrize(
    "planted",
    [
        b"{}",
        b"[]",
        b"not json",
        b'{"pid": 1, "counters": {"nonsense": []}, "histograms": {}, "gauges": {}}',
        b'{"pid": 1, "counters": {"http_requests": [[["a"], 1]]}, "histograms": {}, "gauges": {}}',
    ],
)
def test_a_file_in_the_metrics_dir_that_is_not_a_tally_is_skipped_and_logged_once(
    tmp_path: Path, planted: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    tallies = Metrics(str(tmp_path))
    tallies.request("/me", "GET", 200, 0.01)
    (tmp_path / "12345.json").write_bytes(planted)
    with caplog.at_level(logging.WARNING, logger="api.metrics"):
        first, second = tallies.text(), tallies.text()
    assert first == second
    assert b'http_requests_total{method="GET",route="/me",status="200"} 1.0' in first
    warnings = [r.getMessage() for r in caplog.records if r.name == "api.metrics"]
    assert warnings == ["12345.json in METRICS_DIR is not a worker's tallies: skipped"]


def test_a_worker_writes_its_tallies_privately_and_never_through_a_planted_link(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    directory = tmp_path / "metrics"
    directory.mkdir()
    pid = os.getpid()
    (directory / f"{pid}.tmp").symlink_to(outside)
    (directory / f"{pid}.json").symlink_to(outside)
    tallies = Metrics(str(directory))
    tallies.write()
    written = directory / f"{pid}.json"
    assert not written.is_symlink()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert json.loads(written.read_text())["pid"] == pid
    assert outside.read_text() == "keep me"
    # A link named like another worker's file is not read either.
    (directory / "1.json").symlink_to(written)
    assert b"http_requests_total" in tallies.text()


@pytest.mark.anyio
async def test_a_writer_that_fails_logs_and_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics_module, "WRITE_SECONDS", 0.01)
    tallies = Metrics(str(tmp_path))
    failures = iter([ValueError("a value JSON cannot hold"), OSError("disk full")])
    real_write = tallies.write

    def write() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_write()

    monkeypatch.setattr(tallies, "write", write)
    with caplog.at_level(logging.WARNING, logger="api.metrics"):
        tallies.start()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if (tmp_path / f"{os.getpid()}.json").exists():
                break
        await tallies.stop()
    assert (tmp_path / f"{os.getpid()}.json").exists()  # it went on after failing twice
    assert [r.getMessage() for r in caplog.records if r.name == "api.metrics"] == [
        "could not write the metrics of this worker: a value JSON cannot hold"
    ]  # once a minute at most


def test_json_log_lines_stay_json_whatever_fails_in_logging() -> None:
    formatter = JsonFormatter()
    records = [
        logging.LogRecord("api", logging.INFO, __file__, 1, "%d items", ("x",), None),
        logging.LogRecord("api", logging.INFO, __file__, 1, "GET \udcff \x1b[2K\rFAKE", (), None),
        logging.LogRecord("api", logging.INFO, __file__, 1, "%s", (object(),), None),
    ]
    records[1].__dict__["path"] = "/\udcff"
    lines = [formatter.format(record) for record in records]
    entries = [json.loads(line) for line in lines]
    assert "\n" not in "".join(lines)
    assert entries[0]["format_error"].startswith("TypeError")
    assert entries[1]["message"] == "GET \\udcff \\x1b[2K\\x0dFAKE"
    assert entries[1]["path"] == "/\\udcff"


def test_text_logs_escape_what_a_client_sent() -> None:
    sent = ("GET\udcff", "/\x1b[2K\rFAKE")  # a byte that is not UTF-8, as Sanic keeps it
    record = logging.LogRecord(
        "api.errors", logging.INFO, __file__, 1, "hung up: %s %s", sent, None
    )
    line = TextFormatter().format(record)
    assert line.endswith("hung up: GET\\udcff /\\x1b[2K\\x0dFAKE")
