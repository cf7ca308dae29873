"""The documentation holds together: every relative link in README.md and docs/ resolves (the file, and the
heading a `#anchor` names), and every key of the config's models is documented somewhere in docs/.

The anchor rule is GitHub's, written out here: the heading's text (links reduced to their text) in lower
case, every character dropped that is not a letter, a digit, a space, '-' or '_', and each space made a
'-'; a repeated heading gets `-1`, `-2`, ... The keys come from walking the pydantic models a config is
parsed with (watchdog/config/schema.py builds them from the kind registries, watchdog/shared/kinds.py):
every field of every model reachable from the top one, of every registered kind's model, and of every
source kind's reading keys.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from watchdog.config.schema import schema
from watchdog.shared.kinds import FAMILIES, SOURCES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or the parenthesis
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\S.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = anchor(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every link and image, outside code (a link shown as code is not followed)."""
    for number, line in prose(text):
        bare = CODE_SPAN.sub("", line)
        for m in LINK.finditer(bare):
            yield number, m.group(1)
        m = REFERENCE.match(bare)
        if m:
            yield number, m.group(1)


def broken_links(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """Every relative link that does not resolve, as `file:line: target: why` (file relative to root)."""
    problems = []
    for doc in files:
        text = doc.read_text(encoding="utf-8")
        for number, target in links(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            path, _, fragment = target.partition("#")
            where = doc if not path else (doc.parent / path).resolve()
            here = f"{doc.relative_to(root)}:{number}: {target}"
            if not where.exists():
                problems.append(f"{here}: no such file {where}")
            elif fragment:
                if where.suffix != ".md" or where.is_dir():
                    problems.append(f"{here}: an anchor into something that is not a Markdown file")
                elif fragment not in anchors(where.read_text(encoding="utf-8")):
                    problems.append(f"{here}: {where.name} has no heading with the anchor #{fragment}")
    return problems


# --- the links -------------------------------------------------------------------------------------


def test_every_relative_link_and_image_resolves() -> None:
    docs = documents()
    assert len(docs) >= 8, docs  # README and the seven reference files: the scan found them
    assert sum(1 for d in docs for _ in links(d.read_text())) > 50  # and it found their links
    problems = broken_links(docs)
    assert not problems, "links that do not resolve:\n" + "\n".join(problems)


def test_the_anchor_rule_is_githubs() -> None:
    """Derived by hand from GitHub's rule (the module's docstring)."""
    assert anchor("`watchdog:`") == "watchdog"
    assert anchor("Exposure, and what the port does under a flood") == "exposure-and-what-the-port-does-under-a-flood"
    assert anchor("Reload (SIGHUP)") == "reload-sighup"
    assert anchor("The status page (`GET /`)") == "the-status-page-get-"
    assert anchor("Delivery: the outbox") == "delivery-the-outbox"
    assert anchor("The `sqlite` backend") == "the-sqlite-backend"
    assert anchor("state_path and [links](x.md)") == "state_path-and-links"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}


def test_the_link_check_finds_a_missing_file_a_missing_anchor_and_a_missing_image(tmp_path: Path) -> None:
    """The check itself, on a planted tree: each kind of break is found, and what resolves is not reported."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## Some part\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n"
        "[ok](docs/b.md#some-part) [ok too](#top) [web](https://example.org/x) `[code](nowhere.md)`\n"
        "[gone](docs/c.md) [no anchor](docs/b.md#other-part) ![picture](docs/img/x.png)\n"
        "```\n[in a fence](nowhere.md)\n```\n")
    problems = broken_links([readme, tmp_path / "docs" / "b.md"], tmp_path)
    assert [p.split(": ")[1] for p in problems] == ["docs/c.md", "docs/b.md#other-part", "docs/img/x.png"], problems


# --- the config keys --------------------------------------------------------------------------------


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def config_keys() -> dict[str, set[str]]:
    """Every key a config can hold -> the models that have it."""
    keys: dict[str, set[str]] = {}
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            keys.setdefault(field.alias or name, set()).add(model.__name__)
            for inner in _models(field.annotation):
                walk(inner)

    walk(schema().config)
    for family in FAMILIES:
        for kind in family:
            walk(kind.config)
    for source in SOURCES:
        walk(source.reads)
    return keys


def documented(key: str, text: str) -> bool:
    """`key` in backticks (alone, or as a part of a dotted path of keys: `escalation.verify_window` names both),
    or as a YAML key (`key:`) in code: a span or a fenced block."""
    code = [m.group(2) for m in CODE_SPAN.finditer(text)]
    fenced, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside:
            fenced.append(line)
    named = re.compile(rf"^(?:[\w\[\]]+\.)*{re.escape(key)}(?:\[\d+\])?(?:\.[\w\[\]]+)*$")
    as_yaml = re.compile(rf"(?:^|[\s{{,\[-]){re.escape(key)}:")
    return any(named.match(c.strip()) for c in code) or any(as_yaml.search(c) for c in [*code, *fenced])


def test_the_key_walk_reaches_nested_models_and_every_kind() -> None:
    """A few keys picked by hand from each place the walk must reach, so an empty or shallow walk fails."""
    keys = config_keys()
    by_hand = {
        "verify_window": "Escalation",  # nested: targets[].escalation
        "attempts": "RetrySchedule",  # nested in every source and action
        "alert_ttl": "AlertmanagerSource",  # a source kind's model
        "promql": "PrometheusReads",  # a source kind's reading keys
        "product": "FindingsSpec",  # nested in a reading key
        "argv": "CommandAction",  # an action kind
        "expect_status": "HttpCheck",  # a check kind
        "routing_key": "PagerDutyNotification",  # a channel kind
        "path": "SqliteState",  # a state backend kind
        "http_idle_timeout": "WatchdogSection",
    }
    assert {k: m for k, m in by_hand.items() if m not in keys.get(k, set())} == {}
    assert len(keys) > 80


def test_every_config_key_is_documented_in_docs() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md")))
    missing = {k: sorted(models) for k, models in config_keys().items() if not documented(k, text)}
    assert not missing, "config keys no file in docs/ names as `key` or `key:`:\n" + "\n".join(
        f"{key} (in {', '.join(models)})" for key, models in sorted(missing.items()))


@pytest.mark.parametrize("text, key, expected", [
    ("the `verify_window` key", "verify_window", True),
    ("`escalation.verify_window` (2m)", "verify_window", True),
    ("`escalation.verify_window` (2m)", "escalation", True),
    ("`sources[0].interval: at least 100ms`", "sources", False),  # an error line, not a path alone
    ("`targets[0].rules`", "rules", True),
    ("`{over: 24h, percent: \"> 50\"}`", "percent", True),
    ("```yaml\nreceivers:\n  - name: x\n```", "receivers", True),
    ("verify_window in plain words", "verify_window", False),
    ("`verify_windows`", "verify_window", False),
    ("`max_verify_window: 3`", "verify_window", False),
])
def test_what_counts_as_documented(text: str, key: str, expected: bool) -> None:
    assert documented(key, text) is expected
