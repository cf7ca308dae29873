"""Structured logs: one JSON object per line (journald keeps it as is)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


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
