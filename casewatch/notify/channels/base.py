"""What every channel adapter is: one class per channel on this shared base.

An adapter turns one rendered message into one provider call and says what came
of it; it never touches the database. The dispatcher records the attempt, decides
on retries and fallbacks, and applies the outcome.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Outcome = Literal["sent", "transient", "permanent"]


@dataclass(frozen=True)
class Rendered:
    """A message in one language, in every form a channel may need."""

    subject: str
    text: str
    html: str = ""
    # WhatsApp: the approved template's name and its body parameters, in order.
    template: str = ""
    template_params: tuple[str, ...] = ()
    # WhatsApp: the template translation's language code ("pt_BR"); empty: Outgoing.language.
    template_language: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One notification, ready to hand to a provider."""

    notification_id: int
    idempotency_key: str
    address: str  # E.164 phone, e-mail address or URL
    language: str
    rendered: Rendered
    # Where the provider should send delivery receipts for this message, if it can.
    status_callback_url: str = ""
    # Inside WhatsApp's 24-hour window free text is allowed; outside it, templates only.
    free_text_allowed: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Outbound webhook: the event's type, the JSON body to send and the endpoint's secret.
    event_type: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    signing_secret: str = ""


@dataclass(frozen=True)
class SendResult:
    """What the provider said: accepted (with its message id), try again, or give up."""

    outcome: Outcome
    provider_message_id: str = ""
    http_status: int | None = None
    error_code: str = ""
    detail: str = ""  # trimmed, never the recipient's address
    retry_after: float | None = None  # seconds, when the provider said
    # The operator must act (expired token, blocked account, unregistered sender).
    alert_operator: bool = False
    # The next of the client's channels should be tried (not on WhatsApp, a landline, …).
    fall_back: bool = False
    # The recipient opted out at the provider (Twilio 21610): consent is withdrawn.
    opted_out: bool = False
    # Already in the recipient's hands (in-app: stored is delivered).
    delivered: bool = False


class Transport(ABC):
    """One channel's adapter."""

    channel: ClassVar[str]

    @abstractmethod
    def send(self, outgoing: Outgoing) -> SendResult:
        """Hand one message to the provider; never raises for a provider's refusal."""

    def close(self) -> None:  # noqa: B027 - most adapters hold nothing to release
        """Release connections held between sends."""
