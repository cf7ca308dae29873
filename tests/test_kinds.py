"""The kind registries (watchdog/shared/kinds.py): nothing outside a kind's own module and its registry names the kind,
and a registry refuses what would make the config ambiguous.

The source of every module under watchdog/ is parsed with `ast`: a comparison of a `type` (a source's, an
action's, a check's, a channel's, a state backend's) with a kind's name, or a dict or set literal holding a kind's name, is only
allowed in that kind's module and in the registry. The checker is shown to catch both on planted code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from watchdog.config import ConfigError, parse_config
from watchdog.shared.kinds import ACTIONS, CHANNELS, CHECKS, FAMILIES, SOURCES, STATES, Registry, UnknownKind

PACKAGE = Path(__file__).resolve().parent.parent / "watchdog"
REGISTRY = PACKAGE / "shared" / "kinds.py"


def kind_modules() -> dict[str, set[Path]]:
    """Each kind name, with the files of the modules that define a kind of that name (`http` is an action
    and a check)."""
    out: dict[str, set[Path]] = {}
    for family in FAMILIES:
        for kind in family:
            module = sys.modules[kind.config.__module__]
            out.setdefault(kind.type, set()).add(Path(str(module.__file__)).resolve())
    return out


def _typeish(node: ast.AST) -> bool:
    """An expression that reads a kind's name: `x.type`, or a variable called type or kind."""
    if isinstance(node, ast.Attribute):
        return node.attr == "type"
    if isinstance(node, ast.Name):
        return node.id in ("type", "type_", "kind", "kind_name")
    if isinstance(node, ast.Call):  # e.g. s.type.lower()
        return _typeish(node.func)
    if isinstance(node, ast.Subscript):  # e.g. doc["type"]
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "type"
    return False


def _names_in(node: ast.AST, kinds: set[str]) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value in kinds}


def named_kinds(source: str, kinds: set[str]) -> list[tuple[int, str, str]]:
    """(line, kind, how) for each place `source` names a kind: in a comparison with a type, as a case of a
    match on a type, as a dict key, or as a set element."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_typeish(side) for side in sides):
                found += [(node.lineno, k, "compared with a type") for k in sorted(_names_in(node, kinds))]
        elif isinstance(node, ast.Match) and _typeish(node.subject):
            for case in node.cases:
                found += [(case.pattern.lineno, k, "a case of a match on a type")
                          for k in sorted(_names_in(case.pattern, kinds))]
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in kinds:
                    found.append((node.lineno, str(key.value), "a dict key"))
        elif isinstance(node, ast.Set):
            found += [(node.lineno, k, "a set element") for k in sorted(
                {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in kinds})]
    return found


def test_no_module_but_a_kinds_own_and_its_registry_names_it() -> None:
    owners = kind_modules()
    assert {"cloudwatch", "alertmanager", "http", "command", "pagerduty", "sqlite"} <= set(owners)  # registries read
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() == REGISTRY:
            continue
        for line, kind, how in named_kinds(path.read_text(), set(owners)):
            if path.resolve() not in owners[kind]:
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {kind!r} {how}")
    assert offences == []


PLANTED = '''
def budget(s, runners, r):
    if s.type == "alertmanager":
        return None
    skip = s.type in ("cost_explorer", "cloudwatch")
    match s.type:
        case "prometheus":
            pass
    runners = {"http": r, "command": r}
    local = {"http", "command"}
    fine = parts.scheme in ("http", "https") and args.command == "run"
    return {"type": "http"}


def open_state(cfg, deps):
    if cfg.watchdog.state.type == "sqlite":
        return SqliteStore(cfg.watchdog.state.path)
    return {"sqlite": open_sqlite}[cfg.watchdog.state.type](cfg, deps)
'''


def test_the_checker_finds_each_way_of_naming_a_kind() -> None:
    """What the test above would report, had these lines been written in watchdog/ (the regression it guards:
    budget_warnings' alertmanager test, the replay's runners dict, validate's `{"http", "command"}`)."""
    found = named_kinds(PLANTED, set(kind_modules()))
    assert sorted(found) == [
        (3, "alertmanager", "compared with a type"),
        (5, "cloudwatch", "compared with a type"),
        (5, "cost_explorer", "compared with a type"),
        (7, "prometheus", "a case of a match on a type"),
        (9, "command", "a dict key"),
        (9, "http", "a dict key"),
        (10, "command", "a set element"),
        (10, "http", "a set element"),
        (16, "sqlite", "compared with a type"),
        (18, "sqlite", "a dict key"),
    ]  # and nothing of line 11 (a URL scheme, a command-line verb) or 12 (a config written as data)


# --- the registry itself -------------------------------------------------------------------------------------


class _Model(BaseModel):
    type: str


class _Kind:
    def __init__(self, type_: str):
        self.type, self.config = type_, _Model


def test_a_kind_registered_for_a_block_is_gone_after_it_even_when_the_block_fails() -> None:
    registry: Registry = Registry("toy", [])
    before = registry.version
    with pytest.raises(RuntimeError):
        with registry.registered(_Kind("a")):
            assert registry.types() == ("a",) and registry.get("a").type == "a"
            raise RuntimeError("the block fails")
    assert registry.types() == () and registry.version == before + 2
    with pytest.raises(UnknownKind, match="no toy kind 'a'"):
        registry.get("a")


def test_a_type_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered already"):
        with SOURCES.registered(_Kind("cloudwatch")):  # type: ignore[arg-type]
            pass
    assert "cloudwatch" in SOURCES


def test_the_built_ins_load_in_their_order_which_the_unknown_type_line_lists() -> None:
    assert SOURCES.types() == ("cloudwatch", "http_json", "prometheus", "securityhub", "cost_explorer", "alertmanager",
                               "cloudwatch_alarms")
    assert ACTIONS.types() == ("http", "command", "ssm_parameter", "elbv2_weights", "lambda_alias",
                              "ecs_service", "appconfig") and CHECKS.types() == ("http",)
    assert CHANNELS.types() == ("slack", "pagerduty", "email", "webhook")
    assert STATES.types() == ("sqlite", "dynamodb")


def test_a_reading_key_of_one_kind_is_refused_on_a_rule_of_another() -> None:
    """The descriptor says which keys its rules take: `reduce` (prometheus) on a cloudwatch rule is named, as
    `promql` always was (docs/configuration.md, Rules: `promql`, `reduce`: prometheus sources)."""
    text = """
sources: [{name: cw, type: cloudwatch}]
targets:
  - name: t
    rules:
      - {name: r, category: performance, source: cw, threshold: "> 1", reduce: max,
         metric: {namespace: N, name: M}}
    levels: [{level: 1, name: one, deadline: 1m, actions: [{type: http, url: "http://127.0.0.1:9/x"}]}]
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, {})
    assert err.value.problems == [
        "targets[0].rules[0].reduce: not used by cloudwatch source 'cw'; use metric or expression (line 6)"]
