"""Reading the replay's SQS queues (alerts, quarantine, on-failure) as they fill.

A receive on the embedded emulator (moto) costs time for every message the queue holds,
not only the ten it returns: drained only at the end, 3,000 quarantined events took
tens of minutes. ``QueueDrain.poll`` between invocations keeps each queue short, so the
whole drain stays proportional to the messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

RECEIVE_MAX = 10  # SQS ReceiveMessage returns at most 10 messages per call


class QueueDrain:
    """Receives (and deletes) every message of one queue into ``bodies``.

    >>> drain = QueueDrain(sqs, url)  # doctest: +SKIP
    >>> drain.poll()                  # after each invocation: whatever is there now
    >>> drain.finish()                # at the end: until the queue stays empty
    """

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.bodies: list[dict[str, Any]] = []

    def waiting(self) -> int:
        """Messages in the queue, visible or in flight (exact on the emulator)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def poll(self, advance: Callable[[int], None] | None = None, idle_polls: int = 1) -> int:
        """Receive until ``idle_polls`` receives in a row come back empty; the number of
        messages received."""
        got, idle = 0, 0
        while idle < idle_polls:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=RECEIVE_MAX, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                idle += 1
                continue
            idle = 0
            self.bodies.extend(json.loads(m["Body"]) for m in messages)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            got += len(messages)
            if advance is not None:
                advance(len(messages))
        return got

    def finish(self, advance: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Receive until the queue stays empty (two empty receives in a row)."""
        self.poll(advance, idle_polls=2)
        return self.bodies
