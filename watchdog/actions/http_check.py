"""HTTP checks: a level's health probe after its actions (`checks:`), judged by one expected status."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import SecretStr

from watchdog.actions.base import Step
from watchdog.actions.http import HttpRunner, request
from watchdog.actions.kind import CheckKind, RunnerDeps
from watchdog.config.models import Check
from watchdog.config.types import HttpUrl, Timeout


class HttpCheck(Check):
    type: Literal["http"]
    method: Literal["GET", "HEAD", "POST"] = "GET"
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    expect_status: int = 200
    timeout: Timeout = timedelta(seconds=5)

    def describe(self) -> str:
        return self.name or f"{self.method} {self.url}"


class HttpCheckRunner(HttpRunner):
    """The same request as an http action's, judged by the check's one expected status."""

    async def run(self, check: Step) -> str:
        if not isinstance(check, HttpCheck):
            raise TypeError(f"the http check runner cannot run a {check.type} step")
        return await request(self._session, check.method, check.url, check.headers, None, check.timeout,
                             [check.expect_status])


def _runner(deps: RunnerDeps) -> HttpCheckRunner:
    return HttpCheckRunner(deps.session)


KIND = CheckKind(type="http", config=HttpCheck, factory=_runner)
