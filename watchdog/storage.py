"""What every state backend shares, whatever keeps the file or table."""

from __future__ import annotations


from pathlib import Path


class StoreError(Exception):
    """The state cannot be opened, migrated, read or written; the message is one line and names the cause
    (a full disk is reported as a full disk)."""


class StateConflict(StoreError):
    """The state file is not what this process wrote (its audit head moved under it): retrying cannot help,
    only a restart that reads the file again can."""


def make_parent(state_path: Path, directory: Path) -> None:
    """The directory the state (or its lock) lives in; StoreError in one line when it cannot be made."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"state_path {state_path}: {directory} exists and is not a directory") from None
    except OSError as exc:
        raise StoreError(f"state_path {state_path}: cannot create directory {directory}: "
                         f"{exc.strerror or exc}") from None
