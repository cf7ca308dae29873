"""The AWS action kinds through the commands an operator runs, against moto in server mode: `validate` reads each
action's resource and writes nothing (a wrong ARN is one FAIL row); `replay` runs them as stand-ins that record
what would have been called, the resource and the state wanted, and `--json` shows it; `rollback --offline`
acts on AWS with the daemon down and journals it in the state file the daemon reads."""

from __future__ import annotations

import asyncio
import json
import re

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from aws_fakes import APPCONFIG_OPS, ECS_OPS, appconfig_fake, ecs_fake
from aws_gate import gate
from aws_world import alb, alias, client, function, unique, weights
from configs import hybrid_routing, level, metric_rule, write
from replay_runs import replay_measured
from watchdog.cli.main import main

UTC = timezone.utc
MIN = timedelta(minutes=1)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


class World:
    """One of each AWS action's resources in moto, and the three levels that act on them."""

    def __init__(self, url: str):
        self.url = url
        self.flag = f"/flags/{unique('hybrid-routing')}"
        client("ssm", url).put_parameter(Name=self.flag, Value="on", Type="String")
        self.lb = alb(url)
        self.fn = function(url, versions=3, alias_on=3)

    def levels(self, listener: str | None = None) -> list[dict[str, Any]]:
        quick = {"timeout": "5s", "read_back_every": "100ms", "retry": {"attempts": 1}}
        return [
            level(1, "feature-flags", {"type": "ssm_parameter", "name": self.flag, "value": "off", **quick}),
            level(2, "traffic-routing", {"type": "elbv2_weights", "listener_arn": listener or self.lb.listener,
                                         "weights": {self.lb.green: 100, self.lb.blue: 0}, **quick}),
            level(3, "full-system", {"type": "lambda_alias", "function": self.fn, "version": "previous", **quick}),
        ]

    def untouched(self) -> bool:
        return (client("ssm", self.url).get_parameter(Name=self.flag)["Parameter"]["Value"] == "on"
                and weights(self.url, self.lb.listener) == {self.lb.blue: 100, self.lb.green: 0}
                and alias(self.url, self.fn)["FunctionVersion"] == "3")


async def test_validate_reads_every_aws_action_and_says_a_wrong_arn_in_one_row(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        logging_kept: None) -> None:
    """Every type in one config, behind one endpoint: moto, with ECS and AppConfig answered by the fakes
    (tests/aws_fakes.py) through the gate's routes. `validate` runs in a thread: it runs its own event loop."""
    w = World(moto_url)
    wrong = w.lb.listener[:-4] + "beef"
    levels = w.levels() + [
        level(4, "ecs", {"type": "ecs_service", "cluster": "prod", "service": "web"}),
        level(5, "flags", {"type": "appconfig", "application": "shop", "environment": "prod", "profile": "flags",
                           "content": {"hybrid-routing": {"enabled": False}}}),
        level(6, "wrong", {"type": "elbv2_weights", "listener_arn": wrong, "weights": {w.lb.green: 100}})]
    async with ecs_fake() as ecs, appconfig_fake() as appconfig, gate(moto_url) as g:
        ecs.families["shop"] = [6, 7]
        ecs.service("prod", "web", "shop", 7)
        appconfig.deploy(appconfig.hosted({"hybrid-routing": {"enabled": True}}))
        g.route(ecs.url, *ECS_OPS)
        g.route(appconfig.url, *APPCONFIG_OPS)
        path = write(tmp_path, hybrid_routing(aws_endpoint=g.url, levels=levels, state_path=tmp_path / "w.db"))
        code, out, err = await asyncio.to_thread(run, ["validate", "-c", path], capsys)
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in out.splitlines())}
    t = "action hybrid-routing"
    assert rows[f"{t} L1 #1 (ssm_parameter)"] == ["pass", f"{w.flag} readable: String, version 1"]
    assert rows[f"{t} L2 #1 (elbv2_weights)"][0] == "pass"
    assert rows[f"{t} L3 #1 (lambda_alias)"] == ["pass", "alias live on 3; a rollback would point it at 2 (the "
                                                         "version before 3)"]
    assert rows[f"{t} L4 #1 (ecs_service)"] == ["pass", "service on shop:7; a rollback would deploy shop:6 (the "
                                                        "revision before shop:7)"]
    assert rows[f"{t} L5 #1 (appconfig)"] == ["pass", "environment on version 1; the latest version (1) does not "
                                                      "hold the content"]
    failed = rows[f"{t} L6 #1 (elbv2_weights)"]
    assert failed[0] == "FAIL" and failed[1].startswith(f"DescribeListeners {wrong}: ListenerNotFound")
    assert [r for r, cells in rows.items() if cells and cells[0] == "FAIL" and r.startswith("action")] == \
        [f"{t} L6 #1 (elbv2_weights)"]
    assert code == 1 and "Traceback" not in err
    assert w.untouched()  # validate wrote nothing
    writes = {"PutParameter", "ModifyListener", "ModifyRule", "UpdateAlias", "UpdateService", "TagResource",
              "CreateHostedConfigurationVersion", "StartDeployment", "StopDeployment"}
    assert not writes & set(g.calls) and "GetMetricData" in g.calls


