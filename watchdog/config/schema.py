"""The models a config is parsed with, built from models.py and the kind registries (watchdog.shared.kinds).

Each list a kind fills (`sources`, a level's `actions` and `checks`, `notifications`), and `watchdog.state`,
is a union of the registered kinds' models, told apart by `type`, so an unknown type is refused while parsing
with the list of known ones. `watchdog.state_path` is the shorthand of `state` for the one backend whose
descriptor names it (`state_path: P` is `state: {type: sqlite, path: P}`); giving both is refused. A rule takes, flat beside its own keys, every key some source kind reads (each typed as that
kind declares it, absent by default); config.checks then refuses the keys its own source does not read.
The models are built once per set of registered kinds: a kind registered later (a test's, a plugin's)
rebuilds them on the next parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, create_model, model_validator
from pydantic.fields import FieldInfo

from watchdog.config import models, notifications, sources
from watchdog.shared.kinds import ACTIONS, CHANNELS, CHECKS, FAMILIES, SOURCES, STATES, Kind, Registry, versions


@dataclass(frozen=True)
class Schema:
    config: type[models.Config]
    watchdog: type[models.WatchdogSection]  # the loader builds it apart: the environment overrides its keys
    rule: type[models.Rule]
    secret_keys: frozenset[str]  # keys whose values are secret wherever they appear (for error lines)


def schema() -> Schema:
    return _built(versions())


def rule_model() -> type[models.Rule]:
    """The model of one rule, with the reading keys of every registered source kind."""
    return schema().rule


@lru_cache(maxsize=4)
def _built(_versions: tuple[int, ...]) -> Schema:
    rule = _model(models.Rule, _reading_keys())
    level = _model(models.Level, {"actions": (_list(_union(ACTIONS, models.Action)), Field(min_length=1)),
                                  "checks": (_list(_union(CHECKS, models.Check)), [])})
    target = _model(models.Target, {"rules": (_list(rule), Field(min_length=1)),
                                    "levels": (_list(level), Field(min_length=1))})
    watchdog = _watchdog_section()
    config = _model(models.Config, {"sources": (_list(_union(SOURCES, sources.Source)), Field(min_length=1)),
                                    "targets": (_list(target), Field(min_length=1)),
                                    "notifications": (_list(_union(CHANNELS, notifications.Notification)), []),
                                    "watchdog": (watchdog, Field(default_factory=watchdog))})
    used: list[type[BaseModel]] = [watchdog, models.AwsSection, rule, level, target, config,
                                    *(k.config for family in FAMILIES for k in family), *(k.reads for k in SOURCES)]
    return Schema(config, watchdog, rule, _secret_keys(used))


def _watchdog_section() -> type[models.WatchdogSection]:
    """The section with `state` as the union of the backends, filled from `state_path` when not given."""
    named = [k for k in STATES if k.shorthand is not None]
    if len(named) != 1:
        raise TypeError("exactly one state backend kind takes `state_path` as its shorthand, not "
                        f"{[k.type for k in named]}")
    kind, key = named[0], str(named[0].shorthand)
    default = models.WatchdogSection.model_fields["state_path"].default

    def shorthand(cls: Any, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        state = data.get("state")
        if state is not None:  # `state:` left empty in the YAML is not given
            if "state_path" in data:  # from the file or WATCHDOG_STATE_PATH: which one was meant is a guess
                raise ValueError(f"state_path and state both say where the state is kept: give one (state_path: P "
                                 f"is short for state: {{type: {kind.type}, {key}: P}})")
            # The other way round too: `state_path` names the file of a state written out in full (the replay's
            # cache goes next to it), unless that is wrong, which the state's own check says once.
            if isinstance(state, dict) and state.get("type") == kind.type:
                path = state.get(key, kind.config.model_fields[key].default)
                if _usable(path):
                    return {**data, "state_path": path}
            return data
        given = data.get("state_path", default)
        if not _usable(given):  # state_path's own check says what is wrong with it, once
            return data
        return {**data, "state": {"type": kind.type, key: given}}

    def present(section: models.WatchdogSection) -> models.WatchdogSection:
        if section.state is None:  # not reached: every way to leave it unset is refused above with its reason
            raise ValueError("state: required")
        return section

    validators: dict[str, Any] = {"_state_shorthand": model_validator(mode="before")(shorthand),
                                  "_state_present": model_validator(mode="after")(present)}
    backends: Any = Optional[_union(STATES, models.State)]  # None only until `present` has refused it
    return create_model(models.WatchdogSection.__name__, __base__=models.WatchdogSection,
                        __module__=models.WatchdogSection.__module__, __validators__=validators,
                        state=(backends, None))


M = TypeVar("M", bound=BaseModel)


def _usable(path: Any) -> bool:
    try:
        models.state_file(Path(path))
    except (TypeError, ValueError):
        return False
    return True


def _model(base: type[M], fields: dict[str, Any]) -> type[M]:
    """`base` with `fields` in place of its own: same name and module, so errors and reprs read as before."""
    return create_model(base.__name__, __base__=base, __module__=base.__module__, **fields)


def _list(item: Any) -> Any:
    return list[item]


def _union(registry: Registry[Any], base: type[BaseModel]) -> Any:
    kinds: list[Kind] = list(registry)
    for kind in kinds:
        if not issubclass(kind.config, base):
            raise TypeError(f"the {registry.family} kind {kind.type!r}: its config {kind.config!r} is not "
                            f"a {base.__module__}.{base.__name__}")
        tag = kind.config.model_fields["type"].annotation
        if get_origin(tag) is not Literal or get_args(tag) != (kind.type,):
            raise TypeError(f"the {registry.family} kind {kind.type!r}: its config's `type` is not "
                            f"Literal[{kind.type!r}]")
    return Annotated[Union[tuple(k.config for k in kinds)], Field(discriminator="type")]


def _reading_keys() -> dict[str, Any]:
    """Every source kind's reading keys, optional and absent by default. Two kinds may share a key only
    with the same type; a key may not shadow one of the rule's own."""
    keys: dict[str, Any] = {}
    owner: dict[str, tuple[str, Any]] = {}
    own = set(models.Rule.model_fields) | set(dir(models.Rule))
    for kind in SOURCES:
        for name, info in kind.reads.model_fields.items():
            if name in own:
                raise TypeError(f"the source kind {kind.type!r} reads {name!r}, which is a rule's own key")
            shape = (info.annotation, tuple(info.metadata), info.alias)
            if name in owner:
                if owner[name][1] != shape:
                    raise TypeError(f"the source kinds {owner[name][0]!r} and {kind.type!r} both read {name!r}, "
                                    "with different types")
                continue
            owner[name] = (kind.type, shape)
            keys[name] = (Optional[info.annotation], FieldInfo.merge_field_infos(info, default=None))
    return keys


def _secret_keys(used: list[type[BaseModel]]) -> frozenset[str]:
    """The keys whose values are secret-typed wherever they appear (`url` is secret only on a webhook
    channel, and its error never quotes it, so it is left out: masking every URL would garble lines)."""
    secret: set[str] = set()
    plain: set[str] = set()
    seen: set[type[BaseModel]] = set()
    todo = list(used)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            (secret if _holds(field.annotation, SecretStr) else plain).add(field.alias or name)
            todo.extend(_models_in(field.annotation))
    return frozenset(secret - plain)


def _holds(annotation: Any, leaf: type) -> bool:
    return annotation is leaf or any(_holds(a, leaf) for a in getattr(annotation, "__args__", ()))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in getattr(annotation, "__args__", ()) for m in _models_in(a)]
