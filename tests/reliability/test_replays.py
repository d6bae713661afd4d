"""What the reliability runs count as a replay at a webhook (``replayed_batches``), and what not."""

from __future__ import annotations

import json
from email.message import Message

from tests.support.http_receiver import Received
from tests.support.reliability import replayed_batches


def batch(sender: str, at: float, *ids: str) -> Received:
    """A batch the HTTP sink posted, as the receiver saw it arrive."""
    headers = Message()
    headers["X-Instance"] = sender
    body = json.dumps({"records": [{"id": record_id} for record_id in ids]}).encode()
    return Received("POST", "/hook", headers, body, at=at)


def sender(request: Received) -> str:
    return str(request.headers["X-Instance"])


def test_a_new_sender_may_start_with_the_last_batch_before_it() -> None:
    segments = [[batch("a.1", 1.0, "r1", "r2")], [batch("b.1", 2.0, "r1", "r2", "r3")]]

    assert replayed_batches(segments, sender=sender) == (1, [])


def test_a_sender_may_replay_inside_its_segment_only_after_an_ack_its_lease_refused() -> None:
    """The lease passed on and came back with no batch of the other holder in between: the ack
    of ``r1, r2`` was refused (logged at 1.5), and the sender drained again from the cursor."""
    segment = [
        batch("a.1", 0.5, "r0"),
        batch("a.1", 1.0, "r1", "r2"),
        batch("a.1", 5.0, "r1", "r2", "r3"),
    ]

    assert replayed_batches([segment], sender=sender, refused={"a.1": [1.5]}) == (1, [])
    for refused in ({}, {"a.1": [0.7]}, {"a.1": [5.5]}, {"b.1": [1.5]}):
        replays, problems = replayed_batches([segment], sender=sender, refused=refused)
        assert replays == 0
        assert len(problems) == 1
        assert problems[0].startswith("segment 0, batch 2: 2 records again")
        assert "r1 in segment 0, batch 1 from 'a.1' at 1.000" in problems[0]


def test_a_refused_ack_excuses_no_repeat_but_the_replay_of_the_batch_before() -> None:
    segment = [
        batch("a.1", 0.5, "r0"),
        batch("a.1", 1.0, "r1", "r2"),
        batch("a.1", 5.0, "r0", "r3"),  # an older record, not the batch in hand
        batch("a.1", 6.0, "r4", "r5"),
        batch("a.1", 9.0, "r5", "r6"),  # a part of the batch before, not all of it
    ]

    replays, problems = replayed_batches([segment], sender=sender, refused={"a.1": [1.5, 5.5, 6.5]})

    assert replays == 0
    assert [problem.partition(";")[0] for problem in problems] == [
        "segment 0, batch 2: 1 records again, not a replay of the last batch before",
        "segment 0, batch 4: 1 records again, not a replay of the last batch before",
    ]
