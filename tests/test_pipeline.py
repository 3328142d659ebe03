"""The auto-pipelined connection on a real redis-server: batching, order, errors, faults, setup."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions as rex
from redis.commands.core import AsyncScript

from storage import pipeline
from storage.connection import Client, Monitor, create_memory_redis, create_redis
from storage.pipeline import auto_pipeline, register_script
from support.processes import RedisClusterServers, RedisServer, free_port
from tests.conftest import start_redis_server

pytestmark = [pytest.mark.redis_server, pytest.mark.anyio]

ECHO = "return {ARGV[1], redis.call('INCR', KEYS[1])}"
FAILS_ON_BAD = """
if ARGV[1] == 'bad' then return redis.error_reply('ERR bad input') end
return ARGV[1]
"""


def _pipelined(client: Client, source: str) -> Any:
    """A script on an auto-pipeline of its own; `_close` closes that pipeline."""
    pipe = auto_pipeline(client)
    assert pipe is not None
    call = register_script(client, source, pipeline=pipe)
    call.pipeline = pipe  # type: ignore[attr-defined]
    return call


async def _close(call: Any) -> None:
    await call.pipeline.aclose()


@pytest.fixture
def server(private_redis: RedisServer) -> RedisServer:
    return private_redis


def _connections_received(inspect: redis.Redis) -> int:
    stats: dict[str, Any] = inspect.info("stats")
    return int(stats["total_connections_received"])


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    server: RedisServer,
) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    replies = [await echo(keys=["n"], args=["first"])]  # connects, loads the script
    inspect = server.client()
    before = _connections_received(inspect)
    replies += await asyncio.gather(*(echo(keys=["n"], args=[f"m{i}"]) for i in range(200)))
    replies += [await echo(keys=["n"], args=["last"])]
    opened = _connections_received(inspect) - before
    await _close(echo)
    await client.aclose()
    # Each reply is its own call's, in the order Redis ran them.
    assert replies == [["first", 1], *([f"m{i}", i + 2] for i in range(200)), ["last", 202]]
    assert opened == 0  # all on the line opened by the first call


async def test_an_error_reply_fails_only_its_own_call(server: RedisServer) -> None:
    client = create_redis(server.url)
    check = _pipelined(client, FAILS_ON_BAD)
    first, bad, last = await asyncio.gather(
        *(check(keys=[], args=[arg]) for arg in ("a", "bad", "c")), return_exceptions=True
    )
    assert (first, last) == ("a", "c")
    assert isinstance(bad, rex.ResponseError)
    assert "bad input" in str(bad)


@pytest.mark.parametrize("kind", ["one Redis", "cluster"])
async def test_a_call_that_cannot_be_sent_fails_alone_and_at_once(
    kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        client = create_redis(cluster.url, cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("private_redis")
        client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["{n}"], args=["first"])  # connected, the script loaded
    # What an ISO-8859-1 header byte becomes in a str (Sanic decodes with surrogateescape).
    unpackable = "J\udcfcrgen"
    calls = [echo(keys=["{n}"], args=[f"m{i}"]) for i in range(100)]
    calls.insert(50, echo(keys=["{n}"], args=[unpackable]))
    async with asyncio.timeout(2):  # at once: nothing waits for a watchdog or a timeout
        replies = await asyncio.gather(*calls, return_exceptions=True)
    await _close(echo)
    await client.aclose()
    failed = replies.pop(50)
    assert isinstance(failed, rex.DataError), failed
    assert "cannot be sent to Redis" in str(failed)
    assert replies == [[f"m{i}", i + 2] for i in range(100)]  # every other call, in order


async def test_a_flushed_script_cache_is_reloaded(server: RedisServer) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    replies = [await echo(keys=["n"], args=["before"])]
    await client.script_flush()
    replies += await asyncio.gather(*(echo(keys=["n"], args=[f"m{i}"]) for i in range(3)))
    before, *again = replies
    assert before == ["before", 1]
    # Each call ran once more, loaded by redis-py one by one, so in no particular order.
    assert sorted(text for text, _ in again) == ["m0", "m1", "m2"]
    assert sorted(count for _, count in again) == [2, 3, 4]


async def test_a_caller_that_gives_up_does_not_shift_the_replies(server: RedisServer) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["n"], args=["first"])  # connects, loads the script
    abandoned = asyncio.ensure_future(echo(keys=["n"], args=["gone"]))
    kept = asyncio.ensure_future(echo(keys=["n"], args=["kept"]))
    await asyncio.sleep(0)  # both are written in the same batch
    abandoned.cancel()
    # Redis ran the abandoned call (its INCR counts), but nobody got its reply.
    assert await kept == ["kept", 3]
    assert await echo(keys=["n"], args=["next"]) == ["next", 4]


async def test_a_lost_connection_fails_the_calls_in_flight_then_reconnects(
    server: RedisServer,
) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["n"], args=["first"])
    server.process.send_signal(signal.SIGSTOP)  # so that the next call waits for its reply
    waiting = asyncio.ensure_future(echo(keys=["n"], args=["lost"]))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    server.process.kill()
    server.process.wait()
    with pytest.raises(rex.ConnectionError):
        await waiting
    elapsed = time.monotonic() - started
    server.start()  # empty, and without the script: it is loaded again
    assert elapsed < 0.3  # the loss is noticed at once, not at the time bound
    assert await echo(keys=["n"], args=["again"]) == ["again", 1]


async def test_a_connection_closed_while_idle_is_reopened(server: RedisServer) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    replies = [await echo(keys=["n"], args=["first"])]
    inspect = server.client()
    before = _connections_received(inspect)
    assert inspect.client_kill_filter(_type="normal", skipme=True) >= 1
    await asyncio.sleep(0.05)
    replies += [await echo(keys=["n"], args=["second"])]
    assert _connections_received(inspect) - before == 1  # a new line
    assert replies == [["first", 1], ["second", 2]]


async def test_a_hanging_redis_fails_the_calls_in_time_and_recovers(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "CALL_TIMEOUT_SECONDS", 0.3)
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["n"], args=["first"])
    server.process.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    try:
        failures = await asyncio.gather(
            *(echo(keys=["n"], args=[f"m{i}"]) for i in range(5)), return_exceptions=True
        )
    finally:
        server.process.send_signal(signal.SIGCONT)
    elapsed = time.monotonic() - started
    assert all(isinstance(f, TimeoutError) for f in failures), failures
    assert 0.3 <= elapsed < 1.0
    assert (await echo(keys=["n"], args=["back"]))[0] == "back"


async def test_batches_sent_while_the_socket_is_full_go_out_after_it_drains(
    server: RedisServer,
) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["n"], args=["first"])
    big = "x" * (16 << 20)  # more than the kernel and the transport take while Redis is stopped
    server.process.send_signal(signal.SIGSTOP)
    try:
        stored = echo.pipeline.call(None, (), ("SET", "big", big))
        await asyncio.sleep(0.05)  # the batch is written until the socket is full
        later = [echo(keys=["n"], args=[f"m{i}"]) for i in range(20)]
        await asyncio.sleep(0.05)  # these batches wait for the socket to drain
    finally:
        server.process.send_signal(signal.SIGCONT)
    replies = await asyncio.gather(stored, *later)
    size = await echo.pipeline.call(None, (), ("STRLEN", "big"))
    await _close(echo)
    await client.aclose()
    assert replies == ["OK", *([f"m{i}", i + 2] for i in range(20))]
    assert size == len(big)


async def test_no_redis_fails_fast_with_a_connection_error(server: RedisServer) -> None:
    server.stop()
    echo = _pipelined(create_redis(server.url), ECHO)
    started = time.monotonic()
    with pytest.raises(rex.ConnectionError) as failure:
        await echo(keys=["n"], args=["x"])
    assert time.monotonic() - started < 1.0
    assert f"127.0.0.1:{server.port}" in str(failure.value)


async def _echo_once(url: str, text: str) -> Any:
    echo = _pipelined(create_redis(url), ECHO)
    try:
        return await echo(keys=["n"], args=[text])
    finally:
        await _close(echo)


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path, password="s3cret-pass")
    try:
        assert await _echo_once(server.url.replace("/0", "/3"), "in db 3") == ["in db 3", 1]
        inspect = server.client()
        assert inspect.get("n") is None
        inspect.select(3)
        assert inspect.get("n") == "1"
        with pytest.raises(rex.AuthenticationError):
            await _echo_once(server.url.replace("s3cret-pass", "wrong"), "x")
        with pytest.raises(rex.ConnectionError, match="refused the set-up"):
            await _echo_once(server.url.replace("/0", "/99"), "x")  # no such database
    finally:
        server.stop()


async def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = start_redis_server(tmp_path, "--unixsocket", str(socket_path))
    try:
        url = f"unix://{socket_path}?db=2"
        assert await _echo_once(url, "over a socket") == ["over a socket", 1]
    finally:
        server.stop()


async def test_a_failure_names_the_server_but_never_the_password() -> None:
    port = free_port()  # nothing listens there
    echo = _pipelined(create_redis(f"redis://user:s3cret-pass@127.0.0.1:{port}/4"), ECHO)
    with pytest.raises(rex.ConnectionError) as failure:
        await echo(keys=["n"], args=["x"])
    assert f"127.0.0.1:{port}" in str(failure.value)
    assert "s3cret" not in str(failure.value)


async def test_the_embedded_store_calls_scripts_directly() -> None:
    trips: list[int] = []
    client = create_memory_redis()
    assert auto_pipeline(client) is None  # no auto-pipeline: each call is its own round trip
    monitor = Monitor(on_round_trip=trips.append)
    echo = register_script(client, ECHO, pipeline=None, monitor=monitor)
    replies = await asyncio.gather(*(echo(keys=["n"], args=[f"m{i}"]) for i in range(3)))
    assert replies == [["m0", 1], ["m1", 2], ["m2", 3]]
    assert trips == [1, 1, 1]


async def test_calls_of_one_loop_iteration_go_out_as_one_batch(server: RedisServer) -> None:
    trips: list[int] = []
    client = create_redis(server.url)
    pipe = auto_pipeline(client, Monitor(on_round_trip=trips.append))
    echo = register_script(client, ECHO, pipeline=pipe)
    await echo(keys=["n"], args=["first"])
    await asyncio.gather(*(echo(keys=["n"], args=[f"m{i}"]) for i in range(50)))
    assert pipe is not None
    await pipe.aclose()
    await client.aclose()
    assert trips == [1, 50]


class FakeRedis:
    """A server that speaks redis-py's connection handshake as Redis 7 does (`HELLO` 2 or 3,
    `AUTH`, `CLIENT SETNAME` and `SETINFO`, `SELECT`, a `PING` health check) and answers the
    command `GET probe` with `data`, whatever it is; it counts the connections it gets.

    Whichever of these a redis-py release sends while connecting (8.x asks for RESP3 with
    `HELLO 3`; 8.2 falls back to RESP2 when that is refused), the connection is set up as with a
    real server, so what the tests see is the pipeline's own handling of `data`.
    """

    HELLO_FIELDS = (
        ("server", "redis"),
        ("version", "7.0.15"),
        ("proto", None),
        ("id", 1),
        ("mode", "standalone"),
        ("role", "master"),
        ("modules", ()),
    )

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.connections = 0
        self.commands: list[list[bytes]] = []

    @classmethod
    def hello(cls, protocol: int) -> bytes:
        """HELLO's reply: a map in RESP3, a flat array in RESP2."""
        parts = []
        for key, value in cls.HELLO_FIELDS:
            parts.append(b"$%d\r\n%s\r\n" % (len(key), key.encode()))
            if value is None:
                value = protocol
            if isinstance(value, int):
                parts.append(b":%d\r\n" % value)
            elif isinstance(value, str):
                parts.append(b"$%d\r\n%s\r\n" % (len(value), value.encode()))
            else:
                parts.append(b"*0\r\n")
        head = b"%%%d\r\n" if protocol == 3 else b"*%d\r\n"
        count = len(cls.HELLO_FIELDS) if protocol == 3 else 2 * len(cls.HELLO_FIELDS)
        return head % count + b"".join(parts)

    def reply(self, command: list[bytes]) -> bytes:
        """What Redis would answer to `command` (and `data` to `GET probe`)."""
        name = command[0].upper()
        if name == b"HELLO":
            protocol = int(command[1]) if len(command) > 1 else 2
            return self.hello(protocol) if protocol in (2, 3) else b"-NOPROTO unsupported\r\n"
        if name in (b"AUTH", b"SELECT", b"CLIENT"):
            return b"+OK\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        if command == [b"GET", b"probe"]:
            return self.data
        return b"-ERR unknown command\r\n"

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                header = await reader.readline()
                if not header:
                    return
                assert header[:1] == b"*", header  # redis-py sends every command as an array
                command = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    command.append((await reader.readexactly(size + 2))[:-2])
                self.commands.append(command)
                writer.write(self.reply(command))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def _probe_fake(data: bytes, probes: int) -> tuple[list[Any], FakeRedis]:
    fake = FakeRedis(data)
    server = await asyncio.start_server(fake.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = auto_pipeline(create_redis(f"redis://127.0.0.1:{port}/0"))
    assert pipe is not None
    replies: list[Any] = []
    try:
        for _ in range(probes):
            replies += await asyncio.gather(
                pipe.call(None, (), ("GET", "probe")), return_exceptions=True
            )
            await asyncio.sleep(0.05)
    finally:
        await pipe.aclose()
        server.close()
    return replies, fake


async def test_the_fake_server_sets_connections_up_as_redis_does() -> None:
    replies, fake = await _probe_fake(b"$2\r\nok\r\n", probes=2)
    assert replies == ["ok", "ok"]
    assert fake.connections == 1  # one line for both calls: the handshake succeeded
    assert [b"GET", b"probe"] in fake.commands


async def test_garbage_fails_the_call_and_drops_the_connection() -> None:
    replies, fake = await _probe_fake(b"?not RESP\r\n", probes=2)
    assert all(isinstance(reply, rex.ConnectionError) for reply in replies), replies
    assert "unexpected data" in str(replies[0])
    assert fake.connections == 2  # the second call needed a new connection


async def test_a_reply_nobody_asked_for_drops_the_connection() -> None:
    replies, fake = await _probe_fake(b"+probe\r\n+EXTRA\r\n", probes=2)
    assert replies == ["probe", "probe"]  # each call got its own reply
    assert fake.connections == 2  # the extra reply ended the first connection


async def test_a_dropped_client_takes_its_pipeline_along(server: RedisServer) -> None:
    client = create_redis(server.url)
    pipe = auto_pipeline(client)
    echo = register_script(client, ECHO, pipeline=pipe)
    await echo(keys=["n"], args=["once"])
    assert pipe is not None
    await pipe.aclose()
    await client.aclose()
    dropped = weakref.ref(client)
    del client, pipe, echo
    gc.collect()
    assert dropped() is None


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "0" * 40, 2, "user:{ann}", "messages:{ann}", "hello", 10, 1.5),
        ("SET", "ключ", "значение ✓", b"\x00\xffraw"),
        ("PING",),
    ],
)
def test_the_pipeline_packs_commands_as_redis_py_does(args: tuple[Any, ...]) -> None:
    connection = redis.asyncio.Redis.from_url(
        "redis://127.0.0.1:1/0"
    ).connection_pool.make_connection()
    assert pipeline.packer(connection)(args) == b"".join(connection.pack_command(*args))


