"""What the AWS action kinds share: a client per region opened on first use and closed with the runner, every call
failing as one line that names the call and the resource, and the read-back that waits, within the action's
`timeout`, until the resource shows the state the action wants.

An AWS action is done when AWS shows it done, not when the write call returned: each kind acts, then reads the
resource back every `read_back_every` until it shows the wanted state. Where the API takes a token read before
the write (a revision, a version), the write carries it, so a change made by someone else in between fails the
call instead of being overwritten. An attempt that may have taken effect (a write cut off, a 5xx after it went
out, the wanted state not reached in time) is `unknown`: the executor repeats it only for an idempotent action.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar, get_args

from watchdog.actions.base import ActionFailed, Step
from watchdog.actions.kind import ActionKind, Probing, RunnerDeps, Verdict
from watchdog.config.models import Action, AwsSection
from watchdog.config.types import Interval, Timeout

# One request's own limit: the action's `timeout` bounds the whole attempt, however many reads it takes.
REQUEST_TIMEOUT = timedelta(seconds=30)


class AwsAction(Action):
    """The keys every AWS action has; a kind's model adds its `type` and its resource."""

    region: str | None = None  # default: `aws.region`
    timeout: Timeout = timedelta(minutes=2)  # the write and the read-back together
    read_back_every: Interval = timedelta(seconds=2)
    idempotent: bool = True


A = TypeVar("A", bound=AwsAction)


def operation(op: str) -> str:
    """The boto3 method of an API operation: PutParameter -> put_parameter."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in op).lstrip("_")


class Progress:
    """What the resource showed last while being read back (said when the wanted state never comes), and
    whether a write has been sent: one cut off by the timeout may have taken effect."""

    def __init__(self) -> None:
        self.seen = "nothing read yet"
        self.written = False


# The attempt under way in this task: one runner may run two targets' actions at once, each in its own task.
_ATTEMPT: ContextVar[Progress | None] = ContextVar("aws_attempt", default=None)


class AwsRunner(Generic[A]):
    """The runner of one AWS kind: `act` (the kind's) writes and reads back; this class gives it clients and
    calls. `calls` lists every operation sent, in order (what deploy/iam/policy.json must grant)."""

    service: ClassVar[str]
    model: ClassVar[type[AwsAction]]

    def __init__(self, deps: RunnerDeps):
        self._aws: AwsSection = deps.aws
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self.calls: list[str] = []

    async def start(self) -> None:
        return None  # a client is opened with the first action of its region: a config without one loads no AWS

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()

    async def _client(self, action: AwsAction) -> Any:
        from watchdog.support.aws import aws_client  # aioboto3 with the first AWS action, not with every runtime

        region = action.region or self._aws.region
        if region not in self._clients:
            self._clients[region] = await aws_client(self._stack, self.service, region, self._aws, REQUEST_TIMEOUT)
        return self._clients[region]

    async def call(self, action: AwsAction, op: str, what: str, *, write: bool = False, **kwargs: Any) -> Any:
        """One API call; any failure an ActionFailed naming `op` and `what` (the resource)."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

        from watchdog.support.aws import client_error, is_retryable, response_parser_error

        client = await self._client(action)
        self.calls.append(op)
        attempt = _ATTEMPT.get()
        if write and attempt is not None:
            attempt.written = True  # from here on, the outcome of a cut attempt is unknown
        try:
            answer: dict[str, Any] = await getattr(client, operation(op))(**kwargs)
            return answer
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise ActionFailed(f"{op} {what}: {client_error(exc)}", retryable=is_retryable(exc),
                               unknown=write and status >= 500) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:  # never connected: nothing went out
            raise ActionFailed(f"{op} {what}: {type(exc).__name__}") from None
        except response_parser_error():
            raise ActionFailed(f"{op} {what}: the answer could not be parsed", unknown=write) from None
        except (BotoCoreError, OSError) as exc:  # a timeout or a broken connection after the request went out
            raise ActionFailed(f"{op} {what}: {type(exc).__name__}", unknown=write) from None

    async def run(self, action: Step) -> str:
        if not isinstance(action, self.model):
            raise TypeError(f"the {self.service} runner cannot run a {action.type} step")
        progress = Progress()
        token = _ATTEMPT.set(progress)
        try:
            async with asyncio.timeout(action.timeout.total_seconds()):
                return await self.act(action, progress)  # type: ignore[arg-type]
        except TimeoutError:
            said = "not done" if progress.written else "not written"
            raise ActionFailed(f"{action.describe()}: {said} within {action.timeout.total_seconds():g}s; "
                               f"last seen: {progress.seen}", unknown=progress.written) from None
        finally:
            _ATTEMPT.reset(token)

    async def act(self, action: A, progress: Progress) -> str:
        raise NotImplementedError

    async def until(self, action: A, progress: Progress, read: Callable[[], Awaitable[tuple[bool, str]]]) -> str:
        """Read the resource back until it shows the wanted state; what it shows then."""
        while True:
            done, progress.seen = await read()
            if done:
                return progress.seen
            await asyncio.sleep(action.read_back_every.total_seconds())

    async def probe(self, action: A) -> Verdict:
        """`validate`'s read-only call: the resource exists and may be read (the kind's)."""
        raise NotImplementedError


async def _probe(action: Any, probing: Probing) -> Verdict:
    """An AWS kind's probe: its runner's read-only call, under the action's timeout, failures as verdicts."""
    try:
        async with asyncio.timeout(action.timeout.total_seconds()):
            verdict: Verdict = await probing.runner.probe(action)  # type: ignore[attr-defined]
            return verdict
    except ActionFailed as exc:
        return False, exc.detail
    except TimeoutError:
        return False, f"no answer within {action.timeout.total_seconds():g}s"


def aws_kind(config: type[A], runner: Callable[[RunnerDeps], AwsRunner[A]], aws_calls: tuple[str, ...]) -> ActionKind[A]:
    """The descriptor of an AWS action kind: its `type` is its model's, its probe its runner's read."""
    [kind] = get_args(config.model_fields["type"].annotation)  # the model's `type: Literal[...]`
    return ActionKind(type=kind, config=config, factory=runner, probe=_probe, aws_calls=aws_calls)
