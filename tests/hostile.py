"""Config files as a careless editor or an attacker leaves them, each made from a good config's text (as
configs.to_yaml writes it), with the one problem the loader must answer it with; `{path}` in a problem
stands for the file's path. The commands (test_cli_hostile) and a reload (test_reload_hostile) must
answer each of them alike."""

from __future__ import annotations

from collections.abc import Callable

from configs import insert_after, line_of

COMMON = ["latin1-comment", "utf16", "huge-duration", "recursive-anchor", "duplicate-key"]


def anchored(text: str, anchor: str) -> tuple[bytes, str]:
    """`text` holding YAML anchors, the first of them `anchor`: refused before anything is expanded."""
    return text.encode(), (f"{{path}}: YAML anchors and aliases are not supported ({anchor} on line "
                           f"{line_of(text, anchor + ' ')}): write the value out")


def alias_rows(depth: int) -> list[str]:
    """Nested aliases (a billion laughs): 9**depth strings once expanded; the last anchor is &l{depth}."""
    return ['  lol0: &l0 "lol"'] + [f"  lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]"
                                    for i in range(1, depth + 1)]


def refused(kind: str, good: Callable[..., str], action: str) -> tuple[bytes, str]:
    """One of COMMON: the file's bytes and its problem. `good(**overrides)` writes the good config (with
    hybrid_routing's overrides); `action` stands on the line of the action whose body an anchor takes."""
    text = good()
    if kind == "latin1-comment":
        text = text.replace("sources:\n", "# caf\xe9\nsources:\n")
        return text.encode("latin-1"), \
            f"{{path}}: not UTF-8: byte 0xe9 on line {line_of(text, '# caf')}, column 6 (save the file as UTF-8)"
    if kind == "utf16":
        return text.encode("utf-16"), \
            "{path}: is UTF-16 or UTF-32 text (it starts with a byte-order mark): save it as UTF-8"
    if kind == "huge-duration":  # past any datetime
        text = good(verify_window="99999999999999d")
        return text.encode(), ("targets[0].escalation.verify_window: duration '99999999999999d' is too long: "
                               f"at most 3650d (line {line_of(text, 'verify_window')})")
    if kind == "recursive-anchor":  # a list that holds itself
        return anchored(insert_after(text, action, "json: &a [*a]"), "&a")
    if kind == "duplicate-key":  # YAML itself would keep the second threshold
        first = line_of(text, "threshold: '")
        text = insert_after(text, "threshold: '", "threshold: '< 1'")
        return text.encode(), (f"targets[0].rules[0].threshold: duplicate key (lines {first} and {first + 1}): "
                               "YAML would silently keep only the last one")
    raise AssertionError(kind)
