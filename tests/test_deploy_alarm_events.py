"""deploy/cloudformation/alarm-events.yaml: the EventBridge rule and SQS queue a `cloudwatch_alarms` source with
`queue_url:` reads. Parsed as YAML and checked statement by statement; then deployed on moto, whose EventBridge
delivers to an SQS target, and an alarm state change put on its bus reaches the queue as the source reads it.
(moto ignores AWS::SQS::QueuePolicy when it deploys: the policy is checked from the template alone, and
cfn-lint checks every resource against CloudFormation's own specification.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from watchdog.sources.alarm_book import EVENT_TYPE, from_event
from watchdog.sources.alarm_queue import RECORD_WAIT, WAIT

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "alarm-events.yaml"
POLICY = ROOT / "deploy" / "iam" / "policy.json"


def template() -> dict[str, Any]:
    doc = yaml.safe_load(TEMPLATE.read_text())  # long-form intrinsics only: a plain YAML parser reads it
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    return doc


def refs(node: Any) -> list[str]:
    """Every name a Ref or Fn::GetAtt in `node` points at."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return [node["Ref"]]
        if set(node) == {"Fn::GetAtt"}:
            return [node["Fn::GetAtt"][0]]
        return [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_names_a_resource_or_parameter() -> None:
    doc = template()
    known = set(doc["Resources"]) | set(doc.get("Parameters", {}))
    assert refs(doc) and set(refs(doc)) <= known, set(refs(doc)) - known


def test_cloudformation_lint_finds_nothing() -> None:
    # cfn-lint comes with moto's server extra (the tests' AWS); it knows every resource type's properties.
    from cfnlint.api import lint_file

    assert [str(m) for m in lint_file(TEMPLATE)] == []


def test_the_rule_sends_alarm_state_changes_and_nothing_else_to_the_queue() -> None:
    res = template()["Resources"]
    rule = res["AlarmStateChangeRule"]
    assert rule["Type"] == "AWS::Events::Rule" and rule["Properties"]["State"] == "ENABLED"
    assert rule["Properties"]["EventPattern"] == {"source": ["aws.cloudwatch"], "detail-type": [EVENT_TYPE]}
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["AlarmEventsQueue", "Arn"]}


def test_the_queue_is_long_polled_and_keeps_a_message_longer_than_a_record_takes() -> None:
    queue = template()["Resources"]["AlarmEventsQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    props = queue["Properties"]
    assert props["ReceiveMessageWaitTimeSeconds"] == WAIT.total_seconds() == 20
    # A received message must stay invisible while its record lands and it is deleted, or a second receive
    # could take it meanwhile.
    assert props["VisibilityTimeout"] > RECORD_WAIT + 10
    assert props["QueueName"] == {"Ref": "QueueName"}


def test_only_the_rule_may_send_to_the_queue_and_the_watchdog_may_read_only_that_queue() -> None:
    doc = template()
    policy = doc["Resources"]["AlarmEventsQueuePolicy"]
    assert policy["Type"] == "AWS::SQS::QueuePolicy"
    assert policy["Properties"]["Queues"] == [{"Ref": "AlarmEventsQueue"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["AlarmEventsQueue", "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["AlarmStateChangeRule", "Arn"]}}}
    # The IAM policy the watchdog runs with names the queue this template makes by default.
    name = doc["Parameters"]["QueueName"]["Default"]
    [sqs] = [s for s in json.loads(POLICY.read_text())["Statement"] if any(a.startswith("sqs:") for a in s["Action"])]
    assert sqs["Resource"] == f"arn:aws:sqs:*:*:{name}"
    assert sorted(sqs["Action"]) == ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
    assert doc["Outputs"]["QueueUrl"]["Value"] == {"Ref": "AlarmEventsQueue"}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.+QueuePolicy")
def test_deployed_an_alarm_state_change_reaches_the_queue_as_the_source_reads_it(moto_url, aws_env) -> None:
    region = "eu-south-1"  # its own default event bus: no other test's rule sees these events
    cf = boto3.client("cloudformation", region_name=region, endpoint_url=moto_url)
    cf.create_stack(StackName="alarm-events", TemplateBody=TEMPLATE.read_text(),
                    Parameters=[{"ParameterKey": "QueueName", "ParameterValue": "deploy-test-events"}])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cf.describe_stacks(StackName="alarm-events")["Stacks"][0]["Outputs"]}
    sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_url)
    attrs = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    assert attrs["ReceiveMessageWaitTimeSeconds"] == "20" and attrs["QueueArn"] == outputs["QueueArn"]
    detail = {"alarmName": "checkout-5xx", "state": {"value": "ALARM", "timestamp": "2024-01-01T00:00:00.000+0000",
                                                     "reasonData": "{}"}}
    events = boto3.client("events", region_name=region, endpoint_url=moto_url)
    events.put_events(Entries=[
        {"Source": "aws.cloudwatch", "DetailType": EVENT_TYPE, "Detail": json.dumps(detail)},
        {"Source": "aws.ec2", "DetailType": "EC2 Instance State-change Notification", "Detail": "{}"},
    ])
    got = sqs.receive_message(QueueUrl=outputs["QueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=2)["Messages"]
    assert len(got) == 1  # the EC2 event matched no pattern
    rec = from_event(got[0]["Body"])
    assert (rec.name, rec.state, rec.at.isoformat()) == ("checkout-5xx", "ALARM", "2024-01-01T00:00:00+00:00")
