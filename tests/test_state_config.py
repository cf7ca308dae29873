"""`watchdog.state`: a backend chosen by `type` from the registry (watchdog.shared.kinds STATES), and `state_path`,
its shorthand for the SQLite file (docs/configuration.md "`watchdog:`"). Existing configs and the WATCHDOG_STATE_PATH
override keep their meaning; giving both is refused naming both; anything else wrong is one line with its
path. A reload that changes where the state is says it needs a restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_config_hostile import SMALL
from toy_state import TOY_STATE, ToyState

from watchdog.config import ConfigError, parse_config
from watchdog.shared.kinds import STATES

BOTH = ("watchdog: state_path and state both say where the state is kept: give one (state_path: P is short for "
        "state: {type: sqlite, path: P}) (line 1)")


@pytest.fixture(autouse=True)
def _no_watchdog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WATCHDOG_"):
            monkeypatch.delenv(name)


def with_state(lines: str) -> str:
    return SMALL.replace("  listen: 127.0.0.1:0\n", "  listen: 127.0.0.1:0\n" + lines)


def state_of(text: str) -> tuple[str, dict[str, Any]]:
    state = parse_config(text, {}).watchdog.state
    assert state is not None
    return state.type, state.model_dump(exclude={"type"})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, {})
    return info.value.problems


def test_without_either_key_the_state_is_the_sqlite_file_at_its_default_path() -> None:
    assert state_of(SMALL) == ("sqlite", {"path": Path("./state/watchdog.db")})
    assert state_of(with_state("  state:\n")) == ("sqlite", {"path": Path("./state/watchdog.db")})  # left empty


def test_state_path_is_the_shorthand_of_the_sqlite_state(tmp_path: Path) -> None:
    short = state_of(with_state(f"  state_path: {tmp_path}/w.db\n"))
    assert short == ("sqlite", {"path": tmp_path / "w.db"})
    full = with_state(f"  state: {{type: sqlite, path: {tmp_path}/w.db}}\n")
    assert state_of(full) == short
    # And state_path names the file of a state written out in full (the replay's cache goes next to it).
    assert parse_config(full, {}).watchdog.state_path == tmp_path / "w.db"


def test_the_environment_overrides_state_path_and_refuses_it_beside_state(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_STATE_PATH", str(tmp_path / "env.db"))
    assert state_of(with_state("  state_path: ./file.db\n")) == ("sqlite", {"path": tmp_path / "env.db"})
    # Which of the two the operator meant is a guess: refused, as in the file.
    assert problems(with_state(f"  state: {{type: sqlite, path: {tmp_path}/w.db}}\n")) == [BOTH]
    monkeypatch.delenv("WATCHDOG_STATE_PATH")
    monkeypatch.setenv("WATCHDOG_STATE", f'{{"type": "sqlite", "path": "{tmp_path}/j.db"}}')  # WATCHDOG_<KEY>
    assert state_of(SMALL) == ("sqlite", {"path": tmp_path / "j.db"})


@pytest.mark.parametrize("lines, expected", [
    ("  state_path: ./a.db\n  state: {type: sqlite, path: ./b.db}\n", BOTH),
    ("  state: {type: etcd, table: rollback-watchdog}\n",
     "watchdog.state.type: unknown type 'etcd' (expected one of 'sqlite', 'dynamodb') (line 3)"),
    ("  state: {type: dynamodb, table: rollback-watchdog, path: ./a.db}\n",
     "watchdog.state.path: unknown key (a typo?) (line 3)"),
    ("  state: {type: dynamodb}\n", "watchdog.state.table: required (line 3)"),
    ("  state: {path: ./a.db}\n", "watchdog.state: required: type (line 3)"),
    ("  state: {type: sqlite, path: ./a.db, table: t}\n", "watchdog.state.table: unknown key (a typo?) (line 3)"),
    ("  state: {type: sqlite, path: ''}\n", "watchdog.state.path: must name a file, like ./state/watchdog.db (line 3)"),
    ("  state_path: ''\n", "watchdog.state_path: must name a file, like ./state/watchdog.db (line 3)"),
])
def test_a_wrong_state_is_one_line_naming_its_path(lines: str, expected: str) -> None:
    assert problems(with_state(lines)) == [expected]


def test_a_state_path_that_is_a_directory_is_refused_once_under_either_key(tmp_path: Path) -> None:
    why = "is a directory: name the state file inside it, like <dir>/watchdog.db (line 3)"
    assert problems(with_state(f"  state: {{type: sqlite, path: {tmp_path}}}\n")) == [f"watchdog.state.path: {why}"]
    assert problems(with_state(f"  state_path: {tmp_path}\n")) == [f"watchdog.state_path: {why}"]


def test_a_registered_backend_is_a_state_type_and_gone_with_it(tmp_path: Path) -> None:
    text = with_state(f"  state: {{type: toy_json, file: {tmp_path}/s.json}}\n")
    with STATES.registered(TOY_STATE):  # type: ignore[arg-type]
        state = parse_config(text, {}).watchdog.state
        assert isinstance(state, ToyState) and state.file == tmp_path / "s.json"
        assert problems(with_state("  state: {type: nope}\n")) == [
            "watchdog.state.type: unknown type 'nope' (expected one of 'sqlite', 'dynamodb', 'toy_json') (line 3)"]
    assert problems(text) == [
        "watchdog.state.type: unknown type 'toy_json' (expected one of 'sqlite', 'dynamodb') (line 3)"]


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["sqlite", "dynamodb", "", ".", "/", "\0"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)
STATES_GIVEN = st.one_of(VALUES, st.fixed_dictionaries({"type": st.sampled_from(["sqlite", "toy", ""])},
                                                       optional={"path": VALUES, "table": VALUES}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=STATES_GIVEN, state_path=st.one_of(st.none(), VALUES))
def test_whatever_is_given_as_state_is_a_config_or_one_line_problems(state: Any, state_path: Any) -> None:
    import json

    lines = f"  state: {json.dumps(state)}\n" + ("" if state_path is None else f"  state_path: {json.dumps(state_path)}\n")
    try:
        cfg = parse_config(with_state(lines), {})
    except ConfigError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
        return
    assert cfg.watchdog.state is not None and cfg.watchdog.state.type == "sqlite"  # parsed means it has one


async def test_a_reload_that_moves_the_state_says_it_takes_a_restart(tmp_path: Path) -> None:
    from configs import hybrid_routing, parsed

    from watchdog.lifecycle.app import App

    app = await App.create(parsed(hybrid_routing(state_path=tmp_path / "w.db")), serve_http=False, schedule=False)
    try:
        spelt_out = hybrid_routing(watchdog={"state": {"type": "sqlite", "path": str(tmp_path / "w.db")}})
        assert await app.reload(parsed(spelt_out)) == []  # the same file
        assert await app.reload(parsed(hybrid_routing(state_path=tmp_path / "elsewhere.db"))) == [
            "state changed: it takes effect at the next restart"]
        assert app.runtime.state.store.where == str(tmp_path / "w.db")  # type: ignore[attr-defined]
    finally:
        await app.stop()
