"""The gate between a reload and the polls and operators' commands it must not swap things under.

A reload replaces the sources, the rule board and the executors. A poll that read from an old source and
then judged targets on the new board, or a rollback that checked its target and then started a level on a
target the reload removed, is what this gate prevents:

- a poll (scheduled or pushed) and an operator's command pass it together, any number at once, and stay
  inside for as long as they run;
- a reload closes it to new polls (so a steady stream of polls cannot starve it), waits, bounded, until
  everything inside has left, and then swaps in one step of the event loop: `alone` takes a plain
  function, which cannot await, so no poll or command can run half before and half after the swap.

Commands are never held at the gate: each one runs whole before the swap or whole after it (the swap
waits for a command inside). asyncio has no reader-writer lock; this is the small one the reload needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

T = TypeVar("T")


class ReloadGate:
    def __init__(self) -> None:
        self._inside = 0
        self._open = asyncio.Event()  # set: polls may enter (no reload waiting or swapping)
        self._open.set()
        self._empty = asyncio.Event()  # set: no poll or command inside
        self._empty.set()

    @property
    def inside(self) -> int:
        return self._inside

    @property
    def reloading(self) -> bool:
        return not self._open.is_set()

    @asynccontextmanager
    async def polling(self) -> AsyncIterator[None]:
        """A poll: waits while a reload waits or swaps, then holds the gate until it ends."""
        while not self._open.is_set():  # woken by one reload's end, another may have closed it again
            await self._open.wait()
        with self.commanding():
            yield

    @contextmanager
    def commanding(self) -> Iterator[None]:
        """An operator's command: enters at once and holds the gate until it ends. Entering never waits, so a
        command is never refused or delayed by a reload; the reload waits for it instead."""
        self._inside += 1
        self._empty.clear()
        try:
            yield
        finally:  # nothing awaited here: a cancelled holder still leaves
            self._inside -= 1
            if self._inside == 0:
                self._empty.set()

    async def alone(self, swap: Callable[[], T], within: float) -> T:
        """`swap()` once nothing is inside, with new polls kept out meanwhile; TimeoutError when what is inside
        has not left within `within` seconds (the gate opens again, `swap` never ran). One reload at a time:
        a second one waits for the first."""
        while not self._open.is_set():
            await self._open.wait()
        self._open.clear()
        try:
            async with asyncio.timeout(within):
                while self._inside:  # a command may enter and leave while the polls drain
                    await self._empty.wait()
            return swap()
        finally:
            self._open.set()
