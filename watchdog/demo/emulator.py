"""The demo's local AWS: moto in server mode, from the `demo` extra.

An ops host installs the daemon without it (docs/operations.md): a production install carries no mock of
AWS, nor the Flask and Werkzeug it brings. So moto is imported here, when the demo starts, and nowhere else
(pyproject's import contract holds that).
"""

from __future__ import annotations

import warnings
from typing import Any

INSTALL_HINT = "pip install 'rollback-watchdog[demo]', or `make demo` in a checkout"


class EmulatorMissing(Exception):
    """The demo extra is not installed; the message is the one line that says how to get it."""


def moto_server_class() -> Any:
    """moto's ThreadedMotoServer, or EmulatorMissing naming what is absent and how to install it."""
    try:
        with warnings.catch_warnings():  # moto warns before failing without Flask: the one line below says it
            warnings.simplefilter("ignore")
            from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto itself, or the Flask/Werkzeug its server needs
        missing = exc.name or "moto"
        raise EmulatorMissing(
            f"the demo needs a local AWS emulator (moto) that a production install leaves out "
            f"(no module {missing!r}): {INSTALL_HINT}") from None
    return ThreadedMotoServer
