"""Every command that reads a config answers a hostile one with one line per problem and exit 2, never a
traceback (issue 12: 6); `pause --for` with an overflowing duration too. Warnings do not stop `run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from configs import CLOSED, http, hybrid_routing, insert_after, level, to_yaml
from hostile import COMMON, alias_rows, anchored, refused
from watchdog.cli.main import main

COMMANDS = {
    "check-config": ["check-config", "-c"],
    "run": ["run", "-c"],
    "validate": ["validate", "-c"],
    "incidents": ["incidents", "list", "-c"],
    "rollback-offline": ["rollback", "--offline", "--target", "web", "--level", "1", "--reason", "t", "-c"],
}


def good(tmp_path: Path, **overrides: Any) -> str:
    flags = level(1, "flags", http(f"{CLOSED}/l1"), deadline="2m")
    settings = dict(state_path=tmp_path / "w.db", aws_endpoint=None, interval="30s", target="web", verify_window="2m",
                    levels=[flags])
    return to_yaml(hybrid_routing(**{**settings, **overrides}))


def hostile(name: str, tmp_path: Path) -> tuple[bytes, str]:
    """The file's bytes and the one line every command must print for it ({path}: the file)."""
    action = f"url: {CLOSED}/l1"
    if name == "binary":
        return b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "{path}: not UTF-8: byte 0x89 on line 1, column 1 (save the file as UTF-8)"
    if name == "alias-bomb":  # in a mapping nothing reads, but for the action's body: the last alias
        text = insert_after(good(tmp_path), action, "json: *l4")
        return anchored(text.replace("targets:\n", "x-unused:\n" + "\n".join(alias_rows(4)) + "\ntargets:\n"), "&l0")
    return refused(name, lambda **overrides: good(tmp_path, **overrides), action)


IN_PROCESS = [*COMMON, "binary"]


# `run` goes through a real process (below): given a config it accepts, it would not return.
@pytest.mark.parametrize("input_name", IN_PROCESS)
@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "run"])
def test_every_command_refuses_a_hostile_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            command: str, input_name: str) -> None:
    raw, expected = hostile(input_name, tmp_path)
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    code = main([*COMMANDS[command], str(path)])
    out, err = capsys.readouterr()
    assert (code, err, out) == (2, expected.format(path=path) + "\n", "")
    assert not (tmp_path / "w.db").exists()  # nothing acted, nothing was created


REAL = [(c, i) for c in COMMANDS for i in ("recursive-anchor", "alias-bomb", "latin1-comment")]
REAL += [("run", i) for i in IN_PROCESS if i not in ("recursive-anchor", "latin1-comment")]


@pytest.mark.parametrize("command, input_name", REAL)
def test_the_real_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path, command: str, input_name: str) -> None:
    raw, expected = hostile(input_name, tmp_path)
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    try:
        r = subprocess.run([sys.executable, "-m", "watchdog", *COMMANDS[command], str(path)], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "WATCHDOG_API_TOKEN": ""})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} took the config and kept running")  # e.g. `run` with a duplicate key accepted
    assert "Traceback" not in r.stderr
    assert (r.returncode, r.stderr.splitlines()) == (2, [expected.format(path=path)])
    assert not (tmp_path / "w.db").exists()


def test_pause_for_an_overflowing_duration_is_one_line_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "watchdog", "pause", "--for", "99999999999999d", "--reason", "t",
                        "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr
    assert (r.returncode, r.stderr) == (
        2, "rollback-watchdog pause: --for: duration '99999999999999d' is too long: at most 3650d\n")


def test_run_once_goes_on_after_a_warning(tmp_path: Path, aws_env: dict[str, str]) -> None:
    text = good(tmp_path, aws_endpoint=CLOSED, interval="1s", timeout="2s", retry={"attempts": 1})
    path = tmp_path / "config.yaml"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-m", "watchdog", "run", "-c", str(path), "--once"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, **aws_env})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.splitlines()[0] == (
        "warning: sources[0].timeout: timeout x attempts (2s x 1 = 2s) is longer than the interval (1s): "
        "a slow answer can hold a poll past the next one")
    assert "insufficient_data" in r.stdout  # it polled and evaluated: the warning stopped nothing
