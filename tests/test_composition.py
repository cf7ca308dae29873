"""One composition, nothing Optional (issue 20, scope 3): `build_runtime` builds the state, the notifier and
the executors before the Runtime, which is whole when it is made; a reload builds its parts with the same
helpers and swaps them in through the runtime's methods; nothing outside the SQLite backend's module asks
whether the state is SQLite.

The runtime's attributes and their annotations are read from a built runtime (the SQLite file as `run` opens
it, and the in-memory state of `run --once`); the modules are read with `ast`. Each checker is shown to catch
what it looks for, on planted code."""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from configs import hybrid_routing, parsed

from watchdog.lifecycle.app import App
from watchdog.runtime.runtime import Runtime
from watchdog.state.memory import in_memory

PACKAGE = Path(__file__).resolve().parent.parent / "watchdog"


def admits_none(hint: Any) -> bool:
    """Whether a value of this annotation may be None (X | None, Optional[X], Any, None itself)."""
    if hint is None or hint is type(None) or hint is Any:
        return True
    if get_origin(hint) in (Union, types.UnionType):
        return any(admits_none(a) for a in get_args(hint))
    return False


def optional_attributes(obj: object, hints: dict[str, Any]) -> list[str]:
    """Each attribute of `obj` that is None, has no annotation on its class, or is annotated as maybe None."""
    out = []
    for name, value in vars(obj).items():
        if name not in hints:
            out.append(f"{name}: not annotated on the class")
        elif admits_none(hints[name]):
            out.append(f"{name}: annotated {hints[name]}")
        elif value is None:
            out.append(f"{name}: is None")
    return out


def test_the_checker_finds_an_optional_or_unannotated_attribute() -> None:
    class Planted:
        late: int | None
        typed: "typing.Optional[str]"
        fine: int

        def __init__(self) -> None:
            self.late, self.typed, self.fine, self.stray = None, "x", 1, 2

    assert optional_attributes(Planted(), get_type_hints(Planted, localns={"typing": typing})) == [
        "late: annotated int | None", "typed: annotated typing.Optional[str]", "stray: not annotated on the class"]


@pytest.mark.parametrize("state", ["configured", "in memory"])
async def test_no_attribute_of_a_built_runtime_is_optional(tmp_path: Path, state: str) -> None:
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db"))
    build: dict[str, Any] = {} if state == "configured" else {"state": in_memory()}
    app = await App.create(cfg, serve_http=False, schedule=False, **build)
    try:
        rt = app.runtime
        hints = get_type_hints(Runtime)
        assert len(vars(rt)) >= 25 and optional_attributes(rt, hints) == []
        for name, value in vars(rt).items():  # each holds what its annotation says, where a class can say it
            hint = get_origin(hints[name]) or hints[name]
            if isinstance(hint, type) and not getattr(hint, "_is_protocol", False):
                assert isinstance(value, hint), name
        assert rt.executors and rt.sources and rt.board.slots
        assert rt.journal is rt.state.store  # the store the executors write is the opened state's
        assert all(ex._journal is rt.journal for ex in rt.executors.values())  # type: ignore[attr-defined]
        assert rt.scheduler is app.scheduler  # built seeing the lifecycle's scheduler, never told it later
        assert (state == "configured") == (tmp_path / "w.db").is_file()  # --once's state is in memory
        assert rt.liveness() == (False, "scheduler not running")
        app.scheduler.start()  # what app.start() does: the runtime sees it through the view it was built with
        assert rt.liveness()[0] is True
        app.scheduler.shutdown(wait=False)
    finally:
        await app.stop()


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def runtime_assignments(source: str) -> list[tuple[int, str]]:
    """(line, target) of each assignment into the runtime: to an attribute or item reached from a parameter
    annotated `Runtime` (`rt.x = ...`, `rt.x += ...`, `rt.x: T = ...`, `rt.x[k] = ...`, `del rt.x`), and each
    setattr/delattr call on one."""
    tree = ast.parse(source)
    runtimes = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg) and a.annotation is not None
                and ast.unparse(a.annotation).strip("'\"") == "Runtime"}
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr")
              and node.args and _root(node.args[0]) in runtimes):
            found.append((node.lineno, f"{node.func.id}({ast.unparse(node.args[0])}, ...)"))
        found += [(t.lineno, ast.unparse(t)) for t in targets
                  if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in runtimes]
    return sorted(found)


def test_the_reload_assigns_nothing_into_the_runtime() -> None:
    """It builds parts with wiring's helpers and hands them to `Runtime.swap` and `Runtime.use_recorder`."""
    source = (PACKAGE / "runtime" / "reload.py").read_text()
    assert "rt: Runtime" in source and runtime_assignments(source) == []


def test_the_assignment_checker_finds_each_way() -> None:
    planted = """
def swap(rt: Runtime, other: "Runtime", board: SignalBoard) -> None:
    rt.sources, rt.board = sources, board
    rt.recorder += 1
    other.cfg: Config = new
    rt.executors["web"] = ex
    setattr(rt, "executors", {})
    del rt.redactor
    board.slots["k"].points = []
    x = rt.cfg.watchdog
"""
    assert runtime_assignments(planted) == [(3, "rt.board"), (3, "rt.sources"), (4, "rt.recorder"),
                                           (5, "other.cfg"), (6, "rt.executors['web']"),
                                           (7, "setattr(rt, ...)"), (8, "rt.redactor")]


SQLITE_ONLY = {"SqliteStore", "SqliteOutbox", "StateWriter", "StateLock"}
BACKEND = PACKAGE / "state" / "sqlite"  # the SQLite backend's own package


def sqlite_tests(source: str) -> list[tuple[int, str]]:
    """(line, name) of each isinstance() asking whether something is one of the SQLite backend's classes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            found += [(node.lineno, n.id) for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in SQLITE_ONLY]
    return found


def test_nothing_outside_the_sqlite_backend_asks_whether_the_state_is_sqlite() -> None:
    offences = [f"{path.relative_to(PACKAGE.parent)}:{line}: isinstance(..., {name})"
                for path in sorted(PACKAGE.rglob("*.py")) if path.parent != BACKEND
                for line, name in sqlite_tests(path.read_text())]
    assert offences == []
    planted = "if isinstance(journal, SqliteStore) and isinstance(outbox, (SqliteOutbox, MemoryOutbox)):\n    pass\n"
    assert sqlite_tests(planted) == [(1, "SqliteStore"), (1, "SqliteOutbox")]


def test_the_notifier_is_whole_when_it_is_made() -> None:
    from watchdog.notify import Notifier

    assert not hasattr(Notifier, "bind")  # its outbox and audit log are given to its constructor
    assert "holder" not in (PACKAGE / "runtime" / "wiring.py").read_text()  # no late-binding list of the runtime-to-be
