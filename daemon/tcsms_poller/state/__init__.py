"""Durable state in SQLite: seen ids, the outbox and sink cursors, tracked numbers, conversions."""

from __future__ import annotations

from tcsms_poller.state.store import CommitResult, StateError, StateStore

__all__ = ["CommitResult", "StateError", "StateStore"]
