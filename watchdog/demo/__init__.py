"""The embedded demo: a local CloudWatch, a simulated hybrid-routing service, the watchdog."""
