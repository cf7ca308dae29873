"""What runs a built runtime: the daemon's start and ordered stop (app), rollback --offline, validate, systemd notification."""
