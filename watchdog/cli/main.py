"""The command line. The only place that calls sys.exit (through main's return code).

Exit codes: 0 ok, 1 runtime failure or an alarm (`run --once`), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog import __version__

from watchdog.cli import control as cli_control

from watchdog.cli import incidents as cli_incidents

from watchdog.cli import replay as cli_replay
from watchdog.cli import state as cli_state
from watchdog.cli.loading import load_or_say
from watchdog.config import Config, ConfigError, load_config
from watchdog.core.rules import format_value

if TYPE_CHECKING:
    from watchdog.lifecycle.app import App  # imported where it runs: the commands that do not start one stay light

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rollback-watchdog", description="Watches signals and rolls a system back through escalating levels.")
    p.add_argument("--version", action="version", version=f"rollback-watchdog {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, help="path to config.yaml")
    run.add_argument("--dry-run", action="store_true", help="decide and record everything, execute no action")
    run.add_argument("--once", action="store_true", help="poll and evaluate once, print every rule, exit 1 if one alarms")
    run.add_argument("--record", metavar="FILE", help="append every poll's answer to FILE (JSON lines) for `replay`")

    check = sub.add_parser("check-config", help="validate the configuration without touching the network")
    check.add_argument("-c", "--config", required=True)

    val = sub.add_parser("validate", help="check the prerequisites: sources, actions, state path, channels")
    val.add_argument("-c", "--config", required=True)
    val.add_argument("--send-test", action="store_true", help="send a test message through every notification channel")
    val.add_argument("--include-cost", action="store_true", help="also call Cost Explorer (each call is billed)")

    cli_control.add_parsers(sub)
    cli_incidents.add_parser(sub)
    cli_replay.add_parser(sub)
    cli_state.add_parser(sub)

    demo = sub.add_parser("demo", help="run the embedded demo (local CloudWatch, simulated service; needs the demo extra)")
    demo.add_argument("--keep-going", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["replay"]:
        given = cli_replay.join_times(given)
    args = build_parser().parse_args(given)
    try:
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command in cli_control.VERBS:
            return cli_control.run(args)
        if args.command == "incidents":
            return cli_incidents.run(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "state":
            return cli_state.run(args)
        if args.command == "demo":
            from watchdog.demo.emulator import EmulatorMissing
            from watchdog.demo.story import run_demo

            try:
                return asyncio.run(run_demo())
            except EmulatorMissing as exc:
                print(f"rollback-watchdog demo: {exc}", file=sys.stderr)
                return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAIL
    return EXIT_USAGE


def _load(path: str) -> Config | None:
    return load_or_say(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    rules = sum(len(t.rules) for t in cfg.targets)
    print(f"{args.config}: ok ({len(cfg.sources)} sources, {len(cfg.targets)} targets, {rules} rules)")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from watchdog.support.logs import setup_logging
    from watchdog.shared.redact import redactor_for

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    setup_logging("error", sys.stderr, redactor_for(cfg))  # the replayed runtime's own lines would drown the answer
    return cli_replay.run(args, cfg)


def cmd_validate(args: argparse.Namespace) -> int:
    from watchdog.lifecycle.validate import projected, render, validate

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    checks = asyncio.run(validate(cfg, send_test=args.send_test, include_cost=args.include_cost))
    print(render(checks, projected(cfg)))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAIL


def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.support.logs import setup_logging
    from watchdog.shared.redact import redactor_for

    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    cfg = _recording(cfg, args.record)
    # With --once the table goes to stdout, so the logs step aside to stderr.
    setup_logging(cfg.watchdog.log_level, sys.stderr if args.once else sys.stdout, redactor_for(cfg))
    if args.once:
        return asyncio.run(_once(cfg))
    return asyncio.run(_daemon(cfg, dry_run=True if args.dry_run else None, path=args.config, record=args.record))


def _recording(cfg: Config, record: str | None) -> Config:
    """`--record FILE` over `watchdog.record`, at start and at every reload: the command line the service
    was started with wins over the file for as long as the process runs."""
    if not record:
        return cfg
    return cfg.model_copy(update={"watchdog": cfg.watchdog.model_copy(update={"record": Path(record)})})


async def _daemon(cfg: Config, dry_run: bool | None, path: str, record: str | None = None) -> int:
    from watchdog.lifecycle.app import App
    from watchdog.config import armed_failpoints, systemd_environment
    from watchdog.runtime.failpoints import KNOWN, Failpoints
    from watchdog.state.storage import LockHeld
    from watchdog.runtime.recording import RecordingUnwritable
    from watchdog.lifecycle.sdnotify import SystemdNotifier
    from watchdog.runtime.wiring import SourceStartFailed

    stop, hup = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # only a flag: the shutdown is ordered below
    loop.add_signal_handler(signal.SIGHUP, hup.set)

    armed = armed_failpoints()
    unknown = sorted(set(armed) - KNOWN)
    if unknown:
        print(f"WATCHDOG_TEST_FAILPOINTS: unknown failpoint {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})",
              file=sys.stderr)
        return EXIT_USAGE
    sd = SystemdNotifier(*systemd_environment())
    try:
        app = await App.create(cfg, dry_run=dry_run, failpoints=Failpoints(armed), sd=sd)
    except (LockHeld, SourceStartFailed, RecordingUnwritable) as exc:  # each says itself in one line
        print(f"rollback-watchdog: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:  # e.g. a state path that cannot be used: one line, no traceback
        print(f"rollback-watchdog: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        try:
            await app.start()
        except OSError as exc:
            print(f"rollback-watchdog: cannot start: {exc.strerror or exc} (listen {cfg.watchdog.listen})", file=sys.stderr)
            return EXIT_FAIL
        except Exception as exc:  # e.g. recovery reading a damaged state file: one line, no traceback
            print(f"rollback-watchdog: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAIL
        # What start() built (config, models, clients, the rule board) lives as long as the process: keep it
        # out of the cyclic collector's scans. At 5 000 rules a full collection over it, set off by the
        # allocations of parsing an answer, added tens of ms to a poll at random (bench/README.md).
        # Reference counting still frees these objects; a reload thaws them first so the old config's
        # cycles can go, and freezes the new one. Start-up's own cyclic garbage is collected first.
        gc.collect()
        gc.freeze()
        while not stop.is_set():
            stopped, reload = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(hup.wait())
            await asyncio.wait({stopped, reload}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            reload.cancel()
            if hup.is_set() and not stop.is_set():
                hup.clear()
                sd.reloading()
                gc.unfreeze()
                await _reload(app, path, record)
                await _reopen_recording(app)
                gc.collect()
                gc.freeze()
                sd.ready(app.runtime.status_line())
        return EXIT_OK
    finally:
        await app.stop()


async def _reload(app: App, path: str, record: str | None = None) -> None:
    import structlog

    from watchdog.support.logs import setup_logging
    from watchdog.shared.redact import redactor_for
    from watchdog.runtime.reload import ReloadRefused

    log = structlog.get_logger("watchdog.cli.main")
    try:
        # Off the event loop: reading a large config takes seconds (bench: 5 000 rules), and polls,
        # levels and /healthz must not stop for it. load_config touches nothing the loop owns.
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        log.error("reload_rejected", why="invalid config; the old one keeps running", problems=exc.problems)
        return
    except Exception as exc:  # load_config turns every bad file into a ConfigError; this is the last guard
        log.error("reload_rejected", why=f"unexpected {type(exc).__name__} reading the config; the old one keeps running")
        return
    new = _recording(new, record)
    try:
        notes = await app.reload(new)
    except ReloadRefused as exc:
        log.error("reload_rejected", why=str(exc))
        return
    except Exception as exc:  # a reload must never take the watchdog down
        log.error("reload_rejected", why=f"unexpected {type(exc).__name__}: {exc}")
        return
    try:
        setup_logging(new.watchdog.log_level, sys.stdout, redactor_for(new))
        log.info("reloaded", targets=[t.name for t in new.targets], sources=[s.name for s in new.sources], notes=notes)
        for line in new.warnings:
            log.warning("config_warning", warning=line)
    except Exception as exc:  # the new config runs; only its announcement failed, which must not end the daemon
        log.error("reload_log_failed", why=f"{type(exc).__name__}: {exc}")


async def _reopen_recording(app: App) -> None:
    """Every SIGHUP, whether the config was taken or not: logrotate's postrotate sends one to have the
    recording's file opened again, and a config being edited at that moment must not stop that."""
    import structlog

    from watchdog.runtime.reload import reopen_recording

    try:
        await reopen_recording(app.runtime)
    except Exception as exc:  # never the daemon's end
        structlog.get_logger("watchdog.cli.main").error("recording_reopen_failed", error=f"{type(exc).__name__}: {exc}",
                                                   next="the recording goes on as it was")


