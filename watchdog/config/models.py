"""The configuration's shape: frozen pydantic models, unknown keys rejected.

These are the keys every config has. The kinds (sources, actions, checks, channels: watchdog.shared.kinds) add
theirs: the models a config is parsed with are built from these and the registries (`schema.py`), so a
`Config` in hand holds each kind's own model. Cross-field rules that need the whole document (a rule's
source exists, levels have no gaps, ...) live in `checks.py` so each problem gets its own path.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator
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
    ShutdownGrace,
    Threshold,
    ThresholdField,
    Timeout,
    VerifyWindow,
    parse_threshold,
    said,
)

# The longest http_*_timeout (docs/configuration.md "`watchdog:`").
MAX_HTTP_TIMEOUT = timedelta(minutes=10)


def state_file(v: Path) -> Path:
    """A path the state file can have: a file's name, not the working directory or another directory."""
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


def _host_name() -> str:
    """The host's name as an instance id: its first label, or `watchdog` when it has none usable."""
    import re
    import socket

    name = socket.gethostname().split(".")[0]
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}", name) else "watchdog"


class State(Model):
    """The keys every state backend has; a backend's model (its module, watchdog.shared.kinds STATES) adds
    `type: Literal[...]` and its own keys."""

    type: str


class WatchdogSection(BaseSettings):
    """The daemon itself. `WATCHDOG_<KEY>` environment variables override these."""

    model_config = SettingsConfigDict(env_prefix="WATCHDOG_", extra="forbid", frozen=True)

    listen: str = "127.0.0.1:9718"
    # The shorthand of `state` for the backend whose descriptor names it (the SQLite file's `path`).
    state_path: Path = Path("./state/watchdog.db")
    # Where incidents, the audit log, pauses and the outbox are kept: a backend by `type`. The model a config
    # is parsed with (schema.py) types it as the union of the registered backends and fills it from
    # `state_path` when it is not given, so a parsed config always has one; only a section made by hand
    # (a test's WatchdogSection()) has none.
    state: State | None = None
    dry_run: bool = False
    # Names this watchdog in the leases, /status and the audit log of a shared state (SPEC 4.5): unique among
    # the watchdogs that share one table. The host's name unless given.
    instance_id: str = Field(default_factory=lambda: _host_name(), min_length=1, max_length=128,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
    api_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # How long SIGTERM waits for a running level before it is recorded as interrupted.
    shutdown_grace: ShutdownGrace = timedelta(seconds=30)
    # Append every poll's answer to this JSON-lines file, for `replay` (like `run --record FILE`).
    record: Path | None = None
    # The HTTP face's own protection (watchdog/http/server.py, docs/operations.md "Exposure"): anyone who can reach
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
        return state_file(v)

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


# --- sources: config/sources.py (each kind's own model: its module, watchdog.shared.kinds) ------------------

# --- rules -------------------------------------------------------------------


class ChangeSpec(Model):
    """A rule on the change of a value: the newest against the one `over` earlier, in percent."""

    over: Age
    percent: ThresholdField


R = TypeVar("R", bound=BaseModel)


class Rule(Model):
    """The keys every rule has. What a rule reads from its source (`metric`, `promql`, ...) is written flat on
    the rule too, but declared by the source's kind (its `reads` model): the model that parses a config adds
    those keys (watchdog/config/schema.py), and `reads` gives them back as the kind's own model."""

    name: Name
    category: Literal["performance", "security", "cost"]
    source: str
    # How it is judged: a threshold on the value, or on its change.
    threshold: ThresholdField | None = None
    change: ChangeSpec | None = None
    max_age: Age | None = None  # a value older than this is missing
    datapoints_to_alarm: int | None = Field(None, ge=1)  # default: evaluation_periods
    evaluation_periods: int = Field(1, ge=1, le=100)
    missing_data: Literal["missing", "ignore", "breaching", "not_breaching"] = "missing"
    level: int = Field(1, ge=1)
    description: str | None = None

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
        return parse_threshold("== true")  # a rule on readings that are alarms already: alarm while one fires

    def reads(self, model: type[R]) -> R:
        """The keys of `model` (a source kind's `reads`) this rule sets, as that model; the rest at their
        defaults. Built on each call (the sources keep what they need of it): the values were validated
        when the config was, by the same field types."""
        given = {name: value for name in model.model_fields if (value := getattr(self, name, None)) is not None}
        return model.model_construct(**given)


# --- levels, actions, checks ---------------------------------------------------


class Action(Model):
    """The keys every action has; a kind's model (its module, watchdog.shared.kinds) adds `type: Literal[...]`,
    its own keys and its defaults."""

    type: str
    name: str | None = None
    timeout: Timeout = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()
    idempotent: bool = False

    def describe(self) -> str:
        return self.name or self.type


class Check(Model):
    """The keys every check (a level's `checks:`) has; a kind's model adds the rest."""

    type: str
    name: str | None = None
    timeout: Timeout = timedelta(seconds=5)

    def describe(self) -> str:
        return self.name or self.type


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
    """A whole config; the one a config is parsed with is built by schema.py (its lists hold the kinds' models)."""

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