def test_a_connection_with_another_encoding_packs_with_it() -> None:
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0?encoding=latin-1")
    connection = client.connection_pool.make_connection()
    assert (
        pipeline.packer(connection)(("SET", "k", "é"))
        == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"
    )


def _named(ports: list[int], name: str) -> int:
    """How many connections named `name` the servers at `ports` have."""
    total = 0
    for port in ports:
        with redis.Redis(port=port) as node:
            total += sum(1 for c in node.client_list() if c["name"] == name)
    return total


@pytest.mark.parametrize("kind", ["one Redis", "cluster"])
async def test_connections_opened_for_calls_run_again_are_closed_once_idle(
    kind: str, request: pytest.FixtureRequest
) -> None:
    name = f"rerun-{kind.replace(' ', '-')}"
    if kind == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        client = create_redis(f"{cluster.url}?client_name={name}", cluster=True)
        ports = cluster.ports
    else:
        server: RedisServer = request.getfixturevalue("private_redis")
        client = create_redis(f"{server.url}?client_name={name}")
        ports = [server.port]
    # Long enough that the burst is counted before its connections are closed, on a slow machine.
    pipe = auto_pipeline(client, idle_pool_seconds=1.0)
    assert pipe is not None
    echo = register_script(client, ECHO, pipeline=pipe)
    key = "{rerun}n"  # one slot: one line
    await echo(keys=[key], args=["first"])
    await client.script_flush()
    # Every call meets NOSCRIPT and is run again through redis-py, each on a pooled connection.
    await asyncio.gather(*(echo(keys=[key], args=[f"m{i}"]) for i in range(20)))
    burst = _named(ports, name)
    for _ in range(200):  # the servers are polled: up to 10 s
        after = _named(ports, name)
        if after <= 1:
            break
        await asyncio.sleep(0.05)
    assert await echo(keys=[key], args=["last"]) == ["last", 22]  # the line still serves
    await pipe.aclose()
    await client.aclose()
    assert burst > 2  # the calls run again opened connections of their own
    assert after == 1  # once idle, only the pipelined line is left


async def test_a_connection_closed_under_a_call_run_again_is_a_connection_error(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = create_redis(server.url)
    echo = _pipelined(client, ECHO)
    await echo(keys=["n"], args=["first"])
    await client.script_flush()

    async def closed_under_the_call(*_: Any, **__: Any) -> Any:
        # What redis-py 8.1 raises when another task disconnects the connection mid-call.
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    monkeypatch.setattr(AsyncScript, "__call__", closed_under_the_call)
    with pytest.raises(rex.ConnectionError, match="closed under the call"):
        await echo(keys=["n"], args=["again"])  # NOSCRIPT: run again through redis-py
    await _close(echo)
    await client.aclose()
