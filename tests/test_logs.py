"""Logs (SPEC 3.5, issue 12 defect 18): every exception logged, by the daemon or by a library through the
stdlib, carries its type, message and traceback as text, in the daemon's real logging set-up."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from configs import hybrid_routing, parsed
from watchdog.lifecycle.app import App
from watchdog.support.logs import setup_logging
from watchdog.shared.redact import redactor_for

SECRET = "very-secret-token-42"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The daemon's set-up writing into a buffer; the root logger and structlog are put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in stream.getvalue().splitlines() if ln.strip()]


def _status_that_breaks() -> dict[str, Any]:
    raise RuntimeError(f"status exploded while reading {SECRET}")


async def test_an_error_inside_a_request_handler_is_logged_with_its_traceback(tmp_path, log_stream, monkeypatch):
    cfg = parsed(hybrid_routing(state_path=tmp_path / "state.db", api_token=SECRET))
    setup_logging("info", log_stream, redactor_for(cfg))
    app = await App.create(cfg, schedule=False)
    await app.start()
    # The one thing not real: /status is made to raise, so aiohttp's own unhandled-error path logs it.
    monkeypatch.setattr(app.runtime, "status", _status_that_breaks)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{app.bound_port}/status") as r:
                assert r.status == 500
    finally:
        await app.stop()
    logged = [ln for ln in lines(log_stream) if "exception" in ln or "exc_info" in ln]
    assert len(logged) == 1, log_stream.getvalue()
    line = logged[0]
    assert "exc_info" not in line  # no "<traceback object at 0x...>" reprs
    text = line["exception"]
    assert text.startswith("Traceback (most recent call last):")
    assert 'tests/test_logs.py", line' in text and "in _status_that_breaks" in text  # the raising frame
    assert "RuntimeError: status exploded while reading ***" in text
    assert SECRET not in log_stream.getvalue()  # the redactor sees the traceback's text too
    assert line["logger"] == "aiohttp.server" and line["log_level"] == "error"


def test_log_exception_from_the_daemons_own_code_renders_the_traceback(log_stream):
    setup_logging("info", log_stream)
    try:
        {}["missing-key"]
    except KeyError:
        structlog.get_logger("watchdog.test").exception("lookup_failed", target="web")
    (line,) = lines(log_stream)
    assert line["event"] == "lookup_failed" and line["target"] == "web" and line["log_level"] == "error"
    assert "Traceback (most recent call last):" in line["exception"]
    assert "in test_log_exception_from_the_daemons_own_code_renders_the_traceback" in line["exception"]
    assert line["exception"].endswith("KeyError: 'missing-key'")


@pytest.mark.parametrize("library", ["apscheduler.executors.default", "botocore.endpoint"])
def test_a_library_logging_an_exception_through_the_stdlib_gets_text_too(log_stream, library):
    setup_logging("info", log_stream)
    try:
        raise ConnectionError("the endpoint went away")
    except ConnectionError:
        logging.getLogger(library).exception("Job failed")
    (line,) = lines(log_stream)
    assert "exc_info" not in line
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ConnectionError: the endpoint went away")
    assert line["logger"] == library and line["event"] == "Job failed"
