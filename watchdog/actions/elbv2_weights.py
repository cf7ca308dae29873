"""`elbv2_weights`: shift an ALB listener's (or a rule's) traffic between target groups, then read it back until
DescribeListeners (DescribeRules) shows the weights.

Before shifting, every target group that is to get traffic must have a healthy target (DescribeTargetHealth), or
no health checks at all (a Lambda target's default): moving all traffic onto a group that cannot serve it would
turn a slow service into a dead one. Target groups
of the forward action that `weights` does not name get weight 0; the listener's other actions (an
authentication step before the forward, say) are kept as they are (an OIDC step's secret, which is never
read back, with UseExistingClientSecret). When the forward's group stickiness is on,
clients already pinned keep going to their old group for up to its duration: the detail says so. The API takes
no revision, so a concurrent change cannot be fenced off; the read-back shows the weights that hold.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from watchdog.actions.aws import AwsAction, AwsRunner, Progress, aws_kind
from watchdog.actions.base import ActionFailed
from watchdog.actions.kind import Verdict


class Elbv2WeightsAction(AwsAction):
    type: Literal["elbv2_weights"]
    listener_arn: str | None = Field(None, min_length=1)
    rule_arn: str | None = Field(None, min_length=1)
    weights: dict[str, int] = Field(min_length=1)  # target group ARN -> weight (0-999)

    @model_validator(mode="after")
    def _one_place(self) -> Elbv2WeightsAction:
        if (self.listener_arn is None) == (self.rule_arn is None):
            raise ValueError("give exactly one of listener_arn and rule_arn")
        if any(not 0 <= w <= 999 for w in self.weights.values()):
            raise ValueError("a weight is between 0 and 999")
        if not any(self.weights.values()):
            raise ValueError("every weight is 0: no target group would get the traffic")
        return self

    @property
    def where(self) -> str:
        return self.listener_arn or self.rule_arn or ""

    def describe(self) -> str:
        return self.name or f"weights on {_short(self.where)}: " + ", ".join(
            f"{_short(tg)} {w}" for tg, w in self.weights.items())


def _short(arn: str) -> str:
    """A target group's or listener's name from its ARN (…:targetgroup/blue/123 -> blue)."""
    parts = arn.split("/")
    if ":targetgroup/" in arn and len(parts) >= 2:
        return parts[1]
    return "/".join(parts[-3:]) if len(parts) > 3 else arn


def _forward(actions: list[dict[str, Any]]) -> dict[str, Any]:
    for act in actions:
        if act.get("Type") == "forward":
            return act
    raise ActionFailed("no forward action to weigh (its actions: "
                       + ", ".join(str(a.get("Type")) for a in actions) + ")", retryable=False)


def _kept(act: dict[str, Any]) -> dict[str, Any]:
    """Another action of the listener, written back as it is. An OIDC step's client secret is never read back
    (DescribeListeners leaves it out), so it is written back with UseExistingClientSecret, which keeps it."""
    oidc = act.get("AuthenticateOidcConfig")
    if act.get("Type") == "authenticate-oidc" and oidc is not None and "ClientSecret" not in oidc:
        return {**act, "AuthenticateOidcConfig": {**oidc, "UseExistingClientSecret": True}}
    return act


def _weights(forward: dict[str, Any]) -> dict[str, int]:
    groups = (forward.get("ForwardConfig") or {}).get("TargetGroups")
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    return {forward["TargetGroupArn"]: 1} if forward.get("TargetGroupArn") else {}


def _said(weights: dict[str, int]) -> str:
    return ", ".join(f"{_short(tg)} {w}" for tg, w in sorted(weights.items(), key=lambda kv: _short(kv[0])))


class Elbv2WeightsRunner(AwsRunner[Elbv2WeightsAction]):
    service = "elbv2"
    model = Elbv2WeightsAction

    async def _actions(self, a: Elbv2WeightsAction) -> list[dict[str, Any]]:
        if a.listener_arn:
            got = await self.call(a, "DescribeListeners", a.where, ListenerArns=[a.listener_arn])
            return list(got["Listeners"][0].get("DefaultActions", []))
        got = await self.call(a, "DescribeRules", a.where, RuleArns=[a.rule_arn])
        return list(got["Rules"][0].get("Actions", []))

    async def _healthy(self, a: Elbv2WeightsAction) -> None:
        for tg, weight in a.weights.items():
            if weight == 0:
                continue
            got = await self.call(a, "DescribeTargetHealth", tg, TargetGroupArn=tg)
            health = [d.get("TargetHealth", {}) for d in got.get("TargetHealthDescriptions", [])]
            states = [h.get("State") for h in health]
            # A group without health checks (a Lambda target's default) reports its targets `unavailable`, with
            # this reason: nothing says they cannot serve, so they count as serving.
            if any(h.get("State") == "unavailable" and h.get("Reason") == "Target.HealthCheckDisabled" for h in health):
                continue
            if "healthy" not in states:
                seen = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(map(str, states)))) or "no targets"
                raise ActionFailed(f"target group {_short(tg)} has no healthy target ({seen}): traffic not shifted")

    def _wanted(self, a: Elbv2WeightsAction, now: dict[str, int]) -> dict[str, int]:
        return {**{tg: 0 for tg in now}, **a.weights}

    async def act(self, a: Elbv2WeightsAction, progress: Progress) -> str:
        actions = await self._actions(a)
        forward = _forward(actions)
        before = _weights(forward)
        wanted = self._wanted(a, before)
        sticky = ((forward.get("ForwardConfig") or {}).get("TargetGroupStickinessConfig") or {})
        warn = (f"; warning: group stickiness keeps pinned clients on their old group for up to "
                f"{sticky.get('DurationSeconds', '?')}s") if sticky.get("Enabled") else ""
        if before == wanted:
            return f"{_short(a.where)}: already {_said(wanted)}{warn}"
        await self._healthy(a)
        config: dict[str, Any] = {"TargetGroups": [{"TargetGroupArn": tg, "Weight": w} for tg, w in wanted.items()]}
        if sticky:
            config["TargetGroupStickinessConfig"] = sticky
        new = [{k: v for k, v in act.items() if k != "TargetGroupArn"} | {"ForwardConfig": config}
               if act is forward else _kept(act) for act in actions]
        if a.listener_arn:
            await self.call(a, "ModifyListener", a.where, write=True, ListenerArn=a.listener_arn, DefaultActions=new)
        else:
            await self.call(a, "ModifyRule", a.where, write=True, RuleArn=a.rule_arn, Actions=new)

        async def shown() -> tuple[bool, str]:
            now = _weights(_forward(await self._actions(a)))
            return now == wanted, _said(now)

        await self.until(a, progress, shown)
        return f"{_short(a.where)}: {_said(before)} → {_said(wanted)}{warn}"

    async def probe(self, a: Elbv2WeightsAction) -> Verdict:
        _forward(await self._actions(a))
        await self.call(a, "DescribeTargetGroups", ", ".join(map(_short, a.weights)), TargetGroupArns=list(a.weights))
        return True, f"{_short(a.where)} readable; its target groups exist"


KIND = aws_kind(Elbv2WeightsAction, Elbv2WeightsRunner, (
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyRule",
))
