"""botocore's session, parsers and aioboto3 load with the first AWS client, not with every command that reads a
config (issue 22: a replay from its cache opens no client, and was 0.1 s slower for loading them). A fresh
interpreter (a test process has imported everything already) loads the shipped config.yaml, which reads
CloudWatch, and the modules `run` and `replay` are made of, and says which it holds; then it opens a client
on a local endpoint that is never called, and they are there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_lazy_kinds import ENV

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["aioboto3", "boto3", "aiobotocore.session", "botocore.session", "botocore.parsers", "botocore.client"]

PROBE = r"""
import asyncio, json, sys
from contextlib import AsyncExitStack
from datetime import timedelta
import watchdog.cli.main, watchdog.replay.command, watchdog.runtime.wiring  # what run and replay are made of
from watchdog.config import load_config
from watchdog.config.models import AwsSection
from watchdog.support.aws import aws_client
cfg = load_config(sys.argv[1])
before = sorted(sys.modules)
async def one_client():
    async with AsyncExitStack() as stack:
        await aws_client(stack, "cloudwatch", "us-east-1", AwsSection(region="us-east-1",
                         endpoint_url="http://127.0.0.1:9"), timedelta(seconds=1))
asyncio.run(one_client())
print(json.dumps({"before": before, "after": sorted(sys.modules)}))
"""


def test_the_aws_libraries_load_with_the_first_client_not_with_the_config() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "config.yaml")], cwd=ROOT,
                       env={**os.environ, **ENV, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert [m for m in HEAVY if m in seen["before"]] == []
    assert [m for m in HEAVY if m not in seen["after"]] == []
