"""Spreadsheet uploads larger than the firm's limit: refused unread, for every way in.

Django keeps a large upload in a temporary file whatever its size. The first upload
handler (settings.FILE_UPLOAD_HANDLERS) stops storing a file the moment it passes
CASEWATCH_MAX_UPLOAD_BYTES and marks the request, so that the web import and the API
can each say the limit and that nothing was imported.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest

# Set on the request when a file was refused for its size (read by `upload_refused`).
_REFUSED = "_casewatch_upload_refused"


def upload_limit() -> int:
    """The largest file, in bytes, a page accepts (settings.CASEWATCH_MAX_UPLOAD_BYTES)."""
    return int(settings.CASEWATCH_MAX_UPLOAD_BYTES)


def upload_refused(request: HttpRequest) -> bool:
    """Whether a file in this request was dropped unread for being over the limit."""
    return bool(getattr(request, _REFUSED, False))


class UploadLimit(FileUploadHandler):
    """First of the upload handlers: a file past the limit is skipped, not stored.

    A request already announcing more than the limit is refused before its first
    byte is kept; otherwise the file is counted as it streams in.
    """

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        # The form's other fields (the CSRF token) are small: a little room for them.
        self.over_limit = content_length > upload_limit() + 64 * 1024

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if self.over_limit:
            self._refuse()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > upload_limit():
            self._refuse()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None

    def _refuse(self) -> None:
        assert self.request is not None
        setattr(self.request, _REFUSED, True)
        raise SkipFile
