"""A scenario in which every configured secret gets a chance to leak; none may.

The command action prints its token (as a deploy script run with `sh -x` would),
the Slack webhook answers 500, the admin API answers 500: then every log line,
/status, the incident API, the report and every row of the state file are searched.
"""

from __future__ import annotations

import io
import sqlite3
import sys
from typing import Any

import aiohttp

from configs import CLOSED, http, hybrid_routing, level, parsed
from timing import until
from watchdog.lifecycle.app import App
from watchdog.support.logs import setup_logging
from watchdog.shared.redact import redactor_for
from watchdog.state.report import render_report

SECRETS = {
    "WATCHDOG_API_TOKEN": "api-7c1d5e9f",
    "ADMIN_TOKEN": "adm-41b2c3d4",
    "DEPLOY_TOKEN": "dep-9a8b7c6d",
    "SLACK_WEBHOOK_URL": "",  # filled with the stub's URL in the test
}



def config(state: Any, admin: str) -> dict[str, Any]:
    """Every secret where a config may hold one: the API token, a command's argv and env, a URL, a header
    and the Slack webhook."""
    redeploy = {"type": "command", "env": {"TOK": "${DEPLOY_TOKEN}"}, "argv": [
        sys.executable, "-c", "import os, sys; print('token', os.environ['TOK'], sys.argv[1]); sys.exit(3)",
        "--token=${DEPLOY_TOKEN}"]}
    route = http(f"{admin}/l2?auth=${{ADMIN_TOKEN}}", headers={"Authorization": "Bearer ${ADMIN_TOKEN}"},
                 retry={"attempts": 1})
    return hybrid_routing(state_path=state, api_token="${WATCHDOG_API_TOKEN}", target="web", threshold="> 100",
                          levels=[level(1, "redeploy", redeploy), level(2, "route", route)],
                          notifications=[{"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}])


async def test_no_secret_leaks_anywhere(tmp_path, admin_api):
    env = dict(SECRETS, SLACK_WEBHOOK_URL=f"{admin_api.url}/services/T0/B0/hook-5e6f7a8b")
    admin_api.script["/l2"] = [500]
    admin_api.script["/services/T0/B0/hook-5e6f7a8b"] = [500]
    state = tmp_path / "state.db"
    cfg = parsed(config(state, admin_api.url), env)
    logs = io.StringIO()
    setup_logging("debug", logs, redactor_for(cfg))
    app = await App.create(cfg, schedule=False)
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.bound_port}"
        auth = {"Authorization": f"Bearer {SECRETS['WATCHDOG_API_TOKEN']}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/api/v1/targets/web/rollback", json={"level": 1, "reason": "test"},
                              headers=auth) as r:
                assert r.status == 202
            ex = app.runtime.executors["web"]
            await until(lambda: not ex.busy and ex.machine.level == 2
                        and app.runtime.notifier.status()["slack"]["failed_attempts"], 15,
                        "level 2 done and a failed Slack attempt")
            await app.runtime.notifier.drain(5)
            assert admin_api.count("/l2") == 1 and ex.machine.phase.value == "exhausted"
            async with s.get(f"{base}/status") as r:
                status = await r.text()
            async with s.get(f"{base}/api/v1/incidents", headers=auth) as r:
                incidents = await r.text()
            async with s.get(f"{base}/metrics") as r:
                metrics = await r.text()
        assert 'watchdog_target_exhausted{target="web"} 1.0' in metrics  # the alert rule's input
        inc = ex.machine.incident
        report = render_report(app.runtime.journal.incident(inc.id), app.runtime.journal.records(inc.id))
    finally:
        await app.stop()
    rows = []
    with sqlite3.connect(state) as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'"):
            rows += [repr(row) for row in db.execute(f"select * from {table}")]
    # The scenario really exercised the paths: the command failed with its output, Slack failed.
    assert "exit 3: token ***" in report
    assert "notification_failed" in logs.getvalue()
    assert any("level_failed" in r for r in rows)
    haystacks = {"logs": logs.getvalue(), "status": status, "incidents": incidents, "metrics": metrics,
                 "report": report, "state file": "\n".join(rows)}
    for name, text in haystacks.items():
        for key, secret in env.items():
            assert secret not in text, f"{key} leaked into {name}"
    assert "hook-5e6f7a8b" not in haystacks["logs"]


def test_redactor_masks_bare_tokens_and_secret_named_variables_only():
    cfg = parsed(config("/tmp/x.db", CLOSED),
                 dict(SECRETS, SLACK_WEBHOOK_URL="http://127.0.0.1:9/hook-1234", PLAIN="visible-value"))
    r = redactor_for(cfg)
    assert r.text("curl -H 'Authorization: Bearer adm-41b2c3d4'") == "curl -H 'Authorization: ***'"
    assert r.text("token=adm-41b2c3d4 dep-9a8b7c6d") == "token=*** ***"
    assert r.text("http://127.0.0.1:9/hook-1234 failed") == "*** failed"
    assert r.text("visible-value stays") == "visible-value stays"  # not secret-named, not secret-typed
    assert r.value({"a": ["api-7c1d5e9f", 3]}) == {"a": ["***", 3]}
