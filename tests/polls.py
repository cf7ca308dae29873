"""A source as the daemon runs it: started (its client made) before its polls, closed after them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def started(src: Any) -> AsyncIterator[Any]:
    await src.start()
    try:
        yield src
    finally:
        await src.close()
