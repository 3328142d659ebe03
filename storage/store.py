"""The base of every store: one Redis client, a shared Monitor, and Redis failures turned into
StorageUnavailable."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from storage import keys
from storage.connection import PROBE_TTL_MS, Client, Monitor, bounded, unavailable_reason
from storage.errors import StorageUnavailable
from storage.pipeline import AutoPipeline, ScriptCall, register_script

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="Store")


class Script:
    """A Lua script of a store, declared on its class: `_check = Script(scripts.CHECK_SESSION)`.

    Each store registers its scripts when it is made (on the auto-pipeline when there is one), as
    instance attributes that shadow these declarations: a call is `await self._check(keys=...,
    args=...)`, with nothing in between."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, store: None, owner: type) -> Script: ...

    @overload
    def __get__(self, store: Store, owner: type) -> ScriptCall: ...

    def __get__(self, store: Store | None, owner: type) -> Script | ScriptCall:
        if store is None:
            return self
        raise AttributeError(f"{owner.__name__}.{self.name} is registered when a store is made")


class Store:
    """A store wraps one Redis client; its calls report outages to a shared Monitor."""

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        self._client = client
        self._monitor = monitor if monitor is not None else Monitor()
        self._pipeline = pipeline
        for klass in type(self).__mro__:
            for name, declared in vars(klass).items():
                if isinstance(declared, Script) and name not in self.__dict__:
                    call = register_script(
                        client, declared.source, pipeline=pipeline, monitor=self._monitor
                    )
                    setattr(self, name, call)


def translate_errors(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Turn Redis being unreachable, hanging or refusing work in a store method into
    StorageUnavailable, and log the outage once when it starts and once when it ends.

    Every round trip inside is bounded in time: script calls by their pipeline (or, on a
    cluster, one by one), other commands with `bounded`.
    """

    @functools.wraps(fn)
    async def wrapper(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = await fn(store, *args, **kwargs)
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            store._monitor.failed(reason)
            raise StorageUnavailable(reason) from exc
        if store._monitor.reason is not None:
            store._monitor.recovered()
        return result

    return wrapper


class Health(Store):
    """Readiness: whether Redis answers and accepts writes."""

    @translate_errors
    async def check_writable(self) -> None:
        """Write a short-lived probe key: PING succeeds on a Redis that refuses every write
        (full memory, a read-only replica, too few replicas), a write does not."""
        await bounded(self._client.set(keys.readiness_probe(), "1", px=PROBE_TTL_MS))
