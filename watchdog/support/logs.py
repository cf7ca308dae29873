"""Structured logs: one JSON object per line (journald keeps it as is)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from watchdog.shared.clock import Clock


def _log_level(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    # `level` is the rollback level in our records (SPEC 3.5), so severity goes elsewhere.
    event_dict["log_level"] = "warning" if method == "warn" else method
    return event_dict


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
]
# A library's record says which library: "aiohttp.server", "apscheduler.scheduler", "botocore...".
_FOREIGN: list[Processor] = [*_SHARED, structlog.stdlib.add_logger_name]


def setup_logging(level: str = "info", stream: TextIO | None = None, redactor: Any = None) -> None:
    stream = stream or sys.stdout
    numeric = getattr(logging, level.upper())
    mask = [redactor] if redactor is not None else []
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            *mask,
            structlog.processors.JSONRenderer(default=str),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, apscheduler, botocore) log through the stdlib: same JSON shape. Their
    # exc_info is a (type, value, traceback) tuple, which JSON would show as useless reprs: it is
    # rendered to text here, before the redactor, so a secret in an exception message is masked too.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_FOREIGN,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        *mask,
                        structlog.processors.JSONRenderer(default=str)],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


# The methods that log at error level or above (a critical event is logged with `error`).
_PAGES = frozenset({"error", "exception", "critical", "fatal"})


@contextmanager
def replay_log(clock: Clock) -> Iterator[list[dict[str, Any]]]:
    """While a replay runs, the runtime's lines are the replay's and say so: each is stamped with the
    simulated time it was logged at (`ts`) and `replay: true`. Its error and critical lines (a `blind` or
    `exhausted` page) are kept in the list given out, for the replay's outcome, and never written: on stderr,
    with today's time, they would read as live pages. The logging set up before is back afterwards."""
    kept: list[dict[str, Any]] = []

    def stamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict["ts"] = clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event_dict["replay"] = True
        return event_dict

    def keep(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if method in _PAGES:
            kept.append(json.loads(json.dumps(event_dict, default=str)))  # as it would have been written
            raise structlog.DropEvent
        return event_dict

    before = structlog.get_config()["processors"]
    structlog.configure(processors=[*before[:-1], stamp, keep, *before[-1:]])  # the renderer stays last
    try:
        yield kept
    finally:
        structlog.configure(processors=before)
