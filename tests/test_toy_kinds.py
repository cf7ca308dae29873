"""A kind of each family, defined here and nowhere else, runs end to end: a source (`toy`: reads a number from
a file), an action (`toy_poke`), a check (`toy_check`), a notification channel (`toy_pager`: keeps what it is
sent) and a state backend (`toy_json`: one JSON file, tests/toy_state.py). No module of watchdog/ changes for them: they are registered for the test
(watchdog.shared.kinds) and gone after it.

They go through `check-config`, `validate`, `run --once --record`, the daemon's own runtime (a level runs the
toy action through its runner, the check verifies it, the runners start and close with the runtime) and
`replay` of the recording (the replay's stand-in runs the toy action). The toy channel takes `validate
--send-test`'s message and the daemon's pages, through the durable outbox. The commands run in this process,
through watchdog.cli.main.main (the replay through the function its command calls): a subprocess could not see a
kind defined in a test. The toy state goes through `validate`, `run --once` (which keeps its state in memory and
so never creates the file), `rollback --offline`, the daemon (which resumes the incident the offline rollback
left open in the file) and `incidents list|show|verify-log`."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest

from configs import to_yaml
from timing import until
from toy_state import TOY_STATE, ToyState
from watchdog.actions import ActionKind, CheckKind, Probing, action_kind
from watchdog.actions.base import Step
from watchdog.lifecycle.app import App
from watchdog.cli.main import main
from watchdog.config import ConfigError, load_config
from watchdog.config.base import Model
from watchdog.config.models import Action, Check
from watchdog.config.notifications import Notification
from watchdog.config.sources import Source as SourceConfig
from watchdog.shared.kinds import ACTIONS, CHANNELS, CHECKS, SOURCES, STATES
from watchdog.replay.command import Options, run_replay
from watchdog.core.rules import Datapoint
from watchdog.notify import ChannelKind, Message
from watchdog.sources import Query, SourceError, SourceKind
from watchdog.sources.base import Readings
from watchdog.state.memory import in_memory

# --- the toy kinds: each what a kind's own module would hold ---------------------------------------------


class ToySource(SourceConfig):
    type: Literal["toy"]
    file: Path  # holds one number, read at every poll


class ToyReads(Model):
    toy_scale: float  # what a rule multiplies the number by: a reading key no built-in kind has


class Toy:
    sampled = True

    def __init__(self, cfg: ToySource, queries: Sequence[Query]):
        self.name, self.interval, self._file = cfg.name, cfg.interval, cfg.file
        self._scales = {q.key: q.rule.reads(ToyReads).toy_scale for q in queries}
        self._readings = Readings(queries)

    async def start(self) -> None:
        return None

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        try:
            value = float(self._file.read_text())
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self._file}: {type(exc).__name__}") from None
        for key, scale in self._scales.items():
            self._readings.add(key, now, value * scale)
        return self._readings.all()

    async def close(self) -> None:
        return None


class ToyPoke(Action):
    type: Literal["toy_poke"]
    note: str
    idempotent: bool = True  # this kind's own default

    def describe(self) -> str:
        return self.name or self.note


class ToyCheck(Check):
    type: Literal["toy_check"]


class ToyPager(Notification):
    type: Literal["toy_pager"]
    prefix: str  # a key of this kind alone, put in front of every page it keeps


class Seen:
    """What the toy runners did, in order, and what the toy channel was sent (the kinds are the test's, so is
    this)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pages: list[str] = []

    def channel(self, cfg: ToyPager) -> Any:
        seen = self

        class Pager:
            name = cfg.channel_name

            async def send(self, msg: Message) -> str | None:
                seen.pages.append(f"{cfg.prefix} {msg.event.kind} {msg.event.target}")
                return None

            async def close(self) -> None:
                return None

        return Pager()

    def runner(self, name: str) -> Any:
        seen = self

        class Runner:
            async def start(self) -> None:
                seen.lines.append(f"{name} started")

            async def run(self, step: Step) -> str:
                seen.lines.append(f"{name} ran {step.describe()}")
                return "done"

            async def close(self) -> None:
                seen.lines.append(f"{name} closed")

        return Runner()


async def reach(action: ToyPoke, probing: Probing) -> tuple[bool, str]:
    return True, f"would poke {action.note}"


@pytest.fixture
def seen() -> Iterator[Seen]:
    seen = Seen()
    source = SourceKind(type="toy", config=ToySource, reads=ToyReads, requires=("toy_scale",), sampled=True,
                        build=lambda cfg, queries, deps: Toy(cfg, queries))
    action = ActionKind(type="toy_poke", config=ToyPoke, factory=lambda deps: seen.runner("poke"), probe=reach)
    check = CheckKind(type="toy_check", config=ToyCheck, factory=lambda deps: seen.runner("check"))
    channel = ChannelKind(type="toy_pager", config=ToyPager, build=lambda cfg, session: seen.channel(cfg))
    before = [r.types() for r in (SOURCES, ACTIONS, CHECKS, CHANNELS)]
    with (SOURCES.registered(source), ACTIONS.registered(action), CHECKS.registered(check),
          CHANNELS.registered(channel)):
        yield seen
    assert [r.types() for r in (SOURCES, ACTIONS, CHECKS, CHANNELS)] == before


