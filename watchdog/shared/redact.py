"""Secrets never leave the process: every secret value the config knows is masked.

The secrets are the config's secret-typed fields (tokens, header values, webhook
URLs, command env) and the values of `${VAR}`s whose names say they are secret
(TOKEN, SECRET, PASSWORD, KEY, WEBHOOK...), wherever they were used (a token in a
URL or an argv). Text from outside (a command's output, an error message) passes
through `Redactor.text` before it is logged, journaled, announced or served.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
_MIN_LEN = 4  # shorter values would mask innocent text everywhere


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        found: set[str] = set()
        for s in secrets:
            if len(s) < _MIN_LEN:
                continue
            found.add(s)
            # "Bearer abc": the bare token may be echoed on its own.
            scheme, _, rest = s.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token") and len(rest) >= _MIN_LEN:
                found.add(rest)
        self._secrets = sorted(found, key=len, reverse=True)  # longest first: no partial leftovers

    def text(self, value: str) -> str:
        for s in self._secrets:
            if s in value:
                value = value.replace(s, MASK)
        return value

    def value(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.value(v) for v in obj)
        return obj

    def __call__(self, logger: object, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """As a structlog processor: the last line of defence for every log line."""
        return {k: self.value(v) for k, v in event_dict.items()}


def secret_values(model: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(model, SecretStr):
        out.add(model.get_secret_value())
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            out |= secret_values(getattr(model, name))
        out |= set(getattr(model, "_secret_env", ()) or ())
    elif isinstance(model, dict):
        for v in model.values():
            out |= secret_values(v)
    elif isinstance(model, (list, tuple)):
        for v in model:
            out |= secret_values(v)
    return out


def redactor_for(cfg: Any) -> Redactor:
    return Redactor(secret_values(cfg))
