"""The HTTP face: the listening server and its connection guard, /metrics /healthz /readyz /status and the control API."""
