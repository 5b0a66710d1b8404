"""Uploads larger than the firm's limit, said so in plain words on the staff pages.

The upload handler in casewatch.cases.uploads drops a file past
CASEWATCH_MAX_UPLOAD_BYTES unread (the view then says the limit and that nothing was
imported). Django answers a form too big to read (RequestDataTooBig) with a bare
"Bad Request"; the 400 handler here turns it into a page that says what happened.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.views.defaults import bad_request as django_bad_request

from casewatch.cases.uploads import upload_limit

# What a request that is too big to read is called in the 400 handler.
_TOO_BIG_TO_READ = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def too_big_message() -> str:
    """The sentence every page shows for a file over the limit, in the page's language."""
    return _(
        "This file is larger than %(limit)s, the most the web import takes. Nothing was "
        "imported. Split it into smaller files, or import it on the server with "
        "casewatch import."
    ) % {"limit": filesizeformat(upload_limit())}


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 400 page: a request too large to read is told so (413), anything else as Django does."""
    if not isinstance(exception, _TOO_BIG_TO_READ):
        return django_bad_request(request, exception)
    text = _(
        "What was sent is larger than this page accepts, so nothing was saved or imported. "
        "Go back and send less at once; a spreadsheet may be up to %(limit)s."
    ) % {"limit": filesizeformat(upload_limit())}
    return render(request, "413.html", {"message": text}, status=413)
