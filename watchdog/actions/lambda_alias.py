"""`lambda_alias`: point a Lambda alias at a version and clear its weighted routing, then read it back until
GetAlias shows that version and no routing.

`version: previous` means the version the alias should fall back to: while a weighted rollout is under way
(RoutingConfig sends a share to a new version) it is the alias's own primary version, with the routing cleared;
otherwise it is the highest published version below the alias's current one. The write carries the RevisionId
read with the alias, so a change made in between (a deploy, a person) fails the call instead of being overwritten.

Repeating the action must not walk the alias back one more version each time (after a crash, say): the write
leaves a marker at the end of the alias's description, `[rollback-watchdog: 7 → 6]` (where it came from, or the
canary whose routing it cleared, and where it went), and a later `previous` that finds the alias still where the
marker says it went has nothing to do.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from watchdog.actions.aws import AwsAction, AwsRunner, Progress, aws_kind
from watchdog.actions.base import ActionFailed
from watchdog.actions.kind import Verdict

_MARK = re.compile(r"\s*\[rollback-watchdog: (\S+) → (\d+)\]")
DESCRIPTION_MAX = 256


class LambdaAliasAction(AwsAction):
    type: Literal["lambda_alias"]
    function: str = Field(min_length=1, max_length=170)
    alias: str = Field("live", min_length=1, max_length=128)
    version: str = "previous"

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not (v == "previous" or v.isdigit() and int(v) >= 1):
            raise ValueError("version is `previous` or a published version number")
        return v

    def describe(self) -> str:
        return self.name or f"alias {self.alias} of {self.function} to {self.version}"


def _routing(alias: dict[str, Any]) -> dict[str, float]:
    return dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def _marked(alias: dict[str, Any]) -> tuple[str, int] | None:
    """The marker's versions: the one a rollback moved the alias from (or the canary it cleared) and the one it
    moved it to."""
    m = _MARK.search(alias.get("Description") or "")
    return (m[1], int(m[2])) if m else None


def described(description: str, came_from: str, went_to: int) -> str:
    """The alias's description with the marker at its end, the rest cut so that the marker always fits."""
    mark = f"[rollback-watchdog: {came_from} → {went_to}]"
    rest = _MARK.sub("", description).strip()[:DESCRIPTION_MAX - len(mark) - 1]
    return f"{rest} {mark}".strip()


def _number(alias: dict[str, Any], a: LambdaAliasAction) -> int:
    version = str(alias.get("FunctionVersion"))
    if not version.isdigit():  # $LATEST: no published version to count back from
        raise ActionFailed(f"alias {a.alias} of {a.function} points at {version}, not a published version: "
                           "`previous` has nothing to go back from (give `version`)", retryable=False)
    return int(version)


class LambdaAliasRunner(AwsRunner[LambdaAliasAction]):
    service = "lambda"
    model = LambdaAliasAction

    async def _alias(self, a: LambdaAliasAction) -> dict[str, Any]:
        got: dict[str, Any] = await self.call(a, "GetAlias", f"{a.function}:{a.alias}", FunctionName=a.function,
                                              Name=a.alias)
        return got

    async def _versions(self, a: LambdaAliasAction) -> list[int]:
        out, marker = [], None
        while True:
            kw: dict[str, Any] = {"FunctionName": a.function, **({"Marker": marker} if marker else {})}
            got = await self.call(a, "ListVersionsByFunction", a.function, **kw)
            out += [int(v["Version"]) for v in got.get("Versions", []) if str(v.get("Version")).isdigit()]
            marker = got.get("NextMarker")
            if not marker:
                return sorted(out)

    async def _before(self, a: LambdaAliasAction, version: int) -> int | None:
        older = [v for v in await self._versions(a) if v < version]
        return older[-1] if older else None

    async def target(self, a: LambdaAliasAction, alias: dict[str, Any]) -> tuple[int, str]:
        """The version to point at, and why."""
        if a.version != "previous":
            return int(a.version), "as configured"
        current = _number(alias, a)
        if _routing(alias):
            return current, "its primary version (a weighted rollout was under way)"
        marked = _marked(alias)
        if marked is not None and marked[1] == current:  # the alias is where an attempt before this one left it
            return current, f"already rolled back from {marked[0]}"
        previous = await self._before(a, current)
        if previous is None:
            raise ActionFailed(f"{a.function}: no published version below {current} to roll back to",
                               retryable=False)
        return previous, f"the version before {current}"

    async def act(self, a: LambdaAliasAction, progress: Progress) -> str:
        alias = await self._alias(a)
        current, routing = alias.get("FunctionVersion"), _routing(alias)
        target, why = await self.target(a, alias)
        where = f"alias {a.alias} of {a.function}"
        if str(current) == str(target) and not routing:
            return f"{where}: already on {target}, no routing ({why})"
        # Marked with where it came from (the canary, when only its routing is cleared) and where it goes, so that
        # a repeat finds it done and never walks back one more version.
        came_from = str(max(map(int, routing))) if routing and str(current) == str(target) else str(current)
        try:
            await self.call(a, "UpdateAlias", where, write=True, FunctionName=a.function, Name=a.alias,
                            FunctionVersion=str(target), RoutingConfig={"AdditionalVersionWeights": {}},
                            Description=described(alias.get("Description") or "", came_from, target),
                            RevisionId=alias["RevisionId"])
        except ActionFailed as exc:
            if "PreconditionFailed" in exc.detail:
                raise ActionFailed(f"{where}: changed by somebody else since it was read (revision "
                                   f"{alias['RevisionId']}): not overwritten", retryable=False) from None
            raise

        async def shown() -> tuple[bool, str]:
            now = await self._alias(a)
            weights = _routing(now)
            return str(now.get("FunctionVersion")) == str(target) and not weights, \
                f"on {now.get('FunctionVersion')}" + (f", routing {weights}" if weights else ", no routing")

        await self.until(a, progress, shown)
        cleared = ", routing cleared" if routing else ""
        return f"{where}: {current} → {target}{cleared} ({why})"

    async def probe(self, a: LambdaAliasAction) -> Verdict:
        alias = await self._alias(a)
        target, why = await self.target(a, alias)
        return True, f"alias {a.alias} on {alias.get('FunctionVersion')}; a rollback would point it at {target} ({why})"


KIND = aws_kind(LambdaAliasAction, LambdaAliasRunner, (
    "lambda:GetAlias", "lambda:ListVersionsByFunction", "lambda:UpdateAlias",
))
