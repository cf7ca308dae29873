"""The AWS action kinds on moto in server mode (`ssm_parameter`, `elbv2_weights`, `lambda_alias`), each run by its
own runner through tests/aws_gate.py, which records every operation, can deny one as IAM would, can make a
concurrent change right after one, and can give an answer as AWS does where moto is lax. Lambda's RevisionId
fencing is tested against tests/aws_fakes.py's Lambda, since moto never changes a RevisionId and accepts a stale
one (../shared/aws-emulators.md). `ecs_service` and `appconfig`: tests/test_aws_rollouts.py.

Per kind: the action changes the resource, the read-back sees it and the detail names before and after; a
concurrent change between the read and the write fails it where the API has a token (or, for Parameter Store,
where the answer shows one); the resource never reaching the wanted state fails it within `timeout`; an
IAM-denied call fails with a line naming the call and the resource; and the action run again (a repeat after a
crash) leaves the resource as one run did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from aws_fakes import lambda_fake
from aws_gate import gate
from aws_runs import FAST, Run, action, later, running
from aws_world import alb, alias, client, function, unique, weights


@pytest.fixture
async def run(moto_url: str, session: aiohttp.ClientSession) -> AsyncIterator[Run]:
    async with running(moto_url, session) as r:
        yield r


# --- ssm_parameter ---------------------------------------------------------------------------------------------

def flag(url: str, value: str = "on") -> str:
    name = f"/flags/{unique('hybrid-routing')}"
    client("ssm", url).put_parameter(Name=name, Value=value, Type="String")
    return name


def parameter(url: str, name: str) -> tuple[str, int]:
    p = client("ssm", url).get_parameter(Name=name)["Parameter"]
    return p["Value"], p["Version"]


async def test_ssm_parameter_sets_the_flag_reads_it_back_and_a_repeat_changes_nothing(run: Run, moto_url: str) -> None:
    name = flag(moto_url)
    a = action(type="ssm_parameter", name=name, value="off", **FAST)
    assert a.idempotent  # setting a value twice leaves what once does
    assert await run(a) == f"{name}: 'on' → 'off' (version 1 → 2)"
    assert parameter(moto_url, name) == ("off", 2)
    assert run.gate.calls == ["GetParameter", "DescribeParameters", "PutParameter", "GetParameter"]  # read back
    assert await run(a) == f"{name}: already 'off' (version 2), left as it is"  # after a crash, say
    assert parameter(moto_url, name) == ("off", 2)


async def test_ssm_parameter_written_by_somebody_else_between_read_and_write_fails(run: Run, moto_url: str) -> None:
    name = flag(moto_url)
    ssm = client("ssm", moto_url)
    run.gate.after["GetParameter"] = later(ssm.put_parameter, Name=name, Value="half", Overwrite=True)
    failed = await run.fails(action(type="ssm_parameter", name=name, value="off", **FAST))
    assert "changed by somebody else between the read (version 1) and the write (which made version 3)" in failed.detail
    assert not failed.retryable and not failed.unknown


async def test_ssm_parameter_never_showing_the_value_fails_within_the_timeout(run: Run, moto_url: str) -> None:
    name = flag(moto_url)
    ssm = client("ssm", moto_url)
    run.gate.after["PutParameter"] = later(ssm.put_parameter, Name=name, Value="on", Overwrite=True)
    failed = await run.fails(action(type="ssm_parameter", name=name, value="off", **FAST))
    assert failed.detail == f"{name} = 'off': not done within 1s; last seen: 'on' at version 3"
    assert failed.unknown  # it was written: repeated only because the kind is idempotent
    assert run.gate.count("GetParameter") >= 3  # read back again and again, `read_back_every` apart


async def test_ssm_parameter_denied_by_iam_names_the_call_and_the_parameter(run: Run, moto_url: str) -> None:
    name = flag(moto_url)
    run.gate.deny.add("PutParameter")
    failed = await run.fails(action(type="ssm_parameter", name=name, value="off", **FAST))
    assert failed.detail.startswith(f"PutParameter {name}: AccessDeniedException: User: ")
    assert "not authorized to perform: PutParameter" in failed.detail and not failed.retryable
    assert parameter(moto_url, name) == ("on", 1)


async def test_ssm_parameter_a_secure_string_keeps_its_own_key_tier_and_type(run: Run, moto_url: str) -> None:
    name = f"/flags/{unique('secure')}"
    ssm = client("ssm", moto_url)
    ssm.put_parameter(Name=name, Value="on", Type="SecureString", KeyId="alias/flags", Tier="Advanced")
    assert await run(action(type="ssm_parameter", name=name, value="off", **FAST)) == \
        f"{name}: (a SecureString) → (a SecureString) (version 1 → 2)"  # its value never shown
    [meta] = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
    assert (meta["KeyId"], meta["Tier"], meta["Version"]) == ("alias/flags", "Advanced", 2)
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "off"


async def test_a_write_cut_off_by_the_timeout_is_of_unknown_outcome(run: Run, moto_url: str) -> None:
    """The answer to PutParameter comes after the action's timeout: the write may have landed, so the attempt is
    `unknown` (repeated only for an idempotent action), not a write that never went out."""
    name = flag(moto_url)

    async def slow() -> None:
        await asyncio.sleep(3)
    run.gate.after["PutParameter"] = slow
    failed = await run.fails(action(type="ssm_parameter", name=name, value="off", **FAST))
    assert failed.unknown and failed.detail.startswith(f"{name} = 'off': not done within 1s; last seen: ")
    assert parameter(moto_url, name) == ("off", 2)  # it had landed


async def test_ssm_parameter_probe_reads_and_never_writes(run: Run, moto_url: str) -> None:
    name = flag(moto_url)
    assert await run.probe(action(type="ssm_parameter", name=name, value="off")) == \
        (True, f"{name} readable: String, version 1")
    ok, said = await run.probe(action(type="ssm_parameter", name="/flags/nope", value="off"))
    assert not ok and said.startswith("GetParameter /flags/nope: ParameterNotFound")
    assert "PutParameter" not in run.gate.calls and parameter(moto_url, name) == ("on", 1)


# --- elbv2_weights ---------------------------------------------------------------------------------------------

async def test_elbv2_weights_shifts_all_traffic_to_the_safe_group_and_a_repeat_changes_nothing(
        run: Run, moto_url: str) -> None:
    lb = alb(moto_url)
    a = action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100, lb.blue: 0}, **FAST)
    assert a.idempotent
    blue, green = lb.blue.split("/")[1], lb.green.split("/")[1]
    detail = await run(a)
    assert detail.endswith(f": {blue} 100, {green} 0 → {blue} 0, {green} 100")
    assert weights(moto_url, lb.listener) == {lb.blue: 0, lb.green: 100}
    assert run.gate.calls == ["DescribeListeners", "DescribeTargetHealth", "ModifyListener", "DescribeListeners"]
    assert (await run(a)).endswith(f": already {blue} 0, {green} 100")
    assert weights(moto_url, lb.listener) == {lb.blue: 0, lb.green: 100}
    # a rule the same way; a group not named gets 0
    detail = await run(action(type="elbv2_weights", rule_arn=lb.rule, weights={lb.green: 1}, **FAST))
    assert detail.endswith(f"{blue} 100, {green} 0 → {blue} 0, {green} 1")
    assert weights(moto_url, lb.rule) == {lb.blue: 0, lb.green: 1}


async def test_elbv2_weights_refuses_to_send_traffic_to_a_group_with_no_healthy_target(run: Run, moto_url: str) -> None:
    lb = alb(moto_url)
    failed = await run.fails(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.empty: 100}, **FAST))
    assert failed.detail == f"target group {lb.empty.split('/')[1]} has no healthy target (no targets): " \
                            "traffic not shifted"
    assert "ModifyListener" not in run.gate.calls
    assert weights(moto_url, lb.listener) == {lb.blue: 100, lb.green: 0}


async def test_elbv2_weights_takes_a_group_without_health_checks_as_serving(run: Run, moto_url: str) -> None:
    """A Lambda target group has no health checks by default, and ELBv2 then says its targets are `unavailable`
    (Target.HealthCheckDisabled). moto says `healthy` for every target, so the gate answers as ELBv2 does."""
    lb = alb(moto_url)
    run.gate.rewrite["DescribeTargetHealth"] = lambda body: body.replace(
        b"<State>healthy</State>", b"<State>unavailable</State><Reason>Target.HealthCheckDisabled</Reason>")
    assert (await run(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}, **FAST))
            ).endswith(f"{lb.green.split('/')[1]} 100")
    run.gate.rewrite["DescribeTargetHealth"] = lambda body: body.replace(  # a failing health check is no such thing
        b"<State>healthy</State>", b"<State>unhealthy</State><Reason>Target.FailedHealthChecks</Reason>")
    failed = await run.fails(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.blue: 100}, **FAST))
    assert failed.detail.endswith("has no healthy target (1 unhealthy): traffic not shifted")


async def test_elbv2_weights_keeps_an_oidc_step_and_its_secret(run: Run, moto_url: str) -> None:
    """ELBv2 never reads an OIDC client secret back; ModifyListener then needs UseExistingClientSecret to keep it.
    moto echoes the secret back, so the gate leaves it out as ELBv2 does."""
    lb = alb(moto_url)
    oidc = {"Issuer": "https://idp", "AuthorizationEndpoint": "https://idp/a", "TokenEndpoint": "https://idp/t",
            "UserInfoEndpoint": "https://idp/u", "ClientId": "watchdog", "ClientSecret": "s3cret"}
    client("elbv2", moto_url).modify_listener(ListenerArn=lb.listener, DefaultActions=[
        {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": oidc},
        {"Type": "forward", "Order": 2, "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": lb.blue, "Weight": 100}, {"TargetGroupArn": lb.green, "Weight": 0}]}}])
    run.gate.rewrite["DescribeListeners"] = lambda body: body.replace(b"<ClientSecret>s3cret</ClientSecret>", b"")
    await run(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}, **FAST))
    [sent] = run.gate.sent("ModifyListener")
    assert b"UseExistingClientSecret=true" in sent and b"s3cret" not in sent
    assert b"authenticate-oidc" in sent and weights(moto_url, lb.listener) == {lb.blue: 0, lb.green: 100}


async def test_elbv2_weights_says_when_stickiness_holds_clients_on_the_old_group(run: Run, moto_url: str) -> None:
    lb = alb(moto_url, sticky=600)
    detail = await run(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}, **FAST))
    assert detail.endswith("; warning: group stickiness keeps pinned clients on their old group for up to 600s")


async def test_elbv2_weights_changed_back_at_once_fails_within_the_timeout(run: Run, moto_url: str) -> None:
    lb = alb(moto_url)
    elb = client("elbv2", moto_url)
    back = [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": lb.blue, "Weight": 100},
                                                                   {"TargetGroupArn": lb.green, "Weight": 0}]}}]
    run.gate.after["ModifyListener"] = later(elb.modify_listener, ListenerArn=lb.listener, DefaultActions=back)
    failed = await run.fails(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}, **FAST))
    assert "not done within 1s; last seen: " in failed.detail and failed.detail.endswith(" 100, " +
                                                                                         lb.green.split("/")[1] + " 0")
    assert failed.unknown


async def test_elbv2_weights_denied_by_iam_names_the_call_and_the_listener(run: Run, moto_url: str) -> None:
    lb = alb(moto_url)
    run.gate.deny.add("ModifyListener")
    failed = await run.fails(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}, **FAST))
    assert failed.detail.startswith(f"ModifyListener {lb.listener}: AccessDenied: User: ")
    assert weights(moto_url, lb.listener) == {lb.blue: 100, lb.green: 0}


async def test_elbv2_weights_probe_fails_on_a_wrong_arn_in_one_line(run: Run, moto_url: str) -> None:
    lb = alb(moto_url)
    ok, said = await run.probe(action(type="elbv2_weights", listener_arn=lb.listener, weights={lb.green: 100}))
    assert ok, said
    wrong = lb.listener[:-4] + "beef"
    ok, said = await run.probe(action(type="elbv2_weights", listener_arn=wrong, weights={lb.green: 100}))
    assert not ok and said.startswith(f"DescribeListeners {wrong}: ListenerNotFound") and "\n" not in said
    assert "ModifyListener" not in run.gate.calls


# --- lambda_alias ----------------------------------------------------------------------------------------------

async def test_lambda_alias_goes_back_one_version_and_a_repeat_does_not_go_further(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=3, alias_on=3)
    a = action(type="lambda_alias", function=fn, alias="live", version="previous", **FAST)
    assert a.idempotent
    assert await run(a) == f"alias live of {fn}: 3 → 2 (the version before 3)"
    assert alias(moto_url, fn)["FunctionVersion"] == "2"
    assert await run(a) == f"alias live of {fn}: already on 2, no routing (already rolled back from 3)"
    assert alias(moto_url, fn)["FunctionVersion"] == "2"  # not walked back to 1
    # a deploy of 3 again, then a new breach: back from 3 once more
    client("lambda", moto_url).update_alias(FunctionName=fn, Name="live", FunctionVersion="3")
    assert await run(a) == f"alias live of {fn}: 3 → 2 (the version before 3)"


async def test_lambda_alias_during_a_weighted_rollout_clears_the_routing_to_the_primary(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=4, alias_on=3, weights={"4": 0.1})
    detail = await run(action(type="lambda_alias", function=fn, version="previous", **FAST))
    assert detail == f"alias live of {fn}: 3 → 3, routing cleared (its primary version (a weighted rollout was " \
                     "under way))"
    got = alias(moto_url, fn)
    assert got["FunctionVersion"] == "3" and not (got.get("RoutingConfig") or {}).get("AdditionalVersionWeights")


async def test_lambda_alias_cleared_of_a_canary_stays_there_when_repeated(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=4, alias_on=3, weights={"4": 0.1})
    a = action(type="lambda_alias", function=fn, version="previous", **FAST)
    await run(a)
    assert await run(a) == f"alias live of {fn}: already on 3, no routing (already rolled back from 4)"
    assert alias(moto_url, fn)["FunctionVersion"] == "3"  # not walked back to 2


async def test_lambda_alias_keeps_its_marker_whatever_the_description(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=3, alias_on=3)
    client("lambda", moto_url).update_alias(FunctionName=fn, Name="live", Description="d" * 256)
    a = action(type="lambda_alias", function=fn, version="previous", **FAST)
    await run(a)
    said = alias(moto_url, fn)["Description"]
    assert len(said) <= 256 and said.endswith(" [rollback-watchdog: 3 → 2]") and said.startswith("ddd")
    assert (await run(a)).endswith("(already rolled back from 3)") and alias(moto_url, fn)["FunctionVersion"] == "2"


async def test_lambda_alias_on_latest_has_no_previous(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=2, alias_on=2)
    client("lambda", moto_url).update_alias(FunctionName=fn, Name="live", FunctionVersion="$LATEST")
    failed = await run.fails(action(type="lambda_alias", function=fn, version="previous", **FAST))
    assert failed.detail == (f"alias live of {fn} points at $LATEST, not a published version: `previous` has "
                             "nothing to go back from (give `version`)") and not failed.retryable
    assert await run(action(type="lambda_alias", function=fn, version=1, **FAST)) == \
        f"alias live of {fn}: $LATEST → 1 (as configured)"


async def test_lambda_alias_to_a_named_version(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=3, alias_on=3)
    assert await run(action(type="lambda_alias", function=fn, version=1, **FAST)) == \
        f"alias live of {fn}: 3 → 1 (as configured)"
    assert alias(moto_url, fn)["FunctionVersion"] == "1"


async def test_lambda_alias_changed_between_read_and_write_is_not_overwritten(session: aiohttp.ClientSession,
                                                                               aws_env: dict[str, str]) -> None:
    """Against tests/aws_fakes.py's Lambda: moto would accept the stale RevisionId and overwrite the change."""
    async with lambda_fake() as fake, gate(fake.url) as g:
        fake.versions["shop"] = [1, 2, 3, 4]
        fake.alias("shop", "live", 3)

        async def deploy() -> None:
            fake.alias("shop", "live", 4)  # a deploy between our read and our write: a new RevisionId
        g.after["GetAlias"] = deploy
        run = Run(g, session)
        try:
            failed = await run.fails(action(type="lambda_alias", function="shop", version="previous", **FAST))
        finally:
            await run.close()
        assert not run.undeclared()
    assert failed.detail.startswith("alias live of shop: changed by somebody else since it was read (revision ")
    assert not failed.retryable
    assert fake.aliases[("shop", "live")]["FunctionVersion"] == "4"  # the deploy's change stands
    assert g.calls == ["GetAlias", "ListVersionsByFunction", "ListVersionsByFunction", "ListVersionsByFunction",
                       "UpdateAlias"]  # the versions paged two at a time


