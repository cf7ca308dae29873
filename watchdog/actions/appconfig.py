"""`appconfig`: feature flags in AWS AppConfig set to `content`, deployed to the environment, and read back until
the deployment is COMPLETE.

The content becomes a new hosted configuration version unless the latest one already holds it; that write carries
LatestVersionNumber, the latest version read, so a version somebody else made in between fails the call
(ConflictException) instead of being shadowed. A deployment of the profile under way in the environment (the
bad one, most likely) is stopped first (StopDeployment with AllowRevert, which rolls back one that is baking
too) and waited on until it has rolled back, since AppConfig runs one deployment per environment at a time; one
already rolling back is only waited on. One under way that deploys the content already (an attempt before
this one) is waited on, not stopped. Then StartDeployment with `strategy` (default `AppConfig.AllAtOnce`: a
rollback should not bake for ten minutes) and GetDeployment until COMPLETE; ROLLED_BACK or REVERTED (an alarm of
the environment, or somebody stopping it) fails the action. The environment already on a version holding the content has nothing to
do, which is what makes a repeat harmless.

`application`, `environment` and `profile` take an ID or a name.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from watchdog.actions.aws import AwsAction, AwsRunner, Progress, aws_kind
from watchdog.actions.base import ActionFailed
from watchdog.actions.kind import Verdict

UNDER_WAY = ("DEPLOYING", "BAKING", "VALIDATING")  # StopDeployment (with AllowRevert) rolls these back


class AppConfigAction(AwsAction):
    type: Literal["appconfig"]
    application: str = Field(min_length=1)
    environment: str = Field(min_length=1)
    profile: str = Field(min_length=1)
    content: dict[str, Any]
    strategy: str = Field("AppConfig.AllAtOnce", min_length=1)

    def describe(self) -> str:
        return self.name or f"{self.application}/{self.environment}/{self.profile} = {_text(self.content)}"


def _text(content: Any) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


class AppConfigRunner(AwsRunner[AppConfigAction]):
    service = "appconfig"
    model = AppConfigAction

    async def _items(self, a: AppConfigAction, op: str, what: str, **kw: Any) -> list[dict[str, Any]]:
        out, token = [], None
        while True:
            got = await self.call(a, op, what, **kw, **({"NextToken": token} if token else {}))
            out += got.get("Items", [])
            token = got.get("NextToken")
            if not token:
                return out

    async def _named(self, a: AppConfigAction, op: str, what: str, wanted: str, **kw: Any) -> dict[str, Any]:
        for item in await self._items(a, op, what, **kw):
            if wanted in (item.get("Id"), item.get("Name")):
                return item
        raise ActionFailed(f"{op} {what}: no {wanted!r} (by ID or name)", retryable=False)

    async def _ids(self, a: AppConfigAction) -> tuple[str, str, str, str]:
        """The application's, environment's and profile's IDs, and the profile's name (what deployments show)."""
        app = str((await self._named(a, "ListApplications", "applications", a.application))["Id"])
        env = str((await self._named(a, "ListEnvironments", a.application, a.environment, ApplicationId=app))["Id"])
        prof = await self._named(a, "ListConfigurationProfiles", a.application, a.profile, ApplicationId=app)
        return app, env, str(prof["Id"]), str(prof.get("Name"))

    async def _latest(self, a: AppConfigAction, app: str, prof: str) -> tuple[int | None, Any]:
        """The latest hosted version and its content (None, None when there is none)."""
        items = await self._items(a, "ListHostedConfigurationVersions", a.profile, ApplicationId=app,
                                  ConfigurationProfileId=prof)
        if not items:
            return None, None
        version = int(max(int(i["VersionNumber"]) for i in items))
        body = await self.call(a, "GetHostedConfigurationVersion", f"{a.profile} version {version}",
                               ApplicationId=app, ConfigurationProfileId=prof, VersionNumber=version)
        raw = body.get("Content")
        raw = await raw.read() if hasattr(raw, "read") else raw
        try:
            return version, json.loads(raw or b"null")
        except ValueError:
            return version, None  # not JSON: not the content wanted, whatever it is

    async def _deployments(self, a: AppConfigAction, app: str, env: str, name: str) -> list[dict[str, Any]]:
        """The environment's deployments of this profile, newest first (ListDeployments answers newest first;
        the first 50 are enough to find the newest of one profile in all but a crowded environment)."""
        got = await self.call(a, "ListDeployments", f"{a.application}/{a.environment}", ApplicationId=app,
                              EnvironmentId=env, MaxResults=50)
        ours = [d for d in got.get("Items", []) if d.get("ConfigurationName") == name]
        return sorted(ours, key=lambda d: int(d.get("DeploymentNumber", 0)), reverse=True)

    async def _until(self, a: AppConfigAction, progress: Progress, app: str, env: str, number: int,
                     ended: tuple[str, ...], failed: tuple[str, ...] = ()) -> str:
        """GetDeployment `number` until its state is one of `ended` (ActionFailed on one of `failed`)."""
        where = f"{a.application}/{a.environment}/{a.profile} deployment {number}"

        async def shown() -> tuple[bool, str]:
            got = await self.call(a, "GetDeployment", where, ApplicationId=app, EnvironmentId=env,
                                  DeploymentNumber=number)
            state = str(got.get("State"))
            if state in failed:
                raise ActionFailed(f"{a.application}/{a.environment}/{a.profile}: AppConfig rolled deployment "
                                   f"{number} back (an alarm of the environment, or somebody stopped it)",
                                   retryable=False, unknown=True)
            return state in ended, f"deployment {number} {state} ({got.get('PercentageComplete', 0):g}%)"

        return await self.until(a, progress, shown)

    async def act(self, a: AppConfigAction, progress: Progress) -> str:
        app, env, prof, name = await self._ids(a)
        where = f"{a.application}/{a.environment}/{a.profile}"
        latest, content = await self._latest(a, app, prof)
        deployments = await self._deployments(a, app, env, name)
        newest = deployments[0] if deployments else {}
        before, state = newest.get("ConfigurationVersion", "none"), newest.get("State")
        ours = content == a.content and str(before) == str(latest)
        if ours and state == "COMPLETE":
            return f"{where}: already on version {latest}, which holds the content"
        if ours and state in UNDER_WAY:  # the content on its way already (an attempt before this one): wait on it
            number = int(newest["DeploymentNumber"])
            await self._until(a, progress, app, env, number, ("COMPLETE",), ("ROLLED_BACK", "REVERTED"))
            return f"{where}: version {latest}, which holds the content, deployed (deployment {number}, already " \
                   "under way)"
        stopped = ""
        if state in UNDER_WAY or state == "ROLLING_BACK":
            # One deployment per environment at a time: the one under way (most likely the bad one) goes first.
            number = int(newest["DeploymentNumber"])
            if state != "ROLLING_BACK":  # AllowRevert: a deployment past DEPLOYING (baking) can be stopped too
                await self.call(a, "StopDeployment", f"{where} deployment {number}", write=True, ApplicationId=app,
                                EnvironmentId=env, DeploymentNumber=number, AllowRevert=True)
            await self._until(a, progress, app, env, number, ("ROLLED_BACK", "REVERTED", "COMPLETE"))
            stopped = f", deployment {number} of version {before} stopped"
        version = latest
        if content != a.content:
            kw: dict[str, Any] = {"LatestVersionNumber": latest} if latest is not None else {}
            try:
                made = await self.call(a, "CreateHostedConfigurationVersion", where, write=True, ApplicationId=app,
                                       ConfigurationProfileId=prof, Content=_text(a.content).encode(),
                                       ContentType="application/json", Description="rollback-watchdog", **kw)
            except ActionFailed as exc:
                if "ConflictException" in exc.detail:
                    raise ActionFailed(f"{where}: a version was made by somebody else since version {latest} was "
                                       "read: not shadowed", retryable=False) from None
                raise
            version = int(made["VersionNumber"])
        started = await self.call(a, "StartDeployment", where, write=True, ApplicationId=app, EnvironmentId=env,
                                  DeploymentStrategyId=a.strategy, ConfigurationProfileId=prof,
                                  ConfigurationVersion=str(version), Description="rollback-watchdog")
        number = int(started["DeploymentNumber"])
        await self._until(a, progress, app, env, number, ("COMPLETE",), ("ROLLED_BACK", "REVERTED"))
        return f"{where}: version {before} → {version} deployed ({a.strategy}){stopped}"

    async def probe(self, a: AppConfigAction) -> Verdict:
        app, env, prof, name = await self._ids(a)
        latest, content = await self._latest(a, app, prof)
        deployments = await self._deployments(a, app, env, name)
        on = deployments[0].get("ConfigurationVersion", "none") if deployments else "none"
        same = "holds" if content == a.content else "does not hold"
        return True, f"environment on version {on}; the latest version ({latest}) {same} the content"


KIND = aws_kind(AppConfigAction, AppConfigRunner, (
    "appconfig:ListApplications", "appconfig:ListEnvironments", "appconfig:ListConfigurationProfiles",
    "appconfig:ListHostedConfigurationVersions", "appconfig:GetHostedConfigurationVersion",
    "appconfig:ListDeployments", "appconfig:StopDeployment", "appconfig:CreateHostedConfigurationVersion",
    "appconfig:StartDeployment", "appconfig:GetDeployment",
))
