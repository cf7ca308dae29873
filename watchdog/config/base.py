"""What every config model shares: frozen, unknown keys refused; names; retry schedules as data."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watchdog.config.types import Backoff, said

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoffs(Model):
    """A retry schedule as data: `attempts` tries in all (the first counts), the waits between them doubling
    from `initial_backoff` up to `max_backoff` with equal jitter (retrying.backoff). Each kind of retry
    sets its own defaults and bounds."""

    attempts: int
    initial_backoff: Backoff
    max_backoff: Backoff

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        # A cap below the first wait would silently shorten every wait to the cap.
        if self.max_backoff < self.initial_backoff:
            raise ValueError(f"max_backoff ({said(self.max_backoff)}) is shorter than initial_backoff "
                             f"({said(self.initial_backoff)})")
        return self


class RetrySchedule(Backoffs):
    """A source's calls and an action's attempts, retried inside one poll or one level."""

    attempts: int = Field(3, ge=1, le=20)
    initial_backoff: Backoff = timedelta(milliseconds=500)
    max_backoff: Backoff = timedelta(seconds=10)
