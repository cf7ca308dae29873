"""The AWS action kinds whose APIs moto does not answer as AWS documents, `ecs_service` and `appconfig`, against
tests/aws_fakes.py's fakes speaking the real wire protocols, through tests/aws_gate.py (as tests/test_aws_actions.py
runs the others on moto): the change, the read-back, the fencing where the API has a token, the timeout, IAM
denied, and the repeat after a crash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aws_fakes import appconfig_fake, ecs_fake
from aws_runs import FAST, Run, action, running


# --- ecs_service -----------------------------------------------------------------------------------------------
# Against tests/aws_fakes.py's ECS: after UpdateService moto shows the old task definition PRIMARY and
# IN_PROGRESS forever, so no read-back could ever see a rollout end there.

@pytest.fixture
async def ecs(session: aiohttp.ClientSession, aws_env: dict[str, str]) -> AsyncIterator[tuple[Any, Run]]:
    async with ecs_fake() as fake:
        fake.families["shop"] = [5, 6, 7]
        fake.service("prod", "web", "shop", 7)
        async with running(fake.url, session) as r:
            yield fake, r


def on(fake: Any) -> tuple[str, str, int]:
    svc = fake.services[("prod", "web")]
    [primary] = svc["deployments"]
    return svc["taskDefinition"].rsplit("/", 1)[-1], primary["rolloutState"], primary["runningCount"]


async def test_ecs_service_deploys_the_previous_revision_waits_until_stable_and_a_repeat_changes_nothing(
        ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    a = action(type="ecs_service", cluster="prod", service="web", task_definition="previous", **FAST)
    assert a.idempotent  # UpdateService is declarative
    assert await run(a) == ("service prod/web: shop:7 → shop:6, stable: shop:6, 2/2 running, rollout COMPLETED, "
                            "1 deployment(s) (the revision before shop:7)")
    assert on(fake) == ("shop:6", "COMPLETED", 2)
    assert run.gate.count("DescribeServices") == 3  # read once, then back until the rollout ended (2 reads)
    assert await run(a) == "service prod/web: already stable on shop:6 (already rolled back from shop:7)"
    assert on(fake) == ("shop:6", "COMPLETED", 2) and run.gate.count("UpdateService") == 1


async def test_ecs_service_during_a_rollout_goes_back_to_the_deployment_it_replaces(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    fake.families["shop"].append(8)
    fake.deploy("prod", "web", fake.arn("shop", 8))  # a bad deploy, still rolling out
    fake.stuck = True
    ok, said = await run.probe(action(type="ecs_service", cluster="prod", service="web"))
    assert (ok, said) == (True, "service on shop:8; a rollback would deploy shop:7 (the deployment the rollout "
                                "was replacing)")
    fake.stuck = False
    detail = await run(action(type="ecs_service", cluster="prod", service="web", **FAST))
    assert detail.startswith("service prod/web: shop:8 → shop:7, stable: shop:7, 2/2 running")
    assert on(fake) == ("shop:7", "COMPLETED", 2)


async def test_ecs_service_repeated_during_its_own_rollout_never_goes_forward(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    fake.families["shop"].append(8)
    fake.deploy("prod", "web", fake.arn("shop", 8))  # a bad deploy, still rolling out
    fake.stuck = True
    a = action(type="ecs_service", cluster="prod", service="web", **FAST)
    assert (await run.fails(a)).unknown  # 8 -> 7 sent; the rollout did not end in time (a crash, say)
    fake.stuck = False
    detail = await run(a)  # the repeat: 8 is still draining beside 7
    assert detail.startswith("service prod/web: shop:7 → shop:7, stable: shop:7") and \
        detail.endswith("(already rolling back from shop:8)")
    assert on(fake) == ("shop:7", "COMPLETED", 2) and run.gate.count("UpdateService") == 1


async def test_ecs_service_leaves_a_rollback_ecs_began_itself(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    fake.families["shop"].append(8)
    fake.deploy("prod", "web", fake.arn("shop", 8))
    fake.deploy("prod", "web", fake.arn("shop", 7))  # the circuit breaker rolls 8 back to 7
    fake.services[("prod", "web")]["deployments"][1].update(rolloutState="FAILED")
    detail = await run(action(type="ecs_service", cluster="prod", service="web", **FAST))
    assert detail.endswith("(ECS is rolling the failed deployment back)") and run.gate.count("UpdateService") == 0
    assert on(fake) == ("shop:7", "COMPLETED", 2)


async def test_ecs_service_a_given_task_definition(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    detail = await run(action(type="ecs_service", cluster="prod", service="web", task_definition="shop:5", **FAST))
    assert detail.startswith("service prod/web: shop:7 → shop:5, stable") and detail.endswith("(as configured)")
    assert "TagResource" not in run.gate.calls  # only `previous` needs the marker


async def test_ecs_service_never_stable_fails_within_the_timeout_and_a_failed_rollout_at_once(
        ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    fake.stuck = True
    failed = await run.fails(action(type="ecs_service", cluster="prod", service="web", **FAST))
    assert failed.detail == ("service prod/web to previous: not done within 1s; last seen: shop:6, 0/2 running, "
                             "rollout IN_PROGRESS, 2 deployment(s)")
    assert failed.unknown
    fake.stuck, fake.fail = False, "tasks failed to start"
    fake.deploy("prod", "web", fake.arn("shop", 7))
    fake.services[("prod", "web")]["deployments"] = fake.services[("prod", "web")]["deployments"][:1]
    failed = await run.fails(action(type="ecs_service", cluster="prod", service="web", task_definition="shop:6",
                                    timeout="30s", read_back_every="100ms"))
    assert failed.detail == "ECS marked the rollout to shop:6 FAILED: tasks failed to start"
    assert not failed.retryable


async def test_ecs_service_denied_by_iam_names_the_call_and_the_service(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    run.gate.deny.add("UpdateService")
    failed = await run.fails(action(type="ecs_service", cluster="prod", service="web", task_definition="shop:6",
                                    **FAST))
    assert failed.detail.startswith("UpdateService service prod/web: AccessDeniedException: User: ")
    assert on(fake) == ("shop:7", "COMPLETED", 2)


async def test_ecs_service_probe_fails_on_a_missing_service_in_one_line(ecs: tuple[Any, Run]) -> None:
    fake, run = ecs
    ok, said = await run.probe(action(type="ecs_service", cluster="prod", service="nope"))
    assert (ok, said) == (False, "DescribeServices prod/nope: MISSING")
    assert "UpdateService" not in run.gate.calls and "TagResource" not in run.gate.calls


# --- appconfig -------------------------------------------------------------------------------------------------
# Against tests/aws_fakes.py's AppConfig: moto answers 404 for environments and deployments and ignores
# LatestVersionNumber.

ON, OFF = {"hybrid-routing": {"enabled": True}}, {"hybrid-routing": {"enabled": False}}


@pytest.fixture
async def appconfig(session: aiohttp.ClientSession, aws_env: dict[str, str]) -> AsyncIterator[tuple[Any, Run]]:
    async with appconfig_fake() as fake:
        fake.deploy(fake.hosted(ON))  # version 1, deployed
        async with running(fake.url, session) as r:
            yield fake, r


def flags_off(**keys: Any) -> Any:
    return action(**{"type": "appconfig", "application": "shop", "environment": "prod", "profile": "flags",
                     "content": OFF, **FAST, **keys})


async def test_appconfig_deploys_the_flags_reads_the_deployment_back_and_a_repeat_changes_nothing(
        appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    a = flags_off()
    assert a.idempotent
    assert await run(a) == "shop/prod/flags: version 1 → 2 deployed (AppConfig.AllAtOnce)"
    assert fake.on() == ("2", "COMPLETE", OFF)
    assert run.gate.calls[-3:] == ["StartDeployment", "GetDeployment", "GetDeployment"]  # read until COMPLETE
    assert await run(a) == "shop/prod/flags: already on version 2, which holds the content"
    assert len(fake.versions["prof1"]) == 2 and len(fake.deployments["env1"]) == 2  # nothing new
    # by ID too, and a version that already holds the content is deployed, not made again
    fake.deploy(fake.hosted(ON))  # a release turned them on again: version 3
    fake.hosted(OFF)  # and somebody prepared version 4, not deployed
    assert await run(flags_off(application="app1", environment="env1", profile="prof1")) == \
        "app1/env1/prof1: version 3 → 4 deployed (AppConfig.AllAtOnce)"
    assert len(fake.versions["prof1"]) == 4 and fake.on() == ("4", "COMPLETE", OFF)


async def test_appconfig_stops_a_deployment_under_way_before_its_own(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    fake.deploy(fake.hosted({"hybrid-routing": {"enabled": True, "bedrock": "all"}}), "DEPLOYING")  # the bad one
    assert await run(flags_off()) == ("shop/prod/flags: version 2 → 3 deployed (AppConfig.AllAtOnce), deployment 2 "
                                      "of version 2 stopped")
    assert [d["State"] for d in fake.deployments["env1"]] == ["COMPLETE", "ROLLED_BACK", "COMPLETE"]
    assert fake.on() == ("3", "COMPLETE", OFF)


async def test_appconfig_stops_a_baking_deployment_with_allow_revert(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    fake.deploy(fake.hosted({"hybrid-routing": {"enabled": True, "bedrock": "all"}}), "BAKING")
    detail = await run(flags_off())
    assert detail.endswith("deployment 2 of version 2 stopped")
    assert len(run.gate.sent("StopDeployment")) == 1  # the fake refuses one past DEPLOYING without AllowRevert
    assert [d["State"] for d in fake.deployments["env1"]] == ["COMPLETE", "ROLLED_BACK", "COMPLETE"]


async def test_appconfig_repeated_while_its_own_deployment_runs_waits_on_it(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    fake.stuck = True
    assert (await run.fails(flags_off())).unknown  # deployment 2 started, not COMPLETE in time (a crash, say)
    fake.stuck = False
    assert await run(flags_off()) == ("shop/prod/flags: version 2, which holds the content, deployed (deployment 2, "
                                      "already under way)")
    assert "StopDeployment" not in run.gate.calls and len(fake.deployments["env1"]) == 2
    assert fake.on() == ("2", "COMPLETE", OFF)


async def test_appconfig_a_version_made_between_read_and_write_is_not_shadowed(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig

    async def release() -> None:
        fake.hosted({"hybrid-routing": {"enabled": True, "new": 1}})
    run.gate.after["ListDeployments"] = release  # after the latest version was read, before the write
    failed = await run.fails(flags_off())
    assert failed.detail == ("shop/prod/flags: a version was made by somebody else since version 1 was read: "
                             "not shadowed")
    assert not failed.retryable and "StartDeployment" not in run.gate.calls
    assert len(fake.versions["prof1"]) == 2 and fake.on() == ("1", "COMPLETE", ON)


async def test_appconfig_a_deployment_that_never_completes_or_rolls_back_fails(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    fake.stuck = True
    failed = await run.fails(flags_off())
    assert failed.detail.startswith("shop/prod/flags = ") and failed.detail.endswith(
        ": not done within 1s; last seen: deployment 2 DEPLOYING (0%)")
    assert failed.unknown
    fake.stuck, fake.roll_back = False, True
    fake.deployments["env1"][-1]["State"] = "ROLLED_BACK"
    failed = await run.fails(flags_off())
    assert failed.detail == ("shop/prod/flags: AppConfig rolled deployment 3 back (an alarm of the environment, or "
                             "somebody stopped it)")


async def test_appconfig_denied_by_iam_names_the_call_and_the_profile(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    run.gate.deny.add("StartDeployment")
    failed = await run.fails(flags_off())
    assert failed.detail.startswith("StartDeployment shop/prod/flags: AccessDeniedException: User: ")
    assert fake.on() == ("1", "COMPLETE", ON)


async def test_appconfig_probe_reads_and_names_what_is_missing(appconfig: tuple[Any, Run]) -> None:
    fake, run = appconfig
    assert await run.probe(flags_off()) == (True, "environment on version 1; the latest version (1) does not hold "
                                                  "the content")
    assert await run.probe(flags_off(environment="staging")) == \
        (False, "ListEnvironments shop: no 'staging' (by ID or name)")
    assert not {"CreateHostedConfigurationVersion", "StartDeployment", "StopDeployment"} & set(run.gate.calls)
