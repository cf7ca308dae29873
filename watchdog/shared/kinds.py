"""The plugin families, each a registry of kinds keyed by the config `type`.

A kind is one module holding one descriptor named `KIND`: its config model and everything the rest of the
watchdog asks of it (sources: watchdog/sources/kind.py; actions and checks: watchdog/actions/kind.py;
notification channels: watchdog/notify/base.py; state backends: watchdog/state/backend.py). Nothing outside that module and its registry names the kind:
the config's unions, the executor's runners, validate, the recording and the replay all come from here.

The config sits below the edges (sources, actions, notify), so it never imports a kind module: a registry
imports its built-in kinds by module name on first use, and the config models are built from the registries
(watchdog/config/schema.py). A kind defined elsewhere (a plugin, a test) joins a registry with `registered`,
which takes it out again when the block ends; each change bumps `version`, so the config models are rebuilt.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel


class Kind(Protocol):
    """What every descriptor has: the `type` that selects it in the config, and the model of one configured item
    (a pydantic model whose `type` field is `Literal[<type>]`)."""

    @property
    def type(self) -> str: ...

    @property
    def config(self) -> builtins.type[BaseModel]: ...


class SourceSchema(Kind, Protocol):
    """What the config needs of a source kind (the whole descriptor: watchdog/sources/kind.py)."""

    @property
    def reads(self) -> builtins.type[BaseModel]: ...  # the keys a rule on it reads, written flat on the rule

    @property
    def requires(self) -> tuple[str, ...]: ...  # of those keys, the one (and only one) a rule must set

    @property
    def sampled(self) -> bool: ...  # a reading is complete on arrival, stamped when read

    @property
    def pushed(self) -> bool: ...  # its data is pushed to the watchdog, which never calls out to it

    @property
    def alarms(self) -> bool: ...  # a reading is an alarm or not already: its rules take no threshold

    @property
    def check(self) -> Callable[..., list[tuple[tuple[str | int, ...], str]]]: ...  # (at, rule, source) -> problems


class StateSchema(Kind, Protocol):
    """What the config needs of a state backend kind (the whole descriptor: watchdog/state/backend.py)."""

    @property
    def shorthand(self) -> str | None: ...  # the key of its model `watchdog.state_path` sets (one kind has it)


K = TypeVar("K", bound=Kind)
D = TypeVar("D")


class UnknownKind(LookupError):
    """No kind of that `type` is registered (the config refuses it before anything asks)."""


class Registry(Generic[K]):
    """One family's kinds by `type`: the built-in ones (`modules`, each holding one descriptor named KIND, in
    the order error messages list them), imported on first use, and any registered since."""

    def __init__(self, family: str, modules: Sequence[str]):
        self.family = family
        self._modules = tuple(modules)
        self._kinds: dict[str, K] | None = None
        self.version = 0

    def _loaded(self) -> dict[str, K]:
        if self._kinds is None:
            kinds: dict[str, K] = {}
            for name in self._modules:
                kind = getattr(importlib.import_module(name), "KIND", None)
                if kind is None:
                    raise TypeError(f"{name} has no KIND: every {self.family} kind module holds one descriptor")
                self._add(kinds, kind)
            self._kinds = kinds
        return self._kinds

    def _add(self, kinds: dict[str, K], kind: K) -> None:
        if not isinstance(kind.type, str) or not kind.type:
            raise TypeError(f"a {self.family} kind needs a type, got {kind.type!r}")
        if kind.type in kinds:
            raise ValueError(f"a {self.family} kind of type {kind.type!r} is registered already")
        kinds[kind.type] = kind

    def get(self, type_: str) -> K:
        kind = self._loaded().get(type_)
        if kind is None:
            raise UnknownKind(f"no {self.family} kind {type_!r} (known: {', '.join(self.types())})")
        return kind

    def types(self) -> tuple[str, ...]:
        return tuple(self._loaded())

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._loaded().values()))

    def __contains__(self, type_: object) -> bool:
        return type_ in self._loaded()

    def register(self, kind: K) -> None:
        self._add(self._loaded(), kind)
        self.version += 1

    def unregister(self, type_: str) -> None:
        if self._loaded().pop(type_, None) is not None:
            self.version += 1

    @contextmanager
    def registered(self, kind: K) -> Iterator[K]:
        """`kind` in the registry for the block, and gone again after it, whatever happens in it."""
        self.register(kind)
        try:
            yield kind
        finally:
            self.unregister(kind.type)


SOURCES: Registry[SourceSchema] = Registry("source", [
    "watchdog.sources.cloudwatch", "watchdog.sources.http_json", "watchdog.sources.prometheus",
    "watchdog.sources.securityhub", "watchdog.sources.cost_explorer", "watchdog.sources.alertmanager",
    "watchdog.sources.cloudwatch_alarms",
])
ACTIONS: Registry[Kind] = Registry("action", [
    "watchdog.actions.http", "watchdog.actions.command", "watchdog.actions.ssm_parameter",
    "watchdog.actions.elbv2_weights", "watchdog.actions.lambda_alias", "watchdog.actions.ecs_service",
    "watchdog.actions.appconfig",
])
CHECKS: Registry[Kind] = Registry("check", ["watchdog.actions.http_check"])
CHANNELS: Registry[Kind] = Registry("notification channel", [
    "watchdog.notify.slack", "watchdog.notify.pagerduty", "watchdog.notify.email", "watchdog.notify.webhook",
])
STATES: Registry[StateSchema] = Registry("state backend", ["watchdog.state.sqlite.backend",
                                                           "watchdog.state.dynamodb.backend"])


# Every family (a new one is added here, with the config key its kinds fill: config/schema.py).
FAMILIES: tuple[Registry[Any], ...] = (SOURCES, ACTIONS, CHECKS, CHANNELS, STATES)


def versions() -> tuple[int, ...]:
    """Changes when any family gains or loses a kind: the key the config models are cached under."""
    return tuple(r.version for r in FAMILIES)


C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class Descriptor(Generic[C]):
    """What every family's descriptor starts with (sources/kind.py, actions/kind.py, notify/base.py add the rest)."""

    type: str
    config: builtins.type[C]

    def of(self, item: BaseModel) -> C:
        """A configured item as this kind's model (for a parsed config, the union has made it one)."""
        if not isinstance(item, self.config):
            raise TypeError(f"a {builtins.type(item).__name__} is not a {self.config.__name__}")
        return item


def find(registry: Registry[Any], of: Any, family: type[D]) -> D:
    """The descriptor of a configured item (or of a `type`), as its family's class: a TypeError naming it when
    something else was registered under that type."""
    kind = registry.get(of if isinstance(of, str) else of.type)
    if not isinstance(kind, family):
        raise TypeError(f"the {registry.family} kind {kind.type!r} is a {type(kind).__name__}, not a {family.__name__}")
    return kind