def config(tmp_path: Path, value: float, interval: str = "1m", verify_window: str = "1m",
           state: dict[str, Any] | None = None) -> Path:
    reading = tmp_path / "reading"
    reading.write_text(str(value))
    where = {"state": state} if state is not None else {"state_path": str(tmp_path / "state" / "w.db")}
    doc = {
        "watchdog": {**where, "listen": "127.0.0.1:0"},
        "sources": [{"name": "toys", "type": "toy", "file": str(reading), "interval": interval}],
        "targets": [{
            "name": "t",
            "rules": [{"name": "temp", "category": "performance", "source": "toys", "toy_scale": 2,
                       "threshold": "> 100"}],
            "escalation": {"verify_window": verify_window},
            "levels": [{"level": 1, "name": "poke", "deadline": "10s",
                        "actions": [{"type": "toy_poke", "note": "the service"}],
                        "checks": [{"type": "toy_check", "name": "still poked"}]}],
        }],
        "notifications": [{"type": "toy_pager", "name": "pager", "prefix": "PAGE"}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(doc))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_toy_kinds_run_through_every_command(tmp_path: Path, seen: Seen, capsys: pytest.CaptureFixture[str],
                                            logging_kept: None) -> None:
    path = config(tmp_path, 600)  # 600 x 2 = 1200 > 100: alarm
    cfg = load_config(path)
    assert type(cfg.sources[0]) is ToySource and type(cfg.targets[0].levels[0].actions[0]) is ToyPoke
    assert type(cfg.notifications[0]) is ToyPager
    assert cfg.targets[0].levels[0].actions[0].idempotent  # the kind's default, which its descriptor says
    assert action_kind("toy_poke").idempotent and not action_kind("http").idempotent

    assert run(["check-config", "-c", str(path)], capsys)[0] == 0

    code, out, err = run(["validate", "--send-test", "-c", str(path)], capsys)
    assert code == 0, out + err
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in out.splitlines())}
    assert rows["source toys (toy)"] == ["pass", "answered (temp)"]  # one real read, through the toy source
    assert rows["action t L1 #1 (toy_poke)"] == ["pass", "would poke the service"]  # its probe, not a run
    assert rows["notification channels"] == ["pass", "pager (toy_pager)"]
    assert rows["send test to pager (toy_pager)"] == ["pass", "delivered"]
    assert seen.pages == ["PAGE test rollback-watchdog"]
    seen.pages.clear()
    # validate builds the runtime as `run` does: its runners start and close, and run nothing
    assert seen.lines == ["poke started", "check started", "check closed", "poke closed"]
    seen.lines.clear()

    record = tmp_path / "polls.jsonl"
    code, out, err = run(["run", "--once", "--record", str(record), "-c", str(path)], capsys)
    assert code == 1, out + err  # an alarm
    [row] = [line for line in out.splitlines() if line.startswith("t ")]
    assert row.split()[:5] == ["t", "temp", "performance", "alarm", "1200"]
    [line] = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["source"] == "toys" and [p[1] for p in line["points"]["t/temp"]] == [1200.0]
    assert seen.lines == ["poke started", "check started", "check closed", "poke closed"]  # acted on nothing
    assert seen.pages == []  # and sent nothing

    # What `replay --json --recording` runs (cli_replay.run), given its own streams: the command's default ones
    # are the sys.stdout of whenever its module was first imported, which in a test run is not capsys'.
    seen.lines.clear()
    out, err, now = io.StringIO(), io.StringIO(), datetime.now(timezone.utc)
    replayed = Options(start=now - timedelta(minutes=10), end=now, now=now, cache=tmp_path / "cache.db",
                       recording=record, as_json=True)
    code = asyncio.run(run_replay(load_config(path), replayed, out=out, err=err))
    assert code == 0, out.getvalue() + err.getvalue()
    [incident] = json.loads(out.getvalue())["incidents"]
    assert incident["target"] == "t" and [r["level"] for r in incident["levels"]] == [1]
    assert incident["levels"][0]["outcome"] == "succeeded"  # the replay's stand-in ran the toy action
    assert not any(" ran " in line for line in seen.lines)  # and the toy runner nothing
    assert seen.pages == []  # a replay sends nothing


