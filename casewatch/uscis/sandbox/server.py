"""Serving the sandbox over real HTTP: in the foreground, or in a thread beside a command.

The server keeps connections alive (HTTP/1.1), as USCIS's API gateway does, so
clients reuse them instead of paying for a new connection per lookup.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, cast

from werkzeug.serving import DechunkedInput, ThreadedWSGIServer, WSGIRequestHandler

log = logging.getLogger("werkzeug")

# How long a kept-alive connection may sit idle before the server closes it (nginx's default).
KEEP_ALIVE_SECONDS = 75.0
# Where a request's arrival (as its request line was read) is passed on to the application:
# time.monotonic() for spacing requests, and epoch seconds for logs.
ARRIVED_KEY = "casewatch.sandbox.arrived"
ARRIVED_AT_KEY = "casewatch.sandbox.arrived_at"
# Request bodies are small forms (the token request); anything larger is refused.
MAX_BODY_BYTES = 1 << 20


class KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler, answering on one connection for as long as the client keeps it.

    werkzeug 3's own handler sends `Connection: close` with every response: it
    cannot know where an unread request body ends, so it never reads a second
    request. This one reads each body in full before calling the application
    and sends each response with its length, so the next request line is
    always where the connection stands. Headers and body leave in one write.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # flushed by http.server after every request
    timeout = KEEP_ALIVE_SECONDS
    arrived = arrived_at = 0.0

    def parse_request(self) -> bool:
        # The request line was just read: what a gateway's rate limit calls its arrival.
        self.arrived, self.arrived_at = time.monotonic(), time.time()
        return super().parse_request()

    def run_wsgi(self) -> None:
        body = self._read_body()
        if body is None:
            return
        environ = self.make_environ()
        self.environ = environ
        environ[ARRIVED_KEY], environ[ARRIVED_AT_KEY] = self.arrived, self.arrived_at
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        try:
            status, headers, payload = _call(self.server.app, environ)
        except Exception:
            log.exception("Error on request %s", self.requestline)
            status, headers, payload = "500 INTERNAL SERVER ERROR", [], b"Internal Server Error"
            self.close_connection = True
        self._answer(status, headers, payload)

    def _read_body(self) -> bytes | None:
        """The request's whole body, or None when it was refused (the connection then closes)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = DechunkedInput(cast(IO[bytes], self.rfile)).read(MAX_BODY_BYTES + 1) or b""
            if len(body) <= MAX_BODY_BYTES:
                return body
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if 0 <= length <= MAX_BODY_BYTES:
                return self.rfile.read(length) if length else b""
        self.close_connection = True
        self._answer("413 CONTENT TOO LARGE", [], b"Request body refused")
        return None

    def _answer(self, status: str, headers: Iterable[tuple[str, str]], payload: bytes) -> None:
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines cost more than a lookup: build them only when someone reads them."""
        if log.isEnabledFor(logging.INFO):
            super().log_request(code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if not format.startswith("Request timed out"):  # an idle connection closing is no error
            super().log_error(format, *args)


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI application to completion: its status, headers and whole body."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    return status, headers, b"".join(chunks)


class KeepAliveServer(ThreadedWSGIServer):
    """A thread per connection; closing the server also closes the connections kept alive."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        super().__init__(host, port, app, handler=KeepAliveHandler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            kept = list(self._connections)
        for connection in kept:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


@dataclass
class RunningServer:
    url: str
    server: KeepAliveServer
    thread: threading.Thread

    def stop(self) -> None:
        if not self.thread.is_alive():
            self.server.server_close()
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Start `app` on a real socket (port 0: any free one) in a daemon thread.

    Its per-request access lines are kept out of the host command's stderr.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = KeepAliveServer(host, port, app)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
    thread.start()
    return RunningServer(url=f"http://{host}:{server.server_port}", server=server, thread=thread)
