"""Value types that appear in the YAML: durations and thresholds."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property, lru_cache
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Nothing a watchdog waits for is longer; beyond it a value is a typo (and past timedelta's range, a crash).
MAX_DURATION = timedelta(days=3650)


def _shown(value: str) -> str:
    """A value quoted in an error, cut short: a 400-digit typo must not fill the terminal."""
    value = value.strip()
    return repr(value if len(value) <= 40 else value[:37] + "...")


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    # A bare number is ambiguous (seconds? milliseconds?), so it is refused.
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 500ms, 30s, 5m or 1h, got {value!r}")
    return _duration_of(value)


# One timedelta per distinct text (it is immutable): 5 000 rules write `60s` thousands of times (bench: the
# config keeps 0.8 MB less at 5 000 rules). A refused text raises each time, as lru_cache keeps no error.
@lru_cache(maxsize=1024)
def _duration_of(value: str) -> timedelta:
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"bad duration {_shown(value)}: write it like 500ms, 30s, 5m or 1h")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]  # a 400-digit number is inf here, not an error
    if not seconds <= MAX_DURATION.total_seconds():
        raise ValueError(f"duration {_shown(value)} is too long: at most {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    secs = td.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if secs >= size and secs % size == 0:
            return f"{int(secs // size)}{unit}"
    return f"{int(round(secs * 1000))}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def said(td: timedelta) -> str:
    """A duration as an error quotes it: exact, so `0.5ms` is not shown as `0ms`."""
    secs = td.total_seconds()
    if secs == 0:
        return "0s"
    if secs < 1 and (secs * 1000) != int(secs * 1000):
        return f"{secs * 1000:g}ms"
    return format_duration(td)


def _between(low: timedelta, high: timedelta, why: str = "") -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < low:
            raise ValueError(f"at least {said(low)}{why} (got {said(value)})")
        if value > high:
            raise ValueError(f"at most {said(high)} (got {said(value)})")
        return value

    return AfterValidator(check)


# The bounds of each kind of duration (docs/configuration.md "Durations"). A zero or near-zero value does not mean
# "immediately": it broke the daemon (a 0s interval never let /healthz see an evaluation, a 0s deadline
# ran every level to `exhausted` in 15 ms without sending a request). The lower bounds stay low enough
# for tests and benchmarks that run the real daemon on short clocks.
MIN_INTERVAL = timedelta(milliseconds=100)
# Beyond a day a poll is no longer watching anything; a typo (999999999d) is caught here, not at run time.
MAX_INTERVAL = timedelta(days=1)
# Cost Explorer answers in whole days and bills every call: a weekly poll is still a sensible choice.
MAX_COST_INTERVAL = timedelta(days=7)
MIN_TIMEOUT = timedelta(milliseconds=100)  # one request, one command, one delivery
MIN_DEADLINE = timedelta(milliseconds=100)  # a level's actions and their retries
MIN_VERIFY_WINDOW = timedelta(seconds=1)
MIN_SHUTDOWN_GRACE = timedelta(seconds=1)
MIN_BACKOFF = timedelta(milliseconds=10)
MIN_BLIND_AFTER = timedelta(seconds=1)
MIN_ALERT_TTL = timedelta(minutes=1)  # Alertmanager re-sends firing alerts no faster than its group_interval
MIN_AGE = timedelta(seconds=1)  # a rule's max_age and a change's `over`
# CloudWatch revises a bucket for a few minutes after it closes; waiting longer than an hour only makes
# every alarm that much later.
MAX_SETTLE = timedelta(hours=1)

Interval = Annotated[Duration, _between(MIN_INTERVAL, MAX_INTERVAL)]
# A lease renewed every third of its life needs a few seconds for a round over many targets; past ten minutes
# a dead watchdog's targets wait that long unprotected.
Lease = Annotated[Duration, _between(timedelta(seconds=3), timedelta(minutes=10))]
CostInterval = Annotated[Duration, _between(MIN_INTERVAL, MAX_COST_INTERVAL)]
Timeout = Annotated[Duration, _between(MIN_TIMEOUT, MAX_DURATION)]
Deadline = Annotated[Duration, _between(MIN_DEADLINE, MAX_DURATION)]
VerifyWindow = Annotated[Duration, _between(MIN_VERIFY_WINDOW, MAX_DURATION)]
ShutdownGrace = Annotated[Duration, _between(MIN_SHUTDOWN_GRACE, MAX_DURATION)]
Backoff = Annotated[Duration, _between(MIN_BACKOFF, MAX_DURATION)]
BlindAfter = Annotated[Duration, _between(MIN_BLIND_AFTER, MAX_DURATION)]
AlertTtl = Annotated[Duration, _between(MIN_ALERT_TTL, MAX_DURATION)]
Age = Annotated[Duration, _between(MIN_AGE, MAX_DURATION)]
Settle = Annotated[Duration, _between(timedelta(0), MAX_SETTLE)]
ReadEvery = Annotated[Duration, _between(timedelta(seconds=1), MAX_INTERVAL)]  # CloudWatch's shortest period


def check_http_url(value: str) -> str:
    """An http(s) URL with a host. The value is never quoted back: a URL often carries a token."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # e.g. a port that is not a number, an unclosed [
        ok = False
    if not ok or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must be an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url)]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_THRESHOLD = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Threshold:
    """`> 1500`, `== false`: the condition under which a datapoint breaches."""

    op: str
    value: float | bool

    def accepts(self, value: float | bool) -> bool:
        """Booleans compare with booleans, numbers with numbers."""
        return isinstance(value, bool) == isinstance(self.value, bool)

    def breached_by(self, value: float | bool) -> bool:
        if not self.accepts(value):
            return False
        return self.compare(value, self.value)

    @cached_property
    def compare(self) -> Callable[[Any, Any], bool]:
        """The operator itself (the hot path checks `accepts` once, then calls this)."""
        return _OPS[self.op]

    @cached_property
    def _text(self) -> str:
        v = str(self.value).lower() if isinstance(self.value, bool) else f"{self.value:g}"
        return f"{self.op} {v}"

    def __str__(self) -> str:
        return self._text


def parse_threshold(value: Any) -> Threshold:
    if isinstance(value, Threshold):
        return value
    if not isinstance(value, str):
        raise ValueError(f'expected a condition like "> 1500" or "== false", got {value!r}')
    return _threshold_of(value)


# One Threshold per distinct text (frozen; its cached text is the same for all): bench, 5 000 rules: -0.5 MB.
@lru_cache(maxsize=1024)
def _threshold_of(value: str) -> Threshold:
    m = _THRESHOLD.match(value)
    if not m:
        raise ValueError(
            f"bad threshold {value!r}: write an operator (> >= < <= == !=) and a value, like \"> 1500\""
        )
    op, raw = m.groups()
    if raw.lower() in ("true", "false"):
        if op not in ("==", "!="):
            raise ValueError(f"bad threshold {value!r}: a boolean only compares with == or !=")
        return Threshold(op, raw.lower() == "true")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"bad threshold {value!r}: {raw!r} is not a number or true/false") from None
    if not math.isfinite(number):
        raise ValueError(f"bad threshold {value!r}: the value must be a finite number")
    return Threshold(op, number)


ThresholdField = Annotated[
    Threshold,
    BeforeValidator(parse_threshold),
    PlainSerializer(str, return_type=str),
]
