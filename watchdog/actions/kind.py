"""The descriptors of action and check kinds (one per kind module, its `KIND`), registered in watchdog.shared.kinds
ACTIONS and CHECKS, and the runners the runtime builds from them.

An action kind gives its config model, a factory for the runner that runs its steps (started and closed with
the runtime), a read-only `probe` for `validate`, and through its model the default of `idempotent`. A check
kind (a level's `checks:`) gives its model and its runner's factory. The replay stands one recording runner in
for every registered kind (`Runners.standing_in`), so a kind added later runs in a replay too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from watchdog.actions.base import Runner
from watchdog.config.models import Action, AwsSection, Check
from watchdog.shared.kinds import ACTIONS, CHECKS, Descriptor, find

A = TypeVar("A", bound=Action)
C = TypeVar("C", bound=Check)
Verdict = tuple[bool, str]


@dataclass(frozen=True)
class RunnerDeps:
    """What a runner may use: the runtime's HTTP session, the base environment of every command it starts
    (config.process_environment), and the AWS settings its clients are opened with (watchdog/support/aws.py)."""

    session: aiohttp.ClientSession
    environment: Mapping[str, str]
    aws: AwsSection


@dataclass(frozen=True)
class Probing:
    """What a kind's `probe` may use: the runtime's HTTP session, and the runner the runtime built for the kind
    (an AWS kind reads the resource with its runner's client)."""

    session: aiohttp.ClientSession
    runner: Runner


@dataclass(frozen=True)
class ActionKind(Descriptor[A]):
    factory: Callable[[RunnerDeps], Runner]
    # `validate`'s look at one action: reached, never run (a TCP connect, a file that can be executed, a
    # read-only AWS call on the resource, ...).
    probe: Callable[[A, Probing], Awaitable[Verdict]]
    # The IAM actions its runner may call (`service:Operation`), which deploy/iam/policy.json must grant.
    aws_calls: tuple[str, ...] = ()

    @property
    def idempotent(self) -> bool:
        """Whether an action of this kind is repeated after an attempt of unknown outcome when its config does
        not say: the default of its model's `idempotent`."""
        return bool(self.config.model_fields["idempotent"].default)


@dataclass(frozen=True)
class CheckKind(Descriptor[C]):
    factory: Callable[[RunnerDeps], Runner]


def action_kind(of: Action | str) -> ActionKind[Any]:
    kind: ActionKind[Any] = find(ACTIONS, of, ActionKind)
    return kind


def check_kind(of: Check | str) -> CheckKind[Any]:
    kind: CheckKind[Any] = find(CHECKS, of, CheckKind)
    return kind


class Runners:
    """The runner of each action kind and of each check kind, by `type` (an action and a check of the same
    type have runners of their own)."""

    def __init__(self, actions: Mapping[str, Runner], checks: Mapping[str, Runner]):
        self._actions, self._checks = dict(actions), dict(checks)

    def action(self, step: Action) -> Runner:
        return self._actions[step.type]

    def check(self, step: Check) -> Runner:
        return self._checks[step.type]

    def _each(self) -> list[Runner]:
        seen: dict[int, Runner] = {}
        for runner in [*self._actions.values(), *self._checks.values()]:
            seen.setdefault(id(runner), runner)
        return list(seen.values())

    async def start(self) -> None:
        for runner in self._each():
            await runner.start()

    async def close(self) -> None:
        for runner in reversed(self._each()):
            await runner.close()

    @classmethod
    def standing_in(cls, runner: Runner) -> Runners:
        """`runner` for every registered action and check kind (a replay's, which runs nothing)."""
        return cls({k.type: runner for k in ACTIONS}, {k.type: runner for k in CHECKS})


def build_runners(deps: RunnerDeps) -> Runners:
    """A runner for every registered kind (a reload may bring a kind the config at start did not use)."""
    return Runners({k.type: action_kind(k.type).factory(deps) for k in ACTIONS},
                   {k.type: check_kind(k.type).factory(deps) for k in CHECKS})
