"""The lifecycle: start a built runtime, keep it going, stop it in order.

`App.create` builds the runtime with the one composition function (watchdog/runtime/wiring.py); `start` resumes
the open incidents, serves HTTP, starts the scheduler (inside the running loop, as APScheduler's asyncio
scheduler requires) and the systemd loop; `stop` runs the shutdown as ordered steps with deadlines.
Only the CLI, the offline rollback and the demo use this module (an import contract in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from watchdog.config.models import Config
from watchdog.http.server import HttpServer
from watchdog.runtime.recovery import recover
from watchdog.runtime.reload import apply_reload
from watchdog.runtime.runtime import Runtime
from watchdog.core.schedule import Pace, catch_up, first_due, next_due
from watchdog.sources.kind import pace_of
from watchdog.lifecycle.sdnotify import SystemdNotifier
from watchdog.support.allocator import give_back_free_memory, keep_large_blocks_out_of_the_heap
from watchdog.support.tasks import finish, stop_in_order
from watchdog.http.web import build_web
from watchdog.runtime.wiring import build_runtime, close_runtime

log = structlog.get_logger("watchdog.lifecycle.app")


class App:
    def __init__(self, runtime: Runtime, scheduler: AsyncIOScheduler, *, serve_http: bool = True,
                 schedule: bool = True, sd: SystemdNotifier | None = None):
        self.runtime = runtime
        self.serve_http, self.schedule = serve_http, schedule
        self.sd = sd or SystemdNotifier()
        self.scheduler = scheduler  # the runtime was built seeing it (its `running`: liveness)
        # The HTTP face with its cap and timeouts; it reads them from the live config (a reload applies them).
        self.http = HttpServer(runtime.metrics, lambda: self.runtime.cfg.watchdog,
                               lambda guard: build_web(runtime, guard))
        self.bound_port = 0  # set once the HTTP server listens (0: not serving)
        self._ticked: dict[str, datetime] = {}  # per source, the tick its last scheduled poll stood for

    @classmethod
    async def create(cls, cfg: Config, *, serve_http: bool = True, schedule: bool = True,
                     sd: SystemdNotifier | None = None, **build: Any) -> App:
        """The runtime from `cfg` (see wiring.build_runtime for `build`), and its lifecycle around it. The
        scheduler comes first: the runtime is built with a view of it (whether it runs), not told later."""
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        runtime = await build_runtime(cfg, scheduler=scheduler, **build)
        return cls(runtime, scheduler, serve_http=serve_http, schedule=schedule, sd=sd)

    # --- starting ---------------------------------------------------------------------------

    async def start(self) -> None:
        rt, cfg = self.runtime, self.runtime.cfg
        keep_large_blocks_out_of_the_heap()  # 5 000 rules: peak RSS about 3 MB lower (support/allocator.py)
        rt.notifier.start()
        # Before the first poll, open incidents continue where they stopped: each one whose target this watchdog
        # may act for (all of them, unless a shared state's lease is another's; a lease taken later resumes its own).
        await recover(rt.journal, rt.executors, rt.clock.now(), only=[t for t in rt.executors if rt.state.peers.may_act(t)])
        rt.peer_rounds.show()
        if self.serve_http:
            await self._serve()
        if self.schedule:
            # A poll's answers are many short-lived containers; at the default 700 allocations a young
            # collection, the full ones (walking all the polls keep) came about once a poll. 10 000 keeps the
            # collector's rhythm (cyclic garbage still goes, memory stays bounded) and cut its CPU over a
            # 5 000-rule poll from 84 ms to 29, no full collection in a run (bench/README.md, "The garbage collector").
            gc.set_threshold(10_000, 10, 10)
            self._add_jobs()
            self.scheduler.start()
            if self.sd.enabled:
                self.sd.ready(rt.status_line())
                rt.tasks.spawn(self._systemd_loop(), "sd_notify")
        if rt.failpoints.armed:
            log.warning("failpoints_armed", failpoints=sorted(rt.failpoints.armed))
        give_back_free_memory()  # what the config's parse and the build freed: about 1.3 MB of RSS at 5 000 rules
        log.info("started", targets=[t.name for t in cfg.targets], sources=[s.name for s in cfg.sources],
                 dry_run=rt.dry_run, listen=f"{cfg.watchdog.listen_host}:{self.bound_port}" if self.bound_port else None)

    async def _serve(self) -> None:
        cfg = self.runtime.cfg.watchdog
        self.bound_port = await self.http.start(cfg.listen_host, cfg.listen_port)

    def _add_jobs(self) -> None:
        """A job per source, from now: APScheduler fires it at the schedule's ticks on the system clock, and each
        run polls at its tick on the runtime's clock (the same times, unless a test injects a clock)."""
        start, fires = self.runtime.clock.now(), datetime.now(timezone.utc)
        self._ticked.clear()
        cfg = self.runtime.cfg
        for s in cfg.sources:
            pace = pace_of(cfg, s)
            self.scheduler.add_job(
                self._tick, DueTrigger(pace, fires), args=[s.name, pace, start], id=f"poll:{s.name}",
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )
        peers = self.runtime.state.peers
        if peers.every is not None:  # a shared state's leases: the first round at once, then every third of a lease
            self.scheduler.add_job(self.runtime.peer_rounds.round, IntervalTrigger(seconds=peers.every.total_seconds()),
                                   id="leases", next_run_time=fires, max_instances=1, coalesce=True,
                                   misfire_grace_time=None)
        if peers.look_every is not None:  # and between rounds, a look at the leases alone
            self.scheduler.add_job(self.runtime.peer_rounds.look, IntervalTrigger(seconds=peers.look_every.total_seconds()),
                                   id="lease-look", max_instances=1, coalesce=True, misfire_grace_time=None)

    async def _tick(self, name: str, pace: Pace, start: datetime) -> None:
        rt = self.runtime
        due = catch_up(pace, self._ticked.get(name), start, rt.clock.now())
        self._ticked[name] = due
        await rt.poll(name, due)

    async def reload(self, new: Config) -> list[str]:
        """Apply a validated config (SIGHUP); ReloadRefused keeps the old one running."""
        running = self.scheduler.running
        if running:
            self.scheduler.pause()
        try:
            return await apply_reload(self.runtime, new)
        finally:
            self.runtime.pace_polls()
            if running:
                self.scheduler.remove_all_jobs()
                self._add_jobs()
                self.scheduler.resume()

    async def _systemd_loop(self) -> None:
        """WATCHDOG=1 only while the polls keep coming round: a stalled loop goes quiet and systemd restarts it."""
        every = self.sd.ping_every or 5.0
        while True:
            alive, why = self.runtime.liveness()
            if alive and self.sd.ping_every:
                self.sd.ping()
            elif not alive:
                log.warning("watchdog_ping_withheld", why=why)
            self.sd.status(self.runtime.status_line())
            await asyncio.sleep(every)

    # --- stopping ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Ordered: no new level, polling paused and drained, a running level finishes (bounded), queued
        messages get a moment, then the HTTP server, the clients, and last the state file."""
        rt = self.runtime
        grace = rt.cfg.watchdog.shutdown_grace.total_seconds()
        log.info("stopping", grace_s=grace)
        self.sd.stopping()
        for ex in rt.executors.values():
            ex.stopping = True
        if self.scheduler.running:
            self.scheduler.pause()  # shutdown(wait=True) does not wait for asyncio jobs; the steps do
        await stop_in_order([
            # A poll still retrying must not run on against closed clients.
            ("in-flight polls", _finishing(lambda: rt.polls, min(grace, 30)), grace + 10),
            ("running levels", self._levels(grace), grace + 10),
            ("scheduler", self._shutdown_scheduler, 5),
            ("queued notifications", lambda: rt.notifier.drain(timeout=5), 10),
            ("tasks", lambda: rt.tasks.cancel_all(5), 10),
            ("HTTP server", self._unserve, 10),
            ("clients and the state file", lambda: close_runtime(rt), 30),
        ])
        log.info("stopped")

    def _levels(self, grace: float) -> Callable[[], Any]:
        async def wait() -> None:
            levels = [e.level_task for e in self.runtime.executors.values() if e.level_task is not None and e.busy]
            if levels:
                log.info("waiting_for_level", count=len(levels), grace_s=grace)
                await finish(levels, grace)

        return wait

    async def _unserve(self) -> None:
        await self.http.stop()

    async def _shutdown_scheduler(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


class DueTrigger(BaseTrigger):
    """APScheduler's trigger over the one schedule (watchdog/core/schedule.py): it fires at a source's ticks, as
    the replay polls at them (on the grid of its rules' periods: at the same wall-clock times)."""

    def __init__(self, pace: Pace, start: datetime):
        self.pace, self.start = pace, start

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return first_due(self.pace, self.start)
        return next_due(self.pace, previous_fire_time)


def _finishing(tasks: Callable[[], Any], grace: float) -> Callable[[], Any]:
    async def wait() -> None:
        await finish(tasks(), grace)

    return wait
