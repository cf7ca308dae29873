"""`ssm_parameter`: a feature flag in Parameter Store set to a value, then read back until GetParameter shows it.

Parameter Store takes no version with a write, so a change made between our read and our write cannot be refused;
it is caught instead: PutParameter answers the version it made, which must be the one read plus one. Anything else
means somebody else wrote in between, and the action fails (and the level escalates) rather than claim a flag
state nobody checked. A parameter that is already at the value is left alone (no new version), which is also what
makes a repeat after a crash harmless.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from watchdog.actions.aws import AwsAction, AwsRunner, Progress, aws_kind
from watchdog.actions.base import ActionFailed
from watchdog.actions.kind import Verdict


class SsmParameterAction(AwsAction):
    type: Literal["ssm_parameter"]
    name: str = Field(min_length=1, max_length=2048)  # the parameter's (SPEC 3.2), not the step's
    value: str = Field(min_length=1, max_length=8192)

    def describe(self) -> str:
        return f"{self.name} = {self.value!r}"


def _shown(p: dict[str, Any]) -> str:
    return "(a SecureString)" if p.get("Type") == "SecureString" else repr(p.get("Value"))


class SsmParameterRunner(AwsRunner[SsmParameterAction]):
    service = "ssm"
    model = SsmParameterAction

    async def _read(self, a: SsmParameterAction) -> dict[str, Any]:
        answer = await self.call(a, "GetParameter", a.name, Name=a.name, WithDecryption=True)
        parameter: dict[str, Any] = answer["Parameter"]
        return parameter

    async def act(self, a: SsmParameterAction, progress: Progress) -> str:
        before = await self._read(a)
        version = int(before["Version"])
        if before.get("Value") == a.value:
            return f"{a.name}: already {_shown(before)} (version {version}), left as it is"
        # Written as it is kept: a SecureString under its own KMS key (left out, PutParameter would re-encrypt it
        # with the account's default key), its tier and data type; GetParameter does not say them.
        found = await self.call(a, "DescribeParameters", a.name,
                                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [a.name]}])
        meta: dict[str, Any] = next(iter(found.get("Parameters", [])), {})
        kept = {k: meta[k] for k in ("Tier", "DataType") if meta.get(k)}
        if before.get("Type") == "SecureString" and meta.get("KeyId"):
            kept["KeyId"] = meta["KeyId"]
        put = await self.call(a, "PutParameter", a.name, write=True, Name=a.name, Value=a.value,
                              Type=before.get("Type", "String"), Overwrite=True, **kept)
        made = int(put["Version"])
        if made != version + 1:
            raise ActionFailed(f"{a.name}: changed by somebody else between the read (version {version}) and "
                               f"the write (which made version {made}): not claimed done", retryable=False)

        async def shown() -> tuple[bool, str]:
            now = await self._read(a)
            return now.get("Value") == a.value and int(now["Version"]) >= made, \
                f"{_shown(now)} at version {now['Version']}"

        await self.until(a, progress, shown)
        after = {**before, "Value": a.value}
        return f"{a.name}: {_shown(before)} → {_shown(after)} (version {version} → {made})"

    async def probe(self, a: SsmParameterAction) -> Verdict:
        p = await self._read(a)
        return True, f"{a.name} readable: {p.get('Type')}, version {p.get('Version')}"


KIND = aws_kind(SsmParameterAction, SsmParameterRunner, (
    "ssm:GetParameter", "ssm:DescribeParameters", "ssm:PutParameter",
))