async def test_a_replay_records_what_each_aws_action_would_have_called(
        tmp_path: Path, moto_url: str, aws_env: dict[str, str]) -> None:
    w = World(moto_url)
    metric = unique("ReplayAws")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first = now - timedelta(hours=3)
    # 2000 ms (above 1500) in minutes 100..119, 100 otherwise: three levels run, 3 minutes' verify window apart
    data = [{"MetricName": metric, "Dimensions": [{"Name": "Rule", "Value": "r0"}],
             "Timestamp": first + k * MIN + timedelta(seconds=5), "Value": 2000.0 if 100 <= k < 120 else 100.0}
            for k in range(170)]
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    for j in range(0, len(data), 1000):
        cw.put_metric_data(Namespace="ReplayAws", MetricData=data[j:j + 1000])
    rules = [metric_rule("r0", namespace="ReplayAws", metric=metric, dimensions={"Rule": "r0"}, stat="Maximum",
                         datapoints_to_alarm=3, evaluation_periods=3)]
    path = write(tmp_path, hybrid_routing(aws_endpoint=moto_url, interval="60s", rules=rules, verify_window="3m",
                                          retry={"attempts": 1}, state_path=tmp_path / "w.db", levels=w.levels()))
    r = replay_measured("-c", path, "--from", (first + 10 * MIN).isoformat(), "--to", (now - 10 * MIN).isoformat(),
                        "--cache", str(tmp_path / "cache.db"), "--yes", "--json")
    assert r.code == 0 and "Traceback" not in r.err, r.err[-2000:]
    doc = json.loads(r.out)
    called = [(a["level"], a["type"], a["would_call"]) for a in doc["actions"]]
    assert called == [
        (1, "ssm_parameter", f"{w.flag} = 'off'"),
        (2, "elbv2_weights", f"weights on {'/'.join(w.lb.listener.split('/')[-3:])}: "
                             f"{w.lb.green.split('/')[1]} 100, {w.lb.blue.split('/')[1]} 0"),
        (3, "lambda_alias", f"alias live of {w.fn} to previous"),
    ]
    assert [lv["level"] for lv in doc["incidents"][0]["levels"]] == [1, 2, 3]
    assert w.untouched()  # a replay acts on nothing


def test_an_offline_rollback_acts_on_aws_and_journals_it(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                         capsys: pytest.CaptureFixture[str],
                                                         logging_kept: None) -> None:
    w = World(moto_url)
    path = write(tmp_path, hybrid_routing(aws_endpoint=moto_url, levels=w.levels(), state_path=tmp_path / "w.db"))
    code, out, err = run(["rollback", "--offline", "-c", path, "--target", "hybrid-routing", "--level", "3",
                          "--reason", "the watchdog host is down"], capsys)
    assert code == 0, out + err
    assert out.startswith("level 3 on hybrid-routing: succeeded") and "not verified offline" in out
    assert alias(moto_url, w.fn)["FunctionVersion"] == "2"
    [incident] = re.findall(r"\(incident (\S+); not verified offline\)", out)
    code, out, err = run(["incidents", "show", incident, "-c", path], capsys)
    assert code == 0, out + err
    assert f"alias live of {w.fn}: 3 → 2 (the version before 3)" in out  # the action's detail, journaled


def test_the_aws_example_config_loads_with_an_aws_action_at_each_level(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], logging_kept: None) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "aws.yaml"
    monkeypatch.setenv("WATCHDOG_API_TOKEN", "t" * 32)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "k" * 32)
    code, out, err = run(["check-config", "-c", str(example)], capsys)
    assert code == 0, out + err
    from watchdog.config import load_config

    cfg = load_config(str(example))
    [target] = cfg.targets
    assert [[a.type for a in lv.actions] for lv in target.levels] == [["appconfig"], ["elbv2_weights"],
                                                                      ["lambda_alias"]]
    assert all(a.idempotent for lv in target.levels for a in lv.actions)


@pytest.mark.parametrize("action, problem", [
    ({"type": "elbv2_weights", "listener_arn": "arn:l", "rule_arn": "arn:r", "weights": {"arn:tg": 1}},
     "give exactly one of listener_arn and rule_arn"),
    ({"type": "elbv2_weights", "listener_arn": "arn:l", "weights": {"arn:a": 0, "arn:b": 0}},
     "every weight is 0: no target group would get the traffic"),
    ({"type": "elbv2_weights", "listener_arn": "arn:l", "weights": {"arn:a": 1000}}, "a weight is between 0 and 999"),
    ({"type": "lambda_alias", "function": "f", "version": "latest"},
     "version is `previous` or a published version number"),
    ({"type": "lambda_alias", "function": "f", "version": 0}, "version is `previous` or a published version number"),
    ({"type": "ssm_parameter", "name": "/f", "value": ""}, "String should have at least 1 character"),
    ({"type": "appconfig", "application": "a", "environment": "e", "profile": "p"}, "content: required"),
    ({"type": "ecs_service", "cluster": "c", "service": "s", "read_back_every": "10ms"}, "at least 100ms"),
    ({"type": "ecs_service", "cluster": "c", "service": "s", "task_definition": "shop"},
     "task_definition is `previous`, family:revision or a task definition ARN"),
])
def test_a_wrong_aws_action_is_one_line_naming_its_place(action: dict[str, Any], problem: str) -> None:
    from watchdog.config import ConfigError
    from configs import parsed

    with pytest.raises(ConfigError) as refused:
        parsed(hybrid_routing(levels=[level(1, "one", action)]))
    [line] = refused.value.problems
    assert line.startswith("targets[0].levels[0].actions[0]") and problem in line and "\n" not in line, line
