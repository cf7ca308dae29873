"""Scripts for working on the project (not shipped in the package): `make screenshots` runs screenshots.py."""
