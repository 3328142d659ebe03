"""Live delivery under load, for `make bench`: SSE streams and paced senders over raw keep-alive
HTTP/1.1 connections, in one asyncio process (uvloop), run on a thread of the bench's own.

Each message's text is its sequence number and the sender's clock as the request was written
(`time.time_ns()`): every receiver checks what it got against what was sent (nothing lost, nothing
twice, nothing out of order) and measures publish-to-receive latency with the clock the sender
read (one machine, one clock). The load generator shares the 2 cores with the service and Redis,
and what it takes is part of every figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")
OPEN_AT_ONCE = 200  # streams connecting at a time while a scenario sets up (not in scenario 13)
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")


class Refused(Exception):
    """The service answered a request with an unexpected status."""

    def __init__(self, what: str, status: int, body: bytes) -> None:
        super().__init__(f"{what}: {status} {body[:200]!r}")
        self.status = status


class Loop:
    """An asyncio loop on a thread of its own: its streams stay open while the bench's main
    thread runs wrk."""

    def __init__(self) -> None:
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _request(method: str, path: str, token: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if token:
        head += f"token: {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection for JSON requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """A new connection to the service on `port`."""
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(self, method: str, path: str, body: Any, token: str = "") -> tuple[int, bytes]:
        """Send one request; its status and body."""
        data = json.dumps(body).encode() if body is not None else b""
        self._writer.write(_request(method, path, token, data))
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        reply = await self._reader.readexactly(int(length.group(1)) if length else 0)
        return int(head[9:12]), reply

    def close(self) -> None:
        """Close the connection."""
        self._writer.close()


async def pooled(
    port: int, jobs: list[Callable[[Connection], Awaitable[None]]], connections: int = 16
) -> None:
    """Run `jobs` over `connections` keep-alive connections, each taking the next job when done."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        connection = await Connection.open(port)
        try:
            while queue:
                await queue.pop()(connection)
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def sign_up(port: int, names: list[str], password: str) -> list[str]:
    """Sign up and log in each of `names`; their tokens, in order."""
    tokens = [""] * len(names)

    def job(index: int) -> Callable[[Connection], Awaitable[None]]:
        async def run(connection: Connection) -> None:
            credentials = {"name": names[index], "password": password}
            status, body = await connection.call("POST", "/signup/", credentials)
            if status not in (201, 409):
                raise Refused("signup", status, body)
            status, body = await connection.call("POST", "/login/", credentials)
            if status != 200:
                raise Refused("login", status, body)
            tokens[index] = json.loads(body)["token"]

        return run

    await pooled(port, [job(index) for index in range(len(names))])
    return tokens


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event."""

    event_id: str
    kind: str
    data: bytes


class Stream:
    """One `GET /events/` stream, read over a raw connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._buffer = b""
        self._ended = False

    @classmethod
    async def open(cls, port: int, token: str, last_event_id: str = "") -> Stream:
        """A stream whose head (200) has been read; Refused for another status."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        writer.write(_request("GET", "/events/", token, extra=extra))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if status != 200:
                length = _LENGTH.search(head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                raise Refused("GET /events/", status, body)
            if b"chunked" not in head.lower():
                raise Refused("GET /events/ (not chunked)", status, head)
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer)

    async def event(self) -> Event | None:
        """The next event (comments skipped); None once the stream has ended."""
        while True:
            block, found, rest = self._buffer.partition(b"\n\n")
            if found:
                self._buffer = rest
                fields: dict[bytes, bytes] = {}
                for line in block.split(b"\n"):
                    name, _, value = line.partition(b": ")
                    if name:
                        fields[name] = value
                if b"event" in fields:
                    return Event(
                        fields.get(b"id", b"").decode(), fields[b"event"].decode(), fields[b"data"]
                    )
                continue
            if self._ended:
                return None
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self._reader.readexactly(size + 2)
            if size == 0:
                self._ended = True
            self._buffer += chunk[:-2]

    def close(self) -> None:
        """Drop the connection (as a client that goes away does)."""
        self._writer.transport.abort()


async def open_streams(port: int, tokens: list[str], at_once: int = OPEN_AT_ONCE) -> list[Stream]:
    """One stream per token, `at_once` connecting at a time."""
    gate = asyncio.Semaphore(at_once)

    async def one(token: str) -> Stream:
        async with gate:
            return await Stream.open(port, token)

    return list(await asyncio.gather(*(one(token) for token in tokens)))


async def drop(streams: list[Stream]) -> None:
    """Drop every stream (on the loop that reads them)."""
    for stream in streams:
        stream.close()


def _text(sequence: int) -> str:
    return f"{sequence} {time.time_ns()}"


def _parse(data: bytes) -> tuple[int, int]:
    sequence, sent = json.loads(data)["text"].split()
    return int(sequence), int(sent)


@dataclass
class Delivery:
    """Scenario 12: messages sent to connected receivers at a steady rate, as they arrived."""

    receivers: int
    rate: float  # messages a second, as sent
    sent: int
    refused: int  # messages the service did not take (not 201)
    received: int
    lost: int  # taken (201), never received
    repeated: int
    out_of_order: int
    latencies_ms: list[float] = field(repr=False, default_factory=list)

    def percentile(self, share: float) -> float:
        """The latency below which `share` of the messages arrived, in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def delivery(
    port: int,
    receivers: list[tuple[str, str]],
    sender: str,
    rate: int,
    seconds: float,
    connections: int = 16,
) -> Delivery:
    """Scenario 12: one stream for each of `receivers` (name, token); `rate` messages a second
    for `seconds` from `sender`'s token, to each receiver in turn, paced on a schedule (a late
    request does not push the later ones back); then up to 5 s for the last to arrive."""
    count = len(receivers)
    streams = await open_streams(port, [token for _, token in receivers])
    got: list[list[int]] = [[] for _ in receivers]
    taken: list[set[int]] = [set() for _ in receivers]
    latencies: list[float] = []
    refused = expected = 0  # expected: how many were taken, once all are sent
    all_in = asyncio.Event()

    async def receive(index: int, stream: Stream) -> None:
        while (event := await stream.event()) is not None:
            if event.kind == "message":
                sequence, sent = _parse(event.data)
                latencies.append((time.time_ns() - sent) / 1e6)
                got[index].append(sequence)
                if expected and sum(map(len, got)) >= expected:
                    all_in.set()

    readers = [asyncio.create_task(receive(i, s)) for i, s in enumerate(streams)]
    total = int(rate * seconds)
    start = time.perf_counter() + 0.1

    async def send(first: int) -> None:
        nonlocal refused
        connection = await Connection.open(port)
        try:
            for sequence in range(first, total, connections):
                delay = start + sequence / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                target = sequence % count
                body = {"to": receivers[target][0], "text": _text(sequence)}
                status, _ = await connection.call("POST", "/message/", body, sender)
                if status == 201:
                    taken[target].add(sequence)
                else:
                    refused += 1
        finally:
            connection.close()

    await asyncio.gather(*(send(first) for first in range(connections)))
    elapsed = time.perf_counter() - start
    expected = sum(map(len, taken))
    if sum(map(len, got)) < expected:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 5)
    await drop(streams)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return Delivery(
        receivers=count,
        rate=total / elapsed,
        sent=total,
        refused=refused,
        received=sum(map(len, got)),
        lost=sum(len(taken[i] - set(got[i])) for i in range(count)),
        repeated=sum(len(g) - len(set(g)) for g in got),
        out_of_order=sum(g != sorted(g) for g in got),
        latencies_ms=latencies,
    )


