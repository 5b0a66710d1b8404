"""Forms that take effect once: a reload or a second click sends them again for nothing.

The pages that make an API token or a webhook endpoint answer the POST itself with the
new secret, shown once; they cannot redirect, since the secret would have to wait in
the session. So a browser's reload sends the form again. Each such form carries a
random value (`OnceForm.once`); the session keeps the values already sent (never a
secret), and a form sent again is told so instead of making a second token.
"""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.http import HttpRequest

SENT = "casewatch_forms_sent"
# How many sent forms a session remembers: more than anyone reloads.
REMEMBERED = 50


def _fresh() -> str:
    return secrets.token_urlsafe(16)


class OnceForm(forms.Form):
    """A form whose each rendering may be acted on once (see `first_sending`)."""

    once = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["once"].initial = _fresh()


def first_sending(request: HttpRequest, form: OnceForm) -> bool:
    """Whether this valid form is sent for the first time; notes that it has been.

    A form without the value (sent by a program, or from a page older than the field)
    is taken as sent once.
    """
    value = str(form.cleaned_data.get("once") or "")
    if not value:
        return True
    sent = list(request.session.get(SENT, []))
    if value in sent:
        return False
    request.session[SENT] = [*sent, value][-REMEMBERED:]
    return True
