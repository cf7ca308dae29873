"""The YAML tree built straight from libyaml's event stream, without PyYAML's node graph.

`yaml.load` composes every node of the document (each with two marks) before it builds the first dict:
at 5 000 rules that graph took 72 MB over the imports for a tree that keeps a fraction of it, and the
daemon's peak RSS (VmHWM) was that moment. Here each event is turned into its value as it arrives; what
is alive at once is the tree itself and the one event in hand (bench: the parse's peak +72 MB -> +27 MB).

The values are SafeLoader's exactly: a scalar's tag is resolved by the loader's own resolver and built by
the loader's own constructor for it (the bounded int included). Whatever a config has no use for, and
where the semantics are the node graph's own (anchors and aliases, merge keys `<<`, `=` keys, explicit
tags other than the plain types, a key given twice or one that is not a scalar, more than one document,
nesting past MAX_DEPTH, any error while building a value), is `Unusual`: the caller then loads the text
the old way, which gives that file's value or error exactly as before.
"""

from __future__ import annotations

from typing import Any

import yaml

# The constructors that build one scalar from its text alone, by the tag the resolver (or the file) gives.
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "timestamp", "binary"))
_MAP = frozenset((None, "!", "tag:yaml.org,2002:map"))
_SEQ = frozenset((None, "!", "tag:yaml.org,2002:seq"))
_STR = "tag:yaml.org,2002:str"
# A config is a few levels deep; deeper text goes the old way, which refuses it with its own message.
MAX_DEPTH = 64
_NO_KEY: Any = object()  # a mapping's next scalar is a key
_IN_LIST: Any = object()  # the open collection is a list


class Unusual(Exception):
    """The text holds something this builder leaves to the full loader."""


def build_tree(text: str, loader_class: type) -> Any:
    """The document's value, as `yaml.load(text, Loader=loader_class)` gives it; Unusual, or the parser's
    own YAMLError (the same the full loader raises first, since its composer reads the same events)."""
    loader = loader_class(text)
    try:
        return _walk(loader)
    finally:
        loader.dispose()


def _walk(loader: Any) -> Any:
    ctors = loader.yaml_constructors
    get = loader.get_event
    # One str object per distinct text: the models keep the tree's strings, and 5 000 rules repeat the same
    # category, source, namespace, stat... (bench: -1.9 MB kept at 5 000 rules).
    texts: dict[str, str] = {}
    get()  # StreamStart
    if isinstance(loader.peek_event(), yaml.StreamEndEvent):
        return None  # an empty file
    get()  # DocumentStart
    # Each open collection: [container, the key awaiting its value (_NO_KEY: none yet; _IN_LIST: a list)].
    stack: list[list[Any]] = []
    done: Any = None
    while True:
        event = get()
        kind = type(event)
        if kind is yaml.AliasEvent or getattr(event, "anchor", None) is not None:
            raise Unusual("anchor")
        if kind is yaml.ScalarEvent:
            value = _scalar(loader, ctors, event)
            if type(value) is str:
                value = texts.setdefault(value, value)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if event.tag not in (_MAP if kind is yaml.MappingStartEvent else _SEQ) or len(stack) >= MAX_DEPTH:
                raise Unusual("collection")
            if stack and stack[-1][1] is _NO_KEY:
                raise Unusual("a collection as a key")
            stack.append([{}, _NO_KEY] if kind is yaml.MappingStartEvent else [[], _IN_LIST])
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value = stack.pop()[0]
        else:  # DocumentEnd
            break
        if not stack:
            done = value
            continue
        top = stack[-1]
        container, key = top
        if key is _IN_LIST:
            container.append(value)
        elif key is _NO_KEY:
            if value in container:  # a repeated key: the full loader names both lines
                raise Unusual("duplicate key")
            top[1] = value
        else:
            container[key] = value
            top[1] = _NO_KEY
    if not isinstance(loader.peek_event(), yaml.StreamEndEvent):
        raise Unusual("another document")
    return done



def _scalar(loader: Any, ctors: dict[str, Any], event: Any) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == _STR:
        return event.value  # construct_yaml_str returns the text itself
    if tag not in _SCALAR_TAGS:
        raise Unusual(f"tag {tag}")  # `<<`, `=`, a custom or collection tag on a scalar
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return ctors[tag](loader, node)
    except Exception:
        raise Unusual("value") from None  # the full loader raises it, with its place, in its own order
