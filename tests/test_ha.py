"""Several real daemons (`python -m watchdog run`) on one shared DynamoDB table (SPEC 4.5), each with its own
instance id, port and config, against one moto server, and one admin API that counts every call and says which
watchdog made it (each one's actions carry `by`):
- a crash: the leader is killed inside level 1's verify window; the standby takes the lease within a lease and a
  round, resumes the incident, escalates to level 2 and ends mitigated; level 1 ran once; the chain verifies;
- a paused leader: SIGSTOPped at the last instant before its request, for longer than the lease; the standby
  takes over and acts; woken, the old leader makes no request and logs `fenced`;
- a partition: the leader's DynamoDB traffic held unanswered; it stops acting within the lease and makes no
  request although its rule alarms; the standby acts;
- load: three watchdogs, twenty targets: the table names exactly one holder of every target at every sampled
  moment, never two watchdogs lead one, leases spread at least 5/5/5, and a killed watchdog's targets are
  taken a lease and at most two looks after its last renewal;
- nothing lost: a notification whose sender was killed mid-send is delivered by the next holder under the same
  delivery id.
moto's server applies concurrent requests in threads without DynamoDB's per-item isolation, so every daemon
reaches it through one gate that passes requests on one at a time (tests/aws_gate.py `serial`); a daemon cut off
from DynamoDB has a gate of its own in front of that one. The lease is 3 s (a round every second) and the polls
500 ms, so that a takeover is seconds; the figures below are the documented bounds plus room for a loaded CI
machine, and each test prints what it measured.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web

from aws_gate import Gate, gate
from configs import http, level, make_target, metric_rule, write
from loopback import serving
from story import FLAGS, ROUTING, Publisher, config, dimensions
from tests.daemon import Daemon, status

pytestmark = pytest.mark.slow

LEASE, ROUND, POLL = 3.0, 1.0, 0.5
SLACK = 3.0  # a loaded CI machine: the daemons, moto and the gates share two cores
TARGET = "hybrid-routing"
DYNAMODB_OPS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "TransactWriteItems", "DescribeTable"}


def ha_config(tmp_path: Path, me: str, table: str, aws: str, admin: str, ns: str, *, targets: int = 0,
              notifications: list[dict[str, Any]] | None = None, deadline: str = "5s",
              api_token: str | None = None) -> str:
    where = tmp_path / me
    where.mkdir(exist_ok=True)
    quick = {"timeout": "5s", "retry": {"attempts": 1}}
    levels = [level(1, "feature-flags", http(f"{admin}{FLAGS}", json={"enabled": False, "by": me}, **quick),
                    deadline=deadline),
              level(2, "traffic-routing", http(f"{admin}{ROUTING}", json={"mode": "mcp_only", "by": me}, **quick),
                    deadline="5s")]
    extra: dict[str, Any] = {}
    if targets:
        rule = metric_rule(namespace=ns, threshold="> 1500", stat="Average", period="1s", dimensions=dimensions(ns),
                           datapoints_to_alarm=2, evaluation_periods=3)
        extra["targets"] = [make_target(f"t{i:02d}", [rule], levels, verify_window="3s") for i in range(targets)]
    cfg = config(where, aws, admin, ns, levels=levels, state_path=None, notifications=notifications, api_token=api_token,
                 watchdog={"state": {"type": "dynamodb", "table": table, "lease": f"{LEASE:g}s"}, "instance_id": me},
                 **extra)
    return write(where, cfg)


def by(admin: Any, path: str, me: str) -> int:
    return sum(1 for _, p, body in admin.calls if p == path and isinstance(body, dict) and body.get("by") == me)


@asynccontextmanager
async def watchdogs(tmp_path: Path, table: str, moto_url: str, admin: Any, ns: str, names: list[str],
                    own_gates: bool = False, env: dict[str, dict[str, str]] | None = None,
                    **kw: Any) -> AsyncIterator[tuple[dict[str, Daemon], dict[str, Gate]]]:
    """Daemons named `names`, not started, each configured through the one serial gate (or, `own_gates`, its own
    gate in front of it)."""
    async with AsyncExitStack() as stack:
        serial = await stack.enter_async_context(gate(moto_url, serial=True, keep_bodies=False))
        gates = {n: await stack.enter_async_context(gate(serial.url, keep_bodies=False)) if own_gates else serial
                 for n in names}
        daemons = {n: Daemon(ha_config(tmp_path, n, table, gates[n].url, admin.url, ns, **kw),
                             env=(env or {}).get(n)) for n in names}
        try:
            yield daemons, gates
        finally:
            for d in daemons.values():
                if d.proc is not None and d.proc.returncode is None:
                    d.proc.send_signal(signal.SIGCONT)  # a stopped one cannot die of SIGKILL until continued
                await d.stop()


async def leader_then_standby(daemons: dict[str, Daemon], lead: str, standby: str, target: str = TARGET) -> None:
    """`lead` alone takes the lease (nobody holds it: at once), then `standby` starts beside it."""
    await daemons[lead].start()
    await daemons[lead].wait_for("lease_acquired", timeout=30, target=target)
    await daemons[standby].start()
    port = await daemons[standby].port()
    deadline = time.monotonic() + 30
    while True:  # its first round has read the lease
        doc = await status(port)
        if [(t["role"], t["holder"]) for t in doc["targets"]] == [("standby", lead)]:
            return
        assert time.monotonic() < deadline, doc["targets"]
        await asyncio.sleep(0.1)


def verify_log(config_path: str) -> None:
    r = subprocess.run([sys.executable, "-m", "watchdog", "incidents", "verify-log", "-c", config_path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("audit log intact"), r.stdout + r.stderr


async def test_the_standby_takes_over_a_crashed_leader_inside_its_verify_window(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    ns = f"HaCrash{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    async with watchdogs(tmp_path, state_table, moto_url, admin_api, ns, ["w-a", "w-b"]) as (d, _):
        await leader_then_standby(d, "w-a", "w-b")
        pub.start()
        try:
            await d["w-a"].wait_for("level_succeeded", timeout=60, level=1)
            d["w-a"].proc.kill()  # inside the 3 s verify window
            killed = time.monotonic()
            await d["w-b"].wait_for("lease_acquired", timeout=30, target=TARGET)
            took = time.monotonic() - killed
            await d["w-b"].wait_for("recovered", timeout=30)
            await d["w-b"].wait_for("level_succeeded", timeout=60, level=2)
            pub.healthy = True
            await d["w-b"].wait_for("mitigated", timeout=60)
        finally:
            await pub.stop()
        print(f"kill -9 of the leader -> the standby's lease_acquired: {took:.2f} s (lease {LEASE:g} s, "
              f"round {ROUND:g} s, poll {POLL:g} s)")
        assert took <= LEASE + 2 * ROUND + SLACK  # a lease and two looks after the last renewal, and a round (docs/ha.md)
        assert (by(admin_api, FLAGS, "w-a"), by(admin_api, FLAGS, "w-b")) == (1, 0)  # level 1 ran exactly once
        assert (by(admin_api, ROUTING, "w-a"), by(admin_api, ROUTING, "w-b")) == (0, 1)
        await asyncio.to_thread(verify_log, d["w-b"].config_path)


async def test_a_leader_stopped_before_its_request_wakes_fenced_and_sends_nothing(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    ns = f"HaStop{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    env = {"w-a": {"WATCHDOG_TEST_FAILPOINTS": "before_request"}}
    # Level 1's deadline outlasts the stop: only the lease's check, not the deadline, may keep its request in.
    async with watchdogs(tmp_path, state_table, moto_url, admin_api, ns, ["w-a", "w-b"], env=env,
                         deadline="60s") as (d, _):
        await leader_then_standby(d, "w-a", "w-b")
        pub.start()
        try:
            await d["w-a"].wait_for("failpoint_reached", timeout=60, failpoint="before_request")
            d["w-a"].signal(signal.SIGSTOP)  # its intent is written; its request has not gone out
            await d["w-b"].wait_for("lease_acquired", timeout=30, target=TARGET)
            await d["w-b"].wait_for("level_succeeded", timeout=60, level=2)  # level 1's outcome unknown: verified
            d["w-a"].signal(signal.SIGCONT)
            await d["w-a"].wait_for("fenced", timeout=30, target=TARGET)
            await asyncio.sleep(2 * LEASE)  # what it would do once awake, it has done by now
        finally:
            await pub.stop()

        assert by(admin_api, FLAGS, "w-a") == 0 and by(admin_api, ROUTING, "w-a") == 0
        assert by(admin_api, ROUTING, "w-b") == 1


async def test_a_leader_cut_off_from_the_table_stops_acting_and_the_standby_acts(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    ns = f"HaCut{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    async with watchdogs(tmp_path, state_table, moto_url, admin_api, ns, ["w-a", "w-b"], own_gates=True) as (d, g):
        await leader_then_standby(d, "w-a", "w-b")
        port_a = await d["w-a"].port()
        g["w-a"].cut |= DYNAMODB_OPS  # the partition: its requests to DynamoDB are never answered
        await asyncio.sleep(LEASE)  # its last renewal is older than a lease: it acts for nothing any more
        pub.start()
        try:
            await d["w-b"].wait_for("lease_acquired", timeout=30, target=TARGET)
            await d["w-b"].wait_for("level_succeeded", timeout=60, level=1)
            doc = await status(port_a)
            assert [r["state"] for r in doc["rules"]] == ["alarm"]  # it sees the breach ...
            assert [t["role"] for t in doc["targets"]] == ["standby"]  # ... and knows it may not act on it
        finally:
            await pub.stop()
        assert by(admin_api, FLAGS, "w-a") == 0 and by(admin_api, FLAGS, "w-b") == 1
        assert not d["w-a"].events("level_started")


async def test_three_watchdogs_share_twenty_targets_one_holder_each_and_take_a_dead_ones(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    """Sampled every 0.3 s, from the moment every lease exists: the table names exactly one holder of each (a
    lease beyond a watchdog's share is handed over, never released between two holders), and no two watchdogs
    say they lead one target; the leases spread at least 5/5/5; a killed watchdog's leases are held again by
    the two others (the table read every 50 ms: a watchdog may act from the moment its write lands)."""
    ns = f"HaLoad{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    pub.healthy = True
    names = ["w-a", "w-b", "w-c"]
    targets = [f"t{i:02d}" for i in range(20)]
    async with watchdogs(tmp_path, state_table, moto_url, admin_api, ns, names, targets=20) as (d, g):
        ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=g["w-a"].url)  # through the serial gate

        def named() -> dict[str, str | None]:
            items = ddb.query(TableName=state_table, KeyConditionExpression="pk = :p", ConsistentRead=True,
                              ExpressionAttributeValues={":p": {"S": "LEASE"}})["Items"]
            return {i["sk"]["S"]: i.get("holder", {}).get("S") for i in items}

        pub.start()
        try:
            for n in names:
                await d[n].start()
            ports = {n: await d[n].port() for n in names}

            async def leaders(among: list[str]) -> dict[str, list[str]]:
                docs = await asyncio.gather(*(status(ports[n]) for n in among))
                out: dict[str, list[str]] = {t: [] for t in targets}
                for n, doc in zip(among, docs):
                    for t in doc["targets"]:
                        if t["role"] == "leader":
                            out[t["name"]].append(n)
                return out

            async def sample(among: list[str]) -> dict[str, list[str]]:
                seen = await leaders(among)
                assert all(len(h) <= 1 for h in seen.values()), seen  # never two holders of one target
                table = await asyncio.to_thread(named)
                if samples["table"] or sorted(table) == targets:  # from the moment every lease exists
                    samples["table"] += 1
                    assert sorted(table) == targets and all(table.values()), table  # one holder named, each
                return seen

            samples, spread = {"table": 0}, None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = await sample(names)
                counts = {n: sum(1 for h in seen.values() if h == [n]) for n in names}
                if all(len(h) == 1 for h in seen.values()) and min(counts.values()) >= 5:
                    spread = counts
                    break
                await asyncio.sleep(0.3)
            assert spread is not None, f"not spread 5/5/5 within 120 s: {counts}"
            print(f"spread {spread} after {samples['table']} samples of the table")
            dead = [t for t, h in seen.items() if h == ["w-c"]]
            d["w-c"].proc.kill()
            killed = time.monotonic()
            while True:
                table = await asyncio.to_thread(named)
                assert sorted(table) == targets and all(table.values()), table
                if all(table[t] in ("w-a", "w-b") for t in dead):
                    break
                assert time.monotonic() - killed < 60, f"not taken within 60 s: {table}"
                await asyncio.sleep(0.05)
            took = time.monotonic() - killed
            for _ in range(5):
                seen = await sample(["w-a", "w-b"])
                await asyncio.sleep(0.3)
            assert all(seen[t] for t in dead), seen  # and they lead them,
            assert "w-c" not in (await asyncio.to_thread(named)).values()  # and hand none back to the dead one
        finally:
            await pub.stop()
        print(f"kill -9 of one of three -> its {len(dead)} targets held again: {took:.2f} s "
              f"(lease {LEASE:g} s, poll {POLL:g} s); {samples['table']} samples of the table in all")
        assert took <= LEASE + 2 * ROUND + SLACK  # a lease and two looks after the last renewal (docs/ha.md)


class Receiver:
    """A webhook receiver on loopback: every delivery's id and sender; `holding` keeps requests unanswered."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str, str]] = []  # (delivery id, sender, event)
        self.delivered: list[tuple[int, str, str]] = []
        self.holding = asyncio.Event()
        self.holding.set()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        entry = (int(request.headers["X-Watchdog-Delivery"]), request.headers.get("X-By", ""), body["event"])
        self.got.append(entry)
        if self.holding.is_set():
            await self.release.wait()
        self.delivered.append(entry)
        return web.Response(status=204)


async def test_a_notification_whose_sender_died_is_sent_by_the_next_holder_with_its_delivery_id(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    ns = f"HaNotify{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    async with serving(app) as url:
        hooks = {n: [{"type": "webhook", "url": f"{url}/hook", "headers": {"X-By": n}, "timeout": "30s"}]
                 for n in ("w-a", "w-b")}
        async with AsyncExitStack() as stack:
            serial = await stack.enter_async_context(gate(moto_url, serial=True, keep_bodies=False))
            d = {n: Daemon(ha_config(tmp_path, n, state_table, serial.url, admin_api.url, ns, notifications=hooks[n]))
                 for n in ("w-a", "w-b")}
            try:
                await leader_then_standby(d, "w-a", "w-b")
                pub.start()
                deadline = time.monotonic() + 60
                while not rx.got:  # w-a's first message is on its way, and held there
                    assert time.monotonic() < deadline, "w-a sent nothing"
                    await asyncio.sleep(0.05)
                first = rx.got[0]
                d["w-a"].proc.kill()  # mid-send: the message was never marked sent
                rx.holding.clear()
                await d["w-b"].wait_for("lease_acquired", timeout=30, target=TARGET)
                deadline = time.monotonic() + 60
                while not any(e[0] == first[0] and e[1] == "w-b" for e in rx.delivered):
                    assert time.monotonic() < deadline, f"w-b never delivered {first}: {rx.delivered}"
                    await asyncio.sleep(0.1)
            finally:
                rx.release.set()
                await pub.stop()
                for x in d.values():
                    await x.stop()
    assert first[1] == "w-a" and first[2] == "incident_opened"
    # w-b sent it once, under w-a's delivery id (w-a's own try was cut by its death: the receiver answered no one)
    assert [e for e in rx.delivered if e[0] == first[0] and e[1] == "w-b"] == [(first[0], "w-b", "incident_opened")]
    # Taking over, w-b handed w-a's recent events of the target to its outbox again (what w-a could have recorded
    # and died before queuing); the one queued already was not queued twice (above: delivered once).
    assert d["w-b"].events("notifications_replayed")


async def test_a_clean_stop_hands_its_leases_over_at_once_and_a_pause_holds_on_both(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any, state_table: str) -> None:
    """A pause made through the standby's API holds on the leader (it is kept in the table); SIGTERM hands the
    leader's leases over, and the standby takes them up at its next look, not a lease later."""
    import aiohttp

    ns = f"HaStop{time.monotonic_ns()}"
    env = {n: {"WATCHDOG_API_TOKEN": "tok"} for n in ("w-a", "w-b")}
    async with watchdogs(tmp_path, state_table, moto_url, admin_api, ns, ["w-a", "w-b"], env=env,
                         api_token="${WATCHDOG_API_TOKEN}") as (d, _):
        await leader_then_standby(d, "w-a", "w-b")
        port_a, port_b = await d["w-a"].port(), await d["w-b"].port()
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as http_:
            async with http_.post(f"http://127.0.0.1:{port_b}/api/v1/pause",
                                  json={"duration": "30m", "reason": "router upgrade"}) as r:
                assert r.status == 200, await r.text()
        async with aiohttp.ClientSession() as page_http, page_http.get(f"http://127.0.0.1:{port_b}/") as r:
            assert "standby (held by w-a)" in await r.text()  # the page names the holder, as /status does
        await d["w-a"].wait_for("pause_adopted", timeout=30, scope="*")
        assert (await status(port_a))["targets"][0]["paused"] is True
        d["w-a"].signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert await d["w-a"].wait(30) == 0
        await d["w-b"].wait_for("lease_acquired", timeout=30, target=TARGET)
        took = time.monotonic() - stopped
        print(f"SIGTERM of the leader -> the standby's lease_acquired: {took:.2f} s (lease {LEASE:g} s)")
        assert d["w-a"].events("leases_released") and took < LEASE + ROUND + SLACK
