"""In the app: the notification row is the message, so storing it is delivering it.

There is no provider and no provider id; the staff app shows the row and marks
it read when opened.
"""

from __future__ import annotations

from casewatch.notify.channels.base import Outgoing, SendResult, Transport


class InAppTransport(Transport):
    channel = "in_app"

    def send(self, outgoing: Outgoing) -> SendResult:
        return SendResult(outcome="sent", delivered=True)


__all__ = ["InAppTransport"]
