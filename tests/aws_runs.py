"""How the AWS action tests run an action: its kind's runner (the daemon's aioboto3 client, as build_runners makes
it) on a gate in front of moto or a fake (tests/aws_gate.py), the runner's operations held to what its kind
declares it calls (deploy/iam/policy.json grants those: tests/test_deploy.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from aws_gate import Gate, gate
from watchdog.actions import ActionFailed, Probing, RunnerDeps, action_kind
from watchdog.config.models import AwsSection

FAST = {"timeout": "1s", "read_back_every": "100ms"}


def action(**keys: Any) -> Any:
    """A configured action of the kind `type` names (its own model, as the config's union picks it)."""
    return action_kind(keys["type"]).config.model_validate(keys)


class Run:
    """One kind's runner on the gate, as the runtime builds it (build_runners), started and closed."""

    def __init__(self, g: Gate, session: aiohttp.ClientSession):
        self.gate, self.session = g, session
        self.runners: dict[str, Any] = {}

    async def __call__(self, a: Any) -> str:
        detail: str = await self.runner(a).run(a)
        return detail

    def runner(self, a: Any) -> Any:
        if a.type not in self.runners:
            deps = RunnerDeps(self.session, {}, AwsSection(region="us-east-1", endpoint_url=self.gate.url))
            self.runners[a.type] = action_kind(a.type).factory(deps)
        return self.runners[a.type]

    async def probe(self, a: Any) -> tuple[bool, str]:
        kind = action_kind(a.type)
        verdict: tuple[bool, str] = await kind.probe(a, Probing(self.session, self.runner(a)))
        return verdict

    async def fails(self, a: Any) -> ActionFailed:
        with pytest.raises(ActionFailed) as failed:
            await self(a)
        return failed.value

    async def close(self) -> None:
        for r in self.runners.values():
            await r.close()

    def undeclared(self) -> set[str]:
        """Operations the runners sent that their kinds do not declare (deploy/iam/policy.json grants those
        declared: tests/test_deploy.py)."""
        declared = {a.split(":")[1] for t in self.runners for a in action_kind(t).aws_calls}
        return set(self.gate.calls) - declared


@asynccontextmanager
async def running(url: str, session: aiohttp.ClientSession) -> AsyncIterator[Run]:
    """A Run on a gate in front of `url` (moto or a fake); its runners' operations held to their kinds'
    declarations."""
    async with gate(url) as g:
        r = Run(g, session)
        try:
            yield r
        finally:
            await r.close()
        assert not r.undeclared(), f"sent but not declared in the kind's aws_calls: {r.undeclared()}"


def later(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A hook for the gate: a change made by somebody else (boto3, straight to moto), off the event loop."""
    async def hook() -> None:
        await asyncio.to_thread(fn, *args, **kwargs)
    return hook
