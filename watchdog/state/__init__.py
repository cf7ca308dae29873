"""What the watchdog keeps: the store's Protocols, the codec, the audit chain, the outbox, the backend registry's seam, the in-memory backend."""
