"""The configuration's shape: frozen pydantic models, unknown keys rejected.

Cross-field rules that need the whole document (a rule's source exists, levels
have no gaps, ...) live in `checks.py` so each problem gets its own path.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watchdog.config.notifications import Notification
from watchdog.config.types import Duration, ThresholdField

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySchedule(Model):
    """Exponential backoff with full jitter, bounded by `attempts` (the first try counts)."""

    attempts: int = Field(3, ge=1, le=20)
    initial_backoff: Duration = timedelta(milliseconds=500)
    max_backoff: Duration = timedelta(seconds=10)


class WatchdogSection(BaseSettings):
    """The daemon itself. `WATCHDOG_<KEY>` environment variables override these."""

    model_config = SettingsConfigDict(env_prefix="WATCHDOG_", extra="forbid", frozen=True)

    listen: str = "127.0.0.1:9718"
    state_path: Path = Path("./state/watchdog.db")
    dry_run: bool = False
    api_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # How long SIGTERM waits for a running level before it is recorded as interrupted.
    shutdown_grace: Duration = timedelta(seconds=30)

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


# --- sources -----------------------------------------------------------------


class CloudWatchSource(Model):
    name: Name
    type: Literal["cloudwatch"]
    interval: Duration = timedelta(seconds=60)
    region: str | None = None  # defaults to aws.region
    timeout: Duration = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()


class HttpJsonSource(Model):
    name: Name
    type: Literal["http_json"]
    url: str
    interval: Duration = timedelta(seconds=60)
    headers: dict[str, SecretStr] = {}
    timeout: Duration = timedelta(seconds=5)
    retry: RetrySchedule = RetrySchedule(attempts=2)


Source = Annotated[Union[CloudWatchSource, HttpJsonSource], Field(discriminator="type")]

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


class Rule(Model):
    name: Name
    category: Literal["performance", "security", "cost"]
    source: str
    metric: MetricSpec | None = None  # cloudwatch sources
    field: str | None = None  # http_json sources: a dotted path into the JSON answer
    threshold: ThresholdField
    datapoints_to_alarm: int | None = Field(None, ge=1)  # default: evaluation_periods
    evaluation_periods: int = Field(1, ge=1, le=100)
    missing_data: Literal["missing", "ignore", "breaching", "not_breaching"] = "missing"
    level: int = Field(1, ge=1)
    description: str | None = None

    @property
    def m(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods


# --- levels, actions, checks ---------------------------------------------------


class HttpAction(Model):
    type: Literal["http"]
    name: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    headers: dict[str, SecretStr] = {}
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(default_factory=list)  # empty: any 2xx
    timeout: Duration = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()
    idempotent: bool = False

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
    timeout: Duration = timedelta(seconds=60)
    env: dict[str, SecretStr] = {}
    cwd: Path | None = None
    retry: RetrySchedule = RetrySchedule(attempts=1)
    idempotent: bool = False

    def describe(self) -> str:
        return self.name or " ".join(self.argv)


Action = Annotated[Union[HttpAction, CommandAction], Field(discriminator="type")]


class HttpCheck(Model):
    type: Literal["http"]
    name: str | None = None
    method: Literal["GET", "HEAD", "POST"] = "GET"
    url: str
    headers: dict[str, SecretStr] = {}
    expect_status: int = 200
    timeout: Duration = timedelta(seconds=5)

    def describe(self) -> str:
        return self.name or f"{self.method} {self.url}"


Check = Annotated[Union[HttpCheck], Field(discriminator="type")]


class Level(Model):
    level: int = Field(ge=1)
    name: str
    deadline: Duration
    actions: list[Action] = Field(min_length=1)
    checks: list[Check] = []


class Escalation(Model):
    verify_window: Duration = timedelta(minutes=2)
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

    watchdog: WatchdogSection = Field(default_factory=WatchdogSection)
    aws: AwsSection = AwsSection()
    sources: list[Source] = Field(min_length=1)
    targets: list[Target] = Field(min_length=1)
    notifications: list[Notification] = []

    def source(self, name: str) -> CloudWatchSource | HttpJsonSource:
        return next(s for s in self.sources if s.name == name)
