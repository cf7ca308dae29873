"""Who is paused, until when, and why. Pure data: expiry is judged against a given time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

GLOBAL = "*"


@dataclass(frozen=True)
class Pause:
    scope: str  # GLOBAL or a target name
    until: datetime
    reason: str

    def describe(self) -> str:
        what = "all targets" if self.scope == GLOBAL else self.scope
        return f"{what} paused until {self.until:%Y-%m-%d %H:%M:%S}Z ({self.reason})"


class Pauses:
    def __init__(self) -> None:
        self._by_scope: dict[str, Pause] = {}

    def set(self, scope: str, until: datetime, reason: str) -> Pause:
        pause = Pause(scope, until, reason)
        self._by_scope[scope] = pause
        return pause

    def clear(self, scope: str) -> Pause | None:
        return self._by_scope.pop(scope, None)

    def expire(self, now: datetime) -> list[Pause]:
        """Drop and return the pauses that have ended by `now`."""
        ended = [p for p in self._by_scope.values() if p.until <= now]
        for p in ended:
            del self._by_scope[p.scope]
        return ended

    def active(self, target: str, now: datetime) -> Pause | None:
        """The pause that holds `target` now; the one lasting longer wins."""
        found = [p for s, p in self._by_scope.items() if s in (GLOBAL, target) and p.until > now]
        return max(found, key=lambda p: p.until, default=None)

    def all(self, now: datetime) -> list[Pause]:
        return [p for p in self._by_scope.values() if p.until > now]