@dataclass(frozen=True)
class Reconnects:
    """Scenario 13: clients reconnecting at once with `Last-Event-ID`."""

    clients: int
    missed: int  # messages each missed while away
    resumed: int  # got exactly what it missed, in order, and nothing else first
    refused: int  # reconnects answered with another status than 200
    resets: int
    wrong: int  # a gap, a repeat or an old message
    seconds: float  # from the first reconnect to the last one's last missed message


async def reconnects(port: int, users: list[tuple[str, str]], missed: int = 2) -> Reconnects:
    """Scenario 13: a stream per user; a message to each, which its stream gets (and so its
    event id); every stream dropped; `missed` more to each; then every user reconnects at once
    with the id it last got, and must get exactly the missed ones, in order."""
    streams = await open_streams(port, [token for _, token in users])
    jobs = [_send_to_self(token, 0) for _, token in users]
    await pooled(port, jobs)
    last_ids = []
    for stream in streams:
        event = await asyncio.wait_for(stream.event(), 30)
        if event is None or event.kind != "message" or _parse(event.data)[0] != 0:
            raise RuntimeError(f"scenario 13: the first message did not arrive: {event}")
        last_ids.append(event.event_id)
    await drop(streams)
    away = [_send_to_self(token, n) for n in range(1, missed + 1) for _, token in users]
    await pooled(port, away)
    resumed = refused = resets = wrong = 0
    done = 0.0
    start = time.perf_counter()

    async def reconnect(token: str, last_id: str) -> None:
        nonlocal resumed, refused, resets, wrong, done
        try:
            stream = await Stream.open(port, token, last_id)
        except Refused:
            refused += 1
            return
        try:
            for expected in range(1, missed + 1):
                event = await stream.event()
                if event is not None and event.kind == "reset":
                    resets += 1
                    return
                if event is None or _parse(event.data)[0] != expected:
                    wrong += 1
                    return
            resumed += 1
            done = max(done, time.perf_counter() - start)
        finally:
            stream.close()

    tokens = [token for _, token in users]
    await asyncio.wait_for(
        asyncio.gather(*map(reconnect, tokens, last_ids)),
        60,
    )
    return Reconnects(len(users), missed, resumed, refused, resets, wrong, done)


def _send_to_self(token: str, sequence: int) -> Callable[[Connection], Awaitable[None]]:
    async def run(connection: Connection) -> None:
        status, body = await connection.call("POST", "/message/", {"text": _text(sequence)}, token)
        if status != 201:
            raise Refused("POST /message/", status, body)

    return run
