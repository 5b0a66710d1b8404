"""Uploads larger than the firm's limit: refused unread, and said so in plain words.

Django keeps a large upload in a temporary file whatever its size, and answers a
form too big to read (RequestDataTooBig) with a bare "Bad Request". Here the first
upload handler stops storing a file the moment it passes CASEWATCH_MAX_UPLOAD_BYTES
(the view then says the limit and that nothing was imported), and the 400 handler
turns the request-size errors into a page that says what happened.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.views.defaults import bad_request as django_bad_request

# Set on the request when a file was refused for its size (read by `upload_refused`).
_REFUSED = "_casewatch_upload_refused"

# What a request that is too big to read is called in the 400 handler.
_TOO_BIG_TO_READ = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def upload_limit() -> int:
    """The largest file, in bytes, a page accepts (settings.CASEWATCH_MAX_UPLOAD_BYTES)."""
    return int(settings.CASEWATCH_MAX_UPLOAD_BYTES)


def upload_refused(request: HttpRequest) -> bool:
    """Whether a file in this request was dropped unread for being over the limit."""
    return bool(getattr(request, _REFUSED, False))


def too_big_message() -> str:
    """The sentence every page shows for a file over the limit, in the page's language."""
    return _(
        "This file is larger than %(limit)s, the most the web import takes. Nothing was "
        "imported. Split it into smaller files, or import it on the server with "
        "casewatch import."
    ) % {"limit": filesizeformat(upload_limit())}


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


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 400 page: a request too large to read is told so (413), anything else as Django does."""
    if not isinstance(exception, _TOO_BIG_TO_READ):
        return django_bad_request(request, exception)
    text = _(
        "What was sent is larger than this page accepts, so nothing was saved or imported. "
        "Go back and send less at once; a spreadsheet may be up to %(limit)s."
    ) % {"limit": filesizeformat(upload_limit())}
    return render(request, "413.html", {"message": text}, status=413)
