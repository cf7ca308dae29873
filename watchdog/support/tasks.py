"""Every long-lived task of the watchdog is spawned here, and the shutdown is a list of steps with deadlines.

`Tasks.spawn` keeps a handle on each task and logs one that crashes with its traceback (a task nobody
awaits would otherwise fail in silence). `stop_in_order` runs the shutdown's steps one after the other,
each under its own deadline: a step that overruns is logged and the next one runs, so one stuck client
never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

log = structlog.get_logger("watchdog.support.tasks")


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def keep(self, work: Callable[[], Coroutine[Any, Any, Any]], name: str, restart_after: float = 1.0) -> asyncio.Task[Any]:
        """A task that must outlive its own bugs (a channel's worker): started again `restart_after` seconds
        after it crashes, each crash logged with its traceback. Cancelling the task ends it for good."""
        async def guarded() -> None:
            while True:
                try:
                    await work()
                    return
                except Exception as exc:
                    log.error("task_crashed", task=name, error=f"{type(exc).__name__}: {exc}", exc_info=exc,
                              next=f"started again in {restart_after:g}s")
                await asyncio.sleep(restart_after)

        return self.spawn(guarded(), name)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task_crashed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    async def settle(self, prefixes: tuple[str, ...]) -> None:
        """Until no task whose name starts with one of `prefixes` runs, those it starts included (a replay
        lets each level and check finish before its clock moves on)."""
        while running := [t for t in self._tasks if t.get_name().startswith(prefixes) and not t.done()]:
            await asyncio.wait(running)

    async def cancel_all(self, timeout: float) -> None:
        await finish(list(self._tasks), 0.0, then_wait=timeout)


async def finish(tasks: Iterable[asyncio.Task[Any]], grace: float, then_wait: float = 5.0) -> list[asyncio.Task[Any]]:
    """Give `tasks` `grace` seconds to end, cancel those still running and wait `then_wait` for them.
    Returns the ones that had to be cancelled."""
    tasks = [t for t in tasks if not t.done()]
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), set(tasks))
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=then_wait)
    return list(pending)


Step = tuple[str, Callable[[], Awaitable[Any]], float]


async def stop_in_order(steps: Sequence[Step]) -> None:
    """Each (title, step, deadline) in turn; an overrun or a failure is logged and the stop goes on."""
    for title, step, deadline in steps:
        try:
            await asyncio.wait_for(step(), timeout=deadline)
        except TimeoutError:
            log.error("stop_step_late", step=title, deadline_s=deadline, why="left behind so the stop goes on")
        except Exception as exc:  # one failing close must not keep the others from running
            log.error("stop_step_failed", step=title, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
