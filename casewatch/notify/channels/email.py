"""E-mail over SMTP through Django's mail connection (config.mail_settings).

Each message is multipart (text and HTML) and carries its own Message-ID, made
from the notification's idempotency key: a resend after a crash has the same
Message-ID, so mail programs show it once, and the ID is what the outbox keeps
as the provider's message id. Client mail carries the List-Unsubscribe headers
the dispatcher puts in `Outgoing.extra_headers`. Without CASEWATCH_SMTP_URL,
Django's file backend writes each message under the data directory instead.

SMTP's answer decides: 4xx and a lost connection are worth another try, 5xx is
a refusal for good (the client's next channel is tried), as
data/provider_errors.toml says.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend

from casewatch.notify.channels.base import Outgoing, SendResult, Transport
from casewatch.notify.channels.errors import refusal, unreachable

_ID_SAFE = re.compile(r"[A-Za-z0-9._+-]{1,64}")


def sender_domain(from_address: str) -> str:
    """The domain part of the sender, for Message-IDs; `localhost` when there is none."""
    address = from_address.rsplit("<", 1)[-1].rstrip(">").strip()
    domain = address.rpartition("@")[2]
    return domain if domain and re.fullmatch(r"[A-Za-z0-9.-]+", domain) else "localhost"


def message_id(idempotency_key: str, domain: str) -> str:
    """A stable Message-ID for a notification: the same on every resend of it."""
    local = idempotency_key if _ID_SAFE.fullmatch(idempotency_key) else None
    if local is None:
        local = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return f"<{local}@{domain}>"


def html_from_text(text: str) -> str:
    """An HTML part for a message rendered as text only: paragraphs, escaped."""
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
    return "".join("<p>" + html.escape(part).replace("\n", "<br>") + "</p>" for part in paragraphs)


class EmailTransport(Transport):
    """Django's configured mail connection; an SMTP connection is kept open between sends."""

    channel = "email"

    def __init__(
        self, *, from_address: str | None = None, connection: BaseEmailBackend | None = None
    ) -> None:
        self.from_address = from_address or settings.DEFAULT_FROM_EMAIL
        self.domain = sender_domain(self.from_address)
        self._connection = connection

    def message(self, outgoing: Outgoing) -> EmailMultiAlternatives:
        rendered = outgoing.rendered
        headers = {
            "Message-ID": message_id(outgoing.idempotency_key, self.domain),
            "Auto-Submitted": "auto-generated",
            "Content-Language": outgoing.language or "en",
            **outgoing.extra_headers,
        }
        mail = EmailMultiAlternatives(
            subject=" ".join(rendered.subject.split()),
            body=rendered.text,
            from_email=self.from_address,
            to=[outgoing.address],
            headers=headers,
        )
        mail.attach_alternative(rendered.html or html_from_text(rendered.text), "text/html")
        return mail

    def _open(self) -> tuple[BaseEmailBackend, bool]:
        """The connection to send on, and whether it is one kept between sends.

        Only SMTP connections are kept: the file backend writes one file per connection,
        and an operator reading captured mail wants one per message.
        """
        if self._connection is None:
            connection = get_connection(fail_silently=False)
            if not isinstance(connection, SmtpBackend):
                return connection, False
            self._connection = connection
        return self._connection, True

    def send(self, outgoing: Outgoing) -> SendResult:
        mail = self.message(outgoing)
        sent_id = mail.extra_headers["Message-ID"]
        for try_again in (True, False):
            connection, kept = self._open()
            was_open = kept and getattr(connection, "connection", None) is not None
            try:
                if kept:
                    connection.open()
                connection.send_messages([mail])
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if try_again and was_open:
                    continue  # the server closed an idle connection: once more on a new one
                return unreachable(f"the mail server closed the connection: {exc}")
            except smtplib.SMTPRecipientsRefused as exc:
                self._drop()
                code, reply = next(iter(exc.recipients.values()), (None, b""))
                return self._refused(code, reply, outgoing.address)
            except smtplib.SMTPResponseException as exc:
                self._drop()
                return self._refused(exc.smtp_code, exc.smtp_error, outgoing.address)
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                return unreachable(f"{type(exc).__name__}: {exc}", address=outgoing.address)
            return SendResult(outcome="sent", provider_message_id=sent_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, code: int | None, reply: bytes | str, address: str) -> SendResult:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return refusal(
            self.channel,
            code=code,
            status=code,
            detail=f"{code} {text}",
            address=address,
        )

    def _drop(self) -> None:
        """Forget a connection after an error: the next send starts on a fresh one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                connection.close()

    def close(self) -> None:
        self._drop()


__all__ = ["EmailTransport", "html_from_text", "message_id", "sender_domain"]
