"""What every config model shares: frozen, unknown keys refused; names; retry schedules as data."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watchdog.config.types import Backoff, said

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySchedule(Model):
    """Exponential backoff with equal jitter (retrying.backoff), bounded by `attempts` (the first try counts)."""

    attempts: int = Field(3, ge=1, le=20)
    initial_backoff: Backoff = timedelta(milliseconds=500)
    max_backoff: Backoff = timedelta(seconds=10)

    @model_validator(mode="after")
    def _ordered(self) -> "RetrySchedule":
        return backoffs_ordered(self)


def backoffs_ordered(model: Any) -> Any:
    """A cap below the first wait would silently shorten every wait to the cap."""
    if model.max_backoff < model.initial_backoff:
        raise ValueError(f"max_backoff ({said(model.max_backoff)}) is shorter than initial_backoff "
                         f"({said(model.initial_backoff)})")
    return model
