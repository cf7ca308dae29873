"""`ecs_service`: deploy the previous (or a given) task definition to an ECS service, then read the service back
until it is stable on it: one PRIMARY deployment on that task definition, as many tasks running as desired, and
its rollout COMPLETED (where ECS reports rollouts).

`task_definition: previous` is, while a rollout is under way (a deployment replacing an older one), the task
definition of the deployment being replaced; otherwise the family's ACTIVE revision just below the service's
current one. A rollout that ECS itself marks FAILED fails the action at once, with ECS's reason. ECS takes no
revision with UpdateService (the call is declarative), so nothing fences a concurrent change; the read-back
shows what holds.

A repeat must not walk the service back one more revision each time: before the update, the service is tagged
`rollback-watchdog:from` with the revision it is rolled back from (tagged first, so a crash between the two
leaves a tag that the next attempt sees is not yet true); a later `previous` that finds the service already on
the revision before the tagged one has nothing to do.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from watchdog.actions.aws import AwsAction, AwsRunner, Progress, aws_kind
from watchdog.actions.base import ActionFailed
from watchdog.actions.kind import Verdict
from watchdog.config.types import Timeout

TAG = "rollback-watchdog:from"


class EcsServiceAction(AwsAction):
    type: Literal["ecs_service"]
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    task_definition: str = Field("previous", min_length=1)  # `previous`, or an ARN or family:revision
    timeout: Timeout = timedelta(minutes=10)  # a rollout takes minutes: tasks start, pass health checks, old drain

    @field_validator("task_definition")
    @classmethod
    def _revision_named(cls, v: str) -> str:
        # A family alone would deploy its newest revision, which the read-back could not name in advance.
        if v != "previous" and not re.fullmatch(r"(arn:[^/]+:task-definition/)?[A-Za-z0-9_-]{1,255}:[1-9][0-9]*", v):
            raise ValueError("task_definition is `previous`, family:revision or a task definition ARN")
        return v

    def describe(self) -> str:
        return self.name or f"service {self.cluster}/{self.service} to {self.task_definition}"


def _revision(arn: str) -> tuple[str, int]:
    """family and revision of a task definition ARN (…:task-definition/shop:7) or `shop:7`."""
    tail = arn.rsplit("/", 1)[-1]
    family, _, rev = tail.rpartition(":")
    return family, int(rev) if rev.isdigit() else 0


def _short(arn: str) -> str:
    family, rev = _revision(arn)
    return f"{family}:{rev}"


class EcsServiceRunner(AwsRunner[EcsServiceAction]):
    service = "ecs"
    model = EcsServiceAction

    async def _service(self, a: EcsServiceAction) -> dict[str, Any]:
        where = f"{a.cluster}/{a.service}"
        got = await self.call(a, "DescribeServices", where, cluster=a.cluster, services=[a.service], include=["TAGS"])
        if got.get("failures") or not got.get("services"):
            why = ", ".join(str(f.get("reason")) for f in got.get("failures", [])) or "not found"
            raise ActionFailed(f"DescribeServices {where}: {why}", retryable=False)
        service: dict[str, Any] = got["services"][0]
        return service

    async def _before(self, a: EcsServiceAction, arn: str) -> str | None:
        family, rev = _revision(arn)
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE", "sort": "DESC",
                                  **({"nextToken": token} if token else {})}
            got = await self.call(a, "ListTaskDefinitions", family, **kw)
            for candidate in got.get("taskDefinitionArns", []):
                f, r = _revision(candidate)
                if f == family and r < rev:
                    return str(candidate)
            token = got.get("nextToken")
            if not token:
                return None

    async def target(self, a: EcsServiceAction, service: dict[str, Any]) -> tuple[str, str]:
        """The task definition to deploy, and why."""
        if a.task_definition != "previous":
            return a.task_definition, "as configured"
        current = str(service["taskDefinition"])
        active = [d for d in service.get("deployments", []) if d.get("status") == "ACTIVE"]
        marked = {t.get("key"): t.get("value") for t in service.get("tags", [])}.get(TAG)
        if marked and _revision(marked)[0] == _revision(current)[0] and _short(marked) != _short(current):
            # Rolled back from `marked` already, by an attempt before this one (a repeat after a crash): it is
            # still draining (a deployment runs it), or the service is on the revision before it.
            if any(_short(str(d.get("taskDefinition"))) == _short(marked) for d in active):
                return current, f"already rolling back from {_short(marked)}"
            before = await self._before(a, marked)
            if before is not None and _short(before) == _short(current):
                return current, f"already rolled back from {_short(marked)}"
        if any(d.get("rolloutState") == "FAILED" for d in active):
            # ECS's circuit breaker rolled the failed deployment back itself: the service is going back already
            return current, "ECS is rolling the failed deployment back"
        replaced = sorted(active, key=lambda d: str(d.get("createdAt", "")))
        if replaced:
            return str(replaced[-1]["taskDefinition"]), "the deployment the rollout was replacing"
        previous = await self._before(a, current)
        if previous is None:
            raise ActionFailed(f"{a.cluster}/{a.service}: no ACTIVE revision of {_revision(current)[0]} below "
                               f"{_short(current)} to roll back to", retryable=False)
        return previous, f"the revision before {_short(current)}"

    @staticmethod
    def stable(service: dict[str, Any], target: str) -> tuple[bool, str]:
        deployments = service.get("deployments", [])
        primary = [d for d in deployments if d.get("status") == "PRIMARY"]
        if len(primary) != 1:
            return False, f"{len(primary)} PRIMARY deployments"
        p = primary[0]
        if p.get("rolloutState") == "FAILED":
            raise ActionFailed(f"ECS marked the rollout to {_short(str(p.get('taskDefinition')))} FAILED: "
                               f"{p.get('rolloutStateReason', 'no reason given')}", retryable=False, unknown=True)
        seen = (f"{_short(str(p.get('taskDefinition')))}, {p.get('runningCount')}/{p.get('desiredCount')} running, "
                f"rollout {p.get('rolloutState', 'not reported')}, {len(deployments)} deployment(s)")
        done = (_short(str(p.get("taskDefinition"))) == _short(target) and len(deployments) == 1
                and p.get("runningCount") == p.get("desiredCount") and p.get("rolloutState", "COMPLETED") == "COMPLETED")
        return done, seen

    async def act(self, a: EcsServiceAction, progress: Progress) -> str:
        service = await self._service(a)
        current = str(service["taskDefinition"])
        target, why = await self.target(a, service)
        where = f"service {a.cluster}/{a.service}"
        if _short(current) != _short(target):
            if a.task_definition == "previous":  # the tag first: see the module's docstring
                await self.call(a, "TagResource", where, write=True, resourceArn=service["serviceArn"],
                                tags=[{"key": TAG, "value": current}])
            await self.call(a, "UpdateService", where, write=True, cluster=a.cluster, service=a.service,
                            taskDefinition=target)
        elif self.stable(service, target)[0]:
            return f"{where}: already stable on {_short(target)} ({why})"

        async def shown() -> tuple[bool, str]:
            return self.stable(await self._service(a), target)

        seen = await self.until(a, progress, shown)
        return f"{where}: {_short(current)} → {_short(target)}, stable: {seen} ({why})"

    async def probe(self, a: EcsServiceAction) -> Verdict:
        service = await self._service(a)
        target, why = await self.target(a, service)
        return True, (f"service on {_short(str(service['taskDefinition']))}; a rollback would deploy "
                      f"{_short(target)} ({why})")


KIND = aws_kind(EcsServiceAction, EcsServiceRunner, (
    "ecs:DescribeServices", "ecs:ListTaskDefinitions", "ecs:TagResource", "ecs:UpdateService",
))
