"""What health reports is masked and short: /healthz answers without authentication."""

from __future__ import annotations

from tcsms_poller.health import REASON_LIMIT, HealthBoard
from tcsms_poller.masking import Masker


def test_a_reason_is_masked_and_cut_to_one_short_line() -> None:
    board = HealthBoard(masker=Masker(["hook-secret-value"]))
    health = board.register("http", "sink")
    body = "\n".join(["error for 13711112222 and +8613799990000", "hook-secret-value", "x" * 5000])
    health.failed(f"HTTP 500: {body}")
    [part] = board.describe()
    reason = part["reason"]
    assert reason.startswith("HTTP 500: error for 137****2222 and +86137****0000 *** xxx")
    assert "hook-secret-value" not in reason
    assert "\n" not in reason
    assert len(reason) == REASON_LIMIT
    assert reason.endswith("…")
