"""The test harness itself: what it does so that many apps can run in one process."""

from __future__ import annotations

import ast
import asyncio.base_events
import gc
import inspect
import sys
import threading

from tests.conftest import PARSE_LOCK, UNLOCKED_PARSE

SOURCE = inspect.getsource(asyncio.base_events)


def _inside_ast_parse() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is UNLOCKED_PARSE.__code__:  # ast's own parse
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def test_two_threads_never_parse_at_once() -> None:
    """Thread A's parse is paused by a finalizer (as a garbage collection mid-parse pauses it)
    while thread B parses: with CPython 3.11's shared state, A then fails with "AST constructor
    recursion depth mismatch" unless B's parse waits for A's (python/cpython#106905)."""
    errors: list[BaseException] = []
    b_may_parse, b_done = threading.Event(), threading.Event()

    class Pause:
        """Garbage in a cycle (only a collection frees it) that pauses thread A's parse."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            if b_may_parse.is_set():
                return
            if not _inside_ast_parse() or threading.current_thread() is b:
                Pause()  # not yet inside A's parse: the next collection tries again
                return
            b_may_parse.set()
            b_done.wait(0.5)  # B parses now, unless it must wait for A

    def parse_b() -> None:
        b_may_parse.wait(10)
        try:
            ast.parse(SOURCE)
        except SystemError as exc:
            errors.append(exc)
        finally:
            b_done.set()

    b = threading.Thread(target=parse_b)
    b.start()
    threshold = gc.get_threshold()
    try:
        Pause()
        gc.set_threshold(1)  # a collection at almost every allocation
        ast.parse(SOURCE)
    except SystemError as exc:
        errors.append(exc)
    finally:
        gc.set_threshold(*threshold)
        b_may_parse.set()
        b.join(10)
        gc.collect()
    assert b_done.is_set()
    assert not errors, errors
    assert not PARSE_LOCK._is_owned()  # type: ignore[attr-defined]


def test_a_finalizer_that_parses_never_runs_inside_a_parse() -> None:
    """A garbage collection during a parse may run a finalizer that parses in the same thread
    (a Task destroyed while pending logs its traceback, and 3.11's traceback parses the lines it
    underlines): the nested parse would reset the outer one's depth, which the lock (reentrant)
    cannot prevent, so no collection runs during a parse."""
    parsed_inside: list[bool] = []

    class Parses:
        """Garbage in a cycle whose finalizer parses."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            if len(parsed_inside) < 50:
                parsed_inside.append(PARSE_LOCK._is_owned())  # type: ignore[attr-defined]
                ast.parse("x = (1 + 2) * 3")
                Parses()  # and again at the next collection

    threshold = gc.get_threshold()
    try:
        Parses()
        gc.set_threshold(1)  # a collection at almost every allocation
        ast.parse(SOURCE)
    finally:
        gc.set_threshold(*threshold)
        parsed_inside.extend([False] * 50)  # stop the chain
        gc.collect()
    assert not any(parsed_inside)
