"""How a message ends: the carrier's code, the push's wording and the statistics bucket.

Success is ``SUCCESS`` + ``DELIVRD``. The failure codes are ones seen in the field (TENCENT.md);
which statistics bucket each one lands in is our plausible choice, not a table Tencent publishes.
``CallbackFailCount`` is the sum of the five failure buckets, as in Tencent's own example.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAILURES", "SUCCESS", "Outcome", "outcome_of"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One way a message can end."""

    report_status: str  # SUCCESS or FAIL
    code: str  # the carrier's code: ``Description`` when pulled, ``errmsg`` when pushed
    text: str  # the push's ``description``
    bucket: str = ""  # the CallbackStatusStatistics counter of a failure
    weight: int = 1  # relative frequency among failures


SUCCESS = Outcome("SUCCESS", "DELIVRD", "The SMS message is successfully delivered")

FAILURES: tuple[Outcome, ...] = (
    Outcome("FAIL", "UNDELIV", "The message could not be delivered", "InternalErrorCount", 4),
    Outcome("FAIL", "UNKNOWN", "The carrier reported an unknown state", "InternalErrorCount", 1),
    Outcome("FAIL", "EXPIRED", "The phone stayed off until expiry", "ShutdownErrorCount", 4),
    Outcome("FAIL", "MK:0001", "The number is suspended", "ShutdownErrorCount", 1),
    Outcome("FAIL", "MI:0013", "The number does not exist", "InvalidNumberCount", 2),
    Outcome("FAIL", "DELETED", "The number was cancelled", "InvalidNumberCount", 1),
    Outcome("FAIL", "REJECTD", "The recipient is on the opt-out list", "BlackListCount", 2),
    Outcome("FAIL", "DB:0141", "The carrier blocked the message", "BlackListCount", 1),
    Outcome("FAIL", "IB:0008", "The carrier's frequency limit was hit", "FrequencyLimitCount", 2),
)
_BY_CODE = {outcome.code: outcome for outcome in (SUCCESS, *FAILURES)}


def outcome_of(report_status: str, code: str) -> Outcome:
    """The outcome of a receipt, also for codes we never generate (injected ones)."""
    known = _BY_CODE.get(code)
    if known is not None and known.report_status == report_status:
        return known
    if report_status == "SUCCESS":
        return Outcome("SUCCESS", code, SUCCESS.text)
    return Outcome("FAIL", code, "The message could not be delivered", "InternalErrorCount")
