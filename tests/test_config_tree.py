"""The config's YAML tree built from the parser's events (watchdog/config/tree.py) is SafeLoader's tree.

The expectation is PyYAML's own loader (`yaml.load` with the project's Loader: the safe constructors plus
the duplicate-key and long-integer checks), never the code under test: over generated YAML, `load_yaml`
gives the same value (types included) or raises the same error with the same text. And the event builder
itself answers most of that YAML (it is not always handing over to the full loader), using far less
memory at its peak than composing the node graph did.
"""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config.reading import Loader, load_yaml
from watchdog.config.tree import Unusual, build_tree

# Plain scalars whose type depends on the resolver (YAML 1.1 as PyYAML reads it), quoted ones that must
# stay text, explicit tags, and what only the full loader handles (anchors, aliases, merge keys, `=`).
SCALARS = [
    "a", "yes", "No", "on", "OFF", "y", "~", "null", "Null", "", "0", "-0", "007", "0o17", "0x1F", "0b101", "1_000",
    "190:20:30", "1e3", "1.5e-3", "6.8523015e+5", ".5", "-.inf", ".NaN", "1.", "2001-12-14", "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10", "2002-1-2", "'yes'", '"0x1F"', '"a\\nb"', "'it''s'", '"\\u00e9"', "é", "> 1500",
    "!!str 5", "!!int '7'", "!!float 1", "!!bool 'yes'", "!!binary aGk=", "!!null ''", "!!timestamp 2001-12-14",
    "!!str", "!custom x", "!!set {a, b}", "!!omap [a: 1]", "<<", "=", "&x 1", "*x", "9" * 120, "http://h/?a=1&b=2",
    "'#not a comment'", "a # a comment", "?", "-", "[]", "{}", "!!map {}", "!!seq []", "[1, [2, {k: v}]]",
]
KEYS = ["a", "b", "name", "1", "1.0", "true", "~", "'a'", '"b"', "<<", "=", "? [x]", "2001-12-14", "yes", "0x1"]


def _block(tree: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(tree, tuple) and tree[0] == "map":
        if not tree[1]:
            return pad + "{}\n"
        return "".join(
            f"{pad}{k}:\n{_block(v, indent + 2)}" if isinstance(v, tuple) else f"{pad}{k}: {v}\n" for k, v in tree[1]
        )
    if isinstance(tree, tuple) and tree[0] == "seq":
        if not tree[1]:
            return pad + "[]\n"
        return "".join(f"{pad}-\n{_block(v, indent + 2)}" if isinstance(v, tuple) else f"{pad}- {v}\n" for v in tree[1])
    if isinstance(tree, tuple) and tree[0] == "flow":
        return f"{pad}{_flow(tree[1])}\n"
    return f"{pad}{tree}\n"


def _flow(tree: Any) -> str:
    if not isinstance(tree, tuple):
        return str(tree)
    kind, body = tree
    if kind == "flow":
        return _flow(body)
    if kind == "map":
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in body) + "}"
    return "[" + ", ".join(_flow(v) for v in body) + "]"


scalars = st.sampled_from(SCALARS)
nodes = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(st.just("map"), st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=4)),
        st.tuples(st.just("seq"), st.lists(inner, max_size=4)),
        st.tuples(st.just("flow"), st.one_of(
            st.tuples(st.just("map"), st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3)),
            st.tuples(st.just("seq"), st.lists(inner, max_size=3)))),
    ),
    max_leaves=12,
)
documents = st.one_of(
    nodes.map(lambda t: _block(t, 0)),
    st.tuples(nodes, nodes).map(lambda ts: _block(ts[0], 0) + "---\n" + _block(ts[1], 0)),  # two documents
    st.tuples(nodes, st.sampled_from(["\n", "\t", "'", "[", "a: b: c", "- x\ny: 1", "...", "%YAML 1.1"]))
    .map(lambda t: _block(t[0], 0) + t[1]),  # broken endings
)


def outcome(load: Any, text: str) -> tuple[str, Any]:
    """The value with every type spelled out (1 == 1.0 == True in Python), or the error's type and text."""
    try:
        return "value", _typed(load(text))
    except Exception as exc:  # the comparison is of which error, whatever it is
        return "error", (type(exc).__name__, str(exc))


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, (set, frozenset)):  # its repr's order is the hashes' (and the insertions'): any
        return (type(value).__name__, sorted(repr(_typed(v)) for v in value))
    return (type(value).__name__, repr(value))


def full_loader(text: str) -> Any:
    return yaml.load(text, Loader=Loader)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents)
def test_the_tree_is_safe_loaders_over_generated_yaml(text: str) -> None:
    assert outcome(load_yaml, text) == outcome(full_loader, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents)
