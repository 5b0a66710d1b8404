"""Messages that can be said again in another language, without Django in core.

A `Wording` is the English sentence the command line has always printed, and a plain
`str` to everything that reads it (the CLI, `--json`, logs, tests), so none of those
change. It also remembers what it says as a message id and its values, so that the web
layer can word the same message in the page's language (casewatch.web.labels). Values
are what the sentence shows, already formatted; a value may itself be a Wording (a
reason inside a sentence: "{problem}; row skipped").

A `str` subclass, rather than a message object carried beside the text, because these
sentences pass through dataclasses, caches and `f"{exc}"` that all expect text.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any


class Wording(str):
    code: str
    params: Mapping[str, object]

    def __new__(cls, code: str, english: str, **params: object) -> Wording:
        self = super().__new__(cls, english.format(**params))
        self.code = code
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as what it says (a copy, a process pool), not as the bare English.
        return (_rebuilt, (self.code, str(self), dict(self.params)))

    def as_data(self) -> dict[str, Any]:
        """JSON-ready: the id and values (nested wordings too), for a page shown later."""
        return {
            "code": self.code,
            "params": {
                name: value.as_data() if isinstance(value, Wording) else value
                for name, value in self.params.items()
            },
        }


def _rebuilt(code: str, text: str, params: dict[str, object]) -> Wording:
    wording = str.__new__(Wording, text)
    wording.code = code
    wording.params = params
    return wording


def placeholders(template: str) -> frozenset[str]:
    """The names a `str.format` template fills in: "{number} has {length}" → number, length."""
    parsed = string.Formatter().parse(template)
    return frozenset(name for _text, name, _spec, _conversion in parsed if name)
