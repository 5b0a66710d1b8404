"""A stand-in SMTP server that keeps what it is sent and can be taken down and brought back.

A real SMTP server (aiosmtpd), so that e-mail takes the same path as to the firm's
own server. `down()` stops listening and drops every open session: senders meet a
dropped or refused connection, as when a mail server is down, until `up()` listens
again on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass(frozen=True)
class Received:
    """One message the stand-in accepted: when (epoch seconds), its Message-ID, its recipients."""

    at: float
    message_id: str
    recipients: tuple[str, ...]


class _Keeper:
    """aiosmtpd's handler: every message accepted is handed to the stand-in."""

    def __init__(self, owner: SmtpFake) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "replace")
        self.owner.keep(content, [str(r) for r in envelope.rcpt_tos])
        return "250 OK queued"


class _Session(SMTP):
    """An SMTP session that the stand-in can drop when it goes down."""

    def __init__(self, owner: SmtpFake, handler: _Keeper) -> None:
        super().__init__(handler, hostname="casewatch-smtp-fake")
        self.owner = owner

    def connection_made(self, transport: Any) -> None:
        self.owner.opened(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner.closed(self.transport)
        super().connection_lost(error)


class _Server(Controller):
    def __init__(self, owner: SmtpFake, host: str, port: int) -> None:
        self.owner = owner
        super().__init__(_Keeper(owner), hostname=host, port=port)

    def factory(self) -> SMTP:
        return _Session(self.owner, self.handler)


class SmtpFake:
    """The stand-in on 127.0.0.1 (a free port unless one is given), serving from a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self._server: _Server | None = None
        self._sessions: set[Any] = set()
        self.port = port or _free_port(host)
        self._listen()

    @property
    def url(self) -> str:
        """What CASEWATCH_SMTP_URL should be to send here."""
        return f"smtp://{self.host}:{self.port}"

    def keep(self, data: bytes, recipients: list[str]) -> None:
        parsed: Any = message_from_bytes(data, policy=default_policy)
        message_id = str(parsed.get("Message-ID", "")).strip()  # folded when long
        entry = Received(time.time(), message_id, tuple(recipients))
        with self._lock:
            self.received.append(entry)

    def opened(self, transport: Any) -> None:
        with self._lock:
            self._sessions.add(transport)

    def closed(self, transport: Any) -> None:
        with self._lock:
            self._sessions.discard(transport)

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _listen(self) -> None:
        server = _Server(self, self.host, self.port)
        server.start()
        self._server = server

    @property
    def is_down(self) -> bool:
        return self._server is None

    def down(self) -> None:
        """Stop listening and drop every open session (a sender's kept connection too)."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            sessions, self._sessions = list(self._sessions), set()
        for transport in sessions:
            server.loop.call_soon_threadsafe(transport.abort)
        server.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        if self._server is not None:
            return
        for _ in range(50):  # the port may linger a moment after close
            try:
                self._listen()
                return
            except (OSError, RuntimeError):
                time.sleep(0.1)
        raise OSError(f"the SMTP stand-in could not listen on port {self.port} again")

    def stop(self) -> None:
        self.down()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
