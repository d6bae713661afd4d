"""Tencent's documented facts are read from one module by the configuration and the emulator."""

from __future__ import annotations

import json

from tcsms_poller.config import RateLimits
from tcsms_poller.emulator.actions import ACTION_HANDLERS
from tcsms_poller.emulator.options import ACTIONS
from tcsms_poller.tencent.api import DEFAULT_RATE_LIMITS, Action


def test_actions_are_their_api_names_wherever_a_string_is_read() -> None:
    name: str = Action.PULL_SMS_SEND_STATUS
    assert name == "PullSmsSendStatus"
    assert f"{Action.REPORT_CONVERSION}" == "ReportConversion"
    assert json.dumps({Action.CALLBACK_STATUS_STATISTICS: 1}) == '{"CallbackStatusStatistics": 1}'


def test_the_rate_limit_settings_are_the_actions_with_the_documented_defaults() -> None:
    assert RateLimits().model_dump() == {
        action.value: DEFAULT_RATE_LIMITS[action] for action in Action
    }


def test_the_emulator_answers_every_action_the_daemon_calls() -> None:
    assert set(Action) <= set(ACTION_HANDLERS)
    assert set(Action) <= set(ACTIONS)
