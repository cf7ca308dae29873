"""The audit log's hash chain: each record's hash covers the one before it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """`row`: seq, at, kind, target, incident, level, dry_run (bool), data (a dict)."""
    return chain_hash(prev_hash, canonical(row))


def chain_hash(prev_hash: str, row_text: str) -> str:
    """`row_text`: the row's canonical JSON (UTF-8 safe: codec.jsonable made it so)."""
    return hashlib.sha256((prev_hash + row_text).encode()).hexdigest()


def chain_problems(rows: Sequence[tuple[Any, ...]], head: tuple[Any, ...] | None) -> list[str]:
    """What is wrong with an audit chain (rows oldest first, the stored head), one line each."""
    problems: list[str] = []
    prev_hash, prev_seq = GENESIS, 0
    for seq, at, kind, target, incident, level, dry_run, data, stored_prev, digest in rows:
        if seq != prev_seq + 1:
            problems.append(f"record {seq}: follows record {prev_seq} (records {prev_seq + 1}..{seq - 1} missing)")
        if stored_prev != prev_hash:
            problems.append(f"record {seq}: does not link to the record before it (deleted, inserted or reordered)")
        try:
            parsed = json.loads(data)
        except ValueError:
            problems.append(f"record {seq}: data is not valid JSON (edited)")
            parsed = data
        row = {"seq": seq, "at": at, "kind": kind, "target": target, "incident": incident,
               "level": level, "dry_run": bool(dry_run), "data": parsed}
        if row_hash(stored_prev, row) != digest:
            problems.append(f"record {seq}: content does not match its hash (edited)")
        prev_hash, prev_seq = digest, seq
    if head is None:
        if rows:
            problems.append("the audit head is missing (edited)")
    elif (head[0], head[1]) != (prev_seq, prev_hash):
        problems.append(f"the newest record is {prev_seq} but the audit head says {head[0]} "
                        "(records removed from the end, or the head edited)")
    return problems