async def _once(cfg: Config) -> int:
    from watchdog.lifecycle.app import App
    from watchdog.lifecycle.validate import projected
    from watchdog.state.memory import in_memory
    from watchdog.runtime.wiring import SourceStartFailed

    try:  # --once acts on nothing: its state is in memory, the configured one is not opened
        app = await App.create(cfg, serve_http=False, schedule=False, state=in_memory())
    except SourceStartFailed as exc:
        print(f"rollback-watchdog: cannot run: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:
        print(f"rollback-watchdog: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        await app.start()
        results = await app.runtime.once()
    except Exception as exc:
        print(f"rollback-watchdog: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        await app.stop()
    rows = [("TARGET", "RULE", "CATEGORY", "STATE", "VALUE", "THRESHOLD", "LAST DATAPOINT", "WHY")]
    alarm = False
    for target, views in results.items():
        for name, view in views.items():
            ev = view.evaluation
            alarm |= ev.state.value == "alarm"
            rows.append((target, name, app.runtime.board.slots[f"{target}/{name}"].rule.category,
                         ev.state.value, format_value(ev.value), str(view.spec.threshold),
                         ev.value_at.strftime("%Y-%m-%dT%H:%M:%SZ") if ev.value_at else "-", ev.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for h in app.runtime.board.sources.values():
        if not h.up:
            print(f"source {h.name} is down: {h.last_error}")
    print("\n".join(projected(cfg)))  # what running it as the daemon would cost
    return EXIT_FAIL if alarm else EXIT_OK

