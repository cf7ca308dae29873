"""Turning a file into a YAML tree, refusing what a config never needs and would get wrong in silence.

- Bytes that are not UTF-8 (a Latin-1 comment, a UTF-16 file, a binary) are refused with their line.
- Anchors and aliases (`&a`, `*a`) are refused before anything is built: a config has no use for them,
  and nested aliases (the "billion laughs") expand a few hundred bytes into gigabytes; a recursive one
  (`a: &a [*a]`) never ends. The scan for them runs only when the text could hold an anchor, so the
  usual file pays one substring search.
- A key given twice in one mapping is refused with both lines (YAML would let the last one win).
- An integer of more digits than any config value has is refused (Python would refuse to convert it).

Each refusal is a `Refused` carrying one line of text, the loader adds the file name.
"""

from __future__ import annotations

import codecs
import pickle
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from watchdog.config.tree import Unusual, build_tree

# libyaml when PyYAML was built with it (the wheels are): ten times faster than the pure-Python reader,
# which at 5 000 rules took most of the daemon's start-up and its peak memory. Same safe constructors.
BASE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A 5 000-rule config is about 2 MB; anything this large is not a config (and /dev/zero never ends).
MAX_BYTES = 64 * 1024 * 1024
# No config value is a number this long; a longer one is a typo or an attack (int() of 10^6 digits is slow).
MAX_INT_DIGITS = 100
# An anchor is `&name` at the start of a node: after a line start, a space or a flow indicator. A `&`
# anywhere else (a URL's query string) cannot start one, so such text skips the event scan.
_ANCHOR_HINT = re.compile(r"(?:^|[\s\[\]{},])&", re.MULTILINE)

Path_ = tuple[Any, ...]


class Refused(Exception):
    """One line saying why the text cannot be a config."""


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or OSError; a file too large to be a config is `Refused` before it fills memory."""
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise Refused(f"larger than {MAX_BYTES // (1024 * 1024)} MiB: not a config file")
    return raw


def decode(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise Refused("is UTF-16 or UTF-32 text (it starts with a byte-order mark): save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Refused(f"not UTF-8: byte 0x{raw[exc.start]:02x} on line {line}, column {column} "
                      "(save the file as UTF-8)") from None


def refuse_anchors(text: str) -> None:
    """Stops at the first anchor or alias, reading events one by one: nothing is composed or built."""
    if "&" not in text or not _ANCHOR_HINT.search(text):
        return
    for event in yaml.parse(text, Loader=BASE_LOADER):
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            continue
        shown = ("*" if isinstance(event, yaml.AliasEvent) else "&") + _cut(str(anchor))
        where = f" on line {event.start_mark.line + 1}" if event.start_mark is not None else ""
        raise Refused(f"YAML anchors and aliases are not supported ({shown}{where}): write the value out")


class DuplicateKey(Exception):
    def __init__(self, key: Any, first: Any, second: Any):  # yaml marks (libyaml has its own class)
        super().__init__(key, first.line + 1, second.line + 1)
        self.key, self.first, self.second = key, first, second

    @property
    def where(self) -> str:
        a, b = self.first, self.second
        if a.line == b.line:  # a flow mapping: {a: 1, a: 2}
            return f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}"
        return f"lines {a.line + 1} and {b.line + 1}"


class Loader(BASE_LOADER):
    """The safe loader, checking each mapping for a repeated key. The check costs one len() per mapping;
    only a mapping that lost an entry is searched for the culprit."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):
            self._find_duplicate(node)
        return mapping

    def _find_duplicate(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node)  # built already: this is a cache lookup
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key was refused when the mapping was built
                continue
            if first is not key_node:
                raise DuplicateKey(key, first.start_mark, key_node.start_mark)

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"a number of more than {MAX_INT_DIGITS} digits", node.start_mark)
        value: int = self.construct_yaml_int(node)
        return value


Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_bounded_int)


def load_yaml(text: str) -> Any:
    """SafeLoader's value of `text` (with the checks of `Loader`): built from the parser's events when the
    text holds only what a config uses (watchdog/config/tree.py), else by the full loader, which gives
    whatever else YAML allows, and every error, exactly as before."""
    try:
        return build_tree(text, Loader)
    except Unusual:
        return _compact(yaml.load(text, Loader=Loader))


def _compact(data: Any) -> Any:
    """The same tree, re-made after PyYAML's node graph (several times the data: 67 MB for a 10 MB tree of
    5 000 rules) is gone. Built while that graph was alive, the tree and the models validated from it pin
    half-empty memory arenas for the daemon's lifetime (bench: +69 MB of RSS, +28 MB once re-made).
    A safe-loaded tree holds only plain types, which pickle round-trips exactly."""
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    del data  # a YAML alias can make a cycle; then the collector frees the old tree a little later
    return pickle.loads(blob)


def duplicate_path(text: str, dup: DuplicateKey) -> Path_:
    """Where the repeated key sits, for the error line; composing again is fine on this rare path."""
    root = yaml.compose(text, Loader=BASE_LOADER)
    found = _key_at(root, (), dup.second.line, dup.second.column)
    return found if found is not None else (dup.key,)


def _key_at(node: yaml.Node | None, path: Path_, line: int, column: int) -> Path_ | None:
    # Iterative: a deep tree must not turn this search into a RecursionError.
    stack: list[tuple[yaml.Node | None, Path_]] = [(node, path)]
    while stack:
        cur, at = stack.pop()
        if isinstance(cur, yaml.MappingNode):
            for key, value in cur.value:
                here = at + (key.value if isinstance(key, yaml.ScalarNode) else "?",)
                if (key.start_mark.line, key.start_mark.column) == (line, column):
                    return here
                stack.append((value, here))
        elif isinstance(cur, yaml.SequenceNode):
            stack.extend((item, at + (i,)) for i, item in enumerate(cur.value))
    return None


def _cut(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def read_data(path: str | Path) -> Any:
    """A data file (labels, the decision corpus) as YAML or JSON (JSON is YAML), refused as a config
    would be; Refused (one line) for anything else, OSError when it cannot be read."""
    text = decode(read_bytes(path))
    try:
        refuse_anchors(text)
        return load_yaml(text)
    except DuplicateKey as dup:
        raise Refused(f"duplicate key ({dup.where})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise Refused(f"not YAML or JSON: {getattr(exc, 'problem', None) or str(exc).splitlines()[0]}{where}") from None
    except RecursionError:
        raise Refused("nested too deeply to read") from None
