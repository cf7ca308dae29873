"""What every state backend shares, whatever keeps the file or table."""

from __future__ import annotations


class StoreError(Exception):
    """The state cannot be opened, migrated, read or written; the message is one line and names the cause
    (a full disk is reported as a full disk)."""
