"""Pure rendering for people (no I/O, nothing of the runtime or the replay): charts as SVG text."""
