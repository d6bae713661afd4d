"""The emulator's published account: what every emulator accepts unless told otherwise.

Published fakes, not secrets. They live outside the emulator package so that the configuration's
advice and ``example-config --emulator`` can name them without importing the emulator.
"""

from __future__ import annotations

__all__ = ["DEFAULT_APP_ID", "DEFAULT_LISTEN", "DEFAULT_SECRET_ID", "DEFAULT_SECRET_KEY"]

DEFAULT_SECRET_ID = "AKIDEMULATOR000000000000000000000000"  # noqa: S105
DEFAULT_SECRET_KEY = "emulatorsecretkey000000000000000"  # noqa: S105
DEFAULT_APP_ID = "1400006666"
DEFAULT_LISTEN = "127.0.0.1:9000"  # where ``tcsms-poller emulator`` serves unless told otherwise
