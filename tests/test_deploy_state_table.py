"""deploy/cloudformation/state-table.yaml: the shared state table of several watchdogs. Parsed as YAML and checked
against the key schema the daemon uses (watchdog/state/dynamodb/table.py), linted by cfn-lint against
CloudFormation's own specification, then deployed on moto's CloudFormation: the daemon's `state init` finds the
table it made with the expected keys, and the backend opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from watchdog.cli.main import main
from watchdog.state.dynamodb.table import KEYS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "state-table.yaml"


def template() -> dict[str, Any]:
    doc = yaml.safe_load(TEMPLATE.read_text())  # long-form intrinsics only: a plain YAML parser reads it
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    return doc


def test_the_table_has_the_daemons_keys_and_outlives_its_stack() -> None:
    table = template()["Resources"]["StateTable"]
    props = table["Properties"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert props["KeySchema"] == KEYS
    assert props["AttributeDefinitions"] == [{"AttributeName": k["AttributeName"], "AttributeType": "S"} for k in KEYS]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TimeToLiveSpecification" not in props  # nothing may rest on TTL (docs/ha.md)
    assert template()["Parameters"]["TableName"]["Default"] == "rollback-watchdog"


def test_cloudformation_lint_finds_nothing() -> None:
    from cfnlint.api import lint_file

    assert [str(m) for m in lint_file(TEMPLATE)] == []


def test_the_deployed_table_is_what_state_init_expects(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from configs import hybrid_routing, write

    import uuid

    name, stack = f"from-the-template-{uuid.uuid4().hex[:8]}", f"watchdog-state-{uuid.uuid4().hex[:8]}"
    cfn = boto3.client("cloudformation", endpoint_url=moto_url)
    cfn.create_stack(StackName=stack, TemplateBody=TEMPLATE.read_text(),
                     Parameters=[{"ParameterKey": "TableName", "ParameterValue": name}])
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    assert outputs == [{"OutputKey": "TableName", "OutputValue": name, "Description": "watchdog.state.table"}]
    path = write(tmp_path, hybrid_routing(aws_endpoint=moto_url, watchdog={"state": {"type": "dynamodb", "table": name}}))
    assert main(["state", "init", "-c", path]) == 0
    assert capsys.readouterr().out == f"state table {name}: exists with the expected keys\n"
    assert main(["incidents", "verify-log", "-c", path]) == 0
