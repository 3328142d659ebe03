"""Which Redis error replies mean "unavailable for now" (503), and which are bugs (500)."""

from __future__ import annotations

import pytest
import redis.exceptions as rex
from redis._parsers import BaseParser

from storage.connection import unavailable_reason

# (reply, reason) pairs; the reply is what Redis sends after the "-".
REPLIES = [
    ("OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
    ("NOREPLICAS Not enough good replicas to write.", "NOREPLICAS"),
    ("BUSY Redis is busy running a script. You can only call SCRIPT KILL", "BUSY"),
    ("READONLY You can't write against a read only replica.", "READONLY"),
    ("MISCONF Redis is configured to save RDB snapshots, but it's unable to", "MISCONF"),
    ("LOADING Redis is loading the dataset in memory", "LOADING"),
    ("TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN"),
    ("CLUSTERDOWN The cluster is down", "CLUSTERDOWN"),
    (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "MASTERDOWN",
    ),
    # A refusal met inside a script keeps its code first.
    (
        "NOREPLICAS Not enough good replicas to write. script: 4fb3ed, on @user_script:1.",
        "NOREPLICAS",
    ),
    # A key a script builds itself, looked for while its slot migrates away (redis.call).
    (
        "Script attempted to access a non local key in a cluster node script: e8c770, on "
        "@user_script:7.",
        "TRYAGAIN",
    ),
    ("ERR wrong number of arguments for 'get' command", None),  # a bug: stays a 500
    ("WRONGTYPE Operation against a key holding the wrong kind of value", None),
    ("ERR invalid expire time in 'set' command", None),
]


@pytest.mark.parametrize(("reply", "reason"), REPLIES)
def test_error_replies(reply: str, reason: str | None) -> None:
    # As the pipelined connection and redis-py both parse them.
    parsed = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
    assert unavailable_reason(parsed) == reason
    assert unavailable_reason(rex.ResponseError(reply)) == reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (rex.ConnectionError("lost"), "ConnectionError"),
        (rex.TimeoutError("slow"), "TimeoutError"),
        (TimeoutError(), "TimeoutError"),
        (ValueError("a bug"), None),
    ],
)
def test_connection_failures(error: Exception, reason: str | None) -> None:
    assert unavailable_reason(error) == reason
