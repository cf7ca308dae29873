"""What every layer shares, and nothing above it: the event vocabulary, the kind registries, the clock, the secret masker."""