async def test_the_daemon_runs_the_toy_action_and_check_and_closes_their_runners(tmp_path: Path, seen: Seen) -> None:
    """The daemon as `run` starts it (its scheduler polling every 100 ms), in this process: an alarm on the toy
    source runs level 1's toy action through the toy runner; once the reading recovers, the toy check verifies
    it; the runners start with the runtime and close with it."""
    path = config(tmp_path, 600, interval="100ms", verify_window="1s")
    app = await App.create(load_config(path), serve_http=False, state=in_memory())
    try:
        await app.start()
        assert seen.lines[:2] == ["poke started", "check started"]
        await until(lambda: "poke ran the service" in seen.lines, timeout=30, what="the toy action, run by its runner")
        (tmp_path / "reading").write_text("1")
        await until(lambda: "check ran still poked" in seen.lines, timeout=30, what="the toy check")
        machine = app.runtime.executors["t"].machine
        await until(lambda: machine.incident is not None and machine.incident.phase.value == "mitigated",
                    timeout=30, what="the incident mitigated")
        # the pages, through the outbox to the toy channel, in the order they happened
        await until(lambda: "PAGE mitigated t" in seen.pages, timeout=30, what="the mitigated page")
    finally:
        await app.stop()
    assert seen.lines.count("poke ran the service") == 1 and seen.lines[-2:] == ["check closed", "poke closed"]
    assert [p for p in seen.pages if p in ("PAGE incident_opened t", "PAGE level_started t", "PAGE mitigated t")] \
        == ["PAGE incident_opened t", "PAGE level_started t", "PAGE mitigated t"]


def test_once_unregistered_a_toy_type_is_unknown_again(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, 1))
    assert err.value.problems[0].startswith("sources[0].type: unknown type 'toy' (expected one of 'cloudwatch',")


def test_a_kind_that_reads_a_rules_own_key_is_refused(tmp_path: Path) -> None:
    class ShadowSource(SourceConfig):
        type: Literal["shadow"]

    class Shadow(Model):
        threshold: str

    shadow = SourceKind(type="shadow", config=ShadowSource, reads=Shadow, requires=(), sampled=True,
                        build=lambda cfg, queries, deps: Toy(cfg, queries))
    with SOURCES.registered(shadow), pytest.raises(ConfigError, match="reads 'threshold', which is a rule's own key"):  # type: ignore[arg-type]
        load_config(config(tmp_path, 1))


@pytest.fixture
def toy_state() -> Iterator[None]:
    with STATES.registered(TOY_STATE):  # type: ignore[arg-type]
        yield
    assert "toy_json" not in STATES


def test_a_toy_state_backend_runs_through_every_command(tmp_path: Path, seen: Seen, toy_state: None,
                                                       capsys: pytest.CaptureFixture[str], logging_kept: None) -> None:
    file = tmp_path / "toy" / "state.json"
    path = config(tmp_path, 600, interval="100ms", verify_window="1s", state={"type": "toy_json", "file": str(file)})
    cfg = load_config(path)
    assert type(cfg.watchdog.state) is ToyState and cfg.watchdog.state.file == file

    code, out, err = run(["validate", "-c", str(path)], capsys)
    assert code == 0, out + err
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in out.splitlines())}
    assert rows[f"toy state {file}"] == ["pass", f"{tmp_path} can be written"]  # the backend's own probe

    code, out, err = run(["run", "--once", "-c", str(path)], capsys)
    assert code == 1, out + err  # an alarm, judged with the state in memory:
    assert not file.parent.exists()  # the configured state was never opened

    code, out, err = run(["rollback", "--offline", "-c", str(path), "--target", "t", "--level", "1",
                          "--reason", "the watchdog host is down"], capsys)
    assert code == 0, out + err
    [incident] = re.findall(r"\(incident (\S+); not verified offline\)", out)
    assert "poke ran the service" in seen.lines and file.is_file()  # journaled into the toy file
    (tmp_path / "reading").write_text("1")  # the poke worked

    async def daemon() -> str:
        app = await App.create(load_config(path), serve_http=False)  # the state the config names: the toy's
        try:
            await app.start()  # resumes the incident the offline rollback left open, and verifies it
            machine = app.runtime.executors["t"].machine
            await until(lambda: machine.incident is None or machine.incident.phase.value == "mitigated",
                        timeout=30, what="the resumed incident mitigated")
            return "" if machine.incident is None else machine.incident.id
        finally:
            await app.stop()

    assert asyncio.run(daemon()) == incident
    assert seen.lines.count("poke ran the service") == 1 and "check ran still poked" in seen.lines

    code, out, err = run(["incidents", "list", "-c", str(path)], capsys)
    assert code == 0, out + err
    [row] = [line.split() for line in out.splitlines()[1:]]
    assert row[:4] == [incident, "t", "mitigated", "1"]
    code, out, err = run(["incidents", "show", incident, "-c", str(path)], capsys)
    assert code == 0 and "the watchdog host is down" in out and '"outcome": "succeeded"' in out, out + err
    code, out, err = run(["incidents", "verify-log", "-c", str(path)], capsys)
    records = len(json.loads(file.read_text())["records"])
    assert (code, out.strip()) == (0, f"audit log intact: {records} records") and records > 4
    code, out, err = run(["incidents", "show", "nope", "-c", str(path)], capsys)
    assert (code, err.strip()) == (1, f"rollback-watchdog incidents: no incident 'nope' in {file}")
