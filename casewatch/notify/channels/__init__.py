"""The channel adapters, one per channel on the shared base, built from the settings.

`transports()` gives the dispatcher one adapter per channel, each holding its
HTTP client (or SMTP connection) between sends; `close_all` releases them.
"""

from __future__ import annotations

from collections.abc import Mapping

from casewatch.config import dispatch_settings, twilio_settings, whatsapp_settings
from casewatch.notify.channels.base import Outgoing, Rendered, SendResult, Transport
from casewatch.notify.channels.email import EmailTransport
from casewatch.notify.channels.in_app import InAppTransport
from casewatch.notify.channels.sms import SmsTransport
from casewatch.notify.channels.webhook import WebhookTransport
from casewatch.notify.channels.whatsapp import WhatsAppTransport


def transports(*, timeout: float | None = None) -> dict[str, Transport]:
    """An adapter for every channel, configured from the environment (cli.md's settings).

    `timeout` (seconds, per provider call) defaults to CASEWATCH_CHANNEL_TIMEOUT.
    """
    seconds = dispatch_settings().timeout_seconds if timeout is None else timeout
    return {
        "whatsapp": WhatsAppTransport.from_settings(whatsapp_settings(), timeout=seconds),
        "sms": SmsTransport.from_settings(twilio_settings(), timeout=seconds),
        "email": EmailTransport(),
        "in_app": InAppTransport(),
        "webhook": WebhookTransport(timeout=seconds),
    }


def close_all(adapters: Mapping[str, Transport]) -> None:
    for adapter in adapters.values():
        adapter.close()


__all__ = [
    "EmailTransport",
    "InAppTransport",
    "Outgoing",
    "Rendered",
    "SendResult",
    "SmsTransport",
    "Transport",
    "WebhookTransport",
    "WhatsAppTransport",
    "close_all",
    "transports",
]