def test_the_event_builder_itself_gives_safe_loaders_tree_or_hands_over(text: str) -> None:
    """Without the hand-over: what the builder answers is the full loader's answer (values and syntax errors)."""
    try:
        got = outcome(lambda t: build_tree(t, Loader), text)
    except Unusual:
        return
    if got[0] == "error" and got[1][0] == "Unusual":
        return
    assert got == outcome(full_loader, text)


PLAIN = """\
watchdog: {listen: "127.0.0.1:0", log_level: info}
sources:
  - {name: cw, type: cloudwatch, interval: 60s, retry: {attempts: 1}}
targets:
  - name: web
    rules:
      - {name: r1, source: cw, threshold: "> 1500", evaluation_periods: 3, level: 1, enabled: yes, ratio: 0.5}
      - name: r2
        metric: {namespace: N, name: Latency, dimensions: {Service: web}, stat: p99, period: 60s}
        note: ~
        since: 2001-12-14
"""


def test_a_plain_config_is_built_from_events_not_handed_over() -> None:
    tree = build_tree(PLAIN, Loader)  # Unusual here would mean the cheap path is never taken
    assert tree["targets"][0]["rules"][0]["enabled"] is True
    assert tree["targets"][0]["rules"][0]["ratio"] == 0.5
    assert tree["targets"][0]["rules"][1]["note"] is None
    assert tree == yaml.load(PLAIN, Loader=yaml.SafeLoader)


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n", "a: 1\na: 2\n", "<<: {a: 1}\nb: 2\n", "=: 1\n", "a: !custom x\n", "a: 1\n---\nb: 2\n",
    "? [x]\n: 1\n", "a: " + "9" * 120 + "\n", "a: !!set {x, y}\n", "[" * 100 + "]" * 100 + "\n",
])
def test_what_only_the_node_graph_gives_is_handed_over(text: str) -> None:
    with pytest.raises(Unusual):
        build_tree(text, Loader)
    assert outcome(load_yaml, text) == outcome(full_loader, text)


def test_the_parse_holds_little_beyond_the_tree() -> None:
    """The node graph held several times the tree at its peak (1 000 rules: 13.5 MB against 3.5 MB kept);
    built from events, the peak is the tree plus the few events in hand."""
    rule = ('  - {name: r%05d, category: performance, source: cw, metric: {namespace: Bench, name: Latency, '
            'dimensions: {Rule: r%05d, Service: svc}, stat: Average, period: 60s}, threshold: "> 1500", '
            'evaluation_periods: 3, datapoints_to_alarm: 2, level: 1}\n')
    text = "rules:\n" + "".join(rule % (i, i) for i in range(2000))

    def peak_and_kept(load: Any) -> tuple[int, int]:
        tracemalloc.start()
        tree = load(text)
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del tree
        return peak, kept

    composed_peak, _ = peak_and_kept(full_loader)
    peak, kept = peak_and_kept(lambda t: build_tree(t, Loader))
    assert peak < 1.5 * kept, (peak, kept)
    assert peak < composed_peak / 2, (peak, composed_peak)


def test_equal_texts_are_kept_once() -> None:
    """5 000 rules repeat their category, source, stat...: the tree (and the models, which keep its strings)
    holds one object per distinct text."""
    tree = build_tree(PLAIN + "extra: [web, 60s, cw]\n", Loader)
    rules = tree["targets"][0]["rules"]
    assert tree["extra"][0] is tree["targets"][0]["name"]
    assert tree["extra"][1] is rules[1]["metric"]["period"]
    assert tree["extra"][2] is rules[0]["source"] is tree["sources"][0]["name"]


def test_rules_share_their_fields_set_and_a_copy_changes_only_itself() -> None:
    from watchdog.config import parse_config

    text = """\
sources:
  - {name: cw, type: cloudwatch, interval: 60s}
targets:
  - name: web
    rules:
      - {name: a, category: performance, source: cw, threshold: "> 1", metric: {namespace: N, name: M, stat: Average, period: 60s}}
      - {name: b, category: performance, source: cw, threshold: "> 1", metric: {namespace: N, name: M, stat: Average, period: 60s}}
      - {name: c, category: performance, source: cw, threshold: "> 1", level: 1, metric: {namespace: N, name: M, stat: Average, period: 60s}}
    levels:
      - {level: 1, name: flags, deadline: 2m, actions: [{type: http, method: PUT, url: "http://127.0.0.1:9/f"}]}
"""
    a, b, c = parse_config(text, {}).targets[0].rules
    assert a.model_fields_set is b.model_fields_set
    assert a.model_fields_set == {"name", "category", "source", "threshold", "metric"}
    assert c.model_fields_set == {"name", "category", "source", "threshold", "metric", "level"}
    changed = a.model_copy(update={"description": "x"})
    assert "description" in changed.model_fields_set
    assert "description" not in a.model_fields_set and "description" not in b.model_fields_set
