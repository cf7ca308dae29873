"""The configuration's shape: frozen pydantic models, unknown keys rejected.

Cross-field rules that need the whole document (a rule's source exists, levels
have no gaps, ...) live in `checks.py` so each problem gets its own path.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from watchdog.config.base import Model, Name, RetrySchedule
from watchdog.config.notifications import Notification
from watchdog.config.sources import Source
from watchdog.config.types import (
    Age,
    Deadline,
    Duration,
    HttpUrl,
    ShutdownGrace,
    Threshold,
    ThresholdField,
    Timeout,
    VerifyWindow,
    parse_threshold,
    said,
)

# The longest http_*_timeout (README "HTTP endpoints").
MAX_HTTP_TIMEOUT = timedelta(minutes=10)


class WatchdogSection(BaseSettings):
    """The daemon itself. `WATCHDOG_<KEY>` environment variables override these."""

    model_config = SettingsConfigDict(env_prefix="WATCHDOG_", extra="forbid", frozen=True)

    listen: str = "127.0.0.1:9718"
    state_path: Path = Path("./state/watchdog.db")
    dry_run: bool = False
    api_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # How long SIGTERM waits for a running level before it is recorded as interrupted.
    shutdown_grace: ShutdownGrace = timedelta(seconds=30)
    # Append every poll's answer to this JSON-lines file, for `replay` (like `run --record FILE`).
    record: Path | None = None
    # The HTTP face's own protection (watchdog/httpserver.py, README "HTTP endpoints"): anyone who can reach
    # the port, token or not, must not be able to hold descriptors the polls and levels need.
    http_max_connections: int = Field(256, ge=1, le=65536)
    http_header_timeout: Timeout = timedelta(seconds=10)  # from a request's first byte to its last header
    http_body_timeout: Timeout = timedelta(seconds=10)  # a control API body, from its head to its last byte
    http_idle_timeout: Timeout = timedelta(seconds=30)  # open with no request, before the first or between

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the YAML: that is how an operator overrides a host.
        return (env_settings, init_settings)

    @field_validator("state_path")
    @classmethod
    def _state_path(cls, v: Path) -> Path:
        # Path("") is Path("."): the working directory, which SQLite cannot open as a file.
        if str(v) in ("", "."):
            raise ValueError("must name a file, like ./state/watchdog.db")
        if "\0" in str(v):
            raise ValueError("contains a NUL byte")
        try:
            is_dir = v.is_dir()
        except OSError as exc:  # e.g. a name too long for the file system
            raise ValueError(f"unusable: {exc.strerror or exc}") from None
        if is_dir:
            raise ValueError("is a directory: name the state file inside it, like <dir>/watchdog.db")
        return v

    @field_validator("http_header_timeout", "http_body_timeout", "http_idle_timeout")
    @classmethod
    def _http_timeout(cls, v: timedelta) -> timedelta:
        # Longer, and a few hundred silent connections hold their descriptors long enough to matter again.
        if v > MAX_HTTP_TIMEOUT:
            raise ValueError(f"at most {said(MAX_HTTP_TIMEOUT)}: a longer wait no longer protects "
                             f"the HTTP port (got {said(v)})")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, like 127.0.0.1:9718, got {v!r}")
        return v

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AwsSection(Model):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None


# --- sources: config/sources.py -------------------------------------------------

# --- rules -------------------------------------------------------------------

_STAT = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|IQM|p\d{1,2}(\.\d+)?|(tm|wm|tc|ts)\d{1,2}(\.\d+)?|p100)$")


class MetricSpec(Model):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    dimensions: dict[str, str] = {}
    stat: str = "Average"
    period: Duration = timedelta(seconds=60)
    unit: str | None = None

    @field_validator("stat")
    @classmethod
    def _stat(cls, v: str) -> str:
        if not _STAT.match(v):
            raise ValueError(f"unknown statistic {v!r}: use Average, Sum, Minimum, Maximum, SampleCount or pNN")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: timedelta) -> timedelta:
        secs = v.total_seconds()
        if secs != int(secs) or not (int(secs) in (1, 5, 10, 30) or (secs >= 60 and secs % 60 == 0)):
            raise ValueError("CloudWatch periods are 1s, 5s, 10s, 30s or a multiple of 60s")
        return v


class ChangeSpec(Model):
    """A rule on the change of a value: the newest against the one `over` earlier, in percent."""

    over: Age
    percent: ThresholdField


FindingSeverity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"]


def _serious() -> list[FindingSeverity]:
    return ["CRITICAL", "HIGH"]


class FindingsSpec(Model):
    """Active Security Hub findings counted by severity label (securityhub sources)."""

    severity: list[FindingSeverity] = Field(default_factory=_serious, min_length=1)
    product: str | None = None  # e.g. "GuardDuty"; None: every product


class CostSpec(Model):
    """Daily cost from Cost Explorer (cost_explorer sources)."""

    metric: Literal["UnblendedCost", "AmortizedCost", "BlendedCost", "NetUnblendedCost"] = "UnblendedCost"
    service: str | None = None  # e.g. "Amazon Bedrock"; None: the whole account


_METRIC_ID = re.compile(r"^[a-z][A-Za-z0-9_]{0,63}$")


class Rule(Model):
    name: Name
    category: Literal["performance", "security", "cost"]
    source: str
    # What the rule reads; which one depends on its source's type (config.checks says so):
    metric: MetricSpec | None = None  # cloudwatch: one metric
    expression: str | None = None  # cloudwatch: metric math over the named `metrics`, e.g. 100 * errors / requests
    metrics: dict[str, MetricSpec] | None = None
    field: str | None = None  # http_json: a dotted path into the JSON answer
    promql: str | None = None  # prometheus: an instant query
    reduce: Literal["single", "max", "min"] = "single"  # prometheus: one series, or the max/min over all
    findings: FindingsSpec | None = None  # securityhub: count of active findings
    cost: CostSpec | None = None  # cost_explorer: daily cost
    alert: dict[str, str] | None = None  # alertmanager: label matchers; in alarm while a matching alert fires
    # How it is judged: a threshold on the value, or on its change.
    threshold: ThresholdField | None = None
    change: ChangeSpec | None = None
    min_samples: int | None = Field(None, ge=1)  # with `expression`: fewer `samples` in a period = missing
    samples: str | None = None  # the name in `metrics` that counts requests
    max_age: Age | None = None  # a value older than this is missing
    datapoints_to_alarm: int | None = Field(None, ge=1)  # default: evaluation_periods
    evaluation_periods: int = Field(1, ge=1, le=100)
    missing_data: Literal["missing", "ignore", "breaching", "not_breaching"] = "missing"
    level: int = Field(1, ge=1)
    description: str | None = None

    @field_validator("metrics")
    @classmethod
    def _metric_ids(cls, v: dict[str, MetricSpec] | None) -> dict[str, MetricSpec] | None:
        for name in v or {}:
            if not _METRIC_ID.match(name):
                raise ValueError(f"metric name {name!r}: start with a lowercase letter; letters, digits and _ only")
        return v

    @property
    def m(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods

    @property
    def judged_by(self) -> Threshold:
        """The threshold the rule's values are held against (for a change rule: the percent)."""
        if self.change is not None:
            return self.change.percent
        if self.threshold is not None:
            return self.threshold
        return parse_threshold("== true")  # an alert rule: alarm while a matching alert fires

    @property
    def period(self) -> timedelta | None:
        if self.metric is not None:
            return self.metric.period
        if self.metrics:
            return next(iter(self.metrics.values())).period
        return None


