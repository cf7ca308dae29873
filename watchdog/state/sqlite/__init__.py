"""The SQLite state backend: the file, its lock, the writer thread, the outbox table."""
