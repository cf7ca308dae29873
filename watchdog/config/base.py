"""What every config model shares: frozen, unknown keys refused; names; retry schedules as data."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from watchdog.config.types import Duration

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySchedule(Model):
    """Exponential backoff with full jitter, bounded by `attempts` (the first try counts)."""

    attempts: int = Field(3, ge=1, le=20)
    initial_backoff: Duration = timedelta(milliseconds=500)
    max_backoff: Duration = timedelta(seconds=10)
