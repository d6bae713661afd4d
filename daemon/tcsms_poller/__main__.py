"""Allows ``python -m tcsms_poller``."""

from __future__ import annotations

from tcsms_poller.cli import main

raise SystemExit(main())
