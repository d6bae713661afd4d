"""One daemon per state: the lock beside the database, taken by ``run`` and ``once``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcsms_poller.state import StateError
from tcsms_poller.state.lock import lock_path, state_lock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    database = tmp_path / "state" / "state.db"
    with state_lock(database):
        assert lock_path(database).read_text() == f"{os.getpid()}\n"
        with (
            pytest.raises(
                StateError, match=rf"in use by another tcsms-poller \(pid {os.getpid()}\)"
            ),
            state_lock(database),
        ):
            pass  # pragma: no cover (never entered)


def test_the_lock_is_free_again_once_released(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    with state_lock(database):
        pass
    with state_lock(database):
        assert lock_path(database).exists()


def test_an_unwritable_directory_is_a_state_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with (
        pytest.raises(StateError, match="cannot create the state lock"),
        state_lock(blocked / "state.db"),
    ):
        pass  # pragma: no cover (never entered)
