"""AWS resources made in moto for the AWS action tests: a flag in Parameter Store, an ALB with two target groups
(the safe one with a healthy target), a Lambda function with published versions and an alias. Each test gives
its own names (moto's state is shared by the session's tests)."""

from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3


def client(service: str, url: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, region_name=region, endpoint_url=url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Alb:
    listener: str
    blue: str  # the target group taking the traffic now
    green: str  # the safe one (a healthy target registered)
    empty: str  # a target group with no target at all
    rule: str  # a listener rule forwarding to blue


def alb(url: str, region: str = "us-east-1", sticky: int | None = None) -> Alb:
    ec2, elb = client("ec2", url, region), client("elbv2", url, region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{z}")["Subnet"]
               ["SubnetId"] for i, z in enumerate("ab")]
    lb = elb.create_load_balancer(Name=unique("alb"), Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {}
    for name in ("blue", "green", "empty"):
        groups[name] = elb.create_target_group(Name=unique(name), Protocol="HTTP", Port=80, VpcId=vpc,
                                               TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    for name in ("blue", "green"):
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnets[0])["Instances"][0]
        elb.register_targets(TargetGroupArn=groups[name], Targets=[{"Id": instance["InstanceId"], "Port": 80}])
    forward: dict[str, Any] = {"TargetGroups": [{"TargetGroupArn": groups["blue"], "Weight": 100},
                                                {"TargetGroupArn": groups["green"], "Weight": 0}]}
    if sticky is not None:
        forward["TargetGroupStickinessConfig"] = {"Enabled": True, "DurationSeconds": sticky}
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                   DefaultActions=[{"Type": "forward", "ForwardConfig": forward}])
    arn = listener["Listeners"][0]["ListenerArn"]
    rule = elb.create_rule(ListenerArn=arn, Priority=10, Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                           Actions=[{"Type": "forward", "ForwardConfig": forward}])["Rules"][0]["RuleArn"]
    return Alb(arn, groups["blue"], groups["green"], groups["empty"], rule)


def weights(url: str, arn: str, region: str = "us-east-1") -> dict[str, int]:
    """The forward's weights as ELBv2 shows them (a listener's default action, or a rule's)."""
    elb = client("elbv2", url, region)
    if ":listener-rule/" in arn:
        acts = elb.describe_rules(RuleArns=[arn])["Rules"][0]["Actions"]
    else:
        acts = elb.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"]
    forward = next(a for a in acts if a["Type"] == "forward")
    return {g["TargetGroupArn"]: g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


def function(url: str, versions: int, alias_on: int, region: str = "us-east-1",
             weights: dict[str, float] | None = None) -> str:
    """A function with `versions` published versions and an alias `live` on `alias_on` (routing: `weights`)."""
    iam, lam = client("iam", url, region), client("lambda", url, region)
    role = iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    name = unique("fn")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
                        Code={"ZipFile": _zip()})
    for k in range(versions):
        lam.update_function_configuration(FunctionName=name, Description=f"build {k + 1}")
        lam.publish_version(FunctionName=name, Description=f"build {k + 1}")
    kw: dict[str, Any] = {"RoutingConfig": {"AdditionalVersionWeights": weights}} if weights else {}
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=str(alias_on), **kw)
    return name


def alias(url: str, name: str, region: str = "us-east-1") -> dict[str, Any]:
    got: dict[str, Any] = client("lambda", url, region).get_alias(FunctionName=name, Name="live")
    return got