async def test_lambda_alias_set_back_at_once_fails_within_the_timeout(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=3, alias_on=3)
    lam = client("lambda", moto_url)
    run.gate.after["UpdateAlias"] = later(lam.update_alias, FunctionName=fn, Name="live", FunctionVersion="3")
    failed = await run.fails(action(type="lambda_alias", function=fn, version="previous", **FAST))
    assert failed.detail == f"alias live of {fn} to previous: not done within 1s; last seen: on 3, no routing"
    assert failed.unknown


async def test_lambda_alias_denied_by_iam_names_the_call_and_the_alias(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=2, alias_on=2)
    run.gate.deny.add("UpdateAlias")
    failed = await run.fails(action(type="lambda_alias", function=fn, version="previous", **FAST))
    assert failed.detail.startswith(f"UpdateAlias alias live of {fn}: AccessDeniedException: User: ")
    assert alias(moto_url, fn)["FunctionVersion"] == "2"


async def test_lambda_alias_probe_says_where_a_rollback_would_go(run: Run, moto_url: str) -> None:
    fn = function(moto_url, versions=3, alias_on=3)
    assert await run.probe(action(type="lambda_alias", function=fn, version="previous")) == \
        (True, "alias live on 3; a rollback would point it at 2 (the version before 3)")
    ok, said = await run.probe(action(type="lambda_alias", function="nope", version="previous"))
    assert not ok and said.startswith("GetAlias nope:live: ResourceNotFoundException")
    assert "UpdateAlias" not in run.gate.calls
