"""A state backend defined in the tests alone: `toy_json` keeps the whole state in one JSON file, rewritten
(to a temporary name, then renamed) at every write: the in-memory store, saved after each change. Nothing in watchdog/ knows it: tests register it
(`STATES.registered(TOY_STATE)`) for a block, and it must pass the one store contract
(tests/test_store_contract.py) and run through the commands (tests/test_toy_kinds.py).

It writes at once and never fails quietly: a write that cannot land raises StoreError, as the SQLite file
without its writer thread does. Its outbox is the one in memory (a toy need not keep messages across
restarts); `validate` asks whether the file's directory can be written."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from watchdog.state.codec import decode_pause, encode_pause
from watchdog.config.models import AwsSection, State
from watchdog.state.journal import MemoryStore, Record
from watchdog.core.pause import Pause
from watchdog.state.memory import MemoryState
from watchdog.state.backend import OpenState, StateDeps, StateKind, Verdict
from watchdog.state.storage import StoreError


class ToyState(State):
    type: Literal["toy_json"]
    file: Path


class ToyStore(MemoryStore):
    """The in-memory store, kept in one JSON document: every write rewrites it; opening reads it back. Also
    the read-only view `incidents` uses (`where`, `check_chain`, `close`)."""

    def __init__(self, file: Path, *, create: bool):
        super().__init__()
        self.file = file
        if not file.exists():
            if not create:
                raise StoreError(f"toy state {file}: no such file")
            return
        doc = json.loads(file.read_text())
        for r in doc["records"]:
            super()._append(datetime.fromisoformat(r["at"]), r["kind"], r["target"], r["incident"], r["level"],
                         r["dry_run"], r["data"])
        for row in doc["incidents"]:
            super().save_incident(row["snapshot"])
        for pause in doc["pauses"]:
            super().save_pause(decode_pause(pause))

    @property
    def where(self) -> str:
        return str(self.file)

    def _save(self) -> None:
        doc = {"records": [r.to_json() for r in self.records()],
               "incidents": self.list_incidents(limit=10**9),
               "pauses": [encode_pause(p) for p in self.pauses()[0]]}
        part = self.file.with_name(self.file.name + ".part")
        try:
            part.write_text(json.dumps(doc))
            os.replace(part, self.file)
        except OSError as exc:
            raise StoreError(f"toy state {self.file}: cannot write: {exc.strerror or exc}") from None

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
             data: dict[str, Any]) -> Record:
        rec = super()._append(at, kind, target, incident, level, dry_run, data)
        self._save()
        return rec

    def save_incident(self, snap: dict[str, Any]) -> None:
        super().save_incident(snap)
        self._save()

    def save_pause(self, pause: Pause) -> None:
        super().save_pause(pause)
        self._save()

    def delete_pause(self, scope: str) -> None:
        super().delete_pause(scope)
        self._save()

    def check_chain(self) -> tuple[int, list[str]]:
        return len(self.records()), []  # a toy keeps no hash chain

    def close(self) -> None:
        return None


async def open_toy(cfg: ToyState, deps: StateDeps) -> OpenState:
    """The in-memory state's handle (watchdog/state/memory.py) over the JSON-backed store."""
    cfg.file.parent.mkdir(parents=True, exist_ok=True)
    return MemoryState(ToyStore(cfg.file, create=True), deps.instance)


async def probe_toy(cfg: ToyState, aws: AwsSection) -> Verdict:
    """Whether the file's directory, or the nearest one that exists (open makes the rest), can be written."""
    parent = cfg.file.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK):
        return True, f"{parent} can be written"
    return False, f"{parent} cannot be written"


TOY_STATE = StateKind(type="toy_json", config=ToyState, open=open_toy,
                      read=lambda cfg, aws: ToyStore(cfg.file, create=False), describe=lambda cfg: f"toy state {cfg.file}",
                      probe=probe_toy)