# --- levels, actions, checks ---------------------------------------------------


class HttpAction(Model):
    type: Literal["http"]
    name: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(default_factory=list)  # empty: any 2xx
    timeout: Timeout = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()
    idempotent: bool = False
    probe: HttpUrl | None = None  # `validate` GETs this (any answer but a connection error passes); default: TCP connect

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    def describe(self) -> str:
        return self.name or f"{self.method} {self.url}"


class CommandAction(Model):
    type: Literal["command"]
    name: str | None = None
    argv: list[str] = Field(min_length=1)
    timeout: Timeout = timedelta(seconds=60)
    env: dict[str, SecretStr] = {}
    cwd: Path | None = None
    retry: RetrySchedule = RetrySchedule(attempts=1)
    idempotent: bool = False
    probe: HttpUrl | None = None  # `validate` runs nothing; it checks argv[0] is executable (or GETs this URL)

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("argv[0] is empty: it must name the program to run")
        if any("\0" in arg for arg in v):
            raise ValueError("an argument contains a NUL byte, which no program can receive")
        return v

    def describe(self) -> str:
        return self.name or " ".join(self.argv)


Action = Annotated[Union[HttpAction, CommandAction], Field(discriminator="type")]


class HttpCheck(Model):
    type: Literal["http"]
    name: str | None = None
    method: Literal["GET", "HEAD", "POST"] = "GET"
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    expect_status: int = 200
    timeout: Timeout = timedelta(seconds=5)

    def describe(self) -> str:
        return self.name or f"{self.method} {self.url}"


Check = Annotated[Union[HttpCheck], Field(discriminator="type")]


class Level(Model):
    level: int = Field(ge=1)
    name: str
    deadline: Deadline
    actions: list[Action] = Field(min_length=1)
    checks: list[Check] = []


class Escalation(Model):
    verify_window: VerifyWindow = timedelta(minutes=2)
    max_rollbacks_per_hour: int = Field(3, ge=1)


class Target(Model):
    name: Name
    rules: list[Rule] = Field(min_length=1)
    escalation: Escalation = Escalation()
    levels: list[Level] = Field(min_length=1)

    def level(self, n: int) -> Level | None:
        return next((lv for lv in self.levels if lv.level == n), None)

    @property
    def max_level(self) -> int:
        return max(lv.level for lv in self.levels)


# --- notifications: config/notifications.py -------------------------------------


class Config(Model):
    # Values of secret-named ${VAR}s, filled by the loader for the redactor.
    _secret_env: frozenset[str] = PrivateAttr(default_factory=frozenset)
    # Legal but likely wrong (config.checks.budget_warnings), one line each, filled by the loader.
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    watchdog: WatchdogSection = Field(default_factory=WatchdogSection)
    aws: AwsSection = AwsSection()
    sources: list[Source] = Field(min_length=1)
    targets: list[Target] = Field(min_length=1)
    notifications: list[Notification] = []

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)
